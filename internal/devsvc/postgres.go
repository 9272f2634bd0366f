package devsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresUser is the superuser that StartPostgres creates.
const PostgresUser = "code4me"

// PostgresDatabase is the database StartPostgres creates on first start.
const PostgresDatabase = "code4me"

// defaultStartTimeout bounds a start when the context has no deadline.
const defaultStartTimeout = 60 * time.Second

// errAddrInUse marks a server that exited because its port was taken.
var errAddrInUse = errors.New("address already in use")

// Postgres is a private PostgreSQL server started (or adopted) by
// StartPostgres. Its methods are safe for concurrent use. Stop sends SIGINT,
// a fast shutdown (open sessions end, data is checkpointed), and SIGQUIT
// after its deadline.
type Postgres struct {
	proc
	dataDir string
}

// FindPostgresBin returns the directory holding the newest installed
// PostgreSQL server's binaries (postgres, initdb, pg_config), looking in
// /usr/lib/postgresql/*/bin (Debian's layout) and then in PATH.
func FindPostgresBin() (string, error) {
	if dirs := debianPostgresBins(); len(dirs) > 0 {
		return dirs[len(dirs)-1].dir, nil
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH); run `sudo bash scripts/install-deps.sh` or `sudo apt-get install postgresql postgresql-server-dev-15`")
}

type pgBin struct {
	major int
	dir   string
}

// debianPostgresBins lists /usr/lib/postgresql/<major>/bin directories with a
// server binary, oldest major first.
func debianPostgresBins() []pgBin {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	var out []pgBin
	for _, m := range matches {
		bin := filepath.Dir(m)
		major, err := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
			continue
		}
		out = append(out, pgBin{major: major, dir: bin})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].major < out[j].major })
	return out
}

// binForData picks the binaries for an existing data directory of the given
// major version, or the newest ones for a new cluster.
func binForData(pgVersion string) (string, error) {
	if pgVersion == "" {
		return FindPostgresBin()
	}
	major, err := strconv.Atoi(strings.TrimSpace(pgVersion))
	if err != nil {
		return "", fmt.Errorf("unreadable PG_VERSION %q", pgVersion)
	}
	for _, b := range debianPostgresBins() {
		if b.major == major {
			return b.dir, nil
		}
	}
	bin, err := FindPostgresBin()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s/postgres --version: %w", bin, err)
	}
	// "postgres (PostgreSQL) 15.6 (Debian 15.6-0+deb12u1)"
	fields := strings.Fields(string(out))
	if len(fields) >= 3 && strings.SplitN(fields[2], ".", 2)[0] == strconv.Itoa(major) {
		return bin, nil
	}
	return "", fmt.Errorf("the data directory was made by PostgreSQL %d but that server is not installed (found %s); install postgresql-%d or remove the data directory to start over", major, strings.TrimSpace(string(out)), major)
}

// StartPostgres starts a private PostgreSQL server under dir, or adopts the
// one already running from dir. On first use it runs initdb and creates the
// database PostgresDatabase; later starts reuse the data. It returns once the
// server accepts connections and has the pgvector extension available, or
// when ctx ends (default limit one minute). log may be nil.
func StartPostgres(ctx context.Context, dir string, log *slog.Logger) (*Postgres, error) {
	p, err := startPostgres(ctx, dir, log)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return p, nil
}

