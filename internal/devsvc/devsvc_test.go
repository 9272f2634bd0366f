package devsvc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Servers are processes, not goroutines: nothing may be left running.
	goleak.VerifyTestMain(m)
}

// requireBinaries skips (or, under CI=true, fails) when the system lacks
// the server binaries.
func requireBinaries(t *testing.T) {
	t.Helper()
	_, errPG := FindPostgresBin()
	_, errRedis := FindRedisServer()
	for _, err := range []error{errPG, errRedis} {
		if err == nil {
			continue
		}
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// serverTempDir is a temporary directory the postgres system user can reach
// when the tests run as root (t.TempDir's parent is mode 0700).
func serverTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// deadPid returns the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestFindPostgresBin(t *testing.T) {
	requireBinaries(t)
	bin, err := FindPostgresBin()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "initdb"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			t.Errorf("%s has no %s: %v", bin, name, err)
		}
	}
}

func TestPostgresLifecycle(t *testing.T) {
	requireBinaries(t)
	ctx := testContext(t)
	dir := filepath.Join(serverTempDir(t), "pg")

	began := time.Now()
	pg, err := StartPostgres(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	t.Logf("cold start (initdb + start): %v", time.Since(began))
	if pg.Adopted() {
		t.Fatal("a fresh directory reports an adopted server")
	}
	// The postgres user can reach dir (serverTempDir), so the cluster stays
	// in it rather than under systemDataRoot, where it would outlive the test.
	if fi, err := os.Lstat(filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	} else if !fi.IsDir() {
		t.Fatalf("%s/data is not the cluster's directory (mode %v)", dir, fi.Mode())
	}
	if strings.Contains(pg.URL("x"), "@127.0.0.1:"+strconv.Itoa(pg.Port())+"/x") == false {
		t.Fatalf("URL does not name 127.0.0.1:%d/x", pg.Port())
	}
	if fi, err := os.Stat(filepath.Join(dir, "password")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v, mode %v", err, fi.Mode().Perm())
	}

	// The code4me database exists and pgvector works in it.
	conn := connect(t, ctx, pg.URL(PostgresDatabase))
	for _, q := range []string{
		`CREATE EXTENSION vector`,
		`CREATE TABLE kept (id int PRIMARY KEY, v vector(3))`,
		`INSERT INTO kept VALUES (1, '[1,2,3]')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var dist float64
	if err := conn.QueryRow(ctx, `SELECT v <-> '[1,2,4]' FROM kept WHERE id = 1`).Scan(&dist); err != nil || dist != 1 {
		t.Fatalf("vector distance = %v, %v; want 1", dist, err)
	}
	conn.Close(ctx)

	// A second start from the same directory adopts the running server.
	again, err := StartPostgres(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Adopted() || again.PID() != pg.PID() || again.Port() != pg.Port() {
		t.Fatalf("second start: adopted=%v pid=%d port=%d; want adoption of pid %d port %d",
			again.Adopted(), again.PID(), again.Port(), pg.PID(), pg.Port())
	}

	pid := pg.PID()
	began = time.Now()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop: %v", time.Since(began))
	if processAlive(pid) {
		t.Fatalf("server pid %d still alive after Stop", pid)
	}
	if err := pg.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after a clean stop: %v", err)
	}

	// A pid file left by a crash names a dead process, or a live process
	// that is not this server (the pid was reused): both are stale.
	for _, tc := range []struct {
		name string
		pid  int
	}{
		{"dead process", deadPid(t)},
		{"reused pid", os.Getpid()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(dir, "data", "postmaster.pid")
			stale := strconv.Itoa(tc.pid) + "\n" + filepath.Join(dir, "data") + "\n1700000000\n5999\n\n127.0.0.1\n  0 0\nready\n"
			if err := os.WriteFile(pidFile, []byte(stale), 0o600); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			pg, err := StartPostgres(ctx, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("warm start: %v", time.Since(began))
			defer pg.Stop(context.Background())
			if pg.Adopted() {
				t.Fatal("adopted a server from a stale pid file")
			}
			// The data written before the restart is still there.
			conn := connect(t, ctx, pg.URL(PostgresDatabase))
			defer conn.Close(ctx)
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM kept`).Scan(&n); err != nil || n != 1 {
				t.Fatalf("rows after restart = %d, %v; want 1", n, err)
			}
			if err := pg.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStartPostgresUnusableDir(t *testing.T) {
	requireBinaries(t)
	ctx := testContext(t)
	base := serverTempDir(t)
	blocker := filepath.Join(base, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(blocker, "pg")}
	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "readonly")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, ro)
	}
	for _, dir := range dirs {
		_, err := StartPostgres(ctx, dir, nil)
		if err == nil {
			t.Fatalf("StartPostgres(%s) succeeded", dir)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "postgres: ") || !strings.Contains(msg, dir) || strings.Contains(msg, "\n") {
			t.Errorf("error is not one line naming the directory: %q", msg)
		}
		if !strings.Contains(msg, "DATA_DIR") {
			t.Errorf("error does not say how to fix it: %q", msg)
		}
	}
}

