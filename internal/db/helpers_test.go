package db_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/internal/db"
)

// adminURL is a connection URL with the right to create databases, from
// TEST_DATABASE_URL. Without it the tests skip, except under CI=true where
// they fail.
func adminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TEST_DATABASE_URL is not set; CI needs PostgreSQL with pgvector")
		}
		t.Skip("TEST_DATABASE_URL is not set")
	}
	return u
}

var dbSeq atomic.Int64

// emptyDatabase creates a fresh, empty database (not a migrated template)
// and drops it when the test ends. It returns its URL.
func emptyDatabase(t testing.TB) string {
	t.Helper()
	admin := adminURL(t)
	ctx := context.Background()
	name := fmt.Sprintf("code4me_dbtest_%d_%d", os.Getpid(), dbSeq.Add(1))
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect admin: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("connect admin: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	return withDatabase(admin, name)
}

// withDatabase replaces the database name in a postgres URL.
func withDatabase(u, name string) string {
	rest := ""
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u, rest = u[:i], u[i:]
	}
	scheme := strings.Index(u, "://") + 3
	if i := strings.IndexByte(u[scheme:], '/'); i >= 0 {
		u = u[:scheme+i]
	}
	return u + "/" + name + rest
}

// migratedPool returns a pool on a fresh, migrated database.
func migratedPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := emptyDatabase(t)
	ctx := context.Background()
	if err := db.Migrate(ctx, u, quietLog()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	pool, err := db.Open(ctx, u, quietLog())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
