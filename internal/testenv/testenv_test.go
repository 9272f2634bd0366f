package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/code4me/code4me/internal/devsvc"
)

func TestMain(m *testing.M) {
	// Packages that check for leaked goroutines use testenv: it must leave
	// none behind.
	goleak.VerifyTestMain(m)
}

func dbName(t *testing.T, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(parsed.Path, "/")
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	target, err := postgresTarget()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, target.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestRawDatabaseURL(t *testing.T) {
	var first, second string
	t.Run("use", func(t *testing.T) {
		first, second = RawDatabaseURL(t), RawDatabaseURL(t)
		if dbName(t, first) == dbName(t, second) {
			t.Fatalf("two calls gave the same database %s", dbName(t, first))
		}
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables != 0 {
			t.Fatalf("a raw database has %d tables (%v); want 0", tables, err)
		}
		if _, err := conn.Exec(ctx, "CREATE EXTENSION vector"); err != nil {
			t.Fatalf("CREATE EXTENSION vector: %v", err)
		}
		var d float64
		if err := conn.QueryRow(ctx, "SELECT '[0,3]'::vector <-> '[4,0]'::vector").Scan(&d); err != nil || d != 5 {
			t.Fatalf("vector distance = %v, %v; want 5", d, err)
		}
	})
	if first == "" {
		return // skipped
	}
	for _, u := range []string{first, second} {
		if databaseExists(t, dbName(t, u)) {
			t.Errorf("database %s still exists after its test ended", dbName(t, u))
		}
	}
}

// fakeSpec is a template built by a stand-in for db.Migrate, named outside
// the c4m_tpl_ pattern so that nothing else treats it as the real template.
func fakeSpec(t *testing.T, migrate func(ctx context.Context, u string, log *slog.Logger) error) templateSpec {
	name := fmt.Sprintf("%sfake_tpl_%d_%d", dbPrefix, os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		target, err := postgresTarget()
		if err != nil {
			return
		}
		ctx := context.Background()
		id := pgx.Identifier{name}.Sanitize()
		_ = execAdmin(ctx, target, "ALTER DATABASE "+id+" WITH IS_TEMPLATE false")
		if err := execAdmin(ctx, target, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return templateSpec{name: name, migrate: migrate}
}

func TestCloneTemplate(t *testing.T) {
	target, err := postgresTarget()
	if err != nil {
		fail(t, err)
	}
	ctx := context.Background()
	var calls atomic.Int32
	spec := fakeSpec(t, func(ctx context.Context, u string, _ *slog.Logger) error {
		calls.Add(1)
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `CREATE EXTENSION vector;
			CREATE TABLE seeded (id int PRIMARY KEY, v vector(2));
			INSERT INTO seeded VALUES (1, '[1,1]')`)
		return err
	})

	var urls []string
	for range 2 {
		u, err := cloneTemplate(ctx, target, spec)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, u)
		name := dbName(t, u)
		t.Cleanup(func() {
			_ = execAdmin(ctx, target, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		})
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("migrate ran %d times for two clones; want 1", n)
	}
	if dbName(t, urls[0]) == dbName(t, urls[1]) {
		t.Fatalf("two clones share database %s", dbName(t, urls[0]))
	}
	// Each clone has the seeded row; writes to one stay in it.
	for i, u := range urls {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM seeded").Scan(&n); err != nil || n != 1 {
			t.Fatalf("clone %d: %d seeded rows (%v); want 1", i, n, err)
		}
		if i == 0 {
			if _, err := conn.Exec(ctx, "INSERT INTO seeded VALUES (2, '[2,2]')"); err != nil {
				t.Fatal(err)
			}
		}
		conn.Close(ctx)
	}
	conn, err := pgx.Connect(ctx, target.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var isTemplate, allowConn bool
	if err := conn.QueryRow(ctx, "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1", spec.name).Scan(&isTemplate, &allowConn); err != nil {
		t.Fatal(err)
	}
	if !isTemplate || allowConn {
		t.Errorf("template flags: datistemplate=%v datallowconn=%v; want true, false", isTemplate, allowConn)
	}
	c2, err := pgx.Connect(ctx, urls[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	var n int
	if err := c2.QueryRow(ctx, "SELECT count(*) FROM seeded").Scan(&n); err != nil || n != 1 {
		t.Fatalf("second clone sees %d rows (%v) after a write to the first; want 1", n, err)
	}
}

func TestCloneTemplateMigrationFails(t *testing.T) {
	target, err := postgresTarget()
	if err != nil {
		fail(t, err)
	}
	ctx := context.Background()
	boom := errors.New("boom")
	spec := fakeSpec(t, func(context.Context, string, *slog.Logger) error { return boom })
	if _, err := cloneTemplate(ctx, target, spec); !errors.Is(err, boom) {
		t.Fatalf("cloneTemplate with a failing migration = %v; want boom", err)
	}
	if databaseExists(t, spec.name) {
		t.Fatal("a failed migration left a template behind")
	}
	conn, err := pgx.Connect(ctx, target.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var builds int
	pattern := fmt.Sprintf("%sbuild\\_%%\\_%d\\_%%", dbPrefix, os.Getpid())
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE $1", pattern).Scan(&builds); err != nil || builds != 0 {
		t.Fatalf("%d build databases left (%v); want 0", builds, err)
	}
}

func TestDatabaseURL(t *testing.T) {
	u := DatabaseURL(t)
	if again := DatabaseURL(t); again != u {
		t.Fatalf("DatabaseURL changed within one process: %s then %s", dbName(t, u), dbName(t, again))
	}
	if !strings.HasPrefix(dbName(t, u), dbPrefix+"test_") {
		t.Fatalf("database %s is not a testenv clone", dbName(t, u))
	}
	pool := Pool(t)
	var one int
	if err := pool.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 on Pool = %d, %v", one, err)
	}
	var ext string
	if err := pool.QueryRow(context.Background(), "SELECT extname FROM pg_extension WHERE extname = 'vector'").Scan(&ext); err != nil {
		t.Fatalf("the migrated database has no vector extension: %v", err)
	}
}

func TestRedis(t *testing.T) {
	a, b := Redis(t), Redis(t)
	if a.Options().DB == b.Options().DB {
		t.Fatalf("two clients share Redis database %d", a.Options().DB)
	}
	if a.Options().DB == 0 || b.Options().DB == 0 {
		t.Fatal("a client got database 0, which holds the counter")
	}
	ctx := context.Background()
	if err := a.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k in the other database = %v; want redis.Nil", err)
	}
	if n, err := b.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("a new database holds %d keys (%v); want 0", n, err)
	}
	// RedisURL carries the database number.
	u := RedisURL(t)
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if opts.DB == 0 || opts.DB == a.Options().DB || opts.DB == b.Options().DB {
		t.Fatalf("RedisURL gave database %d; want a new one", opts.DB)
	}
}

// TestHelperProcess is not a test: TestProcessesGetDistinctResources runs
// the test binary again with TESTENV_HELPER=1 to act as another package.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") != "1" {
		t.Skip("helper for TestProcessesGetDistinctResources")
	}
	raw := RawDatabaseURL(t)
	fmt.Printf("raw=%s redis=%d db=%s\n", dbName(t, raw), Redis(t).Options().DB, dbName(t, DatabaseURL(t)))
}

