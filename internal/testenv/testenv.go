// Package testenv gives tests real PostgreSQL (with pgvector) and Redis
// servers, each test package its own database and each caller its own Redis
// database, so that the packages of one `go test ./...` run in parallel
// without seeing each other's data.
//
// Where the servers come from:
//
//   - TEST_DATABASE_URL, when set, names a database on a server where its
//     user may CREATE DATABASE; test databases are created on that server.
//   - TEST_REDIS_URL, when set, names a Redis server (its database number, if
//     any, is ignored; database 0 holds the allocation counter).
//   - Otherwise private servers are started with package devsvc under
//     <repo root>/.cache/testsvc/{pg,redis} (the repo root is the nearest
//     parent directory with go.mod). When the tests run as root and the
//     postgres system user cannot reach that directory (a clone under /root),
//     $TMPDIR/code4me-testsvc-<hash of the repo path>/ is used instead. The
//     package processes of one run coordinate with an flock on
//     .cache/testsvc/lock: the first starts the servers, the others adopt
//     them. The servers stay running after the tests and are adopted by the
//     next run; stop them with `kill -INT $(head -1 .cache/testsvc/pg/data/postmaster.pid)`
//     and `kill $(cat .cache/testsvc/redis/redis.pid)`, or remove .cache/testsvc.
//     Each test process first stops the servers of deleted checkouts
//     (sweepAbandoned): those running from a deleted .cache/testsvc, and
//     those of a $TMPDIR service directory whose owner file names a
//     checkout that is gone, which it then removes.
//     postgres.url and redis.url there (mode 0600) hold their URLs for psql
//     and redis-cli. The private PostgreSQL runs with fsync,
//     synchronous_commit and full_page_writes off: its data is disposable.
//
// When the servers cannot be started or reached, a test that asks for them
// is skipped with the reason, except under CI=true, where it fails.
//
// Databases: DatabaseURL creates, once per test process, a database cloned
// (CREATE DATABASE ... TEMPLATE) from a template migrated with db.Migrate.
// The template's name carries a hash of the migrations, River's version and
// package db's source, so it is rebuilt only when they change. Test databases
// left by earlier runs are dropped once their process has ended (private
// server) or after three hours (any server). RawDatabaseURL creates an empty
// database per call, dropped when the test ends.
//
// Redis: every RedisURL or Redis call takes a database number of its own
// (INCR on a counter in database 0, wrapping over databases 1..N-1) and
// flushes it first. Pub/sub channels are server-wide, not per database:
// tests that publish should put something unique in channel names.
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/devsvc"
	"github.com/code4me/code4me/migrations"
)

const (
	// startTimeout bounds starting or adopting the private servers.
	startTimeout = 2 * time.Minute
	// staleAfter is the age after which any test database is dropped.
	staleAfter = 3 * time.Hour
	// redisCounterKey in Redis database 0 hands out database numbers.
	redisCounterKey = "code4me:testenv:next-db"
	// dbPrefix starts the name of every database testenv creates.
	dbPrefix = "c4m_"
)

// quiet is the logger for devsvc and db.Migrate: their errors come back as
// values, and test output stays clean.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fail reports that a service is unavailable: a skip normally, a failure
// under CI=true.
func fail(t testing.TB, err error) {
	t.Helper()
	msg := strings.Join(strings.Fields(err.Error()), " ") // one line
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s", msg)
	}
	t.Skipf("testenv: %s (under CI=true this fails)", msg)
}

// once caches the result of a setup step for the whole test process.
type once[T any] struct {
	mu   sync.Mutex
	done bool
	v    T
	err  error
}

func (o *once[T]) get(f func() (T, error)) (T, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.done {
		o.v, o.err = f()
		o.done = true
	}
	return o.v, o.err
}

// ---- where the servers are ----

var (
	pgServer    once[*pgTarget]
	redisServer once[string]
)

// pgTarget is a server on which testenv may create databases.
type pgTarget struct {
	admin   string // URL of an existing database to run CREATE DATABASE from
	private bool   // started by devsvc on this machine
}

// withDB returns the admin URL with its database replaced by name.
func (p *pgTarget) withDB(name string) string {
	u, err := url.Parse(p.admin)
	if err != nil {
		return p.admin
	}
	u.Path = "/" + name
	return u.String()
}

