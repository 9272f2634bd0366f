package server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/devsvc"
	"github.com/code4me/code4me/internal/mail"
	"github.com/code4me/code4me/internal/mail/mailtest"
	"github.com/code4me/code4me/internal/oauth"
	"github.com/code4me/code4me/internal/oauth/oauthtest"
	"github.com/code4me/code4me/internal/testenv"
)

// Tests of account security: what a stolen login or API key can do, what a
// password reset or change revokes, Google sign-in, and the rate limit of
// the routes that check passwords.

// mailsTo waits until n messages have arrived in all and returns those to
// addr with the subject.
func (e *env) mailsTo(n int, addr, subject string) []mailtest.Received {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := e.smtp.Wait(ctx, n)
	if err != nil {
		e.t.Fatalf("waiting for %d messages: %v", n, err)
	}
	var out []mailtest.Received
	for _, m := range msgs {
		pm, err := m.Message()
		if err != nil {
			e.t.Fatal(err)
		}
		if len(m.To) == 1 && m.To[0] == addr && pm.Header.Get("Subject") == subject {
			out = append(out, m)
		}
	}
	return out
}

// onlyToken is the token in the text body of the one message of msgs.
func onlyToken(t *testing.T, msgs []mailtest.Received) string {
	t.Helper()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	b, err := msgs[0].Bodies()
	if err != nil {
		t.Fatal(err)
	}
	m := tokenRe.FindStringSubmatch(b["text/plain"])
	if m == nil {
		t.Fatalf("no token in %q", b["text/plain"])
	}
	return m[1]
}

func bearerClient(e *env, key string) *client {
	c := e.client()
	c.header["Authorization"] = "Bearer " + key
	return c
}

// newKey creates an API key as c with the given scopes (nil: none named)
// and returns it and its JSON.
func newKey(c *client, scopes []string) (string, map[string]any) {
	c.e.t.Helper()
	body := map[string]any{"name": "key"}
	if scopes != nil {
		body["scopes"] = scopes
	}
	r := c.expect("POST", "/api/user/api-keys", body, 201)
	return r.body["api_key"].(string), r.body["key"].(map[string]any)
}

// TestEmailChangeNeedsPasswordAndVerification: a stolen login cannot change
// the email (the previous password is required); a changed email is
// unverified, gets a verification mail, and the previous address gets a
// notice; links mailed to the previous address no longer verify or reset.
func TestEmailChangeNeedsPasswordAndVerification(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("before@example.com")
	e.client().expect("GET", "/api/user/verify/?token="+e.mailToken(1, "before@example.com"), nil, 200)
	c := e.loggedIn("before@example.com")
	// A verification and a reset link mailed to the old address, unused.
	c.expect("POST", "/api/user/verify/resend", nil, 200)
	e.client().expect("POST", "/api/user/reset-password/request?email=before@example.com", nil, 200)
	oldVerify := onlyToken(t, e.mailsTo(3, "before@example.com", mail.VerificationSubject)[1:])
	oldReset := onlyToken(t, e.mailsTo(3, "before@example.com", mail.PasswordResetSubject))

	for _, body := range []map[string]any{
		{"email": "after@example.com"},
		{"email": "after@example.com", "previous_password": "Wrong1234"},
	} {
		if r := c.expect("PUT", "/api/user/update", body, 401); r.msg() != MsgInvalidPreviousPassword {
			t.Fatalf("email change %v = %s", body, r.raw)
		}
	}
	// The same address again needs nothing and changes nothing.
	r := c.expect("PUT", "/api/user/update", map[string]any{"email": "Before@example.com", "name": "Same Mail"}, 201)
	if u := r.body["user"].(map[string]any); u["email"] != "before@example.com" || u["verified"] != true {
		t.Fatalf("unchanged email = %s", r.raw)
	}

	r = c.expect("PUT", "/api/user/update", map[string]any{"email": "after@example.com", "previous_password": testPassword}, 201)
	if u := r.body["user"].(map[string]any); u["email"] != "after@example.com" || u["verified"] != false {
		t.Fatalf("changed email = %s", r.raw)
	}
	notice := e.mailsTo(5, "before@example.com", mail.EmailChangedSubject)
	if len(notice) != 1 {
		t.Fatalf("%d notices to the previous address", len(notice))
	}
	if b, _ := notice[0].Bodies(); !strings.Contains(b["text/plain"], "after@example.com") || tokenRe.MatchString(b["text/plain"]) {
		t.Fatalf("notice = %q", b["text/plain"])
	}
	newVerify := onlyToken(t, e.mailsTo(5, "after@example.com", mail.VerificationSubject))

	// Links mailed to the previous address are dead.
	if r := e.client().expect("GET", "/api/user/verify/?token="+oldVerify, nil, 401); r.msg() != MsgInvalidVerificationToken {
		t.Fatal(r.msg())
	}
	form := url.Values{"token": {oldReset}, "new_password": {"Takeover123"}, "confirm_password": {"Takeover123"}}
	e.client().expect("POST", "/api/user/reset-password/change", form, 401)
	e.client().expect("POST", "/api/user/authenticate", map[string]any{"email": "after@example.com", "password": "Takeover123"}, 401)

	if r := c.expect("GET", "/api/user/verify/check", nil, 200); r.body["user_is_verified"] != false {
		t.Fatalf("check = %s", r.raw)
	}
	e.client().expect("GET", "/api/user/verify/?token="+newVerify, nil, 200)
	if r := c.expect("GET", "/api/user/verify/check", nil, 200); r.body["user_is_verified"] != true {
		t.Fatalf("check after verifying the new address = %s", r.raw)
	}
}

