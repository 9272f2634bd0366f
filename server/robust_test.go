package server

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestMalformedInputNeverServerError sends every route of the API bodies of
// the wrong shape, type and size, and path parameters that are not what the
// route expects, as a logged-in member with an active project and as a
// stranger. Each answer must be a client error or a success, never a 5xx,
// and the server must still answer afterwards.
func TestMalformedInputNeverServerError(t *testing.T) {
	e := newPluginEnv(t, nil)
	member := e.member("robust@example.com")
	stranger := e.client()

	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	bodies := []string{
		"", "null", "{}", "[]", "{", `"text"`, "1e999", "-0", "true", deep,
		`{"model_ids": "1"}`, `{"model_ids": [1e30]}`, `{"model_ids": [-1, 0, 9223372036854775807]}`,
		`{"model_ids": [1], "context": null, "contextual_telemetry": [], "behavioral_telemetry": "x"}`,
		`{"model_ids": [1], "context": {"prefix": 5, "suffix": [], "context_files": {"a": 1}}}`,
		`{"email": 5, "password": null, "name": [], "config_id": "x"}`,
		`{"email": "a@b.c", "password": "` + strings.Repeat("p", 10000) + `"}`,
		`{"project_name": {"a": 1}, "project_id": "not-a-uuid", "chat_id": 12, "page": -1}`,
		`{"meta_query_id": "00000000-0000-0000-0000-000000000000", "model_id": 1e20, "was_accepted": "yes", "shown_at": ["x"]}`,
		`{"messages": [[1, 2]], "model_ids": [1]}`,
		`{"context_updates": {"f.py": 7}, "name": "\u0000\ud800"}`,
		"{\"prefix\": \"\xff\xfe\"}",
		`{"model_ids": [1], "context": {"prefix": "x", "suffix": "", "file_name": "../../etc/passwd"}, "stop_sequences": [[]]}`,
		`{"model_ids": [1], "context": {"prefix": "a\u0000b", "suffix": "", "file_name": "m.py"}, "project_name": "p\u0000", "messages": [["user", "\u0000"]]}`,
	}
	params := regexp.MustCompile(`:[A-Za-z_]+\??|\*`)
	badParams := []string{"1", "-1", "abc", "00000000-0000-0000-0000-000000000000", "99999999999999999999", "%00", "%ff"}

	type route struct{ method, path string }
	var routes []route
	seen := map[route]bool{}
	for _, r := range e.srv.App().GetRoutes(true) {
		if r.Method == "HEAD" || r.Method == "OPTIONS" || r.Method == "CONNECT" || r.Method == "TRACE" ||
			!strings.HasPrefix(r.Path, "/api/") || strings.HasPrefix(r.Path, "/api/ws/") {
			continue
		}
		if k := (route{r.Method, r.Path}); !seen[k] {
			seen[k] = true
			routes = append(routes, k)
		}
	}
	// Routes that end the member's account or session go last, so the
	// others are tried while it is logged in.
	ending := func(r route) bool {
		return r.method == "DELETE" || strings.Contains(r.path, "logout") || strings.Contains(r.path, "deactivate")
	}
	slices.SortStableFunc(routes, func(a, b route) int {
		switch {
		case ending(a) == ending(b):
			return 0
		case ending(a):
			return 1
		}
		return -1
	})
	if len(routes) < 20 {
		t.Fatalf("only %d API routes found: %v", len(routes), routes)
	}

	tried := 0
	for _, r := range routes {
		paths := []string{r.path, r.path + "?page=%00&chat_id=%00&name=%00"}
		if params.MatchString(r.path) {
			paths = paths[:0]
			for _, v := range badParams {
				paths = append(paths, params.ReplaceAllString(r.path, v))
			}
		}
		for _, c := range []*client{member, stranger} {
			for _, p := range paths {
				for _, b := range bodies {
					var body any
					if r.method != "GET" {
						body = b
					}
					res := c.do(r.method, p, body)
					tried++
					if res.status >= 500 {
						t.Errorf("%s %s with body %.60q: %d %s", r.method, p, b, res.status, res.raw)
					}
					if res.status >= 400 && res.status != 404 && res.status != 405 && len(res.raw) > 0 && !json.Valid(res.raw) {
						t.Errorf("%s %s with body %.60q: %d with a body that is not JSON: %.100s", r.method, p, b, res.status, res.raw)
					}
					if r.method == "GET" {
						break // the body does not matter
					}
				}
			}
		}
	}
	t.Logf("%d requests over %d routes", tried, len(routes))
	stranger.expect("GET", "/api/ping", nil, 200)
}

