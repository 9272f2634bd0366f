package server

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/code4me/code4me/internal/config"
)

// The tests below show that a completion started before its caller's
// check (speculate.go) has no effect unless the check passes: a revoked
// session and a spent rate limit get their usual answers, store nothing
// and cancel the model at once, and a pair confirmed as someone else is
// run again as that.

// specPair returns the client's session and project tokens.
func specPair(c *client) (string, string) { return c.cookies[cookieSession], c.cookies[cookieProject] }

// storedQueries counts the completion queries stored for email.
func (e *pluginEnv) storedQueries(email string) int {
	e.t.Helper()
	return e.count(`SELECT count(*) FROM meta_query m JOIN users u USING (user_id) WHERE u.email = $1`, email)
}

// rememberedMember returns a member whose token pair passed one
// completion's check, so the server remembers it, and the Principal it
// remembers.
func (e *pluginEnv) rememberedMember(email string) (*client, *Principal) {
	e.t.Helper()
	c := e.member(email)
	c.expect("POST", "/api/completion/request", completionBody([]int64{e.ids["tiny-coder"]}, "y = ", "\n"), 200)
	p, ok := e.srv.principals.get(specPair(c))
	if !ok {
		e.t.Fatal("the pair that passed is not remembered")
	}
	return c, p
}

// TestSpeculativeAuthRevokedSession: a pair is remembered only after it
// passed; a request with a remembered pair whose session has ended gets
// the 401, writes nothing, and does not wait for the (slow) model; the
// pair is then forgotten, so the next request is checked before any work.
func TestSpeculativeAuthRevokedSession(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("spec-revoked@example.com")
	if _, ok := e.srv.principals.get(specPair(c)); ok {
		t.Fatal("a pair that never passed a completion's check is remembered")
	}
	body := completionBody([]int64{e.ids["tiny-coder"]}, "def add(a, b):\n    return ", "\n")
	c.expect("POST", "/api/completion/request", body, 200)
	if n := e.srv.principals.speculated.Load(); n != 0 {
		t.Fatalf("first request speculated (%d)", n)
	}
	if _, ok := e.srv.principals.get(specPair(c)); !ok {
		t.Fatal("the pair that passed is not remembered")
	}
	r := c.expect("POST", "/api/completion/request", body, 200)
	if n := e.srv.principals.speculated.Load(); n != 1 {
		t.Fatalf("second request: speculated = %d, want 1", n)
	}
	if len(r.body["data"].(map[string]any)["completions"].([]any)) != 1 || e.storedQueries("spec-revoked@example.com") != 2 {
		t.Fatalf("speculative request: %s, %d stored", r.raw, e.storedQueries("spec-revoked@example.com"))
	}

	stale := e.client()
	stale.cookies = maps.Clone(c.cookies)
	c.expect("PUT", "/api/session/deactivate/", nil, 200)
	slow := completionBody([]int64{e.ids["slow-coder"]}, "z = ", "\n")
	t0 := time.Now()
	r = stale.expect("POST", "/api/completion/request", slow, 401)
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("401 after %v: the model was not cancelled", d)
	}
	if r.msg() != MsgInvalidOrExpiredSession || e.srv.principals.speculated.Load() != 2 {
		t.Fatalf("revoked: %s, speculated %d (want 2)", r.raw, e.srv.principals.speculated.Load())
	}
	if _, ok := e.srv.principals.get(specPair(stale)); ok {
		t.Fatal("a refused pair is still remembered")
	}
	stale.expect("POST", "/api/completion/request", slow, 401)
	if n := e.srv.principals.speculated.Load(); n != 2 {
		t.Fatalf("a forgotten pair speculated again (%d)", n)
	}
	// A remembered pair (put back by hand) whose session ended: its 401
	// wins over the body's 422, as it does when checked first.
	e.srv.principals.put(stale.cookies[cookieSession], stale.cookies[cookieProject], &Principal{})
	stale.expect("POST", "/api/completion/request", map[string]any{"model_ids": "x"}, 401)
	if n := e.srv.principals.speculated.Load(); n != 3 {
		t.Fatalf("speculated = %d, want 3", n)
	}
	if n := e.storedQueries("spec-revoked@example.com"); n != 2 {
		t.Fatalf("%d queries stored, want the 2 answered", n)
	}
}

