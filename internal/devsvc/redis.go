package devsvc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RedisDatabases is the number of logical databases a private Redis has, so
// that tests can each take one.
const RedisDatabases = 1024

// Redis is a private Redis server started (or adopted) by StartRedis. Its
// methods are safe for concurrent use. Stop sends SIGTERM (Redis then writes
// its RDB snapshot and flushes the append-only file), and SIGKILL after its
// deadline.
type Redis struct {
	proc
	confPath string
	pidPath  string
}

// FindRedisServer returns the path of redis-server from PATH (or
// /usr/bin/redis-server).
func FindRedisServer() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", errors.New("redis-server not found in PATH; run `sudo bash scripts/install-deps.sh` or `sudo apt-get install redis-server`")
}

// StartRedis starts a private Redis server under dir, or adopts the one
// already running from dir. Data persists in dir (append-only file plus RDB
// snapshots); the server has RedisDatabases databases and publishes keyspace
// events for expired and evicted keys and generic commands
// (notify-keyspace-events Exg). It returns once the server answers PING, or
// when ctx ends (default limit one minute). log may be nil.
func StartRedis(ctx context.Context, dir string, log *slog.Logger) (*Redis, error) {
	r, err := startRedis(ctx, dir, log)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	return r, nil
}

func startRedis(ctx context.Context, dir string, log *slog.Logger) (*Redis, error) {
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
	if err := ensureWritableDir(abs); err != nil {
		return nil, err
	}
	r := &Redis{
		proc: proc{name: "redis", dir: abs, logPath: filepath.Join(abs, "redis.log"), log: log,
			stopSig: syscall.SIGTERM, forceSig: syscall.SIGKILL},
		confPath: filepath.Join(abs, "redis.conf"),
		pidPath:  filepath.Join(abs, "redis.pid"),
	}
	if err := r.loadPassword(); err != nil {
		return nil, err
	}

	if pid, _ := readPidFile(r.pidPath); pid > 0 {
		if isServerProcess(pid, "redis-server", abs) {
			if port := confPort(r.confPath); port > 0 {
				r.running(pid, port, true)
				if err := r.waitReady(ctx); err != nil {
					return nil, fmt.Errorf("a server (pid %d) is running from %s but does not answer: %w; stop it with `kill %d`", pid, abs, err, pid)
				}
				log.Info("redis adopted running server", slog.String("dir", abs), slog.Int("port", port), slog.Int("pid", pid))
				return r, nil
			}
		}
		if err := os.Remove(r.pidPath); err != nil {
			return nil, fmt.Errorf("remove stale %s: %w", r.pidPath, unwrapPathErr(err))
		}
		log.Warn("redis removed stale pid file", slog.String("path", r.pidPath), slog.Int("pid", pid))
	}

	retireOrphanRedis(abs, log)
	bin, err := FindRedisServer()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	if err := launchRetrying(func() error { return r.launch(ctx, bin, 0) }); err != nil {
		return nil, err
	}
	log.Info("redis started", slog.String("dir", abs), slog.Int("port", r.Port()), slog.Int("pid", r.PID()), slog.Duration("elapsed", time.Since(began)))
	return r, nil
}

// retireOrphanRedis stops the servers a deleted predecessor of dir left
// running: a directory removed (a clone deleted) while its server ran and
// made again at the same path (CI clones every run at one path) would
// otherwise leave one server more behind at every run. Only a server whose
// working directory is dir, deleted, is stopped (a Redis command line
// cannot tell: Redis rewrites it to its address); a server of any other
// directory is never touched.
func retireOrphanRedis(dir string, log *slog.Logger) {
	StopServers(func(d string, deleted bool) bool { return deleted && d == dir }, log)
}

func (r *Redis) loadPassword() error {
	path := filepath.Join(r.dir, "password")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		r.password = strings.TrimSpace(string(b))
		return nil
	}
	pw, err := randomHex(16)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, unwrapPathErr(err))
	}
	r.password = pw
	return nil
}

// redisQuote quotes a config value for redis.conf.
func redisQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeConf writes redis.conf for a server on port.
func (r *Redis) writeConf(port int) error {
	conf := strings.Join([]string{
		"# Written by code4me (internal/devsvc) at every start; edits are lost.",
		"bind 127.0.0.1",
		"protected-mode yes",
		"port " + strconv.Itoa(port),
		"daemonize no",
		"pidfile " + redisQuote(r.pidPath),
		`logfile ""`,
		"dir " + redisQuote(r.dir),
		"databases " + strconv.Itoa(RedisDatabases),
		"appendonly yes",
		"appendfsync everysec",
		"save 3600 1 300 100 60 10000",
		"notify-keyspace-events Exg",
		"requirepass " + redisQuote(r.password),
		"",
	}, "\n")
	if err := os.WriteFile(r.confPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", r.confPath, unwrapPathErr(err))
	}
	return nil
}

// confPort reads the port line of a redis.conf written by writeConf.
func confPort(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "port" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// launch starts the server on port (a free one when 0) and waits until it
// is ready.
func (r *Redis) launch(ctx context.Context, bin string, port int) error {
	port, err := portOrFree(port)
	if err != nil {
		return err
	}
	if err := r.writeConf(port); err != nil {
		return err
	}
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", r.logPath, unwrapPathErr(err))
	}
	defer logf.Close()
	cmd := exec.Command(bin, r.confPath)
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	r.running(cmd.Process.Pid, port, false)
	_ = cmd.Process.Release()
	if err := r.waitReady(ctx); err != nil {
		r.kill()
		return err
	}
	return nil
}

func (r *Redis) waitReady(ctx context.Context) error {
	return r.pollReady(ctx, func() (bool, error) {
		err := pingRedis(ctx, "127.0.0.1:"+strconv.Itoa(r.Port()), r.password)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") {
				return true, fmt.Errorf("the server rejects the password in %s; stop it and remove that file", filepath.Join(r.dir, "password"))
			}
			return false, err
		}
		return true, nil
	})
}

// pingRedis sends AUTH and PING over a fresh connection and expects +OK and
// +PONG. It speaks RESP directly so that the polling during start-up does
// not go through a client library's retry and logging machinery.
func pingRedis(ctx context.Context, addr, password string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	cmd := fmt.Sprintf("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n", len(password), password)
	if _, err := io.WriteString(conn, cmd); err != nil {
		return err
	}
	rd := bufio.NewReader(conn)
	for _, want := range []string{"+OK", "+PONG"} {
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if got := strings.TrimRight(line, "\r\n"); got != want {
			return errors.New(strings.TrimPrefix(got, "-"))
		}
	}
	return nil
}

// URL returns redis://:password@127.0.0.1:port with no database number;
// append "/N" to pick database N. Do not log it: it holds the password.
func (r *Redis) URL() string {
	u := url.URL{
		Scheme: "redis",
		User:   url.UserPassword("", r.password),
		Host:   "127.0.0.1:" + strconv.Itoa(r.Port()),
	}
	return u.String()
}