func TestPostgresCanUse(t *testing.T) {
	base := serverTempDir(t)
	closed := filepath.Join(base, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	err := PostgresCanUse(filepath.Join(closed, "pg"))
	if os.Geteuid() != 0 {
		if err != nil {
			t.Fatalf("not root: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "chmod o+x "+closed) {
		t.Fatalf("PostgresCanUse under a 0700 root dir = %v; want a chmod hint for %s", err, closed)
	}
	if err := PostgresCanUse(filepath.Join(base, "pg")); err != nil {
		t.Fatalf("PostgresCanUse(open dir) = %v", err)
	}
}

func TestRedisLifecycle(t *testing.T) {
	requireBinaries(t)
	ctx := testContext(t)
	dir := filepath.Join(serverTempDir(t), "redis")

	began := time.Now()
	r, err := StartRedis(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	t.Logf("cold start: %v", time.Since(began))

	c := redisClient(t, r.URL()+"/5")
	for key, want := range map[string]string{
		"databases":              strconv.Itoa(RedisDatabases),
		"notify-keyspace-events": "xEg", // Redis reports the flags in its own order
		"appendonly":             "yes",
		"bind":                   "127.0.0.1",
	} {
		got, err := c.ConfigGet(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !sameLetters(got[key], want) {
			t.Errorf("CONFIG GET %s = %q; want %q", key, got[key], want)
		}
	}
	if err := c.Set(ctx, "kept", "value", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	again, err := StartRedis(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Adopted() || again.PID() != r.PID() || again.Port() != r.Port() {
		t.Fatalf("second start did not adopt the running server (adopted=%v)", again.Adopted())
	}

	pid := r.PID()
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Fatalf("redis pid %d alive after Stop", pid)
	}

	for _, tc := range []struct {
		name string
		pid  int
	}{
		{"dead process", deadPid(t)},
		{"reused pid", os.Getpid()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "redis.pid"), []byte(strconv.Itoa(tc.pid)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := StartRedis(ctx, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop(context.Background())
			if r.Adopted() {
				t.Fatal("adopted a server from a stale pid file")
			}
			c := redisClient(t, r.URL()+"/5")
			defer c.Close()
			if got, err := c.Get(ctx, "kept").Result(); err != nil || got != "value" {
				t.Fatalf("GET kept after restart = %q, %v; want \"value\"", got, err)
			}
			if err := r.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRedisOfDeletedDirectoryIsStopped: a directory deleted while its
// server runs and made again at the same path (a CI clone) gets a new
// server, and the old one is stopped instead of running on for good.
// A server of another directory is left alone.
func TestRedisOfDeletedDirectoryIsStopped(t *testing.T) {
	requireBinaries(t)
	ctx := testContext(t)
	base := serverTempDir(t)
	dir, other := filepath.Join(base, "redis"), filepath.Join(base, "other")
	old, err := StartRedis(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Stop(context.Background()) })
	bystander, err := StartRedis(ctx, other, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bystander.Stop(context.Background()) })
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r, err := StartRedis(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	if r.Adopted() || r.PID() == old.PID() {
		t.Fatalf("the new directory's server is the old one (pid %d)", old.PID())
	}
	if processAlive(old.PID()) {
		t.Fatalf("the deleted directory's server (pid %d) still runs", old.PID())
	}
	if !processAlive(bystander.PID()) {
		t.Fatal("the server of another directory was stopped")
	}
}

func TestStartRedisUnusableDir(t *testing.T) {
	requireBinaries(t)
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := StartRedis(testContext(t), filepath.Join(blocker, "redis"), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "redis: cannot create ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("StartRedis under a file = %v; want one line starting \"redis: cannot create\"", err)
	}
}

func sameLetters(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		if strings.Count(a, string(c)) != strings.Count(b, string(c)) {
			return false
		}
	}
	return true
}

func TestRedisQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/tmp/x", `"/tmp/x"`},
		{`a "b"`, `"a \"b\""`},
		{`c:\d`, `"c:\\d"`},
		{"tab\there", `"tab\x09here"`},
	} {
		if got := redisQuote(tc.in); got != tc.want {
			t.Errorf("redisQuote(%q) = %s; want %s", tc.in, got, tc.want)
		}
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\n\nb\n", 3, "a | b"},
		{"a\nb\nc\nd\n", 2, "c | d"},
		{"  x  \n", 1, "x"},
	} {
		if got := lastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("lastLines(%q, %d) = %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return redis.NewClient(opts)
}

// unreachableDir returns a directory that the postgres user cannot reach (a
// checkout under /root), with systemDataRoot moved to a temporary directory
// for the test. It skips unless this process is root.
func unreachableDir(t *testing.T) string {
	t.Helper()
	requireBinaries(t)
	if os.Geteuid() != 0 {
		t.Skip("only root runs the server as another user")
	}
	base := serverTempDir(t)
	old := systemDataRoot
	systemDataRoot = filepath.Join(base, "system")
	t.Cleanup(func() { systemDataRoot = old })
	closed := filepath.Join(base, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(closed, "pg")
}

func TestPostgresUnreachableDirUsesSystemRoot(t *testing.T) {
	dir := unreachableDir(t)
	ctx := testContext(t)

	for i := range 2 { // the second start reuses the linked cluster
		pg, err := StartPostgres(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		conn := connect(t, ctx, pg.URL(PostgresDatabase))
		if i == 0 {
			_, err = conn.Exec(ctx, "CREATE TABLE kept (id int)")
		} else {
			_, err = conn.Exec(ctx, "SELECT * FROM kept")
		}
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := pg.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Lstat(filepath.Join(dir, "data"))
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s/data is not a symbolic link: %v", dir, err)
	}
	target, _ := os.Readlink(filepath.Join(dir, "data"))
	if !strings.HasPrefix(target, systemDataRoot+"/postgres-") {
		t.Fatalf("cluster at %s; want under %s", target, systemDataRoot)
	}
}

// A checkout deleted and cloned again at the same path (CI) finds the cluster
// its predecessor left under the system root, without the password that
// opened it: that cluster is retired, its server stopped, and a new one made.
func TestPostgresOrphanedSystemClusterIsReplaced(t *testing.T) {
	dir := unreachableDir(t)
	ctx := testContext(t)

	first, err := StartPostgres(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, ctx, first.URL(PostgresDatabase))
	if _, err := conn.Exec(ctx, "CREATE TABLE old_clone (id int)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	oldPID := first.PID()
	// The checkout goes away with the server still running, and comes back.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	second, err := StartPostgres(ctx, dir, nil)
	if err != nil {
		t.Fatalf("a fresh directory at the same path: %v", err)
	}
	t.Cleanup(func() { _ = second.Stop(context.Background()) })
	if processAlive(oldPID) {
		t.Errorf("the orphaned cluster's server (pid %d) still runs", oldPID)
	}
	conn = connect(t, ctx, second.URL(PostgresDatabase))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'old_clone'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("the new cluster holds the orphan's table")
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE new_clone (id int)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	// Losing only the link keeps the cluster: the password still opens it.
	if err := second.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	third, err := StartPostgres(ctx, dir, nil)
	if err != nil {
		t.Fatalf("after losing only the link: %v", err)
	}
	t.Cleanup(func() { _ = third.Stop(context.Background()) })
	conn = connect(t, ctx, third.URL(PostgresDatabase))
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT * FROM new_clone"); err != nil {
		t.Fatalf("the relinked cluster lost its data: %v", err)
	}
}

// A temporary data directory deleted while its cluster lived under the
// system root (a clone made with mktemp -d, a benchmark's directory) leaves
// no path that would be reused: the next start anywhere removes that
// cluster and stops its server. Clusters whose data directory still exists,
// or whose owner is unknown, are kept.
func TestPostgresClusterOfDeletedTempDirIsRemoved(t *testing.T) {
	dir := unreachableDir(t)
	ctx := testContext(t)
	if !strings.HasPrefix(dir, os.TempDir()+"/") {
		t.Skipf("%s is not under the temporary directory %s", dir, os.TempDir())
	}
	first, err := StartPostgres(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Dir(target)
	kept := filepath.Join(filepath.Dir(dir), "kept")
	keptPG, err := StartPostgres(ctx, kept, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keptPG.Stop(context.Background()) })
	legacy := filepath.Join(systemDataRoot, "postgres-000000000000")
	if err := os.MkdirAll(filepath.Join(legacy, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	oldPID := first.PID()
	// The directory goes away with its server still running.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	other, err := StartPostgres(ctx, filepath.Join(filepath.Dir(dir), "other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Stop(context.Background()) })
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cluster of the deleted directory is still at %s (%v)", home, err)
	}
	if processAlive(oldPID) {
		t.Errorf("the deleted directory's server (pid %d) still runs", oldPID)
	}
	if _, err := os.Stat(legacy); err != nil {
		t.Errorf("a cluster without an owner file was removed: %v", err)
	}
	conn := connect(t, ctx, keptPG.URL(PostgresDatabase))
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("the cluster of a directory that still exists: %v", err)
	}
}
