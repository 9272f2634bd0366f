package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/loadtest"
)

// runLoadtest is `code4me loadtest`: simulated plugin users type against a
// server, then every row it acknowledged is checked in Postgres. Without
// -url it starts private Postgres and Redis and a `code4me serve` child on
// loopback with the tiny synthetic model, samples the child's RSS and
// reconciles against that Postgres; with -url it reconciles against the
// configured Postgres (DATABASE_URL or DB_*), when there is one. It fails
// on any 5xx, unexpected answer, or missing or mismatched row.
func runLoadtest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	users := fs.Int("users", 32, "simulated plugin users")
	duration := fs.Duration("duration", 2*time.Minute, "how long the users type")
	model := fs.String("model", "", "completion model to request (default: the first completion model the server serves)")
	target := fs.String("url", "", "server to load (default: start private services and a `code4me serve` child)")
	keyShare := fs.Float64("key-share", 0.25, "share of users that authenticate with an API key")
	seed := fs.Int64("seed", 1, "seed of the users' pacing and choices")
	threads := fs.Int("threads", 1, "without -url: the server's inference threads (ENGINE_THREADS; ggml's threads spin-wait, so on a small machine shared with the load and Postgres one is fastest)")
	slots := fs.Int("slots", 0, "without -url: the server's slots per model (ENGINE_PARALLEL); 0: the server's default (4, or ENGINE_PARALLEL from the environment)")
	think := fs.Bool("think", true, "users pause as developers do: 0.5–2 s after a line end, 0.3–1 s after one space in six (false: a keystroke every 150–300 ms throughout)")
	chat := fs.Bool("chat", true, "users chat now and then (when the server serves a chat model)")
	chatEvery := fs.Int("chat-every", 80, "a user starts a chat after every this many keystrokes (each user from its own keystroke), when its last chat has ended")
	contextEvery := fs.Int("context-every", 25, "a user edits one of its two context files after every this many keystrokes (each user from its own keystroke), once its completions in flight are answered")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	res, err := loadtestRun(ctx, loadtest.Options{BaseURL: *target, Users: *users, Duration: *duration, Model: *model,
		KeyShare: *keyShare, Seed: *seed, Continuous: !*think, NoChat: !*chat, ChatEvery: *chatEvery, ContextEvery: *contextEvery}, serveSettings{threads: *threads, slots: *slots}, os.Stdout)
	if err != nil {
		return err
	}
	return res.verdict()
}

// loadtestResult is a run's report and reconciliation (nil when there was
// no Postgres to check against).
type loadtestResult struct {
	report *loadtest.Report
	rec    *loadtest.Reconciliation
	work   *loadtest.EngineWork // a private server's stored generations
}

// verdict fails on a 5xx, an unexpected answer, a user that could not
// start, or a lost or changed row.
func (r *loadtestResult) verdict() error {
	var why []string
	if n := r.report.Status5xx; n > 0 {
		why = append(why, fmt.Sprintf("%d answers 5xx", n))
	}
	if n := r.report.Unexpected; n > 0 {
		why = append(why, fmt.Sprintf("%d unexpected answers", n))
	}
	if n := len(r.report.UserErrors); n > 0 {
		why = append(why, fmt.Sprintf("%d users could not start", n))
	}
	if r.rec != nil && r.rec.Lost() > 0 {
		why = append(why, fmt.Sprintf("%d acknowledged rows missing or changed", r.rec.Lost()))
	}
	if len(why) > 0 {
		return errors.New("loadtest failed: " + strings.Join(why, ", "))
	}
	return nil
}

// serveSettings are the engine settings of a load test's private server.
type serveSettings struct {
	threads int // ENGINE_THREADS
	slots   int // ENGINE_PARALLEL; 0: the server's default
}

