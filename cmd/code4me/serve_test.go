package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/testenv"
)

// serveEnv, set to a command line ("serve", "worker --models tiny") in a
// child process of this test binary, makes it run `code4me` with those
// arguments (main) instead of the tests.
// The test runs the real command as its own process without building the
// binary again: the test binary holds the same main, built with the same
// flags (the CGO flags `make test` exports, -race), and needs no Go
// toolchain at run time.
const serveEnv = "CODE4ME_TEST_MAIN"

func TestMain(m *testing.M) {
	if args := os.Getenv(serveEnv); args != "" {
		os.Args = append([]string{"code4me"}, strings.Fields(args)...)
		main() // exits 1 itself on error
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for the child's two output streams
// and the test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestServeSIGTERM runs `code4me serve` on the test environment's Postgres
// and Redis and the tiny synthetic model, opens a WebSocket, starts a long
// completion on it and another over HTTP, and sends SIGTERM while both
// run: both are answered in full, the WebSocket then gets the close frame
// 1001, and the process exits with status 0, having closed everything.
func TestServeSIGTERM(t *testing.T) {
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	port := freeTCPPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	var out syncBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"=serve",
		"DATABASE_URL="+dbURL, "REDIS_URL="+redisURL,
		"SERVER_HOST=127.0.0.1", fmt.Sprintf("SERVER_PORT=%d", port),
		"DATA_DIR="+t.TempDir(),
		// The synthetic model, made once under the user's cache.
		"MODELS=", "MODEL_DIR="+filepath.Join(cache, "code4me-test-models", "serve"), "SYNTHETIC_MODEL=tiny",
		"ENGINE_PARALLEL=1", "ENGINE_THREADS=1",
		"SHUTDOWN_GRACE=60", "DEFAULT_MAX_REQUEST_RATE_PER_HOUR=100000",
		// The pool's settings, checked in the log below.
		"DB_POOL_SIZE=7", "DB_STATEMENT_TIMEOUT=3",
		"EMAIL_HOST=", "LOG_LEVEL=debug", "LOG_FORMAT=text")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error // set when exited is closed
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("code4me serve output:\n%s", out.String())
		}
	})

	// Ready once /api/ping answers 200 (migrations checked, model loaded).
	deadline := time.Now().Add(3 * time.Minute)
	for {
		res, err := http.Get(base + "/api/ping")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("code4me serve exited before it was ready: %v", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("code4me serve not ready after 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A member with an active project, and the model's id.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 3 * time.Minute}
	call := func(method, path string, body any, want int) map[string]any {
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
		if res.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, res.StatusCode, raw, want)
		}
		var m map[string]any
		json.Unmarshal(raw, &m)
		return m
	}
	const email, password = "sigterm@example.com", "Secret123"
	call("POST", "/api/user/create", map[string]any{"email": email, "name": "Tester", "password": password, "config_id": 1}, 201)
	call("POST", "/api/user/authenticate", map[string]any{"email": email, "password": password}, 200)
	call("GET", "/api/session/acquire", nil, 200)
	call("POST", "/api/project/create", map[string]any{"project_name": "p"}, 201)
	var modelID int64
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, `SELECT model_id FROM model WHERE name = 'synthetic-tiny' ORDER BY last_loaded_at DESC LIMIT 1`).Scan(&modelID); err != nil {
			t.Fatal(err)
		}
	}()
	// A long prompt (some 2,500 tokens, unique from its first line, so
	// that no cache shortens it) makes each completion take a while on the
	// tiny model: its attention grows with the square of the prompt.
	body := strings.Repeat("total = accumulate(total, step * 12345)\n", 200)
	// Each completion is for a file of its own: a newer request for the
	// same session and file would supersede the older.
	completion := func(prefix, file string) map[string]any {
		return map[string]any{
			"model_ids": []int64{modelID},
			"context":   map[string]any{"prefix": "# " + prefix + "\n" + body + prefix, "suffix": "\n", "file_name": file, "selected_text": "", "context_files": []string{}},
			"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 47,
				"file_path": file, "caret_line": 1, "document_char_length": 10, "relative_document_position": 0.5},
			"behavioral_telemetry": map[string]any{"time_since_last_shown": 1200, "time_since_last_accepted": 5000, "typing_speed": 3.5},
		}
	}

	u, _ := url.Parse(base)
	h := http.Header{}
	var parts []string
	for _, c := range jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	h.Set("Cookie", strings.Join(parts, "; "))
	ws, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/api/ws/completion", port), h)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	// Completions in flight: the model's one slot works through a queue
	// of HTTP completions (each takes a few tens of milliseconds on the
	// tiny model, which soon samples an end of text), with the WebSocket's
	// completion last. SIGTERM is sent once the engine has taken all of
	// them, so that most are still queued or running.
	const httpN = 4
	httpDone := make(chan map[string]any, httpN)
	for i := range httpN {
		go func() {
			b, _ := json.Marshal(completion(fmt.Sprintf("x%d = ", i), fmt.Sprintf("f%d.py", i)))
			req, _ := http.NewRequest("POST", base+"/api/completion/request", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			res, err := hc.Do(req)
			if err != nil {
				httpDone <- map[string]any{"error": err.Error()}
				return
			}
			defer res.Body.Close()
			var m map[string]any
			json.NewDecoder(res.Body).Decode(&m)
			m["status"] = res.StatusCode
			httpDone <- m
		}()
	}
	// engineLoad reads /api/ping: requests the model has finished, and
	// those it runs or holds in its queue.
	engineLoad := func() (finished, inFlight int) {
		t.Helper()
		res, err := http.Get(base + "/api/ping")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var ping struct {
			Details struct {
				Models []struct {
					Name      string `json:"name"`
					Requests  int    `json:"requests"`
					SlotsBusy int    `json:"slots_busy"`
					Queue     int    `json:"queue"`
				} `json:"models"`
			} `json:"details"`
		}
		// The synthetic completion model, then the synthetic chat model
		// served beside it.
		if err := json.NewDecoder(res.Body).Decode(&ping); err != nil || len(ping.Details.Models) != 2 ||
			ping.Details.Models[0].Name != "synthetic-tiny" || ping.Details.Models[1].Name != "synthetic-tiny-chat" {
			t.Fatalf("/api/ping: %v %+v", err, ping)
		}
		m := ping.Details.Models[0]
		return m.Requests, m.SlotsBusy + m.Queue
	}
	waitTaken := func(n int) (inFlight int) {
		t.Helper()
		for began := time.Now(); ; {
			finished, inFlight := engineLoad()
			if finished+inFlight >= n {
				return inFlight
			}
			if time.Since(began) > 2*time.Minute {
				t.Fatalf("the engine took %d of %d completions in 2 minutes", finished+inFlight, n)
			}
		}
	}
	t0 := time.Now()
	waitTaken(1) // the queue has begun
	if err := ws.WriteJSON(map[string]any{"request_id": "w", "completion_request": completion("def f(x):\n    ", "w.py")}); err != nil {
		t.Fatal(err)
	}
	inFlight := waitTaken(httpN + 1)
	t.Logf("in flight %d after %v", inFlight, time.Since(t0))
	if inFlight < 2 {
		t.Fatalf("only %d completions in flight when SIGTERM was to be sent", inFlight)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM with %d completions in flight", inFlight)

	// The WebSocket's completion is answered in full, then the close frame.
	ws.SetReadDeadline(time.Now().Add(2 * time.Minute))
	var result map[string]any
	for result == nil {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("WebSocket before its result: %v", err)
		}
		var f map[string]any
		json.Unmarshal(data, &f)
		if f["type"] == "completion_result" {
			result = f
		}
	}
	if result["status_code"] != float64(200) || !hasOneCompletion(result["content"]) {
		t.Errorf("WebSocket completion after SIGTERM: %v", result)
	}
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("WebSocket after its result: %v; want the close frame 1001", err)
	}

	// Every HTTP completion is answered in full.
	for range httpN {
		if m := <-httpDone; m["status"] != 200 || !hasOneCompletion(m) {
			t.Errorf("HTTP completion after SIGTERM: %v", m)
		}
	}

	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("code4me serve exited with %v; want status 0", waitErr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("code4me serve still running 2 minutes after SIGTERM")
	}
	log := out.String()
	if !strings.Contains(log, "shutting down") || !strings.Contains(log, "msg=stopped") {
		t.Errorf("the log does not show the shutdown and its end")
	}
	if !strings.Contains(log, `msg="postgres pool open"`) || !strings.Contains(log, "max_conns=7 statement_timeout=3s") {
		t.Errorf("the pool was not opened with DB_POOL_SIZE and DB_STATEMENT_TIMEOUT")
	}
}

// hasOneCompletion reports whether a completion response's body (or a
// result frame's content) holds one completion, not an error item.
func hasOneCompletion(body any) bool {
	m, _ := body.(map[string]any)
	data, _ := m["data"].(map[string]any)
	items, _ := data["completions"].([]any)
	if len(items) != 1 {
		return false
	}
	item, _ := items[0].(map[string]any)
	_, text := item["completion"].(string)
	return text && item["error"] == nil
}