// TestPasswordResetRevokesAPIKeys: a reset ends every login, session and
// API key of the user, key sessions included, whether or not the key was
// cached.
func TestPasswordResetRevokesAPIKeys(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("rk@example.com")
	e.mailToken(1, "rk@example.com")
	c := e.loggedIn("rk@example.com")
	key, _ := newKey(c, nil)
	kc := bearerClient(e, key)
	kc.expect("GET", "/test/s", nil, 200) // a key session, and the key cached
	ks := kc.expect("GET", "/api/session/acquire", nil, 200)
	sessHeader := e.client()
	sessHeader.header[headerSession] = ks.body["session_token"].(string)
	sessHeader.expect("GET", "/test/s", nil, 200)
	cold, _ := newKey(c, nil) // never used: not cached

	e.client().expect("POST", "/api/user/reset-password/request?email=rk@example.com", nil, 200)
	tok := e.mailToken(2, "rk@example.com")
	form := url.Values{"token": {tok}, "new_password": {"Changed123"}, "confirm_password": {"Changed123"}}
	e.client().expect("POST", "/api/user/reset-password/change", form, 200)

	c.expect("GET", "/api/user/get", nil, 401)
	c.expect("GET", "/test/s", nil, 401)
	kc.expect("GET", "/test/s", nil, 401)                   // its session cookie
	bearerClient(e, key).expect("GET", "/test/s", nil, 401) // the key itself
	sessHeader.expect("GET", "/test/s", nil, 401)
	bearerClient(e, cold).expect("GET", "/test/s", nil, 401)

	n := e.client()
	n.expect("POST", "/api/user/authenticate", map[string]any{"email": "rk@example.com", "password": "Changed123"}, 200)
	for _, k := range n.expect("GET", "/api/user/api-keys", nil, 200).body["api_keys"].([]any) {
		if k.(map[string]any)["revoked_at"] == nil {
			t.Fatalf("key %v not revoked", k)
		}
	}
}

