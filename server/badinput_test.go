package server

import (
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
)

// getWithHeaders sends GET path with the given headers to a real listener
// and returns the status and the body's message.
func getWithHeaders(t *testing.T, addr, path string, h map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// garbage is n bytes of a token-like value that names no token.
func garbage(n int) string { return strings.Repeat("Zm9vYmFy", n/8+1)[:n] }

// TestLargeHeaders: a 4,000-byte cookie and 15 KiB of headers reach the
// handler, so garbage credentials get the usual 401 and not fasthttp's 431
// for a full read buffer; past MAX_HEADER_BYTES the 431 stays.
func TestLargeHeaders(t *testing.T) {
	e := newEnv(t, nil)
	addr := e.listen()
	pad := map[string]string{}
	for i := range 11 {
		pad[fmt.Sprintf("X-Pad-%d", i)] = garbage(1000)
	}
	cases := []struct {
		path, cookie string
		pad          bool
		want         string
	}{
		{"/test/sp", "session_token=" + garbage(4000), false, MsgInvalidOrExpiredSession},
		{"/test/sp", "session_token=" + garbage(4000), true, MsgInvalidOrExpiredSession},
		{"/api/user/get", "auth_token=" + garbage(4000), false, MsgInvalidOrExpiredAuth},
		{"/api/user/get", "auth_token=" + garbage(4000), true, MsgInvalidOrExpiredAuth},
		{"/api/user/get", "auth_token=" + garbage(14000), false, MsgInvalidOrExpiredAuth},
	}
	for _, tc := range cases {
		h := map[string]string{"Cookie": tc.cookie}
		if tc.pad {
			for k, v := range pad {
				h[k] = v
			}
		}
		if st, body := getWithHeaders(t, addr, tc.path, h); st != 401 || !strings.Contains(body, tc.want) {
			t.Fatalf("%s with a %d-byte cookie (padded %v) = %d %s", tc.path, len(tc.cookie), tc.pad, st, body)
		}
	}
	if st, _ := getWithHeaders(t, addr, "/test/sp", map[string]string{"Cookie": "session_token=" + garbage(e.srv.cfg.MaxHeaderBytes)}); st != 431 {
		t.Fatalf("headers over MAX_HEADER_BYTES = %d, want 431", st)
	}
}

// unicodeDetail checks that r is a 422 whose one error is string_unicode
// at loc.
func unicodeDetail(t *testing.T, what string, status int, detail any, loc ...any) {
	t.Helper()
	list, _ := detail.([]any)
	if status != 422 || len(list) != 1 {
		t.Fatalf("%s = %d %v, want one 422 detail", what, status, detail)
	}
	d := list[0].(map[string]any)
	if d["type"] != "string_unicode" || d["msg"] != msgUnicode || !reflect.DeepEqual(d["loc"], loc) {
		t.Fatalf("%s: detail %v, want string_unicode at %v", what, d, loc)
	}
}

// TestInvalidUTF8: a JSON string holding bytes that are not UTF-8 is a 422
// string_unicode naming the field, in HTTP bodies, query strings and
// WebSocket frames, and nothing is created; an escaped lone surrogate is
// valid JSON and reads as U+FFFD.
func TestInvalidUTF8(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	anon := e.client()

	r := anon.do("POST", "/api/user/create", `{"email": "badname@example.com", "name": "Name bad`+"\xff"+`", "password": "Secret123", "config_id": 1}`)
	unicodeDetail(t, "name", r.status, r.body["detail"], "body", "name")
	if n := e.count(`SELECT count(*) FROM users WHERE email = 'badname@example.com'`); n != 0 {
		t.Fatalf("%d users created from a refused body", n)
	}
	r = anon.do("POST", "/api/user/create", `{"email": "badkey@example.com", "na`+"\xc3"+`me": "x", "name": "Tester", "password": "Secret123", "config_id": 1}`)
	unicodeDetail(t, "key", r.status, r.body["detail"], "body", "na\uFFFDme")
	r = anon.do("POST", "/api/user/reset-password/request?email=a%FF@example.com", nil)
	unicodeDetail(t, "query", r.status, r.body["detail"], "query", "email")

	anon.expect("POST", "/api/user/create", `{"email": "surrogate@example.com", "name": "Name \ud800 x", "password": "Secret123", "config_id": 1}`, 201)
	var name string
	if err := e.srv.db.QueryRow(t.Context(), `SELECT name FROM users WHERE email = 'surrogate@example.com'`).Scan(&name); err != nil || name != "Name \uFFFD x" {
		t.Fatalf("lone surrogate stored as %q (%v)", name, err)
	}

	const email = "utf8@example.com"
	c := e.member(email)
	coder := e.ids["tiny-coder"]
	body := func(prefix string, files ...string) string {
		return `{"model_ids": [` + fmt.Sprint(coder) + `], "context": {"prefix": "` + prefix + `", "suffix": "", "file_name": "a.py", "context_files": ["` +
			strings.Join(files, `", "`) + `"]}, "contextual_telemetry": {"version_id": 1, "trigger_type_id": 1, "language_id": 47}, "behavioral_telemetry": {}}`
	}
	r = c.do("POST", "/api/completion/request", body("x = \xc3", "a.py"))
	unicodeDetail(t, "prefix", r.status, r.body["detail"], "body", "context", "prefix")
	r = c.do("POST", "/api/completion/request", body("x = ", "a.py", "b\xe2\x82.py"))
	unicodeDetail(t, "context file", r.status, r.body["detail"], "body", "context", "context_files", float64(1))
	if n := e.storedQueries(email); n != 0 {
		t.Fatalf("%d queries stored from refused bodies", n)
	}

	conn := e.wsDial(addr, "/api/ws/completion", c)
	frame := `{"request_id": "r1", "completion_request": ` + body("x = \xc3", "a.py") + `}`
	if err := conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	f := frameFor(t, conn, "r1")
	if f["type"] != "completion_result" {
		t.Fatalf("frame with a bad prefix = %v", f)
	}
	unicodeDetail(t, "ws prefix", int(f["status_code"].(float64)), f["content"].(map[string]any)["detail"], "body", "context", "prefix")
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"request_id": "r2", "x": "`+"\xff"+`", "completion_feedback": {"meta_query_id": "`+uuid.NewString()+`"}}`)); err != nil {
		t.Fatal(err)
	}
	if f := frameFor(t, conn, "r2"); f["type"] != "error" || f["status_code"] != float64(422) {
		t.Fatalf("frame with invalid text outside the payload = %v", f)
	}
	if n := e.storedQueries(email); n != 0 {
		t.Fatalf("%d queries stored from refused frames", n)
	}
	conn.Close()
	waitWSGoroutines(t)
}

// TestIntegerRanges: integers in paths, bodies and frames are range-checked
// into a 422 naming the field, never an overflow into a 500 or a silently
// changed value.
func TestIntegerRanges(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	c := e.member("ranges@example.com")
	le := func(what string, r resp, loc ...any) {
		t.Helper()
		list, _ := r.body["detail"].([]any)
		if r.status != 422 || len(list) == 0 {
			t.Fatalf("%s = %d %s, want 422", what, r.status, r.raw)
		}
		d := list[0].(map[string]any)
		if !reflect.DeepEqual(d["loc"], loc) {
			t.Fatalf("%s: detail %v, want loc %v", what, d, loc)
		}
	}

	// The last page whose offset fits the query, and the one after it.
	r := c.expect("GET", fmt.Sprintf("/api/chat/get/%d", maxChatPage), nil, 200)
	if items, _ := r.body["items"].([]any); len(items) != 0 {
		t.Fatalf("page %d = %s", maxChatPage, r.raw)
	}
	le("page past 2^31/10", c.do("GET", fmt.Sprintf("/api/chat/get/%d", maxChatPage+1), nil), "path", "page_number")
	le("page past int64", c.do("GET", "/api/chat/get/99999999999999999999", nil), "path", "page_number")

	conn := e.wsDial(addr, "/api/ws/chat", c)
	send(t, conn, map[string]any{"request_id": "g", "chat_get": map[string]any{"page_number": int64(1) << 40}})
	if f := frameFor(t, conn, "g"); f["status_code"] != float64(422) {
		t.Fatalf("ws chat_get page 2^40 = %v", f)
	}
	conn.Close()

	// A line number past the int4 column was stored truncated.
	r = c.do("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{"a.py": []any{
		map[string]any{"change_type": "insert", "start_line": int64(1) << 32, "end_line": 0, "new_lines": []string{"x"}}}}})
	le("start_line 2^32", r, "body", "context_updates", "a.py", float64(0), "start_line")
	r = c.do("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{"b.py": []any{
		map[string]any{"change_type": "remove", "start_line": 0, "end_line": maxLine + 1, "new_lines": []string{}}}}})
	le("end_line past maxLine", r, "body", "context_updates", "b.py", float64(0), "end_line")

	// An instant past the year 9999.
	r = c.do("POST", "/api/completion/feedback", map[string]any{"meta_query_id": uuid.NewString(), "model_id": e.ids["tiny-coder"],
		"was_accepted": true, "shown_at": []any{int64(9e15)}})
	le("shown_at 9e15 ms", r, "body", "shown_at", float64(0))

	// An API key expiry that overflows time.Duration.
	r = c.do("POST", "/api/user/api-keys", map[string]any{"name": "k", "expires_in_days": 200000})
	le("expires_in_days 200000", r, "body", "expires_in_days")
	waitWSGoroutines(t)
}