func startPostgres(ctx context.Context, dir string, log *slog.Logger) (*Postgres, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	acct, err := serverAccount("postgres")
	if err != nil {
		return nil, err
	}
	if err := ensureWritableDir(abs); err != nil {
		return nil, err
	}
	dataDir, err := resolveDataDir(acct, abs, log)
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		proc: proc{name: "postgres", dir: abs, logPath: filepath.Join(abs, "postgres.log"), log: log,
			stopSig: syscall.SIGINT, forceSig: syscall.SIGQUIT},
		dataDir: dataDir,
	}

	pgVersion, err := os.ReadFile(filepath.Join(p.dataDir, "PG_VERSION"))
	initialized := err == nil
	if !initialized {
		if entries, _ := os.ReadDir(p.dataDir); len(entries) > 0 {
			return nil, fmt.Errorf("%s is not empty but holds no cluster (an interrupted initdb?); remove it to start over", p.dataDir)
		}
	}
	if err := p.loadPassword(initialized); err != nil {
		return nil, err
	}

	// A server from this directory may still be running.
	pidPath := filepath.Join(p.dataDir, "postmaster.pid")
	if pid, lines := readPidFile(pidPath); pid > 0 {
		if isServerProcess(pid, "postgres", p.dataDir) && len(lines) > 3 {
			port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
			if err == nil {
				p.running(pid, port, true)
				if err := p.waitReady(ctx); err != nil {
					return nil, fmt.Errorf("a server (pid %d) is running from %s but does not answer: %w; stop it with `kill -INT %d`", pid, p.dataDir, err, pid)
				}
				log.Info("postgres adopted running server", slog.String("dir", p.dir), slog.Int("port", port), slog.Int("pid", pid))
				return p, p.ensureDatabase(ctx)
			}
		}
		if err := os.Remove(pidPath); err != nil {
			return nil, fmt.Errorf("remove stale %s: %w", pidPath, unwrapPathErr(err))
		}
		log.Warn("postgres removed stale pid file", slog.String("path", pidPath), slog.Int("pid", pid))
	}

	bin, err := binForData(string(pgVersion))
	if err != nil {
		return nil, err
	}
	began := time.Now()
	if !initialized {
		if err := p.initdb(ctx, bin, acct); err != nil {
			return nil, err
		}
		log.Info("postgres initialized data directory", slog.String("dir", p.dataDir), slog.Duration("elapsed", time.Since(began)))
	}
	if err := p.ensureDataDirOwner(acct); err != nil {
		return nil, err
	}

	if err := launchRetrying(func() error { return p.launch(ctx, bin, acct, 0) }); err != nil {
		return nil, err
	}
	if err := p.ensureDatabase(ctx); err != nil {
		_ = p.Stop(context.Background())
		return nil, err
	}
	log.Info("postgres started", slog.String("dir", p.dir), slog.Int("port", p.Port()), slog.Int("pid", p.PID()), slog.Duration("elapsed", time.Since(began)))
	return p, nil
}

// systemDataRoot holds clusters whose directory the postgres system user
// cannot reach (see resolveDataDir).
var systemDataRoot = "/var/lib/code4me"

// resolveDataDir returns the cluster's directory: dir/data, or, when this
// process is root and the postgres user cannot reach dir (a checkout under
// /root, mode 0700), a directory under systemDataRoot that dir/data links
// to, so the data still shows under dir and later starts find it.
func resolveDataDir(acct account, dir string, log *slog.Logger) (string, error) {
	link := filepath.Join(dir, "data")
	if acct.cred == nil {
		return link, nil
	}
	fi, err := os.Lstat(link)
	if err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(link)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		if err := checkReachable(acct, target); err != nil {
			return "", err
		}
		return target, nil
	}
	// dir is ours (ensureWritableDir made it 0700): only its ancestors can
	// keep the server's user out.
	reachErr := checkReachable(acct, dir)
	if reachErr == nil {
		// The server's user must traverse dir to reach dir/data.
		if err := os.Chmod(dir, 0o711); err != nil {
			return "", fmt.Errorf("chmod %s: %w", dir, unwrapPathErr(err))
		}
		return link, nil
	}
	if err == nil { // an existing cluster in a directory it cannot reach
		return "", reachErr
	}
	sum := sha256.Sum256([]byte(dir))
	home := filepath.Join(systemDataRoot, "postgres-"+hex.EncodeToString(sum[:6]))
	if err := retireOrphan(dir, home, log); err != nil {
		return "", err
	}
	sweepDeletedOwners(log)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return "", fmt.Errorf("%v, and creating %s instead failed: %w", reachErr, home, unwrapPathErr(err))
	}
	if err := os.Chmod(home, 0o755); err != nil {
		return "", err
	}
	if err := WriteOwner(home, dir); err != nil {
		return "", err
	}
	target := filepath.Join(home, "data")
	if err := checkReachable(acct, target); err != nil {
		return "", err
	}
	if err := os.Symlink(target, link); err != nil {
		return "", fmt.Errorf("link %s to %s: %w", link, target, unwrapPathErr(err))
	}
	log.Info("postgres cluster kept outside the data directory, which the postgres user cannot reach",
		slog.String("dir", dir), slog.String("cluster", target))
	return target, nil
}