// TestPasswordChangeRevokesEverythingElse: a password change ends every
// other login, every session and every API key; the caller's login is
// replaced by a new one.
func TestPasswordChangeRevokesEverythingElse(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("pc@example.com")
	c := e.loggedIn("pc@example.com")
	other := e.loggedIn("pc@example.com")
	key, _ := newKey(c, nil)
	kc := bearerClient(e, key)
	kc.expect("GET", "/test/s", nil, 200)
	oldAuth := c.cookies[cookieAuth]

	r := c.expect("PUT", "/api/user/update", map[string]any{"password": "NewPass123", "previous_password": testPassword}, 201)
	newAuth, _ := r.body["user"].(map[string]any)["auth_token"].(string)
	if newAuth == "" || newAuth == oldAuth || c.cookies[cookieAuth] != newAuth || c.cookies[cookieSession] != "" {
		t.Fatalf("password change = %s; cookies %v", r.raw, c.cookies)
	}
	c.expect("GET", "/api/user/get", nil, 200)
	c.expect("GET", "/api/session/acquire", nil, 200)
	c.expect("GET", "/test/s", nil, 200)

	other.expect("GET", "/api/user/get", nil, 401)
	other.expect("GET", "/test/s", nil, 401)
	kc.expect("GET", "/test/s", nil, 401)
	stale := e.client()
	stale.cookies[cookieAuth] = oldAuth
	stale.expect("GET", "/api/user/get", nil, 401)

	// A change made with an API key (account scope) revokes that key too.
	acct, _ := newKey(c, []string{auth.ScopeAccount})
	ac := bearerClient(e, acct)
	r = ac.expect("PUT", "/api/user/update", map[string]any{"password": "Third123x", "previous_password": "NewPass123"}, 201)
	if r.body["user"].(map[string]any)["auth_token"] != nil {
		t.Fatalf("a key's password change issued a login: %s", r.raw)
	}
	ac.expect("GET", "/api/user/get", nil, 401)
	c.expect("GET", "/api/user/get", nil, 401)
}

// TestAPIKeyScopes: account routes need the account scope, completion
// routes the completions scope; keys default to completions, including
// keys stored without scopes; the scopes are validated and shown.
func TestAPIKeyScopes(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("sc@example.com")
	c := e.loggedIn("sc@example.com")

	comp, compJSON := newKey(c, nil)
	acct, acctJSON := newKey(c, []string{"account"})
	_, bothJSON := newKey(c, []string{"account", "completions", "account"})
	for _, tc := range []struct {
		key  map[string]any
		want string
	}{{compJSON, "[completions]"}, {acctJSON, "[account]"}, {bothJSON, "[completions account]"}} {
		if got := fmt.Sprint(tc.key["scopes"]); got != tc.want {
			t.Fatalf("scopes = %s, want %s", got, tc.want)
		}
	}
	for _, bad := range []any{[]string{"admin"}, []string{}, "account", []any{1}} {
		r := c.expect("POST", "/api/user/api-keys", map[string]any{"name": "bad", "scopes": bad}, 422)
		loc := fmt.Sprint(r.body["detail"].([]any)[0].(map[string]any)["loc"])
		if !strings.HasPrefix(loc, "[body scopes") {
			t.Fatalf("scopes %v: 422 at %s", bad, loc)
		}
	}

	kc := bearerClient(e, comp)
	account := []struct{ method, path string }{
		{"GET", "/api/user/get"}, {"GET", "/api/user/get"}, // the second from the key cache
		{"PUT", "/api/user/update"}, {"DELETE", "/api/user/delete"},
		{"GET", "/api/user/verify/check"}, {"POST", "/api/user/verify/resend"},
		{"POST", "/api/user/api-keys"}, {"GET", "/api/user/api-keys"},
		{"DELETE", "/api/user/api-keys/" + acctJSON["api_key_id"].(string)},
	}
	for _, rt := range account {
		var body any
		if rt.method == "PUT" || rt.method == "POST" {
			body = map[string]any{"name": "Attacker", "email": "attacker@example.com"}
		}
		if r := kc.expect(rt.method, rt.path, body, 403); r.msg() != MsgAPIKeyNeedsAccount {
			t.Fatalf("%s %s = %s", rt.method, rt.path, r.raw)
		}
	}
	kc.expect("GET", "/test/s", nil, 200)
	kc.expect("GET", "/api/session/acquire", nil, 200)
	kc.expect("POST", "/api/project/create", map[string]any{"project_name": "p"}, 201)
	kc.cookies = map[string]string{}
	c.expect("GET", "/api/user/get", nil, 200) // the account is untouched

	ac := bearerClient(e, acct)
	ac.expect("GET", "/api/user/get", nil, 200)
	for _, path := range []string{"/test/s", "/test/sp", "/api/session/acquire"} {
		if r := ac.expect("GET", path, nil, 403); r.msg() != MsgAPIKeyNeedsCompletions {
			t.Fatalf("GET %s with an account key = %s", path, r.raw)
		}
	}
	newKey(ac, []string{"completions", "account"})

	// A key stored without naming scopes has the column's default.
	plain, hash, display := auth.NewAPIKey()
	if _, err := e.srv.db.Exec(context.Background(),
		`INSERT INTO api_key (user_id, name, key_hash, prefix) SELECT user_id, 'old', $1, $2 FROM users WHERE email = 'sc@example.com'`,
		hash, display); err != nil {
		t.Fatal(err)
	}
	pc := bearerClient(e, plain)
	pc.expect("GET", "/api/user/get", nil, 403)
	pc.expect("GET", "/test/s", nil, 200)
}