func postgresTarget() (*pgTarget, error) {
	return pgServer.get(func() (*pgTarget, error) {
		if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				return nil, fmt.Errorf("TEST_DATABASE_URL cannot be reached: %v", err)
			}
			conn.Close(ctx)
			return &pgTarget{admin: u}, nil
		}
		var admin string
		err := withServiceLock(func(base string) error {
			ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			defer cancel()
			pg, err := devsvc.StartPostgres(ctx, filepath.Join(base, "pg"), quiet)
			if err != nil {
				return err
			}
			admin = pg.URL("postgres")
			if err := tuneForTests(ctx, admin); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(base, "postgres.url"), []byte(pg.URL(devsvc.PostgresDatabase)+"\n"), 0o600)
		})
		if err != nil {
			return nil, fmt.Errorf("private PostgreSQL: %w (or set TEST_DATABASE_URL)", err)
		}
		return &pgTarget{admin: admin, private: true}, nil
	})
}

// testSettings trade crash safety for speed on the private test server,
// whose data is disposable: CREATE and DROP DATABASE checkpoint, and with
// fsync on those dominate a test run on a busy disk.
var testSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
}

// tuneForTests applies testSettings to the private server once (they
// persist in postgresql.auto.conf) and reloads its configuration.
func tuneForTests(ctx context.Context, adminURL string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	changed := false
	for name, want := range testSettings {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if got == want {
			continue
		}
		if _, err := conn.Exec(ctx, "ALTER SYSTEM SET "+pgx.Identifier{name}.Sanitize()+" = "+want); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		changed = true
	}
	if changed {
		if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			return fmt.Errorf("reload configuration: %w", err)
		}
	}
	return nil
}

func redisTarget() (string, error) {
	return redisServer.get(func() (string, error) {
		if u := os.Getenv("TEST_REDIS_URL"); u != "" {
			parsed, err := url.Parse(u)
			if err != nil {
				return "", fmt.Errorf("TEST_REDIS_URL: %v", err)
			}
			parsed.Path = ""
			// A plain dial first: go-redis would retry and log at length.
			host := parsed.Host
			if parsed.Port() == "" {
				host = net.JoinHostPort(parsed.Hostname(), "6379")
			}
			conn, err := net.DialTimeout("tcp", host, 5*time.Second)
			if err != nil {
				return "", fmt.Errorf("TEST_REDIS_URL cannot be reached: %v", err)
			}
			conn.Close()
			return parsed.String(), nil
		}
		var base string
		err := withServiceLock(func(dir string) error {
			ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			defer cancel()
			r, err := devsvc.StartRedis(ctx, filepath.Join(dir, "redis"), quiet)
			if err != nil {
				return err
			}
			base = r.URL()
			return os.WriteFile(filepath.Join(dir, "redis.url"), []byte(base+"\n"), 0o600)
		})
		if err != nil {
			return "", fmt.Errorf("private Redis: %w (or set TEST_REDIS_URL)", err)
		}
		return base, nil
	})
}

// RepoRoot returns the nearest directory at or above the working directory
// that holds go.mod (for a test, its package directory's module root).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// ServiceDir returns the directory under which the private test servers
// live (see the package documentation).
func ServiceDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, ".cache", "testsvc")
	if devsvc.PostgresCanUse(filepath.Join(dir, "pg")) != nil {
		sum := sha256.Sum256([]byte(root))
		dir = filepath.Join(os.TempDir(), tempServicePrefix+hex.EncodeToString(sum[:5]))
	}
	return dir, nil
}

// withServiceLock runs f with an exclusive flock on ServiceDir()/lock, so
// that one process at a time starts or adopts the private servers.
func withServiceLock(f func(dir string) error) error {
	dir, err := ServiceDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	sweepOnce.Do(func() { sweepAbandoned(dir) })
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	defer lock.Close()
	if err := flock(lock, startTimeout); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return f(dir)
}

// tempServicePrefix names the service directories kept in the temporary
// directory for checkouts the postgres user cannot reach (ServiceDir).
const tempServicePrefix = "code4me-testsvc-"

var sweepOnce sync.Once

// sweepAbandoned stops the test servers of checkouts that were deleted:
// servers left running in a deleted checkout's .cache/testsvc, and the
// service directories in the temporary directory whose checkout is gone
// (servers stopped, directory removed). Without it every deleted clone left
// a PostgreSQL and a Redis server running. own is this checkout's service
// directory; a temporary one gets its owner file here.
func sweepAbandoned(own string) {
	root, err := RepoRoot()
	if err != nil {
		return
	}
	tmp := os.TempDir()
	if strings.HasPrefix(own, filepath.Join(tmp, tempServicePrefix)) {
		_ = devsvc.WriteOwner(own, root)
	}
	sep := string(filepath.Separator)
	devsvc.StopServers(func(dir string, deleted bool) bool {
		return deleted && strings.Contains(dir+sep, sep+filepath.Join(".cache", "testsvc")+sep)
	}, quiet)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		d := filepath.Join(tmp, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempServicePrefix) || d == own {
			continue
		}
		if _, gone := devsvc.OwnerGone(d); gone { // unknown owners are left alone
			removeServiceDir(d)
		}
	}
}