// retireOrphan clears a cluster left under home by an earlier directory at
// the same path (a checkout deleted and cloned again, as CI does): dir has
// neither the link nor the password, so nothing can open that cluster any
// more. A server still running from it is stopped first. When dir still has
// its password, only the link was lost and the cluster is kept for reuse.
func retireOrphan(dir, home string, log *slog.Logger) error {
	if _, err := os.Stat(filepath.Join(home, "data", "PG_VERSION")); err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "password")); err == nil {
		return nil
	}
	if err := removeCluster(home); err != nil {
		return err
	}
	log.Warn("postgres removed a cluster that no data directory owns any more (its password file is gone)",
		slog.String("dir", dir), slog.String("cluster", filepath.Join(home, "data")))
	return nil
}

// sweepDeletedOwners removes the clusters under systemDataRoot whose data
// directory was a temporary one and no longer exists (a clone made with
// mktemp -d, a benchmark's directory, deleted while the cluster lived
// outside it), stopping their servers first. Nothing could ever open them
// again, and since such paths are not reused, retireOrphan never would:
// each one left 50 MB behind for good. Data directories elsewhere are never
// swept, since a missing one may only be unmounted; a checkout deleted and
// cloned again at the same path is handled by retireOrphan. Homes without
// an owner file (made before it existed) are kept. A data directory exists
// before its cluster's home and owner file, so a start in progress is never
// taken for an orphan.
func sweepDeletedOwners(log *slog.Logger) {
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return
	}
	entries, err := os.ReadDir(systemDataRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "postgres-") {
			continue
		}
		home := filepath.Join(systemDataRoot, e.Name())
		owner, gone := OwnerGone(home)
		if !gone || !strings.HasPrefix(owner, tmp+string(filepath.Separator)) {
			continue
		}
		if err := removeCluster(home); err != nil {
			log.Warn("postgres cannot remove the cluster of a deleted data directory",
				slog.String("dir", owner), slog.String("cluster", home), slog.String("error", err.Error()))
			continue
		}
		log.Warn("postgres removed the cluster of a deleted data directory",
			slog.String("dir", owner), slog.String("cluster", filepath.Join(home, "data")))
	}
}

// removeCluster stops the server running from home's cluster, if any, and
// removes home.
func removeCluster(home string) error {
	data := filepath.Join(home, "data")
	if pid, _ := readPidFile(filepath.Join(data, "postmaster.pid")); pid > 0 && isServerProcess(pid, "postgres", data) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := stopProcess(ctx, pid, syscall.SIGINT, syscall.SIGQUIT); err != nil {
			return fmt.Errorf("stop the server (pid %d) of the orphaned cluster %s: %w", pid, data, err)
		}
	}
	if err := os.RemoveAll(home); err != nil {
		return fmt.Errorf("remove the orphaned cluster %s: %w", home, unwrapPathErr(err))
	}
	return nil
}

// loadPassword reads dir/password, creating it for a new cluster.
func (p *Postgres) loadPassword(initialized bool) error {
	path := filepath.Join(p.dir, "password")
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(strings.TrimSpace(string(b))) > 0:
		p.password = strings.TrimSpace(string(b))
		return nil
	case initialized:
		return fmt.Errorf("%s is missing, and the existing cluster in %s needs it; restore it or remove %s to start over", path, p.dataDir, p.dir)
	}
	pw, err := randomHex(16)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, unwrapPathErr(err))
	}
	p.password = pw
	return nil
}