// TestSpeculativeAuthRateLimit: a remembered pair over its limit gets the
// 429 with Retry-After, stores nothing and cancels the model.
func TestSpeculativeAuthRateLimit(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) {
		c.RatePerHourByRoute = map[string]int{"/api/completion/request": 2}
	})
	c := e.member("spec-limit@example.com")
	body := completionBody([]int64{e.ids["tiny-coder"]}, "x = ", "\n")
	c.expect("POST", "/api/completion/request", body, 200)
	r := c.expect("POST", "/api/completion/request", body, 200)
	if r.header.Get("X-RateLimit-Remaining") != "0" || e.srv.principals.speculated.Load() != 1 {
		t.Fatalf("second request: remaining %q, speculated %d", r.header.Get("X-RateLimit-Remaining"), e.srv.principals.speculated.Load())
	}
	t0 := time.Now()
	r = c.expect("POST", "/api/completion/request", completionBody([]int64{e.ids["slow-coder"]}, "z = ", "\n"), 429)
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("429 after %v: the model was not cancelled", d)
	}
	if r.header.Get("Retry-After") == "" || r.msg() != MsgTooManyRequests || e.srv.principals.speculated.Load() != 2 {
		t.Fatalf("over the limit: %d %s, Retry-After %q, speculated %d", r.status, r.raw, r.header.Get("Retry-After"), e.srv.principals.speculated.Load())
	}
	if n := e.storedQueries("spec-limit@example.com"); n != 2 {
		t.Fatalf("%d queries stored, want 2", n)
	}
	c.expect("POST", "/api/completion/request", body, 429)
	if n := e.srv.principals.speculated.Load(); n != 2 {
		t.Fatalf("a pair refused for its limit speculated again (%d)", n)
	}
}

// TestSpeculativeAuthStalePrincipal: when the check confirms the pair as
// another Principal than remembered (here: another context version), the
// request runs again as the confirmed one, and stores one query.
func TestSpeculativeAuthStalePrincipal(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, p := e.rememberedMember("spec-stale@example.com")
	body := completionBody([]int64{e.ids["tiny-coder"]}, "y = ", "\n")
	want := *p
	p.ContextVersion = "stale"
	e.srv.principals.put(c.cookies[cookieSession], c.cookies[cookieProject], p)
	r := c.expect("POST", "/api/completion/request", body, 200)
	if len(r.body["data"].(map[string]any)["completions"].([]any)) != 1 {
		t.Fatalf("rerun: %s", r.raw)
	}
	if e.srv.principals.speculated.Load() != 1 || e.srv.principals.stale.Load() != 1 {
		t.Fatalf("speculated %d, stale %d; want 1, 1", e.srv.principals.speculated.Load(), e.srv.principals.stale.Load())
	}
	if got, _ := e.srv.principals.get(specPair(c)); got == nil || *got != want {
		t.Fatalf("remembered %+v after the rerun, want %+v", got, want)
	}
	if n := e.storedQueries("spec-stale@example.com"); n != 2 {
		t.Fatalf("%d queries stored, want 2", n)
	}
}

// TestCredentialsCopiedFromRequest: the tokens sessionCreds holds are
// copies. fasthttp reuses a request's buffers for the next request on the
// connection, and a view of them kept past the request (a WebSocket's
// Principal, a remembered pair, the check's goroutine) would change under
// the reader: the check would run with another request's tokens.
func TestCredentialsCopiedFromRequest(t *testing.T) {
	app := fiber.New()
	fctx := &fasthttp.RequestCtx{}
	fctx.Request.Header.SetCookie(cookieSession, "session-AAAA")
	fctx.Request.Header.SetCookie(cookieProject, "project-BBBB")
	c := app.AcquireCtx(fctx)
	defer app.ReleaseCtx(c)
	creds := (&Server{}).sessionCredsOf(c)
	view := c.Cookies(cookieSession)
	// The next request's cookies land in the same buffers.
	fctx.Request.Header.SetCookie(cookieSession, "session-ZZZZ")
	fctx.Request.Header.SetCookie(cookieProject, "project-YYYY")
	if view != "session-ZZZZ" {
		t.Skipf("fasthttp no longer reuses the cookie buffer (view %q): nothing to guard", view)
	}
	if creds.session != "session-AAAA" || creds.project != "project-BBBB" {
		t.Fatalf("credentials changed with the buffer: %q, %q", creds.session, creds.project)
	}
}

