package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
)

// expectGoingAway reads conn until its close frame and fails unless the
// code is 1001 (going away).
func expectGoingAway(t *testing.T, conn *websocket.Conn, what string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		_, data, err := conn.ReadMessage()
		if err == nil {
			t.Fatalf("%s: frame %s where the close frame was expected", what, data)
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != shutdownCloseText {
			t.Fatalf("%s: %v; want the close frame 1001 %q", what, err, shutdownCloseText)
		}
		return
	}
}

// postJSON sends an HTTP request with c's cookies to a real listener.
func postJSON(t *testing.T, addr, path string, c *client, body any) (int, http.Header, map[string]any) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cookie", cookieHeader(c))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", path, err)
		return 0, nil, nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return res.StatusCode, res.Header, out
}

// TestDrain: Drain lets an HTTP completion and a WebSocket completion in
// flight finish and be answered, sends the close frame 1001 to every
// WebSocket (at once to an idle one, after its result to a busy one),
// answers 503 with Retry-After to a request that arrives meanwhile, and
// returns once all of it has ended.
func TestDrain(t *testing.T) {
	// The slow model: 400 ms a step, a prompt step and three tokens.
	e := newPluginEnv(t, func(c *config.Config) { c.CompletionMaxTokens = 3 })
	slow := e.ids["slow-coder"]
	// A completion's first commit runs while its model does: its start
	// says the completion is in flight.
	started := make(chan struct{}, 8)
	e.srv.plugin.preStoreHook = func(*batchTx) {
		select {
		case started <- struct{}{}:
		default:
		}
	}
	addr := e.listen()
	const email = "drain@example.com"
	c := e.member(email)
	// The slow model's answered completions would stay in the package's
	// database, where other tests count the slow model's generations.
	t.Cleanup(func() {
		e.srv.db.Exec(context.Background(), `DELETE FROM meta_query WHERE user_id = (SELECT user_id FROM users WHERE email = $1)`, email)
	})
	idle := e.wsDial(addr, "/api/ws/completion", c)
	busy := e.wsDial(addr, "/api/ws/completion", c)

	type answer struct {
		status int
		body   map[string]any
	}
	httpDone := make(chan answer, 1)
	go func() {
		status, _, body := postJSON(t, addr, "/api/completion/request", c, completionBody([]int64{slow}, "x = ", "\n"))
		httpDone <- answer{status, body}
	}()
	<-started
	send(t, busy, map[string]any{"request_id": "w", "completion_request": completionBody([]int64{slow}, "y = ", "\n")})
	<-started

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		drained <- e.srv.Drain(ctx)
	}()

	// The idle WebSocket is told at once; from then on the server drains.
	expectGoingAway(t, idle, "idle WebSocket")
	r := c.do("POST", "/api/project/create", map[string]any{"project_name": "late"})
	if r.status != 503 || r.header.Get("Retry-After") != itoa(retryAfterUnavailable) || r.msg() != msgShuttingDown {
		t.Errorf("a request during the drain: %d Retry-After %q %s; want 503 with Retry-After", r.status, r.header.Get("Retry-After"), r.raw)
	}

	// The busy WebSocket gets its result, then the close frame.
	frames := readUntil(t, busy, func(f map[string]any) bool { return f["type"] == "completion_result" && f["request_id"] == "w" })
	if f := frames[len(frames)-1]; f["status_code"] != float64(200) {
		t.Errorf("WebSocket completion during the drain: %v", f)
	}
	expectGoingAway(t, busy, "busy WebSocket")

	a := <-httpDone
	data, _ := a.body["data"].(map[string]any)
	if items, _ := data["completions"].([]any); a.status != 200 || len(items) != 1 {
		t.Errorf("HTTP completion during the drain: %d %v", a.status, a.body)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	waitWSGoroutines(t)
}

// TestDrainWaitsForBackground: Drain returns only once the background
// goroutines have ended: here a cancelled completion's first commit, held
// in flight, and the deletion of its rows that follows it.
func TestDrainWaitsForBackground(t *testing.T) {
	e := newPluginEnv(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.srv.plugin.preStoreHook = func(*batchTx) {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	addr := e.listen()
	const email = "drain-bg@example.com"
	c := e.member(email)
	var uid uuid.UUID
	if err := e.srv.db.QueryRow(context.Background(), `SELECT user_id FROM users WHERE email = $1`, email).Scan(&uid); err != nil {
		t.Fatal(err)
	}
	conn := e.wsDial(addr, "/api/ws/completion", c)
	send(t, conn, map[string]any{"request_id": "bg", "completion_request": completionBody([]int64{e.ids["slow-coder"]}, "z = ", "\n")})
	<-entered
	send(t, conn, map[string]any{"cancel": "bg"})
	readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "cancelled" })

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		drained <- e.srv.Drain(ctx)
	}()
	// The WebSocket has closed: all that Drain has left is the background.
	expectGoingAway(t, conn, "WebSocket")
	select {
	case err := <-drained:
		close(release)
		t.Fatalf("Drain returned (%v) while a first commit was still running", err)
	default:
	}
	close(release)
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	// The first commit went through and its rows were deleted, both
	// before Drain returned.
	if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1`, uid); n != 0 {
		t.Fatalf("%d rows of the cancelled completion left when Drain returned", n)
	}
	if n := e.srv.plugin.stored.discarded.Load(); n != 1 {
		t.Fatalf("discarded %d", n)
	}
}
