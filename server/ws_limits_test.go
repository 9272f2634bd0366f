package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
)

// dialOrigin dials a WebSocket endpoint with the client's cookies and, when
// origin is not empty, an Origin header. The handshake's response is
// returned whether or not it succeeded.
func dialOrigin(t *testing.T, addr, path string, c *client, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	var parts []string
	for k, v := range c.cookies {
		parts = append(parts, k+"="+v)
	}
	h.Set("Cookie", strings.Join(parts, "; "))
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, res, err := websocket.DefaultDialer.Dial("ws://"+addr+path, h)
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, res, err
}

// nextFrame reads one frame, failing t when none comes within 30 s.
func nextFrame(t *testing.T, conn *websocket.Conn) map[string]any {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("frame %q: %v", data, err)
	}
	return f
}

// frameFor reads frames until the final one (not a token) of request id.
func frameFor(t *testing.T, conn *websocket.Conn, id string) map[string]any {
	t.Helper()
	for {
		f := nextFrame(t, conn)
		if f["request_id"] == id && f["type"] != "completion_token" && f["type"] != "chat_token" {
			return f
		}
	}
}

// isLimited reports whether f is the rate limit's error frame: 429 and a
// retry_after within the hour's window.
func isLimited(f map[string]any) bool {
	ra, _ := f["retry_after"].(float64)
	return f["type"] == "error" && f["status_code"] == float64(429) && f["error"] == MsgTooManyRequests && ra >= 1 && ra <= 3600
}

// TestWSRateLimitPerMessage: every request frame counts against the rate
// limit of its HTTP route, for the connection's user, in the same budget as
// the HTTP requests; over it the frame gets a 429 error frame with
// retry_after, nothing of the request runs or is stored, and the
// connection goes on serving other routes.
func TestWSRateLimitPerMessage(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) {
		c.RatePerHourByRoute = map[string]int{"/api/chat/get/:page_number": 3, "/api/completion/request": 2}
	})
	// Each request key names a route the server has.
	routes := map[string]bool{}
	for _, r := range e.srv.App().GetRoutes(true) {
		routes[r.Path] = true
	}
	for key, route := range wsRoutes {
		if !routes[route] {
			t.Fatalf("%s counts against %s, which is not a route", key, route)
		}
	}
	for _, keys := range wsKeys {
		for _, key := range keys {
			if wsRoutes[key] == "" {
				t.Fatalf("request key %s has no route to count against", key)
			}
		}
	}

	addr := e.listen()
	const email = "ws-ratelimit@example.com"
	c := e.member(email)
	c.expect("GET", "/api/chat/get/1", nil, 200) // 1 of 3
	chat := e.wsDial(addr, "/api/ws/chat", c)
	for _, id := range []string{"g1", "g2"} { // 2 and 3 of 3
		send(t, chat, map[string]any{"request_id": id, "chat_get": map[string]any{"page_number": 1}})
		if f := frameFor(t, chat, id); f["type"] != "chat_get_result" || f["status_code"] != float64(200) {
			t.Fatalf("%s = %v", id, f)
		}
	}
	send(t, chat, map[string]any{"request_id": "g3", "chat_get": map[string]any{"page_number": 1}})
	if f := frameFor(t, chat, "g3"); !isLimited(f) {
		t.Fatalf("chat_get over the limit = %v", f)
	}
	// The connection stays, and other routes have their own budget.
	send(t, chat, map[string]any{"request_id": "d1", "chat_delete": map[string]any{"chat_id": uuid.NewString()}})
	if f := frameFor(t, chat, "d1"); f["type"] != "chat_delete_result" || f["status_code"] != float64(404) {
		t.Fatalf("chat_delete after a refusal = %v", f)
	}
	// The WebSocket's requests spent the HTTP route's budget.
	if r := c.do("GET", "/api/chat/get/1", nil); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("HTTP after the socket spent the budget = %d %s", r.status, r.raw)
	}

	// A completion over the limit is refused after its check: no token,
	// no result, nothing stored.
	conn := e.wsDial(addr, "/api/ws/completion", c)
	coder := e.ids["tiny-coder"]
	var meta any
	for _, id := range []string{"c1", "c2"} {
		send(t, conn, map[string]any{"request_id": id, "completion_request": completionBody([]int64{coder}, "x = 1\n", "")})
		f := frameFor(t, conn, id)
		if f["type"] != "completion_result" || f["status_code"] != float64(200) {
			t.Fatalf("%s = %v", id, f)
		}
		meta = f["content"].(map[string]any)["data"].(map[string]any)["meta_query_id"]
	}
	stored := e.storedQueries(email)
	send(t, conn, map[string]any{"request_id": "c3", "completion_request": completionBody([]int64{coder}, "x = 2\n", "")})
	for {
		f := nextFrame(t, conn)
		if f["request_id"] != "c3" {
			t.Fatalf("unexpected frame %v", f)
		}
		if f["type"] == "completion_token" {
			t.Fatalf("a refused completion streamed %v", f)
		}
		if !isLimited(f) {
			t.Fatalf("completion over the limit = %v", f)
		}
		break
	}
	if got := e.storedQueries(email); got != stored {
		t.Fatalf("a refused completion stored %d queries", got-stored)
	}
	send(t, conn, map[string]any{"request_id": "f1", "completion_feedback": map[string]any{"meta_query_id": meta, "model_id": coder, "was_accepted": true}})
	if f := frameFor(t, conn, "f1"); f["type"] != "completion_feedback_result" || f["status_code"] != float64(200) {
		t.Fatalf("feedback after a refused completion = %v", f)
	}
	chat.Close()
	conn.Close()
	waitWSGoroutines(t)
}