// TestGateHoldsTokensUntilConfirmed: a streamed completion under an
// unconfirmed check sends no token, however long the check takes; a
// refusal ends it with the refusal and stores nothing, a confirmation
// lets the held tokens through.
func TestGateHoldsTokensUntilConfirmed(t *testing.T) {
	e := newPluginEnv(t, nil)
	_, p := e.rememberedMember("spec-hold@example.com")
	// A fixed seed: the confirmed run's completion holds whitespace, so
	// some of it must be streamed.
	e.srv.plugin.seed = func() uint32 { return 7 }
	req := &completionRequest{ModelIDs: []int64{e.ids["tiny-coder"]}, Context: contextData{Prefix: "def g():\n    return ", Suffix: "\n", FileName: "main.py"}}
	for _, refuse := range []bool{true, false} {
		g := &authGate{spec: p, done: make(chan struct{}), allowed: true}
		var mu sync.Mutex
		var streamed []string
		sink := func(_ int64, text string, replace bool) {
			mu.Lock()
			if replace {
				streamed = nil
			}
			streamed = append(streamed, text)
			mu.Unlock()
		}
		type outcome struct {
			res *completionResult
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			res, err := e.srv.runCompletion(withGate(context.Background(), g), p, req, sink, nil, nil)
			done <- outcome{res, err}
		}()
		time.Sleep(500 * time.Millisecond) // the tiny model answers in a few ms
		mu.Lock()
		n := len(streamed)
		mu.Unlock()
		if n != 0 {
			t.Fatalf("%d tokens streamed before the check ended", n)
		}
		if refuse {
			g.err = fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredSession)
		} else {
			g.p = p
		}
		close(g.done)
		o := <-done
		switch {
		case refuse && (o.err == nil || o.err.Error() != g.err.Error() || len(streamed) != 0):
			t.Fatalf("refused: err %v, %d tokens streamed", o.err, len(streamed))
		case !refuse && o.err != nil:
			t.Fatalf("confirmed: err %v", o.err)
		case !refuse:
			// Streaming sends the text up to its last whitespace (the rest
			// comes with the result): all of it must have come through.
			text := o.res.Items[0]["completion"].(string)
			if got, want := strings.Join(streamed, ""), text[:strings.LastIndexAny(text, " \t\n")+1]; got != want || want == "" {
				t.Fatalf("confirmed: streamed %q, want %q (completion %q)", got, want, text)
			}
		}
	}
	if n := e.storedQueries("spec-hold@example.com"); n != 2 {
		t.Fatalf("%d queries stored, want 2 (the HTTP one and the confirmed one)", n)
	}
}

// TestWSSessionEndedMidConnection: a completion_request on a connection
// whose session has ended gets the 401 error frame and no token, the
// connection ends, and nothing is stored.
func TestWSSessionEndedMidConnection(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	c := e.member("ws-ended@example.com")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	send(t, conn, map[string]any{"request_id": "r1", "completion_request": completionBody([]int64{e.ids["tiny-coder"]}, "x = ", "\n")})
	if f := readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "completion_result" }); f[len(f)-1]["status_code"] != float64(200) {
		t.Fatalf("before: %v", f[len(f)-1])
	}
	c.expect("PUT", "/api/session/deactivate/", nil, 200)
	t0 := time.Now()
	send(t, conn, map[string]any{"request_id": "r2", "completion_request": completionBody([]int64{e.ids["slow-coder"]}, "z = ", "\n")})
	frames := readUntil(t, conn, func(map[string]any) bool { return true })
	if f := frames[0]; f["type"] != "error" || f["status_code"] != float64(401) || f["request_id"] != "r2" || f["error"] != MsgInvalidOrExpiredSession {
		t.Fatalf("after the session ended: %v", f)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("401 after %v: the model was not cancelled", d)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, data, err := conn.ReadMessage(); err == nil {
		t.Fatalf("connection goes on after the 401: %s", data)
	}
	if n := e.storedQueries("ws-ended@example.com"); n != 1 {
		t.Fatalf("%d queries stored, want 1", n)
	}
	waitWSGoroutines(t)
}

