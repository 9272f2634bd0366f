package server

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRemoteOpenAIEmbeddings: on an API node of the worker tier, POST
// /v1/embeddings is answered by the worker that serves the model (the
// text redacted before it reaches that worker); with that worker gone the
// route answers 503, not 501.
func TestRemoteOpenAIEmbeddings(t *testing.T) {
	r := newRemoteRetrieval(t)
	c, _ := r.keyClient("remote-oai-embed@example.com", "completions")
	aws, _, _, _ := plantedSecrets()
	resp := c.do("POST", "/v1/embeddings", `{"input":["func main() {}","key = '`+aws+`'"]}`)
	if resp.status != 200 || resp.body["model"] != r.embedder {
		t.Fatalf("%d %.300s", resp.status, resp.raw)
	}
	data, _ := resp.body["data"].([]any)
	if len(data) != 2 {
		t.Fatalf("%d embeddings, want 2", len(data))
	}
	for i, d := range data {
		if v, _ := d.(map[string]any)["embedding"].([]any); len(v) == 0 {
			t.Fatalf("embedding %d is empty: %.300s", i, resp.raw)
		}
	}
	seen := r.embRec.all()
	if !strings.Contains(seen, "func main() {}") {
		t.Fatal("the embedding worker's engine never saw the text")
	}
	if strings.Contains(seen, aws) {
		t.Fatal("the secret reached the worker's engine")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.embWorker.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	resp = c.do("POST", "/v1/embeddings", `{"model":"`+r.embedder+`","input":"func main() {}"}`)
	if resp.status != 503 {
		t.Fatalf("with no worker serving the model: %d %.300s", resp.status, resp.raw)
	}
}