// removeServiceDir stops the servers of the service directory d, unless a
// test run holds its lock, and removes it.
func removeServiceDir(d string) {
	lock, err := os.OpenFile(filepath.Join(d, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return
	}
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return // in use
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	sep := string(filepath.Separator)
	devsvc.StopServers(func(dir string, _ bool) bool { return strings.HasPrefix(dir+sep, d+sep) }, quiet)
	_ = os.RemoveAll(d)
}

// flock takes an exclusive lock on f, giving up after timeout.
func flock(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("flock %s: still held by another process after %v", f.Name(), timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ---- databases ----

var (
	processDB once[string]
	cleaned   once[struct{}]
	dbSeq     atomic.Int64
)

// DatabaseURL returns the URL of a migrated database that belongs to this
// test process (so to this test package): created at the first call, by
// cloning the migrated template, and the same for every later call. Tests
// in one package share it; use distinct rows or RawDatabaseURL to keep
// apart. A migration error fails the test.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	target, err := postgresTarget()
	if err != nil {
		fail(t, err)
	}
	u, err := processDB.get(func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return cloneTemplate(ctx, target, templateSpec{name: TemplateName(), migrate: db.Migrate})
	})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return u
}

// Pool returns a pool on DatabaseURL, closed when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := DatabaseURL(t)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatalf("testenv: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// RawDatabaseURL returns the URL of a new, empty database (no migrations,
// no extensions) made for this call and dropped when the test ends: for
// tests of migrations themselves and of anything that needs a blank slate.
func RawDatabaseURL(t testing.TB) string {
	t.Helper()
	target, err := postgresTarget()
	if err != nil {
		fail(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := newDatabaseName("raw")
	if err := execAdmin(ctx, target, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := execAdmin(ctx, target, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return target.withDB(name)
}

// templateSpec names a template database and how to build it.
type templateSpec struct {
	name    string
	migrate func(ctx context.Context, databaseURL string, log *slog.Logger) error
}

// TemplateName returns the name of the migrated template database for the
// migrations and migration code this test binary was built with.
func TemplateName() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	// River's own migrations come with its version.
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if strings.HasPrefix(dep.Path, "github.com/riverqueue/river") {
				fmt.Fprintf(h, "%s@%s\x00", dep.Path, dep.Version)
			}
		}
	}
	// So does Go code in package db that seeds or alters data.
	if root, err := RepoRoot(); err == nil {
		files, _ := filepath.Glob(filepath.Join(root, "internal", "db", "*.go"))
		sort.Strings(files)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			if b, err := os.ReadFile(f); err == nil {
				fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(b))
				h.Write(b)
			}
		}
	}
	return dbPrefix + "tpl_" + hex.EncodeToString(h.Sum(nil))[:16]
}

// newDatabaseName returns c4m_<kind>_<unix seconds>_<pid>_<n>: the time and
// pid let later runs recognise and drop leftovers.
func newDatabaseName(kind string) string {
	return fmt.Sprintf("%s%s_%d_%d_%d", dbPrefix, kind, time.Now().Unix(), os.Getpid(), dbSeq.Add(1))
}

// templateLockKey serializes template builds across processes on a server.
const templateLockKey int64 = 0x74657374656e76 // "testenv"

// cloneTemplate makes sure the template exists (building it under an
// advisory lock when it does not), then clones it into a new database and
// returns that database's URL.
func cloneTemplate(ctx context.Context, target *pgTarget, spec templateSpec) (string, error) {
	conn, err := pgx.Connect(ctx, target.admin)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())

	dropLeftovers(ctx, conn, target)

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		return "", fmt.Errorf("lock template: %w", err)
	}
	err = ensureTemplate(ctx, conn, target, spec)
	if _, uerr := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLockKey); uerr != nil && err == nil {
		err = fmt.Errorf("unlock template: %w", uerr)
	}
	if err != nil {
		return "", err
	}
	name := newDatabaseName("test")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{spec.name}.Sanitize()); err != nil {
		return "", fmt.Errorf("clone %s into %s: %w", spec.name, name, err)
	}
	return target.withDB(name), nil
}

