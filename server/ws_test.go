package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
)

// wsClient dials a WebSocket endpoint with the client's cookies.
func (e *pluginEnv) wsDial(addr, path string, c *client) *websocket.Conn {
	e.t.Helper()
	h := http.Header{}
	var parts []string
	for k, v := range c.cookies {
		parts = append(parts, k+"="+v)
	}
	h.Set("Cookie", strings.Join(parts, "; "))
	conn, res, err := websocket.DefaultDialer.Dial("ws://"+addr+path, h)
	if err != nil {
		e.t.Fatalf("dial %s: %v (%v)", path, err, res)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// frames reads frames until stop returns true or the deadline passes.
func readUntil(t *testing.T, conn *websocket.Conn, stop func(map[string]any) bool) []map[string]any {
	t.Helper()
	var out []map[string]any
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v (after %d frames)", err, len(out))
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("frame %q is not a JSON object (double encoding?)", data)
		}
		out = append(out, f)
		if stop(f) {
			return out
		}
	}
}

func send(t *testing.T, conn *websocket.Conn, v any) {
	t.Helper()
	if err := conn.WriteJSON(v); err != nil {
		t.Fatal(err)
	}
}

func waitWSGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for wsGoroutines.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d WebSocket goroutines still running", wsGoroutines.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWSAuth: without valid cookies the handshake succeeds, then one
// {"error"} frame and a normal close, as Code4me V2 did; a plain GET is 426.
func TestWSAuth(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	conn := e.wsDial(addr, "/api/ws/completion", e.client())
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil || !strings.Contains(string(data), `"error":"`+MsgInvalidOrExpiredSession) {
		t.Fatalf("frame %s, %v", data, err)
	}
	if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("close = %v", err)
	}
	if r := e.client().do("GET", "/api/ws/chat", nil); r.status != 426 {
		t.Fatalf("plain GET = %d", r.status)
	}
	waitWSGoroutines(t)
}

// TestWSCompletion: token frames then the result, every frame carrying
// the request id; feedback over the socket; unknown keys are errors and
// the connection goes on; closing leaves no goroutine behind.
func TestWSCompletion(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	c := e.member("ws@example.com")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	coder := e.ids["tiny-coder"]

	send(t, conn, map[string]any{"request_id": "r1", "completion_request": completionBody([]int64{coder}, "def main():\n    ", "\n")})
	frames := readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "completion_result" })
	var streamed strings.Builder
	for _, f := range frames {
		if f["request_id"] != "r1" {
			t.Fatalf("frame without request id: %v", f)
		}
		if f["type"] == "completion_token" {
			streamed.WriteString(f["text"].(string))
		}
	}
	res := frames[len(frames)-1]
	if res["status_code"] != float64(200) {
		t.Fatalf("result = %v", res)
	}
	content := res["content"].(map[string]any)
	data := content["data"].(map[string]any)
	item := data["completions"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(item["completion"].(string), streamed.String()) {
		t.Fatalf("streamed %q is not a prefix of %q", streamed.String(), item["completion"])
	}

	send(t, conn, map[string]any{"request_id": "r2", "completion_feedback": map[string]any{"meta_query_id": data["meta_query_id"], "model_id": coder, "was_accepted": true}})
	f := readUntil(t, conn, func(map[string]any) bool { return true })[0]
	if f["type"] != "completion_feedback_result" || f["request_id"] != "r2" || f["status_code"] != float64(200) {
		t.Fatalf("feedback = %v", f)
	}
	send(t, conn, map[string]any{"request_id": "r3", "completion_feedback": map[string]any{"meta_query_id": "x"}})
	if f := readUntil(t, conn, func(map[string]any) bool { return true })[0]; f["status_code"] != float64(422) || f["request_id"] != "r3" {
		t.Fatalf("invalid feedback = %v", f)
	}
	send(t, conn, map[string]any{"request_id": "r4", "chat_get": map[string]any{}})
	if f := readUntil(t, conn, func(map[string]any) bool { return true })[0]; f["type"] != "error" || f["error"] != "Invalid websocket request" || f["request_id"] != "r4" {
		t.Fatalf("unknown key = %v", f)
	}
	for _, bad := range []string{"not json", "null", "[1, 2]", `"s"`, `{"request_id": "r5"`, `{"request_id": "r5"} {}`, "{\"a\": \"\x01\"}"} {
		conn.WriteMessage(websocket.TextMessage, []byte(bad))
		if f := readUntil(t, conn, func(map[string]any) bool { return true })[0]; f["type"] != "error" || f["error"] != "Invalid websocket request: not a JSON object" {
			t.Fatalf("frame %q: %v", bad, f)
		}
	}
	// Missing request ids are made up and echoed.
	send(t, conn, map[string]any{"completion_feedback": map[string]any{"meta_query_id": data["meta_query_id"], "model_id": coder, "was_accepted": false}})
	if f := readUntil(t, conn, func(map[string]any) bool { return true })[0]; f["request_id"] == "" || f["request_id"] == nil {
		t.Fatalf("no request id: %v", f)
	}
	conn.Close()
	waitWSGoroutines(t)
}