// TestGoogleSignInBindsSubject: Google accounts are bound by subject; an
// existing password account is reached by email only when both Google and
// the account have verified it; sign-up needs an email Google verified.
func TestGoogleSignInBindsSubject(t *testing.T) {
	e := newEnv(t, nil)
	token := func(sub, email string, verified bool) string {
		cl := oauthtest.Claims(testClientID, email)
		cl["sub"], cl["email_verified"] = sub, verified
		return e.iss.Sign(t, cl)
	}
	signIn := func(tok string, status int) resp {
		t.Helper()
		return e.client().expect("POST", "/api/user/authenticate", map[string]any{"provider": "google", "token": tok}, status)
	}
	e.signup("pw@example.com")

	// Unverified account: no link, a 409 that says how to link.
	if r := signIn(token("sub-a", "pw@example.com", true), 409); r.msg() != MsgGoogleNotLinked ||
		!strings.Contains(r.msg(), "sign in with your email and password") {
		t.Fatalf("sign-in to an unverified account = %s", r.raw)
	}
	e.client().expect("GET", "/api/user/verify/?token="+e.mailToken(1, "pw@example.com"), nil, 200)
	// Verified account, email not verified by Google: no link either.
	signIn(token("sub-a", "pw@example.com", false), 409)

	// Both verified: the first sign-in links, later ones go by subject,
	// whatever the Google account's email is now.
	r := signIn(token("sub-a", "pw@example.com", true), 200)
	if r.msg() != MsgAuthenticateOAuth || r.body["user"].(map[string]any)["email"] != "pw@example.com" {
		t.Fatalf("linking sign-in = %s", r.raw)
	}
	r = signIn(token("sub-a", "renamed@gmail.example", false), 200)
	if r.body["user"].(map[string]any)["email"] != "pw@example.com" {
		t.Fatalf("sign-in by subject = %s", r.raw)
	}
	// Another Google account with the same email cannot take it over.
	if r := signIn(token("sub-b", "pw@example.com", true), 409); r.msg() != MsgGoogleLinkedElsewhere {
		t.Fatalf("second Google account = %s", r.raw)
	}

	create := func(tok, email string, status int) resp {
		t.Helper()
		return e.client().expect("POST", "/api/user/create", map[string]any{"email": email, "name": "Gina",
			"password": testPassword, "config_id": 1, "provider": "google", "token": tok}, status)
	}
	if r := create(token("sub-c", "new@example.com", false), "new@example.com", 403); r.msg() != MsgGoogleEmailUnverified {
		t.Fatalf("sign-up with an unverified Google email = %s", r.raw)
	}
	if r := create(token("sub-a", "third@example.com", true), "third@example.com", 409); r.msg() != MsgGoogleAccountInUse {
		t.Fatalf("sign-up with a bound Google account = %s", r.raw)
	}
	create(token("sub-c", "new@example.com", true), "new@example.com", 201)
	if r := signIn(token("sub-c", "new@example.com", true), 200); r.body["user"].(map[string]any)["email"] != "new@example.com" {
		t.Fatalf("sign-in after a Google sign-up = %s", r.raw)
	}
}

