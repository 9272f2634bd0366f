package server

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/google/uuid"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/mail"
	"github.com/code4me/code4me/internal/mail/mailtest"
	"github.com/code4me/code4me/internal/oauth"
	"github.com/code4me/code4me/internal/oauth/oauthtest"
	"github.com/code4me/code4me/internal/testenv"
)

const testClientID = "test-client.apps.googleusercontent.com"

// env is a server on real Postgres, Redis and SMTP, with a local OAuth
// issuer.
type env struct {
	t    *testing.T
	srv  *Server
	smtp *mailtest.Server
	iss  *oauthtest.Issuer
}

func newEnv(t *testing.T, mut func(*config.Config)) *env {
	t.Helper()
	return newEnvMail(t, mut, nil)
}

// newEnvMail is newEnv with the server's mail sender wrapped by wrap.
func newEnvMail(t *testing.T, mut func(*config.Config), wrap func(mail.Sender) mail.Sender) *env {
	t.Helper()
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.GoogleClientID = testClientID
	smtp := mailtest.Start(t)
	cfg.EmailHost, cfg.EmailPort, cfg.EmailUseTLS = smtp.Host(), smtp.Port(), false
	if mut != nil {
		mut(&cfg)
	}
	iss := oauthtest.New(t)
	var sender mail.Sender = &mail.SMTP{Host: smtp.Host(), Port: smtp.Port(), From: "code4me <noreply@example.com>"}
	if wrap != nil {
		sender = wrap(sender)
	}
	srv, err := New(Deps{
		Config: cfg,
		DB:     testenv.Pool(t),
		Redis:  testenv.Redis(t),
		Mail:   sender,
		OAuth:  oauth.New(oauth.Options{ClientID: testClientID, JWKSURL: iss.URL}),
		// Each test server works its own jobs: a mail queued by an earlier
		// test must not reach this test's SMTP listener.
		JobQueue: testQueue(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Routes of the session classes, as the completion and chat routes use
	// them: they answer the Principal.
	for path, class := range map[string]AuthClass{"/test/s": ClassS, "/test/sp": ClassSP} {
		srv.app.Get(path, srv.guard(class), func(c *fiber.Ctx) error {
			p := principal(c)
			return c.JSON(fiber.Map{"user_id": p.UserID, "session_id": p.SessionID, "project_id": p.ProjectID})
		})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &env{t: t, srv: srv, smtp: smtp, iss: iss}
}

// client carries cookies between requests, like a plugin's cookie jar.
type client struct {
	e       *env
	cookies map[string]string
	header  map[string]string
}

func (e *env) client() *client {
	return &client{e: e, cookies: map[string]string{}, header: map[string]string{}}
}

type resp struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r resp) msg() string { s, _ := r.body["message"].(string); return s }

func (c *client) do(method, path string, body any) resp {
	c.e.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		j, _ := json.Marshal(b)
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req := httptest.NewRequest(method, path, rd)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	res, err := c.e.srv.App().Test(req, -1)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	for _, ck := range res.Cookies() {
		if ck.Value == "" || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now())) {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	json.Unmarshal(raw, &r.body)
	return r
}

func (c *client) expect(method, path string, body any, status int) resp {
	c.e.t.Helper()
	r := c.do(method, path, body)
	if r.status != status {
		c.e.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.raw, status)
	}
	return r
}

const testPassword = "Secret123"

// signup creates a user and returns its id.
func (e *env) signup(email string) string {
	e.t.Helper()
	r := e.client().expect("POST", "/api/user/create", map[string]any{"email": email, "name": "Tester", "password": testPassword, "config_id": 1}, 201)
	return r.body["user_id"].(string)
}

// loggedIn returns a client with auth, session and project cookies.
func (e *env) loggedIn(email string) *client {
	e.t.Helper()
	c := e.client()
	c.expect("POST", "/api/user/authenticate", map[string]any{"email": email, "password": testPassword}, 200)
	c.expect("GET", "/api/session/acquire", nil, 200)
	return c
}

var tokenRe = regexp.MustCompile(`token=([0-9a-f-]{36})`)

// mailToken waits for the n-th message to arrive and returns the token in
// its link.
func (e *env) mailToken(n int, to string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := e.smtp.Wait(ctx, n)
	if err != nil {
		e.t.Fatalf("waiting for %d messages: %v", n, err)
	}
	m := msgs[n-1]
	if len(m.To) != 1 || m.To[0] != to {
		e.t.Fatalf("message to %v, want %s", m.To, to)
	}
	bodies, err := m.Bodies()
	if err != nil {
		e.t.Fatal(err)
	}
	match := tokenRe.FindStringSubmatch(bodies["text/plain"])
	if match == nil {
		e.t.Fatalf("no token in %q", bodies["text/plain"])
	}
	return match[1]
}

// listen serves the app on a real listener (for behaviour app.Test does not
// exercise, such as the body limit) and returns its address.
func (e *env) listen() string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go e.srv.Serve(ln)
	return ln.Addr().String()
}

func rawPost(t *testing.T, addr, path, body string) (int, string) {
	t.Helper()
	res, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// testQueue is a River queue name of one test server's own.
func testQueue() string { return "test_" + uuid.NewString() }
