package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/devsvc"
)

// The fault tests' environment: a private Postgres and Redis of the test's
// own (the test environment's servers are shared by every package's tests
// and must never be stopped), and `code4me serve` as a process of its own
// on them, which a test kills and starts again on the same data. Load
// comes from faultLoad (faultload_test.go).

// faultMetricsToken lets the test read GET /metrics as a scraper.
const faultMetricsToken = "fault-test-metrics-token"

// faultEnv is one fault test's services and server process.
type faultEnv struct {
	t       *testing.T
	pg      *devsvc.Postgres
	redis   *devsvc.Redis
	dbURL   string
	dataDir string // the server's DATA_DIR, the same for every process
	port    int
	base    string
	srv     *tierProc // the running (or last) `code4me serve`
	modelID int64     // synthetic-tiny's model_id
}

// newFaultEnv starts private Postgres (migrated) and Redis servers and a
// `code4me serve` on them. It skips the test under -short, and where the
// system has no Postgres or Redis binaries (fails under CI).
func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests run real processes for a minute or more")
	}
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
	t.Cleanup(func() { stopFaultService(t, pg.Stop) })
	e := &faultEnv{t: t, pg: pg, dbURL: pg.URL(devsvc.PostgresDatabase), dataDir: filepath.Join(dir, "data")}
	if err := db.Migrate(ctx, e.dbURL, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if e.redis, err = devsvc.StartRedis(ctx, filepath.Join(dir, "redis"), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopFaultService(t, e.redis.Stop) })
	e.port = freeTCPPort(t)
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	e.startServer()
	if err := e.query(`SELECT model_id FROM model WHERE name = 'synthetic-tiny'`).Scan(&e.modelID); err != nil {
		t.Fatal(err)
	}
	return e
}

func stopFaultService(t *testing.T, stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Error(err)
	}
}

// startServer starts `code4me serve` on the environment's services, port
// and DATA_DIR, and waits until /api/ping answers 200.
func (e *faultEnv) startServer() {
	t := e.t
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	// Short Redis timeouts, so that a request meeting a Redis that is down
	// is answered within a second.
	redisURL := e.redis.URL() + "/0?dial_timeout=500ms&read_timeout=500ms&write_timeout=500ms&pool_timeout=1s"
	e.srv = startTierProc(t, "serve",
		"DATABASE_URL="+e.dbURL, "REDIS_URL="+redisURL,
		"SERVER_HOST=127.0.0.1", fmt.Sprintf("SERVER_PORT=%d", e.port), "DATA_DIR="+e.dataDir,
		"MODELS=", "MODEL_DIR="+filepath.Join(cache, "code4me-test-models", "serve"), "SYNTHETIC_MODEL=tiny",
		"ENGINE_PARALLEL=1", "ENGINE_THREADS=1", "COMPLETION_MAX_TOKENS=8",
		"SHUTDOWN_GRACE=5", "DEFAULT_MAX_REQUEST_RATE_PER_HOUR=1000000",
		"DB_STATEMENT_TIMEOUT=2", "METRICS_TOKEN="+faultMetricsToken,
		"EMAIL_HOST=", "LOG_LEVEL=info", "LOG_FORMAT=text")
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if res, err := http.Get(e.base + "/api/ping"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if !e.srv.running() {
			t.Fatalf("code4me serve exited before it was ready: %v", e.srv.err)
		}
		if time.Now().After(deadline) {
			t.Fatal("code4me serve not ready after 3 minutes")
		}
	}
}

// query runs one statement on a connection of its own (the test's
// connections must not outlive a restart of Postgres).
func (e *faultEnv) query(sql string, args ...any) pgx.Row {
	return faultRow{e: e, sql: sql, args: args}
}

type faultRow struct {
	e    *faultEnv
	sql  string
	args []any
}

func (r faultRow) Scan(dest ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.e.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, r.sql, r.args...).Scan(dest...)
}

// conn opens a connection for several statements; it is closed when the
// test ends.
func (e *faultEnv) conn() *pgx.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// goroutines reads go_goroutines from the server's GET /metrics.
func (e *faultEnv) goroutines() (int, error) {
	req, _ := http.NewRequest("GET", e.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+faultMetricsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return 0, fmt.Errorf("GET /metrics: %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("GET /metrics: no go_goroutines (%v)", sc.Err())
}

// settledGoroutines waits until the server's goroutine count has stopped
// changing (the same in three readings 200 ms apart, or 10 s passed) and
// returns it.
func (e *faultEnv) settledGoroutines() int {
	e.t.Helper()
	var last []int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		n, err := e.goroutines()
		if err != nil {
			e.t.Fatal(err)
		}
		last = append(last, n)
		if k := len(last); k >= 3 && last[k-1] == last[k-2] && last[k-2] == last[k-3] || time.Now().After(deadline) {
			return n
		}
	}
}

// waitGoroutines waits until the server runs at most limit goroutines, and
// fails the test when it still runs more after a minute.
func (e *faultEnv) waitGoroutines(limit int) {
	e.t.Helper()
	var n int
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if n, err = e.goroutines(); err != nil {
			e.t.Fatal(err)
		}
		if n <= limit {
			e.t.Logf("goroutines back to %d (limit %d)", n, limit)
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the server still runs %d goroutines a minute after the load ended; limit %d", n, limit)
		}
	}
}
