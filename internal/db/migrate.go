package db

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/code4me/code4me/migrations"
)

// migrateLockKey is the pg_advisory_lock key held while migrating, so
// concurrent Migrate and MigrateDown calls on one database run one at a time.
const migrateLockKey int64 = 0x636f6465346d65 // "code4me"

// AllSteps, passed to MigrateDown, reverts every migration: ours and River's.
const AllSteps = -1

// Migration is one embedded schema migration.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

var migrationFile = regexp.MustCompile(`^(\d+)_([a-z0-9_]+)\.(up|down)\.sql$`)

// Migrations returns the embedded migrations in ascending version order. It
// fails when a file is misnamed, a version is duplicated, or a migration
// lacks its up or down file.
func Migrations() ([]Migration, error) {
	return parseMigrations(migrations.FS)
}

func parseMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := migrationFile.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.up.sql or NNNN_name.down.sql", e.Name())
		}
		version, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		mig := byVersion[version]
		if mig == nil {
			mig = &Migration{Version: version, Name: m[2]}
			byVersion[version] = mig
		}
		if mig.Name != m[2] {
			return nil, fmt.Errorf("migration %d has two names: %q and %q", version, mig.Name, m[2])
		}
		if m[3] == "up" {
			mig.Up = string(body)
		} else {
			mig.Down = string(body)
		}
	}
	out := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("migration %04d_%s lacks its up or down file", m.Version, m.Name)
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	return out, nil
}

// SchemaHash is a digest of every embedded migration. A test harness can
// key a migrated template database on it and rebuild the template when the
// migrations change.
func SchemaHash() string {
	migs, err := Migrations()
	if err != nil {
		return "invalid"
	}
	h := sha256.New()
	for _, m := range migs {
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00%s\x00", m.Version, m.Name, m.Up, m.Down)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Migrate brings the database at databaseURL to the newest schema: first the
// project's migrations, each in its own transaction and recorded in
// schema_migrations, then River's. It holds an advisory lock throughout, so
// concurrent callers (several servers starting at once) are safe, and it is
// idempotent. It fails with ErrNoPgvector when the server lacks pgvector and
// with ErrUnreachable when the server cannot be reached.
func Migrate(ctx context.Context, databaseURL string, log *slog.Logger) error {
	migs, err := Migrations()
	if err != nil {
		return err
	}
	return withMigrationLock(ctx, databaseURL, func(conn *pgx.Conn) error {
		applied, err := appliedVersions(ctx, conn)
		if err != nil {
			return err
		}
		pending := slices.DeleteFunc(slices.Clone(migs), func(m Migration) bool { return applied[m.Version] })
		if len(pending) > 0 {
			if err := checkPgvector(ctx, conn); err != nil {
				return err
			}
		}
		for _, m := range pending {
			start := time.Now()
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.Up); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
				return err
			})
			if err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			log.Info("migration applied", slog.Int("version", m.Version), slog.String("name", m.Name),
				slog.Duration("took", time.Since(start)))
		}
		return migrateRiver(ctx, databaseURL, log, rivermigrate.DirectionUp, nil)
	})
}

// MigrateDown reverts the newest steps of the project's migrations, each in
// its own transaction. With steps == AllSteps it also removes River's schema
// and leaves the database as empty as before Migrate (schema_migrations
// included). It is meant for tests and for operators undoing a release.
func MigrateDown(ctx context.Context, databaseURL string, log *slog.Logger, steps int) error {
	if steps < 0 && steps != AllSteps {
		return fmt.Errorf("migrate down: steps must be positive or AllSteps, got %d", steps)
	}
	migs, err := Migrations()
	if err != nil {
		return err
	}
	return withMigrationLock(ctx, databaseURL, func(conn *pgx.Conn) error {
		if steps == AllSteps {
			if err := migrateRiver(ctx, databaseURL, log, rivermigrate.DirectionDown,
				&rivermigrate.MigrateOpts{TargetVersion: -1}); err != nil {
				return err
			}
		}
		applied, err := appliedVersions(ctx, conn)
		if err != nil {
			return err
		}
		done := 0
		for _, m := range slices.Backward(migs) {
			if steps != AllSteps && done == steps {
				break
			}
			if !applied[m.Version] {
				continue
			}
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.Down); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "DELETE FROM schema_migrations WHERE version = $1", m.Version)
				return err
			})
			if err != nil {
				return fmt.Errorf("revert migration %04d_%s: %w", m.Version, m.Name, err)
			}
			log.Info("migration reverted", slog.Int("version", m.Version), slog.String("name", m.Name))
			done++
		}
		if steps == AllSteps {
			if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS schema_migrations"); err != nil {
				return fmt.Errorf("drop schema_migrations: %w", err)
			}
		}
		return nil
	})
}

// withMigrationLock connects to databaseURL, takes the migration advisory
// lock (waiting for other migrators), ensures schema_migrations exists and
// runs fn. The lock is released when the connection closes.
func withMigrationLock(ctx context.Context, databaseURL string, fn func(conn *pgx.Conn) error) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", redactParseError(err))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return unreachable(cfg, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLockKey)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return fn(conn)
}

func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	applied := make(map[int]bool, len(versions))
	for _, v := range versions {
		applied[int(v)] = true
	}
	return applied, nil
}

// checkPgvector fails with ErrNoPgvector when the server cannot install the
// vector extension (the package is missing).
func checkPgvector(ctx context.Context, conn *pgx.Conn) error {
	var available bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')").Scan(&available)
	if err != nil {
		return fmt.Errorf("look up pgvector: %w", err)
	}
	if !available {
		return ErrNoPgvector
	}
	return nil
}

// migrateRiver applies River's migrations in direction through a small
// private pool.
func migrateRiver(ctx context.Context, databaseURL string, log *slog.Logger, direction rivermigrate.Direction, opts *rivermigrate.MigrateOpts) error {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", redactParseError(err))
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open pool for river migrations: %w", err)
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	res, err := migrator.Migrate(ctx, direction, opts)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("river migrations %s: %w", direction, err)
	}
	for _, v := range res.Versions {
		log.Info("river migration applied", slog.String("direction", string(direction)), slog.Int("version", v.Version))
	}
	return nil
}
