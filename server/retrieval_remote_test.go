package server

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/remote"
)

// Retrieval on an API node of the worker tier (serve --engine=remote):
// the API server has no engine; the context_embed job (run by the API
// server's River) and the per-keystroke query embed on workers through the
// remote client. Each worker's engine records every text it tokenizes.

// recWorkerEngine loads the tiny model under each name, recording what
// its engine tokenizes.
func recWorkerEngine(t *testing.T, names ...string) (*engine.Engine, *recorder) {
	t.Helper()
	path, eng, rec := tinyEngine(t)
	for _, n := range names {
		if _, err := eng.Load(engine.ModelSpec{Name: n, Path: path, Load: engine.LoadOptions{UseMmap: true}, Sched: testSched}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return eng, rec
}

// remoteRetrieval is an API node whose embedding model (EMBEDDING_MODEL)
// is served by one worker and whose completion model by another, both
// started after the API node; and a member of a new project who consents
// to storing context.
type remoteRetrieval struct {
	*pluginEnv
	c                *client
	project          string
	coder, embedder  string
	coderRec, embRec *recorder
	embWorker        *remote.Worker
}

func newRemoteRetrieval(t *testing.T) *remoteRetrieval {
	t.Helper()
	return newRemoteRetrievalWith(t, func(name string) (*engine.Engine, *recorder) { return recWorkerEngine(t, name) })
}

// newRemoteRetrievalWith is newRemoteRetrieval whose embedding worker
// runs the engine embedEngine returns for the model's name.
func newRemoteRetrievalWith(t *testing.T, embedEngine func(name string) (*engine.Engine, *recorder)) *remoteRetrieval {
	t.Helper()
	names := uniqueNames("rcoder", "rembed")
	e := newRemoteEnvWith(t, func(c *config.Config) {
		c.EmbeddingModel = names[1]
		c.RetrievalQueryLines = 64 // a whole chunk is the query
	})
	// No worker yet: retrieval is off, and stays off while none serves the
	// embedding model.
	if got := e.srv.retr.embedder(); got != "" {
		t.Fatalf("embedder %q before any worker", got)
	}
	engC, recC := recWorkerEngine(t, names[0])
	engE, recE := embedEngine(names[1])
	startTestWorker(t, engC)
	w := startTestWorker(t, engE)
	// The API node asks the workers again every few seconds.
	for deadline := time.Now().Add(20 * time.Second); e.srv.retr.embedder() != names[1]; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("retrieval still off (embedder %q) after the workers came", e.srv.retr.embedder())
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, ok := e.srv.plugin.models.ByName(names[0]); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the API node never listed the completion model")
		}
	}
	for _, m := range e.srv.plugin.models.List() {
		e.ids[m.Name] = m.ID
	}
	email := "rretrieval-" + uuid.NewString()[:8] + "@example.com"
	c := e.member(email)
	c.expect("PUT", "/api/user/update", map[string]any{"preference": map[string]any{
		"store_context": true, "store_contextual_telemetry": true, "store_behavioral_telemetry": true}}, 201)
	return &remoteRetrieval{pluginEnv: e, c: c, project: e.projectOf(email), coder: names[0], embedder: names[1],
		coderRec: recC, embRec: recE, embWorker: w}
}

// complete asks the completion model for a completion in main.py with
// every context file and returns the meta_query_id.
func (r *remoteRetrieval) complete(prefix, suffix string) any {
	r.t.Helper()
	b := completionBody([]int64{r.ids[r.coder]}, prefix, suffix)
	b["context"].(map[string]any)["context_files"] = []string{"*"}
	resp := r.c.expect("POST", "/api/completion/request", b, 200)
	return resp.body["data"].(map[string]any)["meta_query_id"]
}