func TestProcessesGetDistinctResources(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") == "1" {
		t.Skip("inside a helper")
	}
	mine := fmt.Sprintf("raw=%s redis=%d db=%s", dbName(t, RawDatabaseURL(t)), Redis(t).Options().DB, dbName(t, DatabaseURL(t)))

	// Two more processes at once contend for the service lock, adopt the
	// running servers and allocate: every raw database, Redis database and
	// migrated package database differs.
	const helpers = 2
	outs := make(chan string, helpers)
	errs := make(chan error, helpers)
	for range helpers {
		go func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), "TESTENV_HELPER=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("helper: %v: %s", err, out)
				return
			}
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "raw=") {
					outs <- sc.Text()
					return
				}
			}
			errs <- fmt.Errorf("helper printed no result: %s", out)
		}()
	}
	seen := map[string]bool{}
	record := func(line string) {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("helper line %q: want raw=, redis= and db=", line)
		}
		for _, v := range f {
			if seen[v] {
				t.Errorf("%s was given to two processes", v)
			}
			seen[v] = true
		}
	}
	record(mine)
	for range helpers {
		select {
		case line := <-outs:
			record(line)
		case err := <-errs:
			t.Fatal(err)
		}
	}
}

func TestServiceDirAndLock(t *testing.T) {
	if os.Getenv("TEST_DATABASE_URL") != "" && os.Getenv("TEST_REDIS_URL") != "" {
		t.Skip("external servers: no private service directory in use")
	}
	dir, err := ServiceDir()
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot %s has no go.mod", root)
	}
	if dir != filepath.Join(root, ".cache", "testsvc") && !strings.HasPrefix(filepath.Base(dir), "code4me-testsvc-") {
		t.Fatalf("ServiceDir = %s; want under %s or a temp fallback", dir, root)
	}

	// The lock excludes a second holder (another open of the file, as in
	// another process) until released.
	lockPath := filepath.Join(t.TempDir(), "lock")
	held, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := flock(held, time.Second); err != nil {
		t.Fatal(err)
	}
	other, err := os.OpenFile(lockPath, os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := flock(other, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "still held") {
		t.Fatalf("second flock while held = %v; want a timeout", err)
	}
	held.Close() // closing releases the lock
	if err := flock(other, time.Second); err != nil {
		t.Fatalf("flock after release: %v", err)
	}
}