// loadtestRun runs the load (o.BaseURL empty: against a private server it
// starts with the engine settings ss), reconciles, and writes both
// reports to out.
func loadtestRun(ctx context.Context, o loadtest.Options, ss serveSettings, out io.Writer) (*loadtestResult, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o.Log = log
	private := o.BaseURL == "" // a private server, whose database holds this run's rows only
	var pool *pgxpool.Pool
	if o.BaseURL != "" {
		if !cfg.ManagedPostgres() {
			if pool, err = db.Open(ctx, cfg.PostgresURL(), db.Options{MaxConns: 4}, log); err != nil {
				return nil, err
			}
			defer pool.Close()
		}
	} else {
		tmp, err := os.MkdirTemp("", "code4me-loadtest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		// Searchable, so that when this process is root the postgres
		// user's cluster lives in tmp (devsvc).
		if err := os.Chmod(tmp, 0o711); err != nil {
			return nil, err
		}
		// Private services in tmp, whatever the environment configures:
		// the run writes thousands of rows and must not touch real data.
		cfg.DataDir = tmp
		cfg.DatabaseURL, cfg.DBHost, cfg.RedisURL, cfg.RedisHost = "", "", "", ""
		svc, err := startServices(ctx, cfg, log, true)
		if err != nil {
			return nil, err
		}
		defer svc.stop(log)
		pool = svc.pool
		child, err := startLoadtestServe(ctx, tmp, svc, ss)
		if err != nil {
			return nil, err
		}
		defer child.stop()
		o.BaseURL, o.ServerPID = child.base, child.pid()
	}
	fmt.Fprintf(out, "Load average before: %s\n", loadAverage())
	rep, err := loadtest.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Load average after: %s\n\n", loadAverage())
	rep.Write(out)
	res := &loadtestResult{report: rep}
	if pool == nil {
		fmt.Fprintln(out, "\nNo reconciliation: no Postgres configured (set DATABASE_URL to the server's database).")
		return res, nil
	}
	if res.rec, err = loadtest.Reconcile(ctx, pool, rep); err != nil {
		return nil, err
	}
	fmt.Fprintln(out, "\nReconciliation of every acknowledged row against Postgres:")
	fmt.Fprintln(out)
	res.rec.Write(out)
	if private {
		if res.work, err = loadtest.ReadEngineWork(ctx, pool); err != nil {
			return nil, err
		}
		fmt.Fprintln(out, "\nThe engine's work, from the stored generations:")
		fmt.Fprintln(out)
		res.work.Write(out)
	}
	return res, nil
}

// loadAverage is /proc/loadavg's first three fields ("" when unreadable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// serveCommand is the command line of `code4me serve`: this binary. A
// test binary, which runs its tests when started, replaces it.
var serveCommand = func() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "serve"), nil
}

// loadtestServe is the `code4me serve` child of a load test.
type loadtestServe struct {
	cmd    *exec.Cmd
	base   string
	exited chan struct{}
}

func (s *loadtestServe) pid() int { return s.cmd.Process.Pid }

// startLoadtestServe starts `code4me serve` on loopback, on svc and with
// the tiny synthetic models (completion and chat) under dir, the engine
// settings ss and a rate limit no user reaches, and waits until
// /api/ping answers 200.
func startLoadtestServe(ctx context.Context, dir string, svc *services, ss serveSettings) (*loadtestServe, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd, err := serveCommand()
	if err != nil {
		return nil, err
	}
	// The last value of a repeated variable wins.
	cmd.Env = append(cmd.Environ(), "DATABASE_URL="+svc.pgURL, "REDIS_URL="+svc.redisURL, "DB_HOST=", "REDIS_HOST=",
		"DATA_DIR="+dir, "SERVER_HOST=127.0.0.1", "SERVER_PORT="+strconv.Itoa(port), "MODELS=", "MODEL_DIR="+dir+"/models",
		"SYNTHETIC_MODEL=tiny", "DEFAULT_MAX_REQUEST_RATE_PER_HOUR=1000000000", "MAX_REQUEST_RATE_PER_HOUR_CONFIG={}",
		"EMAIL_HOST=", "LLAMA_LISTEN=", "LOG_LEVEL=warn", "ENGINE_THREADS="+strconv.Itoa(ss.threads))
	if ss.slots > 0 {
		cmd.Env = append(cmd.Env, "ENGINE_PARALLEL="+strconv.Itoa(ss.slots))
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start code4me serve: %w", err)
	}
	s := &loadtestServe{cmd: cmd, base: "http://127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{})}
	go func() { cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(pctx, "GET", s.base+"/api/ping", nil)
		res, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, errors.New("code4me serve exited before it was ready")
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("code4me serve not ready after 3 minutes")
		}
	}
}

// stop sends SIGTERM and waits for the child to exit (SIGKILL after a
// minute).
func (s *loadtestServe) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		<-s.exited
	}
}