// TestPublicRoutesCountPerIP: login and reset requests are counted against
// the client address even when they carry a valid login of another
// account, so throw-away accounts buy no extra guesses.
func TestPublicRoutesCountPerIP(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.DefaultRatePerHour = 100
		c.RatePerHourByRoute = map[string]int{"/api/user/authenticate": 3, "/api/user/reset-password/request": 2}
	})
	e.signup("victim@example.com")
	e.signup("throwaway@example.com")
	a := e.client()
	a.expect("POST", "/api/user/authenticate", map[string]any{"email": "throwaway@example.com", "password": testPassword}, 200)
	if a.cookies[cookieAuth] == "" {
		t.Fatal("no auth_token")
	}
	guess := map[string]any{"email": "victim@example.com", "password": "Guess1234"}
	a.expect("POST", "/api/user/authenticate", guess, 401)
	a.expect("POST", "/api/user/authenticate", guess, 401)
	if r := a.expect("POST", "/api/user/authenticate", guess, 429); r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	e.client().expect("POST", "/api/user/authenticate", guess, 429)

	a.expect("POST", "/api/user/reset-password/request?email=victim@example.com", nil, 200)
	a.expect("POST", "/api/user/reset-password/request?email=victim@example.com", nil, 200)
	a.expect("POST", "/api/user/reset-password/request?email=victim@example.com", nil, 429)
}

// privateRedis is a redis-server of one test's own on a fixed port, which
// the test stops and starts again (the shared test Redis is never
// stopped).
type privateRedis struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	bin, err := devsvc.FindRedisServer()
	if err != nil {
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &privateRedis{t: t, bin: bin, dir: t.TempDir(), port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// start runs the server and returns once it answers PING.
func (r *privateRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not answer", r.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server and waits for it to exit.
func (r *privateRedis) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// newEnvOnRedis is newEnv with the server on rdb instead of the shared
// test Redis.
func newEnvOnRedis(t *testing.T, rdb *redis.Client) *env {
	t.Helper()
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	smtp := mailtest.Start(t)
	iss := oauthtest.New(t)
	srv, err := New(Deps{
		Config:   cfg,
		DB:       testenv.Pool(t),
		Redis:    rdb,
		Mail:     &mail.SMTP{Host: smtp.Host(), Port: smtp.Port(), From: "code4me <noreply@example.com>"},
		OAuth:    oauth.New(oauth.Options{ClientID: testClientID, JWKSURL: iss.URL}),
		JobQueue: testQueue(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &env{t: t, srv: srv, smtp: smtp, iss: iss}
}

// TestLoginFailsClosedWhenRedisIsDown: while Redis is down, login, sign-up
// and reset answer 503 naming Redis, for a right password as for a wrong
// one (no guessing oracle while the limit cannot count); once Redis is
// back the same server serves them again.
func TestLoginFailsClosedWhenRedisIsDown(t *testing.T) {
	r := startPrivateRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.addr(), DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	e := newEnvOnRedis(t, rdb)
	e.signup("outage@example.com")
	right := map[string]any{"email": "outage@example.com", "password": testPassword}
	wrong := map[string]any{"email": "outage@example.com", "password": "Wrong1234"}
	e.client().expect("POST", "/api/user/authenticate", right, 200)

	r.stop()
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/user/authenticate", right},
		{"POST", "/api/user/authenticate", wrong},
		{"POST", "/api/user/create", map[string]any{"email": "o2@example.com", "name": "Tester", "password": testPassword, "config_id": 1}},
		{"POST", "/api/user/reset-password/request?email=outage@example.com", nil},
		{"POST", "/api/user/reset-password/change", url.Values{"token": {"00000000-0000-4000-8000-000000000000"}, "new_password": {"Whatever123"}}},
	} {
		res := e.client().expect(req.method, req.path, req.body, fiber.StatusServiceUnavailable)
		if res.msg() != unavailableMessage(depRedis) || res.header.Get("Retry-After") == "" {
			t.Fatalf("%s %s while Redis is down = %s (Retry-After %q)", req.method, req.path, res.raw, res.header.Get("Retry-After"))
		}
	}

	r.start()
	// The client's pool redials in the background after failed dials: wait
	// until the server's own readiness check sees Redis again.
	deadline := time.Now().Add(30 * time.Second)
	for e.client().do("GET", "/api/ping", nil).status != fiber.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the server did not see Redis again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.client().expect("POST", "/api/user/authenticate", right, 200)
	e.client().expect("POST", "/api/user/authenticate", wrong, 401)
}
