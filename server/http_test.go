package server

import (
	"strconv"
	"strings"
	"testing"

	"github.com/code4me/code4me/internal/config"
)

func TestFrameworkShapes(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	if r := c.expect("GET", "/api/nope", nil, 404); r.body["detail"] != "Not Found" {
		t.Fatalf("404 = %s", r.raw)
	}
	if r := c.expect("GET", "/api/user/create", nil, 405); r.body["detail"] != "Method Not Allowed" {
		t.Fatalf("405 = %s", r.raw)
	}
	c.expect("HEAD", "/api/ping", nil, 200)
	c.expect("GET", "/api/ping", nil, 200)

	// 422 shapes: malformed JSON, a non-object, missing and bad fields.
	r := c.expect("POST", "/api/user/create", "{nope", 422)
	if d := r.body["detail"].([]any)[0].(map[string]any); d["type"] != "json_invalid" {
		t.Fatalf("bad json = %s", r.raw)
	}
	// The location is FastAPI's: the character where decoding failed.
	for body, pos := range map[string]float64{"{nope": 1, `{"a":`: 5, `{"a":1`: 6, `{} {}`: 3, `{"é":x}`: 5, `  ]`: 2} {
		r := c.expect("POST", "/api/user/create", body, 422)
		d := r.body["detail"].([]any)[0].(map[string]any)
		if loc := d["loc"].([]any); d["type"] != "json_invalid" || len(loc) != 2 || loc[1] != pos {
			t.Fatalf("%q: 422 = %s, want json_invalid at [body, %v]", body, r.raw, pos)
		}
	}
	c.expect("POST", "/api/user/create", "[1,2]", 422)
	r = c.expect("POST", "/api/user/create", map[string]any{"email": "not-an-email", "name": "x", "password": "weak", "config_id": -1}, 422)
	got := map[string]string{}
	for _, d := range r.body["detail"].([]any) {
		m := d.(map[string]any)
		loc := m["loc"].([]any)
		if loc[0] != "body" || m["msg"] == "" {
			t.Fatalf("entry %v", m)
		}
		got[loc[1].(string)] = m["type"].(string)
	}
	want := map[string]string{"email": "value_error", "name": "string_too_short", "password": "value_error", "config_id": "greater_than_equal"}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("422 %s = %q, want %q (%s)", k, got[k], v, r.raw)
		}
	}
	if strings.Contains(string(r.raw), "weak") {
		t.Fatal("422 echoes the password")
	}
	r = c.expect("POST", "/api/user/create", map[string]any{}, 422)
	if len(r.body["detail"].([]any)) != 4 {
		t.Fatalf("missing fields = %s", r.raw)
	}

	// OpenAPI and docs.
	if r := c.expect("GET", "/openapi.json", nil, 200); r.body["openapi"] != "3.1.0" || r.body["paths"].(map[string]any)["/api/user/create"] == nil {
		t.Fatalf("openapi = %.200s", r.raw)
	}
	if r := c.expect("GET", "/docs", nil, 200); !strings.Contains(string(r.raw), "/api/session/acquire") {
		t.Fatal("docs page lacks routes")
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.MaxBodyBytes = 2048 })
	ln := e.listen()
	status, body := rawPost(t, ln, "/api/user/create", strings.Repeat("x", 10000))
	if status != 413 || !strings.Contains(body, "detail") {
		t.Fatalf("big body = %d %s", status, body)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.DefaultRatePerHour = 100
		c.RatePerHourByRoute = map[string]int{"/api/user/get": 3, "/api/user/authenticate": 2}
	})
	e.signup("rl@example.com")
	e.signup("rl2@example.com")
	a := e.loggedIn("rl@example.com")
	for i := 0; i < 3; i++ {
		a.expect("GET", "/api/user/get", nil, 200)
	}
	r := a.expect("GET", "/api/user/get", nil, 429)
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.msg() != MsgTooManyRequests || err != nil || ra < 1 || ra > 3600 {
		t.Fatalf("429 = %s Retry-After %q", r.raw, r.header.Get("Retry-After"))
	}
	// Per user: another user is not limited; per route: another route is not.
	b := e.loggedIn("rl2@example.com")
	b.expect("GET", "/api/user/get", nil, 200)
	a.expect("GET", "/api/user/verify/check", nil, 200)
	// The trailing-slash twin of a route is a 307, not a new budget.
	a.expect("GET", "/api/user/get/", nil, 307)

	// Before login the client IP is the subject (authenticate allows 2 and
	// loggedIn used 2 from this address already).
	r = e.client().expect("POST", "/api/user/authenticate", map[string]any{"email": "rl@example.com", "password": testPassword}, 429)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// Failing credentials are limited too.
	bad := e.client()
	bad.cookies["auth_token"] = "00000000-0000-4000-8000-000000000000"
	for i := 0; i < 3; i++ {
		bad.expect("GET", "/api/user/get", nil, 401)
	}
	bad.expect("GET", "/api/user/get", nil, 429)
}

