package server

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/llama"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/internal/testenv"
)

// The worker tier in one test process: workers with their own engines
// (the tiny synthetic model under several names) and an API server
// without an engine (Deps.Remote), on the package's Postgres and Redis.
// Process-level faults (kill -9 of a worker) are tested in cmd/code4me.

// workerEngine loads the tiny model under each name.
func workerEngine(t *testing.T, names ...string) *engine.Engine {
	t.Helper()
	eng, _ := recWorkerEngine(t, names...)
	return eng
}

// startTestWorker registers eng's models and runs a worker until the test
// ends.
func startTestWorker(t *testing.T, eng *engine.Engine) *remote.Worker {
	t.Helper()
	ctx := context.Background()
	pool := testenv.Pool(t)
	reg, err := RegisterModels(ctx, pool, eng, nil, Limits{CompletionTokens: 16, ChatTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, m := range reg.List() {
		ids[m.Name] = m.ID
	}
	w, err := remote.StartWorker(ctx, remote.WorkerConfig{DB: pool, Redis: testenv.Redis(t), Engine: eng, Models: ids,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Drain(ctx)
	})
	return w
}

// newRemoteEnv is a server of the worker tier (no engine).
func newRemoteEnv(t *testing.T) *pluginEnv {
	t.Helper()
	return newRemoteEnvWith(t, nil)
}

// newRemoteEnvWith is newRemoteEnv with mut applied to its config.
func newRemoteEnvWith(t *testing.T, mut func(*config.Config)) *pluginEnv {
	t.Helper()
	ctx := context.Background()
	c, err := remote.NewClient(ctx, testenv.Pool(t), testenv.Redis(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.DefaultRatePerHour = 100000
	if mut != nil {
		mut(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	lb, err := llama.New(llama.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Deps{Config: cfg, Log: log, DB: testenv.Pool(t), Redis: testenv.Redis(t), Remote: c, Templates: lb, JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	pe := &pluginEnv{env: &env{t: t, srv: srv}, ids: map[string]int64{}}
	for _, m := range srv.plugin.models.List() {
		pe.ids[m.Name] = m.ID
	}
	return pe
}

// uniqueNames gives this test's models names no other test's workers use
// (the package's tests share the database and so the registry).
func uniqueNames(names ...string) []string {
	tag := uuid.NewString()[:6]
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + "-" + tag
	}
	return out
}

// TestRemoteTwoWorkers: an API node without models answers a request for
// two models, each served by another worker, and keeps one session's
// keystrokes on one worker so they reuse its KV cache.
func TestRemoteTwoWorkers(t *testing.T) {
	names := uniqueNames("shared-coder", "coder-a", "coder-b")
	engA := workerEngine(t, names[0], names[1])
	engB := workerEngine(t, names[0], names[2])
	startTestWorker(t, engA)
	startTestWorker(t, engB)
	e := newRemoteEnv(t)
	for _, n := range names {
		if e.ids[n] == 0 {
			t.Fatalf("the API node does not know %s: %v", n, e.ids)
		}
	}
	c := e.member("remote-" + uuid.NewString()[:8] + "@example.com")
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{e.ids[names[1]], e.ids[names[2]]}, "def add(a, b):\n    return ", "\n"), 200)
	items := r.body["data"].(map[string]any)["completions"].([]any)
	if len(items) != 2 {
		t.Fatalf("items: %s", r.raw)
	}
	for i, it := range items {
		if _, ok := it.(map[string]any)["completion"]; !ok {
			t.Errorf("item %d: %v", i, it)
		}
	}

	// 20 keystrokes in one file: every one on the worker of the first, and
	// after the first each evaluates only what is new.
	requests := func(e *engine.Engine) uint64 {
		for _, st := range e.Stats() {
			if st.Model == names[0] {
				return st.Requests
			}
		}
		return 0
	}
	beforeA, beforeB := requests(engA), requests(engB)
	prefix := "def fibonacci(n):\n    if n < 2:\n        return n\n    return "
	var mqs []string
	for i := range 20 {
		prefix += string(rune('a' + i%26))
		r := c.expect("POST", "/api/completion/request", completionBody([]int64{e.ids[names[0]]}, prefix, "\n"), 200)
		mqs = append(mqs, r.body["data"].(map[string]any)["meta_query_id"].(string))
	}
	gotA, gotB := requests(engA)-beforeA, requests(engB)-beforeB
	if !(gotA == 20 && gotB == 0) && !(gotA == 0 && gotB == 20) {
		t.Errorf("20 keystrokes ran %d on worker A and %d on worker B; want all on one", gotA, gotB)
	}
	var cached, evaluated int
	if err := e.srv.db.QueryRow(context.Background(), `SELECT sum(tokens_cached), sum(tokens_evaluated)
		FROM generation WHERE meta_query_id = ANY($1::uuid[]) AND meta_query_id <> $2::uuid`, mqs, mqs[0]).Scan(&cached, &evaluated); err != nil {
		t.Fatal(err)
	}
	if cached == 0 || float64(cached)/float64(cached+evaluated) < 0.9 {
		t.Errorf("keystrokes 2-20 reused %d prompt tokens and evaluated %d; want at least 90%% from cache", cached, evaluated)
	}
}

// TestRemoteNoWorker: a model whose only worker stopped beating answers
// 503 at once.
func TestRemoteNoWorker(t *testing.T) {
	names := uniqueNames("orphan-coder")
	eng := workerEngine(t, names[0])
	reg, err := RegisterModels(context.Background(), testenv.Pool(t), eng, nil, Limits{CompletionTokens: 16, ChatTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := reg.ByName(names[0])
	// A worker that served it and went silent a minute ago.
	dead := uuid.New()
	e := newRemoteEnv(t)
	e.exec("INSERT INTO engine_worker (worker_id, host, pid, heartbeat_at) VALUES ($1, 'gone', 1, now() - interval '1 minute')", dead)
	e.exec("INSERT INTO engine_worker_model (worker_id, model_id, slots) VALUES ($1, $2, 2)", dead, m.ID)
	t.Cleanup(func() { e.exec("DELETE FROM engine_worker WHERE worker_id = $1", dead) })
	// The API node learns of the model within its registry refresh.
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := e.srv.plugin.models.Get(m.ID); !ok; _, ok = e.srv.plugin.models.Get(m.ID) {
		if time.Now().After(deadline) {
			t.Fatal("the API node never listed the dead worker's model")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := e.member("noworker-" + uuid.NewString()[:8] + "@example.com")
	start := time.Now()
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{m.ID}, "x = ", "\n"), 503)
	if r.msg() != MsgNoWorker && r.body["detail"] != MsgNoWorker {
		t.Errorf("503 body: %s", r.raw)
	}
	t.Logf("answered in %v", time.Since(start))
}

// TestRemoteStreamAndChat: through the worker tier a WebSocket client
// gets the completion's tokens as they are generated, and a chat turn is
// rendered with the model's own chat template (reported by the worker)
// and stored with the same template version as on an in-process engine.
func TestRemoteStreamAndChat(t *testing.T) {
	names := uniqueNames("stream-coder", "stream-instruct")
	eng := workerEngine(t, names...)
	startTestWorker(t, eng)
	e := newRemoteEnv(t)
	addr := e.listen()
	c := e.member("remote-ws-" + uuid.NewString()[:8] + "@example.com")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	defer conn.Close()
	send(t, conn, map[string]any{"request_id": "r1", "completion_request": completionBody([]int64{e.ids[names[0]]}, "def main():\n    ", "\n")})
	frames := readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "completion_result" })
	var streamed strings.Builder
	tokens := 0
	for _, f := range frames {
		if f["type"] == "completion_token" {
			streamed.WriteString(f["text"].(string))
			tokens++
		}
	}
	res := frames[len(frames)-1]
	if res["status_code"] != float64(200) {
		t.Fatalf("result = %v", res)
	}
	item := res["content"].(map[string]any)["data"].(map[string]any)["completions"].([]any)[0].(map[string]any)
	completion, _ := item["completion"].(string)
	// Streamed text is released up to its last whitespace only, once
	// redacted (a secret is a run without whitespace), so a completion
	// without whitespace, which the random weights make now and then, comes
	// whole in the result and in no token frame.
	released := strings.LastIndexAny(completion, " \t\n") >= 0
	if (released && tokens == 0) || !strings.HasPrefix(completion, streamed.String()) {
		t.Fatalf("%d token frames streamed %q; completion %q", tokens, streamed.String(), completion)
	}

	chatID := uuid.NewString()
	r := c.expect("POST", "/api/chat/request", chatBody([]int64{e.ids[names[1]]}, chatID, [2]string{"user", "hello"}), 200)
	ans := r.body["history"].([]any)[0].(map[string]any)["assistant_responses"].([]any)[0].(map[string]any)
	if ans["completion"] == nil {
		t.Fatalf("chat answer: %v", ans)
	}
	tmpl, err := eng.Get(names[1])
	if err != nil {
		t.Fatal(err)
	}
	want := chatTemplateHash(tmpl.Model().Info().ChatTemplate)
	var got string
	if err := e.srv.db.QueryRow(context.Background(), `SELECT g.template_version FROM generation g JOIN meta_query q USING (meta_query_id)
		WHERE q.chat_id = $1`, chatID).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("chat template_version %q, want %q (the worker's model template)", got, want)
	}
}
