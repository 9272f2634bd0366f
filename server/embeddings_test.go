package server

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/code4me/code4me/internal/config"
)

// TestOpenAIEmbeddings: POST /v1/embeddings answers one vector per text,
// the same for the same text, in OpenAI's shape, as floats or base64;
// a secret in a text never reaches the engine.
func TestOpenAIEmbeddings(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) { c.EmbeddingModel = "tiny-coder" })
	c, _ := e.keyClient("oai-embed@example.com", "completions")
	aws, _, _, _ := plantedSecrets()

	r := c.do("POST", "/v1/embeddings", `{"input":["func main() {}","key = '`+aws+`'","func main() {}"]}`)
	if r.status != 200 || r.body["object"] != "list" || r.body["model"] != "tiny-coder" {
		t.Fatalf("%d %.300s", r.status, r.raw)
	}
	data, _ := r.body["data"].([]any)
	if len(data) != 3 {
		t.Fatalf("%d embeddings, want 3", len(data))
	}
	vec := func(i int) []float64 {
		d := data[i].(map[string]any)
		if d["object"] != "embedding" || d["index"] != float64(i) {
			t.Fatalf("item %d: %v", i, d)
		}
		var out []float64
		for _, x := range d["embedding"].([]any) {
			out = append(out, x.(float64))
		}
		return out
	}
	a, b, a2 := vec(0), vec(1), vec(2)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("widths %d and %d", len(a), len(b))
	}
	same, differ := true, false
	for i := range a {
		same = same && a[i] == a2[i]
		differ = differ || a[i] != b[i]
	}
	if !same || !differ {
		t.Fatalf("same text same vector: %v; different texts different vectors: %v", same, differ)
	}
	usage, _ := r.body["usage"].(map[string]any)
	if n, _ := usage["prompt_tokens"].(float64); n <= 0 || usage["total_tokens"] != usage["prompt_tokens"] {
		t.Fatalf("usage %v", usage)
	}
	if strings.Contains(e.rec.all(), aws) || strings.Contains(string(r.raw), aws) {
		t.Fatal("the secret reached the engine or the answer")
	}

	r = c.do("POST", "/v1/embeddings", `{"model":"tiny-coder","input":"func main() {}","encoding_format":"base64"}`)
	if r.status != 200 {
		t.Fatalf("%d %.300s", r.status, r.raw)
	}
	s, _ := r.body["data"].([]any)[0].(map[string]any)["embedding"].(string)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 4*len(a) {
		t.Fatalf("base64 embedding of %d bytes (%v), want %d", len(raw), err, 4*len(a))
	}
	for i := range a {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != float32(a[i]) {
			t.Fatalf("base64 component %d = %v, float answer %v", i, got, a[i])
		}
	}
}
