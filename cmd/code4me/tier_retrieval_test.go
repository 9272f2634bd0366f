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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/internal/testenv"
)

// TestWorkerTierRetrieval: an API node (`serve --engine=remote`) started
// before its only worker (`code4me worker`) turns retrieval on once the
// worker serves EMBEDDING_MODEL; the embedding job embeds a project's
// context file on the worker, through the model's embedding queue; and a
// completion lays out the chunk nearest to the lines before the cursor.
func TestWorkerTierRetrieval(t *testing.T) {
	ctx := context.Background()
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
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
		"DEFAULT_MAX_REQUEST_RATE_PER_HOUR=100000", "COMPLETION_MAX_TOKENS=8",
		"EMBEDDING_MODEL=synthetic-tiny", "RETRIEVAL_QUERY_LINES=64")...)
	// awaitOutput waits until p has logged text.
	awaitOutput := func(p *tierProc, text string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); !strings.Contains(p.out.String(), text); time.Sleep(100 * time.Millisecond) {
			if !p.running() {
				t.Fatalf("code4me %s exited: %v", p.args, p.err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("code4me %s did not log %q in %v", p.args, text, within)
			}
		}
	}
	awaitOutput(api, "msg=serving", time.Minute)
	if strings.Contains(api.out.String(), "retrieval: on") {
		t.Fatal("retrieval on before any worker")
	}
	worker := startTierProc(t, "worker --models tiny", common...)
	awaitOutput(worker, "msg=\"worker serving\"", 3*time.Minute)
	awaitOutput(api, "msg=\"retrieval: on\" model=synthetic-tiny", 30*time.Second)

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: time.Minute}
	expect := func(method, path string, body any, want int) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var m map[string]any
		json.Unmarshal(raw, &m)
		if res.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, res.StatusCode, raw, want)
		}
		return m
	}
	const email, password = "tier-retrieval@example.com", "Secret123"
	expect("POST", "/api/user/create", map[string]any{"email": email, "name": "Tier", "password": password, "config_id": 1}, 201)
	expect("POST", "/api/user/authenticate", map[string]any{"email": email, "password": password}, 200)
	expect("GET", "/api/session/acquire", nil, 200)
	expect("POST", "/api/project/create", map[string]any{"project_name": "tier"}, 201)
	expect("PUT", "/api/user/update", map[string]any{"preference": map[string]any{
		"store_context": true, "store_contextual_telemetry": true, "store_behavioral_telemetry": true}}, 201)
	var project string
	if err := db.QueryRow(ctx, `SELECT pu.project_id::text FROM project_users pu JOIN users u USING (user_id)
		WHERE u.email = $1`, email).Scan(&project); err != nil {
		t.Fatal(err)
	}

	lib := make([]string, 120)
	for i := range lib {
		lib[i] = fmt.Sprintf("def tier_lib%d(): return %d", i, i*7%13)
	}
	expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{
		"lib.py": []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": lib}}}}, 200)
	// The API node's River runs the embedding job; it is done when no
	// chunk of the project lacks an embedding.
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var chunks int
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		chunks = count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1 AND embedder = 'synthetic-tiny'`, project)
		if chunks > 0 && chunks == count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1`, project) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks embedded after a minute", chunks)
		}
	}
	if n := count(`SELECT count(*) FROM river_job WHERE kind = $1 AND queue = $2 AND state = 'completed'`,
		remote.JobKind, remote.EmbedQueue("synthetic-tiny")); n == 0 {
		t.Fatal("no embedding request ran on the worker")
	}

	var id int64
	var text string
	if err := db.QueryRow(ctx, `SELECT chunk_id, content FROM project_context_chunk WHERE project_id = $1 AND file_name = 'lib.py'
		AND chunk_index = 2`, project).Scan(&id, &text); err != nil {
		t.Fatal(err)
	}
	var ping struct {
		Details struct {
			Workers []pingWorker `json:"workers"`
		} `json:"details"`
	}
	res, err := http.Get(base + "/api/ping")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(res.Body).Decode(&ping)
	res.Body.Close()
	if len(ping.Details.Workers) != 1 || len(ping.Details.Workers[0].Models) != 1 {
		t.Fatalf("/api/ping lists %+v", ping.Details.Workers)
	}
	model := ping.Details.Workers[0].Models[0].ModelID
	body := expect("POST", "/api/completion/request", map[string]any{
		"model_ids": []int64{model},
		"context": map[string]any{"prefix": text + "\n", "suffix": "\n", "file_name": "main.py", "selected_text": "",
			"context_files": []string{"*"}},
		"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 47,
			"file_path": "main.py", "caret_line": 1, "document_char_length": len(text) + 2, "relative_document_position": 0.5},
		"behavioral_telemetry": map[string]any{"time_since_last_shown": 1200, "time_since_last_accepted": 5000, "typing_speed": 3.5},
	}, 200)
	mq, _ := body["data"].(map[string]any)["meta_query_id"].(string)
	var raw []byte
	if err := db.QueryRow(ctx, `SELECT context_chunks FROM meta_query WHERE meta_query_id = $1`, mq).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var refs []struct {
		ID    int64   `json:"id"`
		File  string  `json:"file"`
		Score float64 `json:"score"`
	}
	if err := json.Unmarshal(raw, &refs); err != nil || len(refs) == 0 {
		t.Fatalf("meta_query.context_chunks = %s (%v), want the laid-out chunks", raw, err)
	}
	if last := refs[len(refs)-1]; last.ID != id || last.File != "lib.py" || last.Score < 0.999 {
		t.Fatalf("nearest chunk %+v, want id %d of lib.py with score 1", last, id)
	}
}
