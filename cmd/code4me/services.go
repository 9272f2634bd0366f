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
// migrates, and connects. On error everything started is stopped again.
func startServices(ctx context.Context, c config.Config, log *slog.Logger, migrate bool) (_ *services, err error) {
	s := &services{pgURL: c.PostgresURL(), redisURL: c.RedisAddrURL()}
	defer func() {
		if err != nil {
			s.stop(log)
		}
	}()
	if c.ManagedPostgres() {
		log.Info("starting private postgres", slog.String("dir", filepath.Join(c.DataDir, "postgres")))
		pg, err := devsvc.StartPostgres(ctx, filepath.Join(c.DataDir, "postgres"), log)
		if err != nil {
			return nil, err
		}
		s.privatePG = pg
		s.pgURL = pg.URL("code4me")
	}
	if c.ManagedRedis() {
		log.Info("starting private redis", slog.String("dir", filepath.Join(c.DataDir, "redis")))
		r, err := devsvc.StartRedis(ctx, filepath.Join(c.DataDir, "redis"), log)
		if err != nil {
			return nil, err
		}
		s.privateRedis = r
		s.redisURL = r.URL()
	}
	if migrate {
		if err := db.Migrate(ctx, s.pgURL, log); err != nil {
			return nil, fmt.Errorf("migrate %s: %w", safeURL(s.pgURL), err)
		}
	}
	s.pool, err = db.Open(ctx, s.pgURL, log)
	if err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(s.redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %v", err)
	}
	s.rdb = redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		return nil, fmt.Errorf("cannot connect to Redis at %s: %s (check REDIS_URL or REDIS_HOST/REDIS_PORT, or unset them to use a private server)", opt.Addr, shortNetErr(err))
	}
	return s, nil
}

// stop closes connections and stops private servers (never flushing data).
func (s *services) stop(log *slog.Logger) {
	if s.rdb != nil {
		s.rdb.Close()
	}
	if s.pool != nil {
		s.pool.Close()
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