func TestLeftover(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dead := 1 << 30 // above pid_max: no such process
	live := os.Getppid()
	for _, tc := range []struct {
		name    string
		private bool
		want    bool
	}{
		{fmt.Sprintf("c4m_test_%d_%d_1", now.Unix()-60, dead), true, true},
		{fmt.Sprintf("c4m_test_%d_%d_1", now.Unix()-60, dead), false, false},
		{fmt.Sprintf("c4m_raw_%d_%d_3", now.Unix()-60, live), true, false},
		{fmt.Sprintf("c4m_build_%d_%d_2", now.Add(-4*time.Hour).Unix(), live), false, true},
		{fmt.Sprintf("c4m_test_%d_%d_1", now.Unix()-60, os.Getpid()), true, false},
		{"c4m_tpl_0123456789abcdef", true, false},
		{"c4m_fake_tpl_1_2", true, false},
		{"code4me", true, false},
		{"c4m_test_x_1_1", true, false},
	} {
		if got := leftover(tc.name, tc.private, now); got != tc.want {
			t.Errorf("leftover(%q, private=%v) = %v; want %v", tc.name, tc.private, got, tc.want)
		}
	}
}

// The test servers of deleted checkouts are stopped: a Redis left running
// in a deleted checkout's .cache/testsvc, and those of a service directory
// in the temporary directory whose checkout is gone (the directory is
// removed too). A service directory whose checkout exists, or whose lock a
// run holds, is kept with its server.
func TestSweepAbandoned(t *testing.T) {
	if _, err := devsvc.FindRedisServer(); err != nil {
		t.Skip(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func(dir string) *devsvc.Redis {
		t.Helper()
		r, err := devsvc.StartRedis(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Stop(context.Background()) })
		return r
	}
	serviceDir := func(name, owner string) string {
		t.Helper()
		d := filepath.Join(tmp, tempServicePrefix+name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := devsvc.WriteOwner(d, owner); err != nil {
			t.Fatal(err)
		}
		return d
	}

	clone := filepath.Join(tmp, "clone")
	inClone := start(filepath.Join(clone, ".cache", "testsvc", "redis"))
	if err := os.RemoveAll(clone); err != nil {
		t.Fatal(err)
	}
	gone := serviceDir("gone", filepath.Join(tmp, "deleted-checkout"))
	ofGone := start(filepath.Join(gone, "redis"))
	live := serviceDir("live", tmp)
	ofLive := start(filepath.Join(live, "redis"))
	busy := serviceDir("busy", filepath.Join(tmp, "deleted-too"))
	ofBusy := start(filepath.Join(busy, "redis"))
	held, err := os.OpenFile(filepath.Join(busy, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := flock(held, time.Second); err != nil {
		t.Fatal(err)
	}

	sweepAbandoned(filepath.Join(tmp, tempServicePrefix+"own"))

	if pidAlive(inClone.PID()) {
		t.Errorf("the Redis of a deleted checkout (pid %d) still runs", inClone.PID())
	}
	if pidAlive(ofGone.PID()) {
		t.Errorf("the Redis of a service directory whose checkout is gone (pid %d) still runs", ofGone.PID())
	}
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there (%v)", gone, err)
	}
	for _, k := range []struct {
		dir string
		r   *devsvc.Redis
	}{{live, ofLive}, {busy, ofBusy}} {
		if !pidAlive(k.r.PID()) {
			t.Errorf("the Redis of %s was stopped", k.dir)
		}
		if _, err := os.Stat(k.dir); err != nil {
			t.Errorf("%s was removed: %v", k.dir, err)
		}
	}
}
