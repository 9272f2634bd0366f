package db_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/db"
)

func scalar[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// checkMigrated asserts the full schema and its seed data are present.
func checkMigrated(t *testing.T, url string) {
	t.Helper()
	conn := connect(t, url)
	migs, err := db.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if got := scalar[int64](t, conn, "SELECT count(*) FROM schema_migrations"); got != int64(len(migs)) {
		t.Errorf("schema_migrations has %d rows, want %d", got, len(migs))
	}
	for _, c := range []struct {
		sql  string
		want int64
	}{
		{"SELECT count(*) FROM programming_language", 179},
		{"SELECT max(language_id) FROM programming_language", 179},
		{"SELECT count(*) FROM trigger_type", 3},
		{"SELECT count(*) FROM plugin_version", 4},
		{"SELECT count(*) FROM config", 1},
		{"SELECT count(*) FROM model", 0},
		{"SELECT count(*) FROM users", 0},
	} {
		if got := scalar[int64](t, conn, c.sql); got != c.want {
			t.Errorf("%s = %d, want %d", c.sql, got, c.want)
		}
	}
	for id, name := range map[int64]string{1: "Oracle NetSuite", 47: "Python", 82: "Go", 179: "unknown"} {
		if got := scalar[string](t, conn, "SELECT language_name FROM programming_language WHERE language_id = $1", id); got != name {
			t.Errorf("language %d = %q, want %q", id, got, name)
		}
	}
	if got := scalar[string](t, conn, "SELECT trigger_type_name FROM trigger_type WHERE trigger_type_id = 3"); got != "idle" {
		t.Errorf("trigger type 3 = %q, want idle", got)
	}
	cfg := scalar[string](t, conn, "SELECT config_data FROM config WHERE config_id = 1")
	for _, want := range []string{`"Python" = 47`, `"unknown" = 179`, `"C/C++" = 123`, "BehavioralTelemetryAggregator", "port = 8008"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config 1 lacks %q", want)
		}
	}
	// The sequences continue after the seeded ids.
	if got := scalar[int64](t, conn, "INSERT INTO config (config_data) VALUES ('{}') RETURNING config_id"); got != 2 {
		t.Errorf("next config id = %d, want 2", got)
	}
	if _, err := conn.Exec(context.Background(), "DELETE FROM config WHERE config_id = 2"); err != nil {
		t.Fatal(err)
	}
	if !scalar[bool](t, conn, "SELECT to_regclass('river_job') IS NOT NULL") {
		t.Error("River's tables are missing")
	}
	if !scalar[bool](t, conn, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')") {
		t.Error("vector extension is not installed")
	}
}

func TestMigrateUpDownUp(t *testing.T) {
	ctx := testCtx(t)
	url := emptyDatabase(t)
	log := quietLog()

	if err := db.Migrate(ctx, url, log); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	checkMigrated(t, url)

	// Idempotent: a second run changes nothing and fails on nothing.
	if err := db.Migrate(ctx, url, log); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}

	if err := db.MigrateDown(ctx, url, log, db.AllSteps); err != nil {
		t.Fatalf("MigrateDown(AllSteps): %v", err)
	}
	conn := connect(t, url)
	if n := scalar[int64](t, conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 0 {
		rows, _ := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		t.Fatalf("after MigrateDown(AllSteps) %d tables remain: %v", n, names)
	}
	if n := scalar[int64](t, conn, "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typtype = 'e'"); n != 0 {
		t.Errorf("after MigrateDown(AllSteps) %d enum types remain", n)
	}
	if scalar[bool](t, conn, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')") {
		t.Error("vector extension still installed after MigrateDown(AllSteps)")
	}

	if err := db.Migrate(ctx, url, log); err != nil {
		t.Fatalf("Migrate after down: %v", err)
	}
	checkMigrated(t, url)
}

func TestMigrateDownSteps(t *testing.T) {
	ctx := testCtx(t)
	url := emptyDatabase(t)
	log := quietLog()
	if err := db.Migrate(ctx, url, log); err != nil {
		t.Fatal(err)
	}
	migs, _ := db.Migrations()
	last := migs[len(migs)-1]

	// Down to just before the migration that creates the documentation
	// table, however many came after it.
	steps := 1
	for migs[len(migs)-steps].Name != "documentation" {
		steps++
	}
	if err := db.MigrateDown(ctx, url, log, steps); err != nil {
		t.Fatalf("MigrateDown(%d): %v", steps, err)
	}
	conn := connect(t, url)
	if got, want := scalar[int64](t, conn, "SELECT max(version) FROM schema_migrations"), int64(migs[len(migs)-steps-1].Version); got != want {
		t.Errorf("newest version after %d steps down = %d, want %d", steps, got, want)
	}
	if scalar[bool](t, conn, "SELECT to_regclass('documentation') IS NOT NULL") {
		t.Error("documentation table survived its down migration")
	}
	if !scalar[bool](t, conn, "SELECT to_regclass('river_job') IS NOT NULL") {
		t.Error("a partial down migration removed River's tables")
	}

	if err := db.Migrate(ctx, url, log); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if got := scalar[int64](t, conn, "SELECT max(version) FROM schema_migrations"); got != int64(last.Version) {
		t.Errorf("newest version = %d, want %d", got, last.Version)
	}

	if err := db.MigrateDown(ctx, url, log, -5); err == nil {
		t.Error("MigrateDown(-5) succeeded; want an error")
	}
}

func TestMigrateConcurrent(t *testing.T) {
	ctx := testCtx(t)
	url := emptyDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = db.Migrate(ctx, url, quietLog()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i, err)
		}
	}
	checkMigrated(t, url)
}

func TestUnreachable(t *testing.T) {
	ctx := testCtx(t)
	// Port 1 on loopback: nothing listens, the connection is refused.
	const url = "postgres://code4me:secret-password@127.0.0.1:1/code4me?connect_timeout=2"
	_, err := db.Open(ctx, url, db.Options{}, quietLog())
	if !errors.Is(err, db.ErrUnreachable) {
		t.Fatalf("Open: got %v, want ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), "secret-password") {
		t.Errorf("error leaks the password: %v", err)
	}
	err = db.Migrate(ctx, url, quietLog())
	if !errors.Is(err, db.ErrUnreachable) {
		t.Fatalf("Migrate: got %v, want ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), "secret-password") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestOpenUnmigratedDatabase(t *testing.T) {
	// A database without the vector extension still opens: the pgvector
	// codecs are registered only where the type exists.
	ctx := testCtx(t)
	pool, err := db.Open(ctx, emptyDatabase(t), db.Options{}, quietLog())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
