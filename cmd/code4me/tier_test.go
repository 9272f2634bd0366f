package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/engine/synth"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/internal/testenv"
	"github.com/code4me/code4me/server"
)

// The worker tier as separate processes: an API node (`serve
// --engine=remote`) and three `code4me worker` processes, each this test
// binary run as TestMain's child, on the test environment's Postgres and
// Redis, each with its own DATA_DIR.

// tierProc is one code4me process of the test.
type tierProc struct {
	args   string
	cmd    *exec.Cmd
	out    syncBuffer
	exited chan struct{}
	err    error // cmd.Wait's, set when exited is closed
}

// startTierProc runs `code4me <args>` with env added to the environment
// and a DATA_DIR of its own. When the test ends it gets SIGTERM (SIGKILL
// a minute later), and its output is logged if the test failed.
func startTierProc(t *testing.T, args string, env ...string) *tierProc {
	t.Helper()
	p := &tierProc{args: args, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), serveEnv+"="+args, "DATA_DIR="+t.TempDir())
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("code4me %s (pid %d) output:\n%s", p.args, p.cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// running reports whether the process has not exited.
func (p *tierProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// slowShape is a small synthetic model whose prompts take about a second
// per 400 tokens to evaluate on one thread (the tiny shapes take a few
// milliseconds), so that a request is still running when its worker is
// killed.
var slowShape = synth.Shape{
	Name: "tier-slow", Arch: "qwen2", NLayer: 4, NEmbd: 512, NFF: 1536, NHead: 8, NHeadKV: 2,
	NCtx: 4096, NVocab: 4096, RopeTheta: 1e6, RMSEps: 1e-6, QKVBias: true,
	BPEVocab: 4096 - 9, CorpusSize: 1 << 20,
}

// pingWorker is a worker as /api/ping's details list it.
type pingWorker struct {
	WorkerID string `json:"worker_id"`
	Pid      int    `json:"pid"`
	Draining bool   `json:"draining"`
	Models   []struct {
		Model        string `json:"model"`
		ModelID      int64  `json:"model_id"`
		Slots        int    `json:"slots"`
		WeightsBytes int64  `json:"weights_bytes"`
		KvCells      int    `json:"kv_cells"`
	} `json:"models"`
}

// TestWorkerTier: an API node without models answers a request for two
// models from two workers; a worker killed with -9 while it runs a
// request has the request answered once by another worker; a worker
// stopped with SIGTERM exits 0 and its only model then answers 503 at
// once; /api/ping lists the live workers and their models with their
// memory.
func TestWorkerTier(t *testing.T) {
	ctx := context.Background()
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	slowPath := filepath.Join(t.TempDir(), slowShape.Name+".gguf")
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := synth.Write(sctx, slowPath, slowShape, synth.Options{Seed: 1,
		CacheDir: filepath.Join(cache, "code4me-test-models", "bpe")}); err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	common := []string{"DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL, "MODELS=",
		"MODEL_DIR=" + filepath.Join(cache, "code4me-test-models", "serve"),
		"ENGINE_PARALLEL=1", "ENGINE_THREADS=1", "SHUTDOWN_GRACE=10", "EMAIL_HOST=", "LOG_LEVEL=info", "LOG_FORMAT=text"}
	port := freeTCPPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	api := startTierProc(t, "serve --engine=remote", append(common, "SERVER_HOST=127.0.0.1", fmt.Sprintf("SERVER_PORT=%d", port),
		"DEFAULT_MAX_REQUEST_RATE_PER_HOUR=100000", "COMPLETION_MAX_TOKENS=8")...)
	tinyW := startTierProc(t, "worker --models tiny", common...)
	pairW := startTierProc(t, "worker --models tiny-llama,"+slowPath, common...)
	slowW := startTierProc(t, "worker --models "+slowPath, common...)
	procs := []*tierProc{api, tinyW, pairW, slowW}
	wantModels := map[*tierProc][]string{tinyW: {"synthetic-tiny"}, pairW: {"synthetic-tiny-llama", "tier-slow"},
		slowW: {"tier-slow"}}

	ping := func() (engine string, workers []pingWorker) {
		t.Helper()
		res, err := http.Get(base + "/api/ping")
		if err != nil {
			return "", nil
		}
		defer res.Body.Close()
		var body struct {
			Details struct {
				Engine  string       `json:"engine"`
				Workers []pingWorker `json:"workers"`
			} `json:"details"`
		}
		if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&body) != nil {
			return "", nil
		}
		return body.Details.Engine, body.Details.Workers
	}
	// byPid finds the test's process of a listed worker.
	byPid := func(w pingWorker) *tierProc {
		for _, p := range procs {
			if p.cmd.Process.Pid == w.Pid {
				return p
			}
		}
		return nil
	}
	modelsOf := func(w pingWorker) []string {
		var names []string
		for _, m := range w.Models {
			names = append(names, m.Model)
		}
		slices.Sort(names)
		return names
	}

	// Ready once /api/ping lists the three workers with all their models
	// (the first run writes the synthetic models).
	var workers []pingWorker
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		_, workers = ping()
		complete := len(workers) == 3
		for _, w := range workers {
			complete = complete && byPid(w) != nil && slices.Equal(modelsOf(w), wantModels[byPid(w)])
		}
		if complete {
			break
		}
		for _, p := range procs {
			if !p.running() {
				t.Fatalf("code4me %s exited before the tier was ready: %v", p.args, p.err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 3 minutes; /api/ping lists %+v", workers)
		}
	}

	// Case 4: /api/ping of the API node lists each live worker and its
	// models, with the memory each holds.
	engineMode, workers := ping()
	if engineMode != "remote" || len(workers) != 3 {
		t.Fatalf("/api/ping: engine %q, workers %+v", engineMode, workers)
	}
	ids := map[string]int64{}          // model name -> model_id
	workerOf := map[string]*tierProc{} // worker_id -> process
	for _, w := range workers {
		p := byPid(w)
		if p == nil || !slices.Equal(modelsOf(w), wantModels[p]) || w.Draining {
			t.Fatalf("/api/ping lists %+v", w)
		}
		workerOf[w.WorkerID] = p
		for _, m := range w.Models {
			if m.Slots != 1 || m.ModelID == 0 || ids[m.Model] != 0 && ids[m.Model] != m.ModelID || m.WeightsBytes <= 0 || m.KvCells <= 0 {
				t.Fatalf("/api/ping lists model %+v of worker %s", m, w.WorkerID)
			}
			ids[m.Model] = m.ModelID
		}
	}
	idOf := func(p *tierProc) string {
		for id, q := range workerOf {
			if q == p {
				return id
			}
		}
		return ""
	}

	// A member with an active project, as the plugin signs in.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: time.Minute}
	call := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var m map[string]any
		json.Unmarshal(raw, &m)
		return res.StatusCode, m
	}
	expect := func(method, path string, body any, want int) map[string]any {
		t.Helper()
		status, m := call(method, path, body)
		if status != want {
			t.Fatalf("%s %s = %d %v, want %d", method, path, status, m, want)
		}
		return m
	}
	const email, password = "tier@example.com", "Secret123"
	expect("POST", "/api/user/create", map[string]any{"email": email, "name": "Tier", "password": password, "config_id": 1}, 201)
	expect("POST", "/api/user/authenticate", map[string]any{"email": email, "password": password}, 200)
	expect("GET", "/api/session/acquire", nil, 200)
	expect("POST", "/api/project/create", map[string]any{"project_name": "tier"}, 201)
	// The API node reads the worker registry into its model list every
	// second.
	time.Sleep(time.Second)

	completion := func(models []int64, prefix, file string) map[string]any {
		return map[string]any{
			"model_ids": models,
			"context":   map[string]any{"prefix": prefix, "suffix": "\n", "file_name": file, "selected_text": "", "context_files": []string{}},
			"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 47,
				"file_path": file, "caret_line": 1, "document_char_length": len(prefix) + 1, "relative_document_position": 0.5},
			"behavioral_telemetry": map[string]any{"time_since_last_shown": 1200, "time_since_last_accepted": 5000, "typing_speed": 3.5},
		}
	}
	// completions returns the response's items by model_id, each failing
	// the test unless it holds a completion.
	completions := func(body map[string]any) map[int64]string {
		t.Helper()
		data, _ := body["data"].(map[string]any)
		items, _ := data["completions"].([]any)
		out := map[int64]string{}
		for _, it := range items {
			item, _ := it.(map[string]any)
			text, ok := item["completion"].(string)
			id, _ := item["model_id"].(float64)
			if !ok || item["error"] != nil || item["message"] != nil {
				t.Fatalf("item without a completion: %v", item)
			}
			out[int64(id)] = text
		}
		return out
	}
	lastJob := func() int64 {
		t.Helper()
		var id int64
		if err := db.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM river_job`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// jobs lists the engine requests for model queued after job id after:
	// state and the worker that took each (River's attempted_by holds the
	// worker's client id, "worker-<worker_id>").
	type jobRow struct {
		state, worker      string
		cancelAsked        bool
		created, finalized time.Time // finalized: zero while not ended
	}
	jobs := func(model string, after int64) []jobRow {
		t.Helper()
		rows, err := db.Query(ctx, `SELECT state, coalesce(attempted_by[array_upper(attempted_by, 1)], ''), metadata ? 'cancel_attempted_at',
			created_at, coalesce(finalized_at, 'epoch')
			FROM river_job WHERE kind = $1 AND args->>'model' = $2 AND id > $3 ORDER BY id`, remote.JobKind, model, after)
		if err != nil {
			t.Fatal(err)
		}
		var out []jobRow
		for rows.Next() {
			var j jobRow
			if err := rows.Scan(&j.state, &j.worker, &j.cancelAsked, &j.created, &j.finalized); err != nil {
				t.Fatal(err)
			}
			j.worker = strings.TrimPrefix(j.worker, "worker-")
			out = append(out, j)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// settledJobs is jobs once River has marked each job the worker ended
	// (shortly after its reply): every job but one whose cancellation was
	// asked of a dead worker.
	settledJobs := func(model string, after int64) []jobRow {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			js := jobs(model, after)
			if time.Now().After(deadline) || !slices.ContainsFunc(js, func(j jobRow) bool { return j.state == "running" && !j.cancelAsked }) {
				return js
			}
		}
	}
	generations := func(body map[string]any) int {
		t.Helper()
		data, _ := body["data"].(map[string]any)
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM generation WHERE meta_query_id = $1`, data["meta_query_id"]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Case 1: one request naming two models, each served by another
	// worker, answers both, each from its worker.
	tiny, llama, slow := ids["synthetic-tiny"], ids["synthetic-tiny-llama"], ids["tier-slow"]
	before := lastJob()
	body := expect("POST", "/api/completion/request", completion([]int64{tiny, llama}, "def add(a, b):\n    return ", "main.py"), 200)
	if got := completions(body); len(got) != 2 || !hasKey(got, tiny) || !hasKey(got, llama) {
		t.Fatalf("two models answered %v", body)
	}
	if n := generations(body); n != 2 {
		t.Errorf("%d generations stored, want 2", n)
	}
	for model, p := range map[string]*tierProc{"synthetic-tiny": tinyW, "synthetic-tiny-llama": pairW} {
		if js := settledJobs(model, before); len(js) != 1 || js[0].state != "completed" || js[0].worker != idOf(p) {
			t.Errorf("jobs of %s: %+v, want one completed by worker %s", model, js, idOf(p))
		}
	}

	// Case 2: kill -9 of the worker running a request. Its prompt (some
	// 600 tokens) takes the slow model a second or more on one thread.
	var prefix strings.Builder
	for i := 1; i <= 24; i++ {
		fmt.Fprintf(&prefix, "value_%d = compute(value_%d, %d) + offset_%d\n", i, i-1, i*7919%100000, i%7)
	}
	prefix.WriteString("total = ")
	before = lastJob()
	type answer struct {
		status int
		body   map[string]any
		at     time.Time
	}
	answered := make(chan answer, 1)
	go func() {
		status, m := call("POST", "/api/completion/request", completion([]int64{slow}, prefix.String(), "slow.py"))
		answered <- answer{status, m, time.Now()}
	}()
	var victim *tierProc
	for deadline := time.Now().Add(30 * time.Second); victim == nil; time.Sleep(5 * time.Millisecond) {
		for _, j := range jobs("tier-slow", before) {
			if j.state == "running" {
				victim = workerOf[j.worker]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request never ran: jobs %+v", jobs("tier-slow", before))
		}
	}
	survivor := pairW
	if victim == pairW {
		survivor = slowW
	} else if victim != slowW {
		t.Fatalf("a worker not serving tier-slow runs it: %s", victim.args)
	}
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var a answer
	select {
	case a = <-answered:
	case <-time.After(time.Minute):
		t.Fatal("no answer a minute after the worker was killed")
	}
	t.Logf("answered %v after the kill", a.at.Sub(killed))
	if a.status != 200 {
		t.Fatalf("after the kill: %d %v", a.status, a.body)
	}
	if got := completions(a.body); len(got) != 1 || !hasKey(got, slow) {
		t.Fatalf("after the kill: %v", a.body)
	}
	if n := generations(a.body); n != 1 {
		t.Errorf("%d generations stored, want 1", n)
	}
	// Two jobs: the killed worker's, which the API node asked River to
	// cancel (River's rescuer ends it cancelled, never retried), and the
	// one the survivor completed.
	js := settledJobs("tier-slow", before)
	if len(js) != 2 || js[0].worker != idOf(victim) || js[0].state != "running" || !js[0].cancelAsked ||
		js[1].worker != idOf(survivor) || js[1].state != "completed" {
		t.Fatalf("jobs of tier-slow: %+v; want the killed worker's %s running with a cancel request, then one completed by %s",
			js, idOf(victim), idOf(survivor))
	}
	// The request went to the survivor within AliveFor of the worker's
	// last heartbeat (at most a second before the kill) and two checks of
	// the API node (half a second each, on a registry read at most half a
	// second old); its answer came as soon as the survivor's job ended.
	retried, ran := js[1].created.Sub(killed), js[1].finalized.Sub(js[1].created)
	t.Logf("sent again %v after the kill; ran %v there", retried, ran)
	if retried > remote.AliveFor+2*time.Second {
		t.Errorf("sent again %v after the kill, want within %v", retried, remote.AliveFor+2*time.Second)
	}
	if d := a.at.Sub(js[1].finalized); d > time.Second {
		t.Errorf("answered %v after the survivor's job ended", d)
	}
	<-victim.exited
	if ws, ok := victim.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("the killed worker ended with %v", victim.err)
	}
	// The dead worker is no longer listed (it stopped beating more than
	// AliveFor ago).
	if _, ws := ping(); len(ws) != 2 || slices.ContainsFunc(ws, func(w pingWorker) bool { return byPid(w) == victim }) {
		t.Errorf("/api/ping after the kill lists %+v", ws)
	}

	// Case 3: SIGTERM of an idle worker: it exits 0 within a few seconds,
	// stays registered as a dead, draining worker, and a request for its
	// only model answers 503 at once.
	if err := tinyW.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tinyW.exited:
		if tinyW.err != nil {
			t.Fatalf("the worker exited with %v after SIGTERM, want status 0", tinyW.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker still runs 5 s after SIGTERM")
	}
	var draining, alive bool
	if err := db.QueryRow(ctx, `SELECT draining, heartbeat_at > now() - make_interval(secs => $2)
		FROM engine_worker WHERE worker_id = $1`, idOf(tinyW), remote.AliveFor.Seconds()).Scan(&draining, &alive); err != nil {
		t.Fatal(err)
	}
	if !draining || alive {
		t.Errorf("the stopped worker's row: draining %v, alive %v; want draining and dead", draining, alive)
	}
	// Gone from /api/ping within the API node's registry read (half a
	// second).
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, ws := ping()
		if !slices.ContainsFunc(ws, func(w pingWorker) bool { return byPid(w) == tinyW }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/ping still lists the stopped worker: %+v", ws)
		}
	}
	// Past the API node's next reading of the registry into its model list
	// (every second): the model stays known, its worker dead.
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	status, m := call("POST", "/api/completion/request", completion([]int64{tiny}, "x = ", "main.py"))
	if d := time.Since(start); status != 503 || m["message"] != server.MsgNoWorker || d > time.Second {
		t.Errorf("a request for the stopped worker's model: %d %v in %v; want 503 %q within a second", status, m, d, server.MsgNoWorker)
	}
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}