// TestWSSupersedeAndCancel: a new completion_request cancels the running
// one (in the engine: the slot is freed) and a cancel message stops a
// request; cancelled requests store nothing.
func TestWSSupersedeAndCancel(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	c := e.member("ws-cancel@example.com")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	slow, coder := e.ids["slow-coder"], e.ids["tiny-coder"]

	send(t, conn, map[string]any{"request_id": "old", "completion_request": completionBody([]int64{slow}, "x = 1\n", "")})
	time.Sleep(150 * time.Millisecond) // the slow model is generating
	send(t, conn, map[string]any{"request_id": "new", "completion_request": completionBody([]int64{coder}, "x = 12\n", "")})
	got := map[string]string{}
	readUntil(t, conn, func(f map[string]any) bool {
		id := f["request_id"].(string)
		if f["type"] == "cancelled" || f["type"] == "completion_result" {
			got[id] = f["type"].(string)
		}
		return len(got) == 2
	})
	if got["old"] != "cancelled" || got["new"] != "completion_result" {
		t.Fatalf("got %v", got)
	}

	send(t, conn, map[string]any{"request_id": "c1", "completion_request": completionBody([]int64{slow}, "y = 1\n", "")})
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	send(t, conn, map[string]any{"cancel": "c1"})
	f := readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "cancelled" })
	if last := f[len(f)-1]; last["request_id"] != "c1" {
		t.Fatalf("cancel = %v", last)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	// The engine freed the slow model's slots.
	sched, _ := e.srv.plugin.engine.Get("slow-coder")
	deadline := time.Now().Add(5 * time.Second)
	for sched.Stats().SlotsBusy != 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow model still busy after cancel")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The package's tests share one database: count this user's rows only.
	if n := e.count(`SELECT count(*) FROM generation JOIN meta_query USING (meta_query_id) JOIN users USING (user_id)
		WHERE model_id = $1 AND email = 'ws-cancel@example.com'`, slow); n != 0 {
		t.Fatalf("%d cancelled generations stored", n)
	}
	conn.Close()
	waitWSGoroutines(t)
}

