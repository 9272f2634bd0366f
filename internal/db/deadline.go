package db

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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

// tracer gives every statement, batch, copy, prepare and pool acquisition
// a deadline of timeout (or the caller's, when that is sooner; none when
// timeout is 0), and times each one for the function Observe set. pgx runs
// the rest of each call under the context a tracer's start method returns,
// and hands that context to the matching end method, which releases the
// timer and reports the duration. It traces nothing else. Every pool Open
// returns has one.
type tracer struct {
	timeout time.Duration
	observe atomic.Pointer[func(Op, time.Duration)]
}

// Op is the kind of call Observe's function is told about.
type Op uint8

// The calls a pool times.
const (
	OpQuery   Op = iota // a statement: Exec, Query, QueryRow
	OpBatch             // a batch, from send to close
	OpCopy              // a COPY FROM
	OpPrepare           // preparing a statement (inside a query's time)
	OpAcquire           // waiting for a pool connection, a new connection's setup included
	NumOps              // the number of kinds
)

var opNames = [NumOps]string{"query", "batch", "copy", "prepare", "acquire"}

// String is the op's name: query, batch, copy, prepare or acquire.
func (o Op) String() string {
	if o < NumOps {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", o)
}

// Observe makes pool report the duration of every call it traces to f
// (nil stops it); f runs in the caller's goroutine as each call ends, so it
// must be quick. A pool has one such function: a later Observe replaces
// it. It reports false for a pool that Open did not make, which it leaves
// alone.
func Observe(pool *pgxpool.Pool, f func(op Op, d time.Duration)) bool {
	t, ok := pool.Config().ConnConfig.Tracer.(*tracer)
	if !ok {
		return false
	}
	if f == nil {
		t.observe.Store(nil)
	} else {
		t.observe.Store(&f)
	}
	return true
}

// ErrDeadline is the error of a wait for a connection that met the
// client's deadline (Options.StatementTimeout plus clientDeadlineMargin):
// PostgreSQL did not answer in time. It wraps context.DeadlineExceeded. A
// statement that meets that deadline fails with the driver's timeout error
// instead (pgconn.Timeout reports it). Either way Unavailable is true; a
// deadline of the caller's own context that comes first gives
// context.DeadlineExceeded as usual.
var ErrDeadline = fmt.Errorf("PostgreSQL did not answer in time: %w", context.DeadlineExceeded)

// tracedCtx is a call's context under the tracer: with the deadline (its
// Err is ErrDeadline when that deadline, not the caller's context, ended
// it, so that the driver's and the pool's errors, which return ctx.Err(),
// say so), and the call's start when it is timed.
type tracedCtx struct {
	context.Context // the caller's, with the deadline when there is one
	caller          context.Context
	cancel          context.CancelFunc // nil without a deadline
	start           time.Time          // zero when not timed
}

func (c *tracedCtx) Err() error {
	err := c.Context.Err()
	if errors.Is(err, context.DeadlineExceeded) && c.caller.Err() == nil {
		return ErrDeadline
	}
	return err
}

func (t *tracer) start(ctx context.Context) context.Context {
	timed := t.observe.Load() != nil
	if t.timeout <= 0 && !timed {
		return ctx
	}
	c := &tracedCtx{Context: ctx, caller: ctx}
	if t.timeout > 0 {
		c.Context, c.cancel = context.WithTimeout(ctx, t.timeout)
	}
	if timed {
		c.start = time.Now()
	}
	return c
}

// end releases the deadline that start put in ctx and reports the call's
// duration.
func (t *tracer) end(ctx context.Context, op Op) {
	c, ok := ctx.(*tracedCtx)
	if !ok {
		return
	}
	if c.cancel != nil {
		c.cancel()
	}
	if !c.start.IsZero() {
		if f := t.observe.Load(); f != nil {
			(*f)(op, time.Since(c.start))
		}
	}
}

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return t.start(ctx)
}

func (t *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	t.end(ctx, OpQuery)
}

func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return t.start(ctx)
}

func (*tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *tracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	t.end(ctx, OpBatch)
}

func (t *tracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	return t.start(ctx)
}

func (t *tracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	t.end(ctx, OpCopy)
}

func (t *tracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	return t.start(ctx)
}

func (t *tracer) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareEndData) {
	t.end(ctx, OpPrepare)
}

func (t *tracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return t.start(ctx)
}

func (t *tracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireEndData) {
	t.end(ctx, OpAcquire)
}