func ensureTemplate(ctx context.Context, conn *pgx.Conn, target *pgTarget, spec templateSpec) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", spec.name).Scan(&exists); err != nil {
		return fmt.Errorf("look for template %s: %w", spec.name, err)
	}
	if exists {
		return nil
	}
	// Build under a temporary name and rename when complete, so a failed or
	// interrupted migration never leaves a template behind.
	build := newDatabaseName("build")
	buildID := pgx.Identifier{build}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+buildID+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("create %s: %w", build, err)
	}
	if err := spec.migrate(ctx, target.withDB(build), quiet); err != nil {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+buildID+" WITH (FORCE)")
		return fmt.Errorf("migrate the template database: %w", err)
	}
	// Migrate has closed its connections; end any that linger so the
	// rename and later clones are not refused.
	_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", build)
	for _, q := range []string{
		"ALTER DATABASE " + buildID + " RENAME TO " + pgx.Identifier{spec.name}.Sanitize(),
		"ALTER DATABASE " + pgx.Identifier{spec.name}.Sanitize() + " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+buildID+" WITH (FORCE)")
			return fmt.Errorf("publish template %s: %w", spec.name, err)
		}
	}
	if target.private {
		dropOtherTemplates(ctx, conn, spec.name)
	}
	return nil
}

// dropOtherTemplates removes templates of other migration versions from the
// private server (never from a shared TEST_DATABASE_URL server, where
// another checkout may use them).
func dropOtherTemplates(ctx context.Context, conn *pgx.Conn, keep string) {
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname <> $2", dbPrefix+"tpl\\_%", keep)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		id := pgx.Identifier{n}.Sanitize()
		_, _ = conn.Exec(ctx, "ALTER DATABASE "+id+" WITH IS_TEMPLATE false")
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)")
	}
}

// dropLeftovers drops, once per process, databases made by earlier test
// processes: on the private server those whose process has ended, anywhere
// those older than staleAfter. Failures are ignored: it is housekeeping.
func dropLeftovers(ctx context.Context, conn *pgx.Conn, target *pgTarget) {
	_, _ = cleaned.get(func() (struct{}, error) {
		rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1 AND NOT datistemplate", dbPrefix+"%")
		if err != nil {
			return struct{}{}, err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return struct{}{}, err
		}
		for _, n := range names {
			if leftover(n, target.private, time.Now()) {
				_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
			}
		}
		return struct{}{}, nil
	})
}

// leftover reports whether a database named by newDatabaseName belongs to
// a finished test process.
func leftover(name string, private bool, now time.Time) bool {
	parts := strings.Split(strings.TrimPrefix(name, dbPrefix), "_")
	if len(parts) != 4 || !strings.HasPrefix(name, dbPrefix) {
		return false
	}
	switch parts[0] {
	case "test", "raw", "build":
	default:
		return false
	}
	created, err1 := strconv.ParseInt(parts[1], 10, 64)
	pid, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return false
	}
	if now.Sub(time.Unix(created, 0)) > staleAfter {
		return true
	}
	if !private || pid == os.Getpid() {
		return false
	}
	return !pidAlive(pid)
}

// pidAlive reports whether a process with this pid exists.
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// execAdmin runs one statement on the target's admin database.
func execAdmin(ctx context.Context, target *pgTarget, sql string) error {
	conn, err := pgx.Connect(ctx, target.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// ---- Redis ----

var redisDatabases once[int]

// RedisURL returns the URL (with its /N database number) of a Redis
// database taken for this call and flushed: no other caller in this or any
// other concurrently running test process gets the same number.
func RedisURL(t testing.TB) string {
	t.Helper()
	base, err := redisTarget()
	if err != nil {
		fail(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := allocateRedisDB(ctx, base)
	if err != nil {
		fail(t, fmt.Errorf("redis: %w", err))
	}
	return base + "/" + strconv.Itoa(n)
}

// Redis returns a client on a Redis database of its own (see RedisURL),
// closed when the test ends.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL(t))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func allocateRedisDB(ctx context.Context, base string) (int, error) {
	opts, err := redis.ParseURL(base + "/0")
	if err != nil {
		return 0, err
	}
	c0 := redis.NewClient(opts)
	defer c0.Close()
	dbs, err := redisDatabases.get(func() (int, error) {
		v, err := c0.ConfigGet(ctx, "databases").Result()
		if err != nil {
			if ping := c0.Ping(ctx).Err(); ping != nil {
				return 0, ping
			}
			return 16, nil // CONFIG disabled: the default
		}
		return strconv.Atoi(v["databases"])
	})
	if err != nil {
		return 0, err
	}
	if dbs < 2 {
		return 0, fmt.Errorf("the server has %d database(s); testenv needs at least 2", dbs)
	}
	next, err := c0.Incr(ctx, redisCounterKey).Result()
	if err != nil {
		return 0, err
	}
	n := 1 + int((next-1)%int64(dbs-1))
	opts.DB = n
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return 0, fmt.Errorf("flush database %d: %w", n, err)
	}
	return n, nil
}
