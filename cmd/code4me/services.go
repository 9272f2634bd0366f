package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/devsvc"
)

// services are the Postgres and Redis the process uses, private or
// configured, and how to stop what this process started.
type services struct {
	pgURL, redisURL string
	privatePG       *devsvc.Postgres
	privateRedis    *devsvc.Redis
	pool            *pgxpool.Pool
	rdb             *redis.Client
}

// startServices starts private servers where nothing is configured,
// migrates, and connects; Redis only when withRedis is set (eval needs
// only Postgres). On error everything started is stopped again.
func startServices(ctx context.Context, c config.Config, log *slog.Logger, withRedis bool) (_ *services, err error) {
	s := &services{pgURL: c.PostgresURL(), redisURL: c.RedisAddrURL()}
	defer func() {
		if err != nil {
			s.stop(log)
		}
	}()
	// Check configured servers before starting anything, so a wrong URL is
	// reported at once and alone.
	if !c.ManagedPostgres() {
		if err := checkPostgres(ctx, s.pgURL); err != nil {
			return nil, err
		}
	}
	if withRedis && !c.ManagedRedis() {
		if err := checkRedis(ctx, s.redisURL); err != nil {
			return nil, err
		}
	}
	if c.ManagedPostgres() {
		log.Info("starting private postgres", slog.String("dir", filepath.Join(c.DataDir, "postgres")))
		pg, err := devsvc.StartPostgres(ctx, filepath.Join(c.DataDir, "postgres"), log)
		if err != nil {
			return nil, err
		}
		s.privatePG = pg
		s.pgURL = pg.URL("code4me")
	}
	if withRedis && c.ManagedRedis() {
		log.Info("starting private redis", slog.String("dir", filepath.Join(c.DataDir, "redis")))
		r, err := devsvc.StartRedis(ctx, filepath.Join(c.DataDir, "redis"), log)
		if err != nil {
			return nil, err
		}
		s.privateRedis = r
		s.redisURL = r.URL()
	}
	if err := db.Migrate(ctx, s.pgURL, log); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", safeURL(s.pgURL), err)
	}
	s.pool, err = db.Open(ctx, s.pgURL, db.Options{MaxConns: int32(c.DBPoolSize), StatementTimeout: c.DBStatementTimeout}, log)
	if err != nil {
		return nil, err
	}
	if !withRedis {
		return s, nil
	}
	opt, err := redis.ParseURL(s.redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %v", err)
	}
	setRedisTimeouts(opt)
	s.rdb = redis.NewClient(opt)
	return s, nil
}

// Redis timeouts. Every command the server sends is a key lookup, a
// counter or a short script that Redis answers in well under a
// millisecond, so a Redis that has not answered within these is down or
// hung, and the request gets 503 instead of waiting on it. go-redis's own
// defaults are 5 s to dial, 3 s to read and write, and to wait for a free
// connection (plus retries), too long for a request a plugin is waiting on
// while someone types.
//
// One retry (go-redis's default is three) still hides a pooled connection
// that a restarted Redis closed; more would multiply the wait on a hung
// one.
const (
	redisDialTimeout  = 2 * time.Second
	redisReadTimeout  = 2 * time.Second
	redisWriteTimeout = 2 * time.Second
	redisPoolTimeout  = 3 * time.Second
	redisMaxRetries   = 1
)

// setRedisTimeouts applies the Redis timeouts and retries to opt, unless
// REDIS_URL set them itself (dial_timeout, read_timeout, write_timeout,
// pool_timeout, max_retries).
func setRedisTimeouts(opt *redis.Options) {
	if opt.MaxRetries == 0 {
		opt.MaxRetries = redisMaxRetries
	}
	for _, d := range []struct {
		field *time.Duration
		value time.Duration
	}{
		{&opt.DialTimeout, redisDialTimeout},
		{&opt.ReadTimeout, redisReadTimeout},
		{&opt.WriteTimeout, redisWriteTimeout},
		{&opt.PoolTimeout, redisPoolTimeout},
	} {
		if *d.field == 0 {
			*d.field = d.value
		}
	}
}

// quietRedisLog drops go-redis's internal log lines (dial retries); failures
// reach the user as errors instead.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedisLog{}) }

func checkRedis(ctx context.Context, rawURL string) error {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %v", err)
	}
	opt.MaxRetries = -1
	c := redis.NewClient(opt)
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("cannot connect to Redis at %s: %s (check REDIS_URL or REDIS_HOST/REDIS_PORT, or unset them to use a private server)", opt.Addr, shortNetErr(err))
	}
	return nil
}

func checkPostgres(ctx context.Context, rawURL string) error {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: not a valid PostgreSQL URL (%s)", safeURL(rawURL))
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		why := shortNetErr(err)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			why = pgErr.Message
		} else if !strings.Contains(err.Error(), "dial") {
			why = "connection failed"
		}
		return fmt.Errorf("cannot connect to PostgreSQL at %s: %s (check DATABASE_URL or DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME, or unset them to use a private server)", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), why)
	}
	conn.Close(ctx)
	return nil
}

// stop closes connections and stops private servers (never flushing data).
// A second call does nothing.
func (s *services) stop(log *slog.Logger) {
	if s.rdb != nil {
		s.rdb.Close()
		s.rdb = nil
	}
	if s.pool != nil {
		s.pool.Close()
		s.pool = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.privateRedis != nil {
		if err := s.privateRedis.Stop(ctx); err != nil {
			log.Warn("stop private redis", slog.String("error", err.Error()))
		}
	}
	if s.privatePG != nil {
		if err := s.privatePG.Stop(ctx); err != nil {
			log.Warn("stop private postgres", slog.String("error", err.Error()))
		}
	}
}

// safeURL drops the password from a URL for messages.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery = ""
	return u.String()
}

func shortNetErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		msg := op.Err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			return msg[i+2:]
		}
		return msg
	}
	return err.Error()
}