// TestRemoteRetrieval: an API node started before its workers turns
// retrieval on once a worker serving EMBEDDING_MODEL is up; the embedding
// job embeds every chunk on that worker; a completion lays out the chunk
// nearest to the lines before the cursor (similarity 1), and the
// completion worker gets the chunk, not the whole file. When the
// embedding model's worker is gone, a completion still answers 200, with
// the files laid out whole.
func TestRemoteRetrieval(t *testing.T) {
	r := newRemoteRetrieval(t)
	tag := "rr" + uuid.NewString()[:6]
	lib, util := codeLines(tag+"lib", 120), codeLines(tag+"util", 60)
	wait := r.embedJobs()
	r.c.expect("POST", ctxPath, map[string]any{"context_updates": map[string]any{
		"lib.py":  []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": lib}},
		"util.py": []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": util}},
	}}, 200)
	wait()
	n := r.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1`, r.project)
	if want := len(chunkLines(lib)) + len(chunkLines(util)); n != want || n < 6 {
		t.Fatalf("%d chunks stored, want %d (at least 6)", n, want)
	}
	if got := r.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1 AND embedding IS NOT NULL AND embedder = $2`,
		r.project, r.embedder); got != n {
		t.Fatalf("%d of %d chunks embedded by %s", got, n, r.embedder)
	}
	if got := r.srv.retr.embedded.Load(); got != int64(n) {
		t.Fatalf("job embedded %d chunks, want %d", got, n)
	}
	if !strings.Contains(r.embRec.all(), lib[10]) {
		t.Fatal("the embedding worker's engine never saw the chunks")
	}

	id, text := r.chunkAt(r.project, "lib.py", 2)
	mq := r.complete(text+"\n", "\n")
	refs, _ := r.chunkRefs(mq)
	if len(refs) == 0 || len(refs) > r.srv.retr.topK {
		t.Fatalf("%d chunks laid out, want 1-%d", len(refs), r.srv.retr.topK)
	}
	last := refs[len(refs)-1]
	if last.ID != id || last.File != "lib.py" || last.Score < 0.999 {
		t.Fatalf("nearest chunk %+v, want id %d of lib.py with score 1", last, id)
	}
	seen := r.coderRec.all()
	if !strings.Contains(seen, text) {
		t.Fatal("the completion worker never got the nearest chunk")
	}
	if strings.Contains(seen, strings.Join(lib, "\n")) {
		t.Fatal("the completion worker got the whole of lib.py")
	}
	queries := r.srv.retr.queryEmbeds.Load()
	r.complete(text+"\nx = ", "\n") // same complete lines: the cached query
	if got := r.srv.retr.queryEmbeds.Load(); got != queries {
		t.Fatalf("a keystroke on the same line embedded its query again (%d, then %d)", queries, got)
	}

	// The embedding model's only worker stops: whole files, not an error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.embWorker.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	mq = r.complete(util[30]+"\n"+util[31]+"\n", "\n")
	if refs, raw := r.chunkRefs(mq); refs != nil {
		t.Fatalf("chunks laid out without an embedding worker: %s", raw)
	}
	if !strings.Contains(r.coderRec.all(), strings.Join(util, "\n")) {
		t.Fatal("without an embedding worker the completion worker did not get the whole file")
	}
}

// TestRemoteRetrievalSecretNeverStored: a secret in a context file
// reaches neither the chunk table, the embedding worker's engine nor the
// completion worker's, through the embedding job and a completion that
// lays out its chunks.
func TestRemoteRetrievalSecretNeverStored(t *testing.T) {
	r := newRemoteRetrieval(t)
	aws, gh, pemBody, code := plantedSecrets()
	lines := append(strings.Split(code, "\n"), codeLines("rsecretfile", 40)...)
	wait := r.embedJobs()
	r.c.put("settings.py", nil, lines)
	wait()
	var stored string
	if err := r.srv.db.QueryRow(context.Background(), `SELECT string_agg(content, '|') FROM project_context_chunk
		WHERE project_id = $1 AND embedding IS NOT NULL`, r.project).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	mq := r.complete("import boto3\n\n", "\n")
	if refs, _ := r.chunkRefs(mq); len(refs) == 0 {
		t.Fatal("no chunk laid out")
	}
	if !strings.Contains(stored, "import boto3") || !strings.Contains(r.embRec.all(), "import boto3") {
		t.Fatal("the chunks were not embedded on the worker")
	}
	for _, secret := range []string{aws, gh, pemBody} {
		if strings.Contains(stored, secret) {
			t.Error("a secret is stored in project_context_chunk")
		}
		if strings.Contains(r.embRec.all(), secret) {
			t.Error("a secret reached the embedding worker's engine")
		}
		if strings.Contains(r.coderRec.all(), secret) {
			t.Error("a secret reached the completion worker's engine")
		}
	}
}

// TestRemoteRetrievalQueryEmbedBounded: when the embedding worker takes
// no new text (its embedder is stuck), a completion whose query is not
// cached still answers, within queryEmbedTimeout of waiting for the
// embedding, with the files laid out whole.
func TestRemoteRetrievalQueryEmbedBounded(t *testing.T) {
	var stuck atomic.Bool
	release := make(chan struct{})
	r := newRemoteRetrievalWith(t, func(name string) (*engine.Engine, *recorder) {
		eng := engine.New(enginetest.New(enginetest.Options{Embeds: true, BeforeDecode: func(*engine.Batch) error {
			if stuck.Load() {
				<-release
			}
			return nil
		}}), nil)
		t.Cleanup(func() { eng.Close() })
		if _, err := eng.Load(engine.ModelSpec{Name: name, Path: "fake",
			Sched: engine.Config{NParallel: 2, NCtx: 2 * 512, NBatch: 64, QueueSize: 8}}, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { close(release) }) // before the engine closes
		return eng, &recorder{}
	})
	lib := codeLines("rb"+uuid.NewString()[:6], 60)
	wait := r.embedJobs()
	r.c.put("lib.py", nil, lib)
	wait()
	stuck.Store(true)
	b := completionBody([]int64{r.ids[r.coder]}, lib[40]+"\n"+lib[41]+"\n", "\n")
	b["context"].(map[string]any)["context_files"] = []string{"*"}
	done := make(chan resp, 1)
	go func() { done <- r.c.do("POST", "/api/completion/request", b) }()
	var got resp
	select {
	case got = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the completion waits for the stuck embedder")
	}
	if got.status != 200 {
		t.Fatalf("completion = %d %s, want 200", got.status, got.raw)
	}
	if refs, raw := r.chunkRefs(got.body["data"].(map[string]any)["meta_query_id"]); refs != nil {
		t.Fatalf("chunks laid out without a query embedding: %s", raw)
	}
	if !strings.Contains(r.coderRec.all(), strings.Join(lib, "\n")) {
		t.Fatal("the completion worker did not get the whole file")
	}
}
