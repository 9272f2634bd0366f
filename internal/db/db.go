// Package db is the seam between the code4me server and PostgreSQL: it opens
// the connection pool (with pgvector types registered), applies the embedded
// schema migrations and River's, runs transactions, and translates driver
// errors into the sentinels callers branch on.
//
// Queries themselves live in queries/*.sql and are generated into package
// models; every generated method takes a models.DBTX, so a caller passes the
// pool or a transaction as the work demands.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
)

// ErrNotFound is returned (wrapped) when a query that expects one row finds
// none. Translate turns pgx.ErrNoRows into it.
var ErrNotFound = errors.New("not found")

// ErrUnreachable is returned (wrapped, with the driver's reason) when
// PostgreSQL cannot be reached or refuses the connection.
var ErrUnreachable = errors.New("PostgreSQL is unreachable: check DATABASE_URL or DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME, or unset them to use a private server")

// ErrNoPgvector is returned by Migrate when the server lacks the pgvector
// extension.
var ErrNoPgvector = errors.New("PostgreSQL lacks the pgvector extension: run scripts/install-deps.sh (or install postgresql-<version>-pgvector) and try again")

// connectTimeout bounds how long Open and Migrate wait for the server.
const connectTimeout = 10 * time.Second

// Options tune the pool Open returns. The zero value keeps pgxpool's
// defaults and sets no deadline.
type Options struct {
	// MaxConns caps the pool's open connections (DB_POOL_SIZE); 0 keeps
	// pgxpool's default (the larger of 4 and the number of CPUs).
	MaxConns int32
	// StatementTimeout bounds every statement (DB_STATEMENT_TIMEOUT): the
	// server cancels one that runs longer (statement_timeout, SQLSTATE
	// 57014), and the client gives up on a statement, or on waiting for a
	// connection, that has no answer StatementTimeout plus
	// clientDeadlineMargin after it started, closing the connection: a
	// server that hangs without closing its TCP connection never hangs the
	// caller. 0 sets no limit.
	StatementTimeout time.Duration
}

// Open returns a pool connected to databaseURL, tuned by opt. Every new
// connection registers pgvector's types when the vector extension is
// installed in the database, so models can scan and bind pgvector.Vector.
// Open pings the server once; when that fails the error wraps
// ErrUnreachable.
func Open(ctx context.Context, databaseURL string, opt Options, log *slog.Logger) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", redactParseError(err))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	t := &tracer{} // times calls for Observe
	if opt.StatementTimeout > 0 {
		if cfg.ConnConfig.RuntimeParams == nil {
			cfg.ConnConfig.RuntimeParams = map[string]string{}
		}
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opt.StatementTimeout.Milliseconds(), 10)
		t.timeout = opt.StatementTimeout + clientDeadlineMargin
	}
	cfg.ConnConfig.Tracer = t
	cfg.AfterConnect = registerVector
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, unreachable(cfg.ConnConfig, err)
	}
	log.Debug("postgres pool open",
		slog.String("host", cfg.ConnConfig.Host),
		slog.Int("port", int(cfg.ConnConfig.Port)),
		slog.String("database", cfg.ConnConfig.Database),
		slog.Int("max_conns", int(cfg.MaxConns)),
		slog.Duration("statement_timeout", opt.StatementTimeout))
	return pool, nil
}

// registerVector registers pgvector's codecs on conn when the database has
// the extension; a database without it (not yet migrated) still connects.
func registerVector(ctx context.Context, conn *pgx.Conn) error {
	var present bool
	if err := conn.QueryRow(ctx, "SELECT to_regtype('vector') IS NOT NULL").Scan(&present); err != nil {
		return fmt.Errorf("look up vector type: %w", err)
	}
	if !present {
		return nil
	}
	if err := pgxvec.RegisterTypes(ctx, conn); err != nil {
		return fmt.Errorf("register pgvector types: %w", err)
	}
	return nil
}

// unreachable wraps a connection failure in ErrUnreachable, naming the
// server (never the password) and the driver's reason. Errors the server
// itself reported (authentication, missing database) are returned as such,
// with the address, since they have a different fix.
func unreachable(cfg *pgx.ConnConfig, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("PostgreSQL at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	return fmt.Errorf("%w (%s:%d: %v)", ErrUnreachable, cfg.Host, cfg.Port, err)
}

// redactParseError drops the URL from a parse error, since it may hold a
// password.
func redactParseError(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New(pe.Unwrap().Error())
	}
	return err
}

// Translate maps driver errors to this package's sentinels: pgx.ErrNoRows
// becomes ErrNotFound; anything else is returned unchanged.
func Translate(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// PostgreSQL error codes that callers map to client errors.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeCheckViolation      = "23514"
)

// IsUniqueViolation reports whether err is a unique-constraint violation,
// and of the named constraint when constraint is not empty.
func IsUniqueViolation(err error, constraint string) bool {
	return isCode(err, codeUniqueViolation, constraint)
}

// IsForeignKeyViolation reports whether err is a foreign-key violation, and
// of the named constraint when constraint is not empty.
func IsForeignKeyViolation(err error, constraint string) bool {
	return isCode(err, codeForeignKeyViolation, constraint)
}

// IsCheckViolation reports whether err is a check-constraint violation, and
// of the named constraint when constraint is not empty.
func IsCheckViolation(err error, constraint string) bool {
	return isCode(err, codeCheckViolation, constraint)
}

func isCode(err error, code, constraint string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		return false
	}
	return constraint == "" || pgErr.ConstraintName == constraint
}

// Beginner starts transactions: *pgxpool.Pool, *pgx.Conn and pgx.Tx (a
// savepoint) all qualify.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// WithTx runs fn in a transaction begun on b and commits it when fn returns
// nil; otherwise, or when fn panics, the transaction is rolled back and fn's
// error returned.
func WithTx(ctx context.Context, b Beginner, fn func(tx pgx.Tx) error) (err error) {
	tx, err := b.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