func TestCORS(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.CORSOrigins = []string{"https://app.example.com"} })
	c := e.client()
	c.header["Origin"] = "https://app.example.com"
	r := c.expect("GET", "/api/ping", nil, 200)
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("cors headers %v", r.header)
	}
	c.header["Origin"] = "https://evil.example.com"
	if r := c.expect("GET", "/api/ping", nil, 200); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("foreign origin allowed")
	}
}

// TestRateLimitSessionRoutes: on session routes the rate limit is counted
// in the session lookup's round trip, with the same outcomes: per user and
// route when the credentials are good, per client address otherwise, 401
// before the budget is spent and 429 with Retry-After after.
func TestRateLimitSessionRoutes(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.DefaultRatePerHour = 100
		c.RatePerHourByRoute = map[string]int{"/test/sp": 3, "/test/s": 2}
	})
	e.signup("rls@example.com")
	e.signup("rls2@example.com")
	a := e.loggedIn("rls@example.com")
	a.expect("POST", "/api/project/create", map[string]any{"project_name": "p"}, 201)
	for i := 0; i < 3; i++ {
		r := a.expect("GET", "/test/sp", nil, 200)
		if got := r.header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(2-i) {
			t.Fatalf("remaining after %d = %q", i+1, got)
		}
	}
	r := a.expect("GET", "/test/sp", nil, 429)
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.msg() != MsgTooManyRequests || err != nil || ra < 1 || ra > 3600 {
		t.Fatalf("429 = %s Retry-After %q", r.raw, r.header.Get("Retry-After"))
	}
	// Another route, another user: their own budgets.
	a.expect("GET", "/test/s", nil, 200)
	b := e.loggedIn("rls2@example.com")
	b.expect("POST", "/api/project/create", map[string]any{"project_name": "p"}, 201)
	b.expect("GET", "/test/sp", nil, 200)

	// A bad session token is a 401 counted against the client address,
	// until that budget is spent.
	bad := e.client()
	bad.cookies["session_token"] = "00000000-0000-4000-8000-000000000000"
	for i := 0; i < 2; i++ {
		if r := bad.expect("GET", "/test/s", nil, 401); r.msg() != MsgInvalidOrExpiredSession {
			t.Fatalf("401 = %s", r.raw)
		}
	}
	bad.expect("GET", "/test/s", nil, 429)
	// A good session without a project token is a 401 for the project,
	// counted against the address too (its budget on /test/sp is fresh).
	noProj := e.loggedIn("rls2@example.com")
	for i := 0; i < 3; i++ {
		if r := noProj.expect("GET", "/test/sp", nil, 401); r.msg() != MsgInvalidOrExpiredProject {
			t.Fatalf("401 = %s", r.raw)
		}
	}
	noProj.expect("GET", "/test/sp", nil, 429)
	// The user's own budget on /test/sp was not touched by those.
	b.expect("GET", "/test/sp", nil, 200)
}
