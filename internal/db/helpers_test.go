package db_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/testenv"
)

// emptyDatabase returns the URL of a fresh, empty database (not a clone of
// the migrated template), dropped when the test ends.
func emptyDatabase(t testing.TB) string {
	t.Helper()
	return testenv.RawDatabaseURL(t)
}

// migratedPool returns a pool on a fresh database of this test's own,
// migrated with db.Migrate, so tests can count rows without seeing each
// other's.
func migratedPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := emptyDatabase(t)
	ctx := context.Background()
	if err := db.Migrate(ctx, u, quietLog()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	pool, err := db.Open(ctx, u, db.Options{}, quietLog())
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