// TestSpeculationAfterContextUpdate: a context update through this server
// forgets the project's remembered pairs, so the next completion is
// checked first (no run under the old context to throw away) and sees the
// new file; the one after it speculates again.
func TestSpeculationAfterContextUpdate(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, _ := e.rememberedMember("spec-ctx@example.com")
	c.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{"util.py": []any{
		map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"def helper_from_update(): pass"}}}}}, 200)
	if _, ok := e.srv.principals.get(specPair(c)); ok {
		t.Fatal("the pair is still used after its project's context changed")
	}
	body := completionBody([]int64{e.ids["tiny-coder"]}, "x = ", "\n")
	body["context"].(map[string]any)["context_files"] = []string{"util.py"}
	c.expect("POST", "/api/completion/request", body, 200)
	if n, stale := e.srv.principals.speculated.Load(), e.srv.principals.stale.Load(); n != 0 || stale != 0 {
		t.Fatalf("after the update: speculated %d, stale %d; want 0, 0", n, stale)
	}
	if !strings.Contains(e.rec.all(), "helper_from_update") {
		t.Fatal("the completion after the update did not see the updated file")
	}
	c.expect("POST", "/api/completion/request", body, 200)
	if n, stale := e.srv.principals.speculated.Load(), e.srv.principals.stale.Load(); n != 1 || stale != 0 {
		t.Fatalf("next request: speculated %d, stale %d; want 1, 0", n, stale)
	}
}

// TestPrincipalCacheBounded: the per-project update counts stay bounded
// like the pairs, and bounding them never makes a pair usable again after
// its project's context changed.
func TestPrincipalCacheBounded(t *testing.T) {
	var pc principalCache
	a := &Principal{UserID: uuid.New(), ProjectID: uuid.New()}
	pc.put("sess-a", "proj-a", a) // remembered before any update: count 0
	if _, ok := pc.get("sess-a", "proj-a"); !ok {
		t.Fatal("a pair just remembered is not used")
	}
	pc.forgetProject(a.ProjectID)
	for i := range 3 * principalCacheMax {
		if _, ok := pc.get("sess-a", "proj-a"); ok {
			t.Fatalf("after %d other projects' updates the pair is used again, though its project's context changed", i)
		}
		pc.forgetProject(uuid.New())
		if n := len(pc.epoch); n > principalCacheMax {
			t.Fatalf("%d projects' counts kept (bound %d)", n, principalCacheMax)
		}
	}
	pc.put("sess-a", "proj-a", a)
	if _, ok := pc.get("sess-a", "proj-a"); !ok {
		t.Fatal("a pair remembered after the counts were cleared is not used")
	}
	pc.forgetProject(a.ProjectID)
	if _, ok := pc.get("sess-a", "proj-a"); ok {
		t.Fatal("the pair is used after its project's context changed (counts cleared before)")
	}
}

// TestAPIKeyClientWithSessionHeaders: an API-key client that takes its
// session token from /api/session/acquire and then sends it and its
// project token as headers (no key, no cookies) gets speculative
// authentication like a cookie client (docs/api.md); revoking the key ends
// that session at once, speculation included.
func TestAPIKeyClientWithSessionHeaders(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("key-spec@example.com")
	r := c.expect("POST", "/api/user/api-keys", map[string]any{"name": "cli"}, 201)
	key := r.body["api_key"].(string)
	id := r.body["key"].(map[string]any)["api_key_id"].(string)
	b := e.client()
	b.header["Authorization"] = "Bearer " + key
	b.expect("GET", "/api/session/acquire", nil, 200)
	sess := b.cookies[cookieSession]
	if sess == "" {
		t.Fatal("acquiring a session with an API key set no session_token")
	}
	pr := b.expect("POST", "/api/project/create", map[string]any{"project_name": "cli"}, 201)

	h := e.client()
	h.header[headerSession] = sess
	h.header[headerProject] = pr.body["project_token"].(string)
	body := completionBody([]int64{e.ids["tiny-coder"]}, "def add(a, b):\n    return ", "\n")
	before := e.srv.principals.speculated.Load()
	h.expect("POST", "/api/completion/request", body, 200)
	h.expect("POST", "/api/completion/request", body, 200)
	if n := e.srv.principals.speculated.Load() - before; n != 1 {
		t.Fatalf("%d of two requests with the key's session headers speculated; want the second", n)
	}
	c.expect("DELETE", "/api/user/api-keys/"+id, nil, 200)
	h.expect("POST", "/api/completion/request", body, 401)
	if n := e.storedQueries("key-spec@example.com"); n != 2 {
		t.Fatalf("%d queries stored; want 2", n)
	}
}
