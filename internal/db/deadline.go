package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// clientDeadlineMargin is how much longer than the server's
// statement_timeout the client waits for a statement: a server that
// answers reports the timeout itself (SQLSTATE 57014) and the connection
// stays usable; only a server that does not answer at all meets the
// client's deadline, which closes the connection.
const clientDeadlineMargin = time.Second

// deadlineTracer gives every statement, batch, copy, prepare and pool
// acquisition a deadline of timeout (or the caller's, when that is
// sooner). pgx runs the rest of each call under the context a tracer's
// start method returns, and hands that context to the matching end
// method, which releases the timer. It traces nothing else.
type deadlineTracer struct {
	timeout time.Duration
}

// ErrDeadline is the error of a wait for a connection that met the
// client's deadline (Options.StatementTimeout plus clientDeadlineMargin):
// PostgreSQL did not answer in time. It wraps context.DeadlineExceeded. A
// statement that meets that deadline fails with the driver's timeout error
// instead (pgconn.Timeout reports it). Either way Unavailable is true; a
// deadline of the caller's own context that comes first gives
// context.DeadlineExceeded as usual.
var ErrDeadline = fmt.Errorf("PostgreSQL did not answer in time: %w", context.DeadlineExceeded)

// deadlineCtx is a call's context under the tracer's deadline: its Err is
// ErrDeadline when that deadline, not the caller's context, ended it, so
// that the driver's and the pool's errors (which return ctx.Err()) say so.
type deadlineCtx struct {
	context.Context // the caller's, with the deadline
	caller          context.Context
	cancel          context.CancelFunc
}

func (c *deadlineCtx) Err() error {
	err := c.Context.Err()
	if errors.Is(err, context.DeadlineExceeded) && c.caller.Err() == nil {
		return ErrDeadline
	}
	return err
}

func (t deadlineTracer) start(ctx context.Context) context.Context {
	dctx, cancel := context.WithTimeout(ctx, t.timeout)
	return &deadlineCtx{Context: dctx, caller: ctx, cancel: cancel}
}

// end releases the deadline that start put in ctx.
func end(ctx context.Context) {
	if c, ok := ctx.(*deadlineCtx); ok {
		c.cancel()
	}
}

func (t deadlineTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return t.start(ctx)
}

func (deadlineTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	end(ctx)
}

func (t deadlineTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return t.start(ctx)
}

func (deadlineTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (deadlineTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	end(ctx)
}

func (t deadlineTracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	return t.start(ctx)
}

func (deadlineTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	end(ctx)
}

func (t deadlineTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	return t.start(ctx)
}

func (deadlineTracer) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareEndData) {
	end(ctx)
}

func (t deadlineTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return t.start(ctx)
}

func (deadlineTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireEndData) {
	end(ctx)
}