// initdb creates the cluster with a password-protected superuser.
func (p *Postgres) initdb(ctx context.Context, bin string, acct account) error {
	if err := os.MkdirAll(p.dataDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", p.dataDir, unwrapPathErr(err))
	}
	if err := p.ensureDataDirOwner(acct); err != nil {
		return err
	}
	// initdb reads the password from a file the server's user can read.
	pwfile := filepath.Join(filepath.Dir(p.dataDir), ".initdb-pwfile")
	if err := os.WriteFile(pwfile, []byte(p.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", pwfile, unwrapPathErr(err))
	}
	defer os.Remove(pwfile)
	if acct.cred != nil {
		if err := os.Chown(pwfile, acct.uid, acct.gid); err != nil {
			return fmt.Errorf("chown %s: %w", pwfile, unwrapPathErr(err))
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", p.dataDir,
		"-U", PostgresUser,
		"--pwfile", pwfile,
		"--auth", "scram-sha-256",
		"--encoding", "UTF8",
		"--no-locale",
	)
	cmd.Dir = "/"
	cmd.Env = filteredEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: acct.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		// initdb cleans up after itself; make sure the next try starts empty.
		_ = os.RemoveAll(p.dataDir)
		return fmt.Errorf("initdb %s failed: %v: %s", p.dataDir, err, lastLines(string(out), 3))
	}
	return nil
}

// ensureDataDirOwner gives the data directory to the server's user, which
// PostgreSQL insists on.
func (p *Postgres) ensureDataDirOwner(acct account) error {
	if acct.cred == nil {
		return nil
	}
	fi, err := os.Stat(p.dataDir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == acct.uid {
		return nil
	}
	return filepath.Walk(p.dataDir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, acct.uid, acct.gid)
	})
}

// launch starts the server on port (a free one when 0) and waits until it
// is ready.
func (p *Postgres) launch(ctx context.Context, bin string, acct account, port int) error {
	port, err := portOrFree(port)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.logPath, unwrapPathErr(err))
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", p.dataDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=300",
	)
	cmd.Dir = "/"
	cmd.Env = filteredEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: acct.cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p.running(cmd.Process.Pid, port, false)
	// The server outlives this call; processAlive reaps it by pid.
	_ = cmd.Process.Release()

	if err := p.waitReady(ctx); err != nil {
		p.kill()
		return err
	}
	return nil
}

// waitReady polls until the server accepts a connection, exits, or ctx ends.
func (p *Postgres) waitReady(ctx context.Context) error {
	return p.pollReady(ctx, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, p.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return true, nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000") {
			return true, fmt.Errorf("the server rejects the password in %s (%s); remove %s to start over", filepath.Join(p.dir, "password"), pgErr.Code, p.dir)
		}
		return false, err
	})
}

// ensureDatabase checks for pgvector and creates PostgresDatabase if needed.
func (p *Postgres) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	var hasVector bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')`).Scan(&hasVector); err != nil {
		return fmt.Errorf("check for pgvector: %w", err)
	}
	if !hasVector {
		return errors.New("the pgvector extension is not installed for this PostgreSQL server; run `sudo bash scripts/install-deps.sh`")
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, PostgresDatabase).Scan(&exists); err != nil {
		return fmt.Errorf("check for database %s: %w", PostgresDatabase, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{PostgresDatabase}.Sanitize()); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42P04" { // lost a race: fine
				return fmt.Errorf("create database %s: %w", PostgresDatabase, err)
			}
		}
	}
	return nil
}

// URL returns a postgres:// URL for the database dbname on this server, with
// the superuser's credentials. Do not log it: it holds the password.
func (p *Postgres) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(PostgresUser, p.password),
		Host:     "127.0.0.1:" + strconv.Itoa(p.Port()),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// lastLines returns the last n non-empty lines of s joined by " | ".
func lastLines(s string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimSpace(l))
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, " | ")
}