// TestNULRefused: text with the NUL character, which PostgreSQL cannot
// store, is a 422 naming the problem wherever it appears in a body.
func TestNULRefused(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a": "x\u0000y"}`:  true,
		`{"a": "x\\u0000y"}`: false, // an escaped backslash, then text
		`{"a": "\\\u0000"}`:  true,  // an escaped backslash, then NUL
		`{"a": ["\u0000"]}`:  true,
		`{"a": "\u00001"}`:   true,
		`{"a": "u0000"}`:     false,
	} {
		if got := escapedNUL([]byte(in)); got != want {
			t.Errorf("escapedNUL(%s) = %v; want %v", in, got, want)
		}
	}
	e := newPluginEnv(t, nil)
	c := e.member("nul@example.com")
	// json.Marshal writes the NUL rune as the escape \u0000.
	raw, _ := json.Marshal(completionBody([]int64{e.ids["tiny-coder"]}, "def f():\x00", ""))
	res := c.do("POST", "/api/completion/request", string(raw))
	if res.status != 422 || !strings.Contains(string(res.raw), "NUL") {
		t.Fatalf("completion with NUL in the prefix: %d %s; want 422 naming NUL", res.status, res.raw)
	}
}

// TestWSMalformedFramesKeepConnection: on each WebSocket endpoint, frames
// of the wrong shape, type and size each get an error frame and the
// connection goes on serving; nothing panics and no goroutine is left.
func TestWSMalformedFramesKeepConnection(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	member := e.member("wsrobust@example.com")
	frames := []string{
		"not json", "[]", "null", "1", `"x"`, "{}", strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
		`{"request_id": {"a": 1}}`,
		`{"request_id": "r", "completion_request": "x"}`, `{"request_id": "r", "completion_request": {"model_ids": "1"}}`,
		`{"request_id": "r", "completion_request": {"model_ids": [1e30], "context": []}}`,
		`{"request_id": "r", "chat_request": {"messages": 5}}`, `{"request_id": "r", "feedback": {"meta_query_id": "x"}}`,
		`{"request_id": "r", "context_update": {"f.py": 7}}`, `{"request_id": "r\u0000", "completion_request": {"context": {"prefix": "\u0000"}}}`,
		`{"request_id": "` + strings.Repeat("r", 100000) + `"}`,
	}
	for _, path := range []string{"/api/ws/completion", "/api/ws/chat", "/api/ws/completion/multi-file-context"} {
		conn := e.wsDial(addr, path, member)
		for _, f := range frames {
			if err := conn.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
				t.Fatalf("%s: write %.40q: %v", path, f, err)
			}
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, data, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("%s: after frame %.40q the connection ended: %v", path, f, err)
			}
			var reply map[string]any
			if err := json.Unmarshal(data, &reply); err != nil {
				t.Fatalf("%s: reply to %.40q is not a JSON object: %.100s", path, f, data)
			}
			// An error frame, or a result frame with a 4xx status_code
			// (validation errors come as the request's result frame).
			if code, _ := reply["status_code"].(float64); reply["type"] != "error" && reply["error"] == nil && (code < 400 || code >= 500) {
				t.Errorf("%s: frame %.40q got %.200s; want an error frame or a 4xx result", path, f, data)
			}
		}
		// A cancel of nothing running is answered with nothing (a client's
		// cancel often crosses the result); the connection still serves.
		for _, f := range []string{`{"request_id": [1, 2], "cancel": {"request_id": 7}}`, `{"cancel": true}`, `{"cancel": "x"}`} {
			if err := conn.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
				t.Fatalf("%s: write %s: %v", path, f, err)
			}
		}
		if err := conn.WriteMessage(websocket.TextMessage, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, data, err := conn.ReadMessage(); err != nil || !strings.Contains(string(data), "error") {
			t.Fatalf("%s: after cancels of nothing: %s, %v", path, data, err)
		}
		conn.Close()
	}
	waitWSGoroutines(t)
	e.client().expect("GET", "/api/ping", nil, 200)
}
