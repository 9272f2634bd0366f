package server

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// batchTx is a models.DBTX that queues the statements of sqlc's :exec
// queries in a pgx.Batch instead of running them, so that the rows of one
// completion query reach Postgres in one round trip. The batch ends with a
// single Sync, so Postgres runs it as one implicit transaction: all rows or
// none, committed (and flushed to the WAL) before send returns.
//
// Only :exec queries can be queued; anything that reads a result fails.
type batchTx struct{ b pgx.Batch }

var errNotBatchable = errors.New("server: only :exec queries can be batched")

func (q *batchTx) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q.b.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

func (q *batchTx) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errNotBatchable
}

func (q *batchTx) QueryRow(context.Context, string, ...any) pgx.Row { return errRow{} }

func (q *batchTx) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, errNotBatchable
}

type errRow struct{}

func (errRow) Scan(...any) error { return errNotBatchable }

// send runs the queued statements and returns when they are committed, or
// the first error (then nothing is stored).
func (q *batchTx) send(ctx context.Context, db *pgxpool.Pool) error {
	if q.b.Len() == 0 {
		return nil
	}
	return db.SendBatch(ctx, &q.b).Close()
}