// TestWSMaxInFlight: a connection runs at most WS_MAX_IN_FLIGHT requests
// (default 4) at once; a request frame over it gets a 429 error frame and
// starts no goroutine, and the connection goes on. Cancelling a request
// frees its place at once.
func TestWSMaxInFlight(t *testing.T) {
	e := newPluginEnv(t, nil)
	if e.srv.cfg.WSMaxInFlight != 4 {
		t.Fatalf("WS_MAX_IN_FLIGHT default %d, want 4", e.srv.cfg.WSMaxInFlight)
	}
	addr := e.listen()
	c := e.member("ws-inflight@example.com")
	chatID := uuid.NewString()
	c.expect("POST", "/api/chat/request", chatBody([]int64{e.ids["tiny-instruct"]}, chatID, [2]string{"user", "hi"}), 200)

	// Deleting the chat waits for this lock: the deletes stay in flight.
	tx, err := e.srv.db.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM chat WHERE chat_id = $1 FOR UPDATE`, chatID); err != nil {
		t.Fatal(err)
	}
	before := wsGoroutines.Load()
	conn := e.wsDial(addr, "/api/ws/chat", c)
	del := func(id string) {
		send(t, conn, map[string]any{"request_id": id, "chat_delete": map[string]any{"chat_id": chatID}})
	}
	for i := 1; i <= 4; i++ {
		del(fmt.Sprintf("d%d", i))
	}
	inFlightErr := func(id string) {
		t.Helper()
		f := nextFrame(t, conn)
		if f["type"] != "error" || f["request_id"] != id || f["status_code"] != float64(429) || f["error"] != MsgTooManyInFlight {
			t.Fatalf("request %s over the limit = %v", id, f)
		}
	}
	// The reader handles frames in order: when the fifth is refused the
	// first four run, each in its goroutine beside the reader's.
	del("d5")
	inFlightErr("d5")
	if n := wsGoroutines.Load() - before; n != 5 {
		t.Fatalf("%d WebSocket goroutines, want the reader and 4 requests", n)
	}
	for i := range 20 {
		id := fmt.Sprintf("x%d", i)
		send(t, conn, map[string]any{"request_id": id, "chat_get": map[string]any{"page_number": 1}})
		inFlightErr(id)
	}
	if n := wsGoroutines.Load() - before; n != 5 {
		t.Fatalf("%d WebSocket goroutines after 20 refused frames, want 5", n)
	}
	// A cancelled request stops counting when the cancel is read.
	send(t, conn, map[string]any{"cancel": "d1"})
	del("d6")
	if f := frameFor(t, conn, "d1"); f["type"] != "cancelled" {
		t.Fatalf("cancelled d1 = %v", f)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for len(got) < 4 {
		f := nextFrame(t, conn)
		id, _ := f["request_id"].(string)
		if f["type"] != "chat_delete_result" || !slices.Contains([]string{"d2", "d3", "d4", "d6"}, id) {
			t.Fatalf("unexpected frame %v", f)
		}
		got[id] = f["status_code"].(float64)
	}
	// One delete removed the chat (d1's statement may have been the one:
	// it was sent before the cancel), the others found it gone.
	ok := 0
	for _, st := range got {
		if st == 200 {
			ok++
		} else if st != 404 {
			t.Fatalf("deletes answered %v", got)
		}
	}
	if ok > 1 || e.count(`SELECT count(*) FROM chat WHERE chat_id = $1`, chatID) != 0 {
		t.Fatalf("deletes answered %v", got)
	}
	send(t, conn, map[string]any{"request_id": "g", "chat_get": map[string]any{"page_number": 1}})
	if f := frameFor(t, conn, "g"); f["type"] != "chat_get_result" {
		t.Fatalf("after the requests ended: %v", f)
	}
	conn.Close()
	waitWSGoroutines(t)
}

// TestWSMaxInFlightSupersede: with one request allowed in flight, a new
// completion_request still supersedes the running one, and another request
// is refused while it runs.
func TestWSMaxInFlightSupersede(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) { c.WSMaxInFlight = 1 })
	addr := e.listen()
	c := e.member("ws-inflight-supersede@example.com")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	slow := e.ids["slow-coder"]
	send(t, conn, map[string]any{"request_id": "a", "completion_request": completionBody([]int64{slow}, "x = 1\n", "")})
	send(t, conn, map[string]any{"request_id": "b", "completion_request": completionBody([]int64{slow}, "x = 12\n", "")})
	if f := frameFor(t, conn, "a"); f["type"] != "cancelled" {
		t.Fatalf("superseded a = %v", f)
	}
	send(t, conn, map[string]any{"request_id": "f1", "completion_feedback": map[string]any{"meta_query_id": uuid.NewString(), "model_id": slow, "was_accepted": true}})
	if f := frameFor(t, conn, "f1"); f["type"] != "error" || f["error"] != MsgTooManyInFlight {
		t.Fatalf("feedback while b runs = %v (b must run, not be refused)", f)
	}
	send(t, conn, map[string]any{"cancel": "b"})
	if f := frameFor(t, conn, "b"); f["type"] != "cancelled" {
		t.Fatalf("cancelled b = %v", f)
	}
	send(t, conn, map[string]any{"request_id": "f2", "completion_feedback": map[string]any{"meta_query_id": uuid.NewString(), "model_id": slow, "was_accepted": true}})
	if f := frameFor(t, conn, "f2"); f["type"] != "completion_feedback_result" {
		t.Fatalf("feedback after b ended = %v", f)
	}
	conn.Close()
	waitWSGoroutines(t)
}

// TestWSOrigin: a handshake with an Origin that CORS_ALLOWED_ORIGINS does
// not list is refused with 403 before authentication; one without Origin
// (an editor plugin) or from a listed origin connects; "*" allows any.
func TestWSOrigin(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) { c.CORSOrigins = []string{"https://app.example.com"} })
	addr := e.listen()
	c := e.member("ws-origin@example.com")
	for _, origin := range []string{"https://evil.example", "http://app.example.com", "null"} {
		_, res, err := dialOrigin(t, addr, "/api/ws/chat", c, origin)
		if err == nil || res == nil || res.StatusCode != 403 {
			t.Fatalf("origin %s: %v %v", origin, err, res)
		}
		var body map[string]any
		json.NewDecoder(res.Body).Decode(&body)
		if body["message"] != MsgOriginNotAllowed {
			t.Fatalf("origin %s: body %v", origin, body)
		}
	}
	for _, origin := range []string{"", "https://app.example.com"} {
		conn, res, err := dialOrigin(t, addr, "/api/ws/chat", c, origin)
		if err != nil {
			t.Fatalf("origin %q: %v %v", origin, err, res)
		}
		send(t, conn, map[string]any{"request_id": "g", "chat_get": map[string]any{"page_number": 1}})
		if f := frameFor(t, conn, "g"); f["type"] != "chat_get_result" || f["status_code"] != float64(200) {
			t.Fatalf("origin %q: %v", origin, f)
		}
		conn.Close()
	}

	star := newPluginEnv(t, func(c *config.Config) { c.CORSOrigins = []string{"*"} })
	starAddr := star.listen()
	sc := star.member("ws-origin-any@example.com")
	conn, res, err := dialOrigin(t, starAddr, "/api/ws/chat", sc, "https://anywhere.example")
	if err != nil {
		t.Fatalf("origin with *: %v %v", err, res)
	}
	conn.Close()
	waitWSGoroutines(t)
}

// TestWSFrameLimit: a frame of MAX_BODY_BYTES is read; a larger one closes
// the connection with 1009 (message too big).
func TestWSFrameLimit(t *testing.T) {
	const limit = 64 << 10
	e := newPluginEnv(t, func(c *config.Config) { c.MaxBodyBytes = limit })
	addr := e.listen()
	c := e.member("ws-frame@example.com")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	frame := func(size int) []byte {
		head := `{"request_id": "big", "completion_feedback": {"meta_query_id": "x"}, "pad": "`
		return []byte(head + strings.Repeat("a", size-len(head)-2) + `"}`)
	}
	if err := conn.WriteMessage(websocket.TextMessage, frame(limit)); err != nil {
		t.Fatal(err)
	}
	if f := frameFor(t, conn, "big"); f["type"] != "completion_feedback_result" || f["status_code"] != float64(422) {
		t.Fatalf("frame of the limit = %v", f)
	}
	if err := conn.WriteMessage(websocket.TextMessage, frame(limit+1)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, data, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("frame over the limit: %q %v", data, err)
	}
	waitWSGoroutines(t)
}