// TestWSChatAndContext: chat turns stream chat_token frames; chat_get and
// chat_delete answer like HTTP; the multi-file context socket updates.
func TestWSChatAndContext(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	c := e.member("ws-chat@example.com")
	conn := e.wsDial(addr, "/api/ws/chat", c)
	chatID := uuid.NewString()
	send(t, conn, map[string]any{"request_id": "q", "chat_request": chatBody([]int64{e.ids["tiny-instruct"]}, chatID, [2]string{"user", "hello"})})
	frames := readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "chat_result" })
	if last := frames[len(frames)-1]; last["status_code"] != float64(200) || last["request_id"] != "q" || last["content"].(map[string]any)["chat_id"] != chatID {
		t.Fatalf("chat result = %v", last)
	}
	send(t, conn, map[string]any{"request_id": "g", "chat_get": map[string]any{"page_number": 1}})
	if f := readUntil(t, conn, func(map[string]any) bool { return true })[0]; f["type"] != "chat_get_result" || len(f["content"].(map[string]any)["items"].([]any)) != 1 {
		t.Fatalf("chat_get = %v", f)
	}
	send(t, conn, map[string]any{"request_id": "g0", "chat_get": map[string]any{"page_number": 0}})
	if f := readUntil(t, conn, func(map[string]any) bool { return true })[0]; f["status_code"] != float64(422) {
		t.Fatalf("chat_get 0 = %v", f)
	}
	send(t, conn, map[string]any{"request_id": "d", "chat_delete": map[string]any{"chat_id": chatID}})
	if f := readUntil(t, conn, func(map[string]any) bool { return true })[0]; f["type"] != "chat_delete_result" || f["status_code"] != float64(200) {
		t.Fatalf("chat_delete = %v", f)
	}
	conn.Close()

	ctx := e.wsDial(addr, "/api/ws/completion/multi-file-context", c)
	send(t, ctx, map[string]any{"request_id": "m", "multi_file_context_update": map[string]any{"context_updates": map[string]any{
		"a.py": []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"1"}}}}}})
	if f := readUntil(t, ctx, func(map[string]any) bool { return true })[0]; f["type"] != "multi_file_context_update_result" ||
		f["content"].(map[string]any)["data"].(map[string]any)["a.py"].([]any)[0] != "1" {
		t.Fatalf("context update = %v", f)
	}
	ctx.Close()
	waitWSGoroutines(t)
}

// TestWSContextCache: completions over a WebSocket use the multi-file
// context cache under the version of the connection's last check, like
// HTTP requests do; an update through this server is seen by the next
// completion without a run to throw away, and one through another server
// (a version bump this server was not told of) makes the completion run
// again with the new context, streaming and storing only that run.
func TestWSContextCache(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	const email = "ws-ctxcache@example.com"
	c := e.member(email)
	set := func(line string) {
		c.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{"lib.py": []any{
			map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{line}}}}}, 200)
	}
	set("ws_ctx_first = 1")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	n := 0
	// complete sends a completion naming lib.py and returns the texts the
	// engine tokenized for it (its token cache skips texts seen before),
	// and the streamed and final completion texts.
	complete := func() (prompts, streamed, final string) {
		t.Helper()
		n++
		e.rec.mu.Lock()
		before := len(e.rec.texts)
		e.rec.mu.Unlock()
		b := completionBody([]int64{e.ids["tiny-coder"]}, "x = ", "\n")
		b["context"].(map[string]any)["context_files"] = []string{"lib.py"}
		id := fmt.Sprintf("r%d", n)
		send(t, conn, map[string]any{"request_id": id, "completion_request": b})
		frames := readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "completion_result" })
		var s strings.Builder
		for _, f := range frames {
			if f["type"] == "completion_token" {
				if f["replace"] == true {
					s.Reset()
				}
				s.WriteString(f["text"].(string))
			}
		}
		res := frames[len(frames)-1]
		if res["request_id"] != id || res["status_code"] != float64(200) {
			t.Fatalf("%s: %v", id, res)
		}
		item := res["content"].(map[string]any)["data"].(map[string]any)["completions"].([]any)[0].(map[string]any)
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return strings.Join(e.rec.texts[before:], "\n"), s.String(), item["completion"].(string)
	}

	if p, _, _ := complete(); !strings.Contains(p, "ws_ctx_first") {
		t.Fatal("first completion: context file not used")
	}
	hits := e.srv.ctxCache.hits.Load()
	if complete(); e.srv.ctxCache.hits.Load() != hits+1 {
		t.Fatalf("second completion: cache hits %d → %d, want one more", hits, e.srv.ctxCache.hits.Load())
	}

	// An update through this server: the next completion reads it.
	set("ws_ctx_second = 2")
	if p, _, _ := complete(); !strings.Contains(p, "ws_ctx_second") {
		t.Fatalf("after an update through this server the engine got %q", p)
	}
	complete() // caches the context under its new version

	// An update through another server: the rows change and the version
	// is bumped in Redis; the next message's check reads the new version.
	var project uuid.UUID
	if err := e.srv.db.QueryRow(t.Context(), `SELECT project_id FROM project_context_file WHERE 'ws_ctx_second = 2' = ANY(lines)`).Scan(&project); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.db.Exec(t.Context(), `UPDATE project_context_file SET lines = ARRAY['ws_ctx_other = 3'] WHERE project_id = $1 AND file_name = 'lib.py'`, project); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.tokens.BumpContextVersion(t.Context(), project); err != nil {
		t.Fatal(err)
	}
	stored := e.storedQueries(email)
	p, streamed, final := complete()
	if !strings.Contains(p, "ws_ctx_other") {
		t.Fatalf("the completion after an update through another server did not use the new context; the engine got %q", p)
	}
	if !strings.HasPrefix(final, streamed) {
		t.Fatalf("streamed %q is not a prefix of the answer %q", streamed, final)
	}
	if got := e.storedQueries(email); got != stored+1 {
		t.Fatalf("%d queries stored by one request, want 1", got-stored)
	}
	// That completion cached the new context under the new version.
	hits = e.srv.ctxCache.hits.Load()
	complete()
	if e.srv.ctxCache.hits.Load() != hits+1 {
		t.Fatalf("the completion after it: cache hits %d → %d, want one more", hits, e.srv.ctxCache.hits.Load())
	}
	conn.Close()
	waitWSGoroutines(t)
}

