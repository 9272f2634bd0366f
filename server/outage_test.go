package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/devsvc"
)

// The outage tests take Postgres and Redis away from a running server, as
// real processes: stopped (connections refused) and hung (SIGSTOP: the
// kernel still accepts connections, nothing answers). The servers of the
// test environment are shared by every test package, so these run a
// private Postgres (migrated) and Redis of their own, which they stop and
// restart on the same data and port.

// privateServices are a Postgres and a Redis of one test's own.
type privateServices struct {
	pg    *devsvc.Postgres
	redis *devsvc.Redis
}

func startPrivateServices(t *testing.T) *privateServices {
	t.Helper()
	for _, find := range []func() (string, error){devsvc.FindPostgresBin, devsvc.FindRedisServer} {
		if _, err := find(); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
	// When the tests run as root, Postgres runs as the postgres user, who
	// must reach the directory (t.TempDir's parent is mode 0700).
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := devsvc.StartPostgres(ctx, filepath.Join(dir, "pg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopService(t, pg.PID(), pg.Stop) })
	if err := db.Migrate(ctx, pg.URL(devsvc.PostgresDatabase), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	r, err := devsvc.StartRedis(ctx, filepath.Join(dir, "redis"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopService(t, r.PID(), r.Stop) })
	return &privateServices{pg: pg, redis: r}
}

// stopService stops a server at the end of a test, waking it first in case
// the test failed while it was hung.
func stopService(t *testing.T, pid int, stop func(context.Context) error) {
	if pid > 0 {
		for _, p := range append([]int{pid}, children(pid)...) {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Error(err)
	}
}

// hang stops (SIGSTOP) the server's process and its children (Postgres's
// backends, each in a process group of its own), the postmaster first so
// that it starts no more, and returns the function that wakes them.
func hang(t *testing.T, pid int) (wake func()) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", pid, err)
	}
	pids := append([]int{pid}, children(pid)...)
	for _, p := range pids[1:] {
		_ = syscall.Kill(p, syscall.SIGSTOP) // a backend may just have exited
	}
	wake = func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	}
	t.Cleanup(wake) // before anything else stops, should the test fail while they hang
	return wake
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The name, in parentheses, may hold spaces: fields follow the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// newOutageEnv is a plugin server (the test engine) on svc, with the short
// timeouts of an outage test: statements 1 s (the client gives up 1 s
// later), Redis commands 500 ms with one retry.
func newOutageEnv(t *testing.T, svc *privateServices) *pluginEnv {
	t.Helper()
	eng, rec := sharedEngine(t)
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.DefaultRatePerHour = 100000
	cfg.DBStatementTimeout = time.Second
	ctx := context.Background()
	pool, err := db.Open(ctx, svc.pg.URL(devsvc.PostgresDatabase),
		db.Options{MaxConns: 10, StatementTimeout: cfg.DBStatementTimeout}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	opt, err := redis.ParseURL(svc.redis.URL() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond, time.Second
	opt.MaxRetries = 1
	redis.SetLogger(quietRedisLog{}) // its dial retries; failures reach the test as errors
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	srv, err := New(Deps{Config: cfg, Log: slog.New(slog.DiscardHandler), DB: pool, Redis: rdb, Engine: eng, JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	pe := &pluginEnv{env: &env{t: t, srv: srv}, rec: rec, ids: map[string]int64{}}
	for _, m := range srv.plugin.models.List() {
		pe.ids[m.Name] = m.ID
	}
	return pe
}

// TestOutage: with Redis or Postgres stopped or hung, every kind of route
// (sign-in, session, project, an HTTP completion, a WebSocket completion
// and the WebSocket handshake) answers 503 with Retry-After and a message
// that names the dependency, promptly; once the dependency is back (the
// same data on the same port), the same server serves again without a
// restart, on the same WebSocket connection too.
func TestOutage(t *testing.T) {
	svc := startPrivateServices(t)
	e := newOutageEnv(t, svc)
	addr := e.listen()
	const email = "outage@example.com"
	c := e.member(email)
	ready := e.loggedIn(email) // signed in before the outage
	ws := e.wsDial(addr, "/api/ws/completion", c)
	coder := e.ids["tiny-coder"]
	credentials := map[string]any{"email": email, "password": testPassword}
	wsN := 0
	wsCompletion := func() map[string]any {
		t.Helper()
		wsN++
		id := "r" + itoa(wsN)
		send(t, ws, map[string]any{"request_id": id, "completion_request": completionBody([]int64{coder}, "def f():\n    ", "\n")})
		frames := readUntil(t, ws, func(f map[string]any) bool {
			return f["request_id"] == id && (f["type"] == "completion_result" || f["type"] == "error")
		})
		return frames[len(frames)-1]
	}

	// serves waits until /api/ping answers 200 (go-redis probes a Redis it
	// could not dial about once a second; pgxpool replaces broken
	// connections as it meets them), then checks that every kind of route
	// serves.
	serves := func(t *testing.T) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; {
			r := e.client().do("GET", "/api/ping", nil)
			if r.status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/api/ping still %d %s after 15 s", r.status, r.raw)
			}
			time.Sleep(50 * time.Millisecond)
		}
		fresh := e.client()
		fresh.expect("POST", "/api/user/authenticate", credentials, 200)
		fresh.expect("GET", "/api/session/acquire", nil, 200)
		fresh.expect("POST", "/api/project/create", map[string]any{"project_name": "after"}, 201)
		c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "x = ", "\n"), 200)
		if f := wsCompletion(); f["type"] != "completion_result" || f["status_code"] != float64(200) {
			t.Fatalf("WebSocket completion: %v", f)
		}
	}

	refuses := func(t *testing.T, dep string) {
		t.Helper()
		want := unavailableMessage(dep)
		for _, r := range []struct {
			name string
			do   func() resp
		}{
			{"sign-in", func() resp { return e.client().do("POST", "/api/user/authenticate", credentials) }},
			{"session", func() resp { return ready.do("GET", "/api/session/acquire", nil) }},
			{"project", func() resp { return ready.do("POST", "/api/project/create", map[string]any{"project_name": "during"}) }},
			{"completion", func() resp {
				return c.do("POST", "/api/completion/request", completionBody([]int64{coder}, "y = ", "\n"))
			}},
		} {
			res := within(t, r.name, r.do)
			if res.status != 503 || res.header.Get("Retry-After") != itoa(retryAfterUnavailable) || res.msg() != want {
				t.Errorf("%s: %d Retry-After %q %s; want 503, Retry-After %d, %q", r.name, res.status,
					res.header.Get("Retry-After"), res.raw, retryAfterUnavailable, want)
			}
		}
		// A WebSocket request answers a 503 frame and the connection stays.
		f := within(t, "WebSocket completion", wsCompletion)
		msg, _ := f["error"].(string)
		if content, ok := f["content"].(map[string]any); ok {
			msg, _ = content["message"].(string)
		}
		if f["status_code"] != float64(503) || msg != want {
			t.Errorf("WebSocket completion: %v; want status_code 503, %q", f, want)
		}
	}

	serves(t)

	// The steps share the server and the services, so they are steps of
	// one test rather than subtests: each needs the one before to have
	// ended well.
	step := func(name string, fn func()) {
		t.Logf("step: %s", name)
		fn()
	}

	step("redis stopped", func() {
		ctx := context.Background()
		if err := svc.redis.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		refuses(t, depRedis)
		// The handshake of a new WebSocket is refused before the upgrade.
		h := http.Header{"Cookie": {cookieHeader(c)}}
		_, res, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/ws/completion", h)
		if !errors.Is(err, websocket.ErrBadHandshake) || res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
			t.Errorf("WebSocket handshake: %v, %v; want 503 with Retry-After", err, res)
		}
		if err := svc.redis.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		serves(t)
	})

	step("postgres stopped", func() {
		ctx := context.Background()
		if err := svc.pg.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		refuses(t, depDatabase)
		if err := svc.pg.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		serves(t)
	})

	step("redis hung", func() {
		wake := hang(t, svc.redis.PID())
		refuses(t, depRedis)
		wake()
		serves(t)
	})

	step("postgres hung", func() {
		wake := hang(t, svc.pg.PID())
		refuses(t, depDatabase)
		wake()
		serves(t)
	})
}

// within runs do and fails the test when it has not returned in 30 s: an
// outage must never hang a request (each takes a few of the test's short
// timeouts at most).
func within[T any](t *testing.T, what string, do func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- do() }()
	select {
	case v := <-done:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer after 30 s", what)
		panic("unreachable")
	}
}

// cookieHeader is the Cookie header of c's cookies.
func cookieHeader(c *client) string {
	var parts []string
	for k, v := range c.cookies {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, "; ")
}

// quietRedisLog drops go-redis's log lines.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}
