package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/code4me/code4me/internal/config"
)

// storedQueries counts the completion queries stored for email.
func (e *pluginEnv) storedQueries(email string) int {
	e.t.Helper()
	return e.count(`SELECT count(*) FROM meta_query m JOIN users u USING (user_id) WHERE u.email = $1`, email)
}

// checkWatch watches the Redis checks of one session token (the Lua
// script that looks the session and project up and counts the request)
// and notes, as each check returns, whether the engine has already been
// asked to tokenize the marker, a text that only the request being checked
// carries. Work started before its check would have reached the engine by
// then: each watched check is held for checkHold after Redis answers, so
// that such work has time to get there on any machine. The assertion is
// about order, not time: with the check first, the engine cannot have
// seen the marker when the check returns, however slow the machine.
type checkWatch struct {
	e     *pluginEnv
	token string

	mu     sync.Mutex
	marker string   // "" watches nothing
	checks int      // watched checks that returned
	early  []string // markers the engine had seen when their check returned
}

const checkHold = 200 * time.Millisecond

// watchChecks adds a checkWatch for the session token to the server's
// Redis client.
func (e *pluginEnv) watchChecks(token string) *checkWatch {
	w := &checkWatch{e: e, token: token}
	e.srv.rdb.AddHook(w)
	return w
}

// arm watches the checks of the next requests for marker ("": none).
func (w *checkWatch) arm(marker string) {
	w.mu.Lock()
	w.marker = marker
	w.mu.Unlock()
}

// result returns the watched checks that returned and the markers the
// engine had seen before their check returned.
func (w *checkWatch) result() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.checks, slices.Clone(w.early)
}

func (w *checkWatch) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w *checkWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (w *checkWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		w.mu.Lock()
		marker := w.marker
		w.mu.Unlock()
		if marker == "" || !w.isCheck(cmd) {
			return err
		}
		time.Sleep(checkHold) // see checkWatch: widens the window, asserts nothing
		seen := strings.Contains(w.e.rec.all(), marker)
		w.mu.Lock()
		w.checks++
		if seen {
			w.early = append(w.early, marker)
		}
		w.mu.Unlock()
		return err
	}
}

// isCheck reports whether cmd is the counted session lookup of w's token:
// a script call with four keys, the session's among them.
func (w *checkWatch) isCheck(cmd redis.Cmder) bool {
	args := cmd.Args()
	if n := cmd.Name(); (n != "evalsha" && n != "eval") || len(args) < 7 || fmt.Sprint(args[2]) != "4" {
		return false
	}
	return slices.Contains(args[3:7], any("session_token:"+w.token))
}

// TestCompletionCheckedBeforeWork: a completion's caller is checked in
// Redis (session, project and rate limit, in one round trip) before any
// of the request's work reaches a model, also when the same tokens passed
// a moment ago. A session that has ended gets the 401 and a spent limit
// the 429 with Retry-After; their prompts never reach a model and nothing
// is stored.
func TestCompletionCheckedBeforeWork(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) {
		c.RatePerHourByRoute = map[string]int{"/api/completion/request": 3}
	})
	body := func(marker string) map[string]any {
		return completionBody([]int64{e.ids["tiny-coder"]}, marker+" = ", "\n")
	}
	const email = "checked-first@example.com"
	c := e.member(email)
	w := e.watchChecks(c.cookies[cookieSession])
	c.expect("POST", "/api/completion/request", body("checked_first_warm"), 200)
	w.arm("checked_first_passed")
	c.expect("POST", "/api/completion/request", body("checked_first_passed"), 200)
	if !strings.Contains(e.rec.all(), "checked_first_passed") {
		t.Fatal("the engine never saw the answered request's marker: the watch proves nothing")
	}

	ended := e.client()
	ended.cookies = maps.Clone(c.cookies)
	w.arm("")
	c.expect("PUT", "/api/session/deactivate/", nil, 200)
	w.arm("checked_first_ended")
	if r := ended.expect("POST", "/api/completion/request", body("checked_first_ended"), 401); r.msg() != MsgInvalidOrExpiredSession {
		t.Fatalf("ended session: %s", r.raw)
	}
	if n := e.storedQueries(email); n != 2 {
		t.Fatalf("%d queries stored, want the 2 answered", n)
	}

	// The rate limit: 3 an hour, the third spent by this request.
	const limited = "checked-first-limit@example.com"
	d := e.member(limited)
	wd := e.watchChecks(d.cookies[cookieSession])
	for range 3 {
		d.expect("POST", "/api/completion/request", body("checked_first_budget"), 200)
	}
	wd.arm("checked_first_limited")
	r := d.expect("POST", "/api/completion/request", body("checked_first_limited"), 429)
	if r.msg() != MsgTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %s, Retry-After %q", r.raw, r.header.Get("Retry-After"))
	}
	if n := e.storedQueries(limited); n != 3 {
		t.Fatalf("%d queries stored, want the 3 answered", n)
	}

	for _, m := range []string{"checked_first_ended", "checked_first_limited"} {
		if strings.Contains(e.rec.all(), m) {
			t.Errorf("the prompt of a refused request (%s) reached a model", m)
		}
	}
	for _, tc := range []struct {
		w    *checkWatch
		want int
	}{{w, 2}, {wd, 1}} {
		// A script call that Redis answers NOSCRIPT is made again with
		// the script: a request may show two checks.
		if n, early := tc.w.result(); n < tc.want || len(early) != 0 {
			t.Errorf("%d checks watched (want %d); the engine had seen %q before their check returned", n, tc.want, early)
		}
	}
}

// TestCredentialsCopiedFromRequest: the tokens sessionCreds holds are
// copies. fasthttp reuses a request's buffers for the next request on the
// connection, and a view of them kept past the request (a WebSocket's
// Principal, whose tokens each message checks again) would change under
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

// TestAPIKeyClientWithSessionHeaders: an API-key client that takes its
// session token from /api/session/acquire and then sends it and its
// project token as headers (no key, no cookies) is served like a cookie
// client (docs/api.md); revoking the key ends that session at once.
func TestAPIKeyClientWithSessionHeaders(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("key-headers@example.com")
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
	h.expect("POST", "/api/completion/request", body, 200)
	h.expect("POST", "/api/completion/request", body, 200)
	c.expect("DELETE", "/api/user/api-keys/"+id, nil, 200)
	h.expect("POST", "/api/completion/request", body, 401)
	if n := e.storedQueries("key-headers@example.com"); n != 2 {
		t.Fatalf("%d queries stored; want 2", n)
	}
}