// TestWSCheckedBeforeWork: every request frame re-checks the connection's
// session and project and counts against its route's rate limit before
// the request reaches a model (checkWatch). Over the limit, the frame gets
// a 429 error frame and the connection stays; once the session has ended,
// a 401 error frame ends the connection. Neither refused prompt reaches a
// model, and neither stores anything.
func TestWSCheckedBeforeWork(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) {
		c.RatePerHourByRoute = map[string]int{"/api/completion/request": 3}
	})
	addr := e.listen()
	const email = "ws-checked-first@example.com"
	c := e.member(email)
	w := e.watchChecks(c.cookies[cookieSession])
	conn := e.wsDial(addr, "/api/ws/completion", c)
	complete := func(id, marker string) map[string]any {
		t.Helper()
		send(t, conn, map[string]any{"request_id": id, "completion_request": completionBody([]int64{e.ids["tiny-coder"]}, marker+" = ", "\n")})
		frames := readUntil(t, conn, func(f map[string]any) bool { return f["type"] != "completion_token" })
		if len(frames) > 1 && frames[len(frames)-1]["type"] != "completion_result" {
			t.Fatalf("%s: a refused request streamed %v", id, frames[0])
		}
		return frames[len(frames)-1]
	}
	for i, marker := range []string{"ws_checked_warm", "ws_checked_passed", "ws_checked_budget"} {
		if i == 1 {
			w.arm(marker)
		}
		if f := complete(fmt.Sprint("r", i), marker); f["type"] != "completion_result" || f["status_code"] != float64(200) {
			t.Fatalf("r%d: %v", i, f)
		}
		w.arm("")
	}
	if !strings.Contains(e.rec.all(), "ws_checked_passed") {
		t.Fatal("the engine never saw the answered request's marker: the watch proves nothing")
	}

	w.arm("ws_checked_limited")
	if f := complete("limited", "ws_checked_limited"); !isLimited(f) || f["request_id"] != "limited" {
		t.Fatalf("over the limit: %v", f)
	}
	w.arm("")
	c.expect("PUT", "/api/session/deactivate/", nil, 200)
	w.arm("ws_checked_ended")
	if f := complete("ended", "ws_checked_ended"); f["type"] != "error" || f["status_code"] != float64(401) ||
		f["request_id"] != "ended" || f["error"] != MsgInvalidOrExpiredSession {
		t.Fatalf("after the session ended: %v", f)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, data, err := conn.ReadMessage(); err == nil {
		t.Fatalf("connection goes on after the 401: %s", data)
	}

	for _, m := range []string{"ws_checked_limited", "ws_checked_ended"} {
		if strings.Contains(e.rec.all(), m) {
			t.Errorf("the prompt of a refused request (%s) reached a model", m)
		}
	}
	// A script call that Redis answers NOSCRIPT is made again with the
	// script: a request may show two checks.
	if n, early := w.result(); n < 3 || len(early) != 0 {
		t.Errorf("%d checks watched (want 3); the engine had seen %q before their check returned", n, early)
	}
	if n := e.storedQueries(email); n != 3 {
		t.Fatalf("%d queries stored, want the 3 answered", n)
	}
	waitWSGoroutines(t)
}
