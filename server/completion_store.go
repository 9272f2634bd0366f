package server

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Persistence of a completion query overlapped with inference.
//
// The rows that do not depend on the models' output (meta_query without
// its total serving time, completion_query, context, context files and
// telemetry) are written while the models run, inside an explicit
// transaction on a connection lent from the pool for the duration of the
// request. When the models have answered, the generations, the total
// serving time and COMMIT go in one batch: one round trip after inference,
// and the response is sent only after COMMIT returned, so every
// acknowledged meta_query_id is committed with its generations (DESIGN §3).
//
// The transaction is rolled back (and nothing is visible, ever) when the
// request is cancelled, every model was overloaded, or anything in it
// fails; in the last case the caller writes the whole query after
// inference in one implicit transaction, exactly as without the overlap.
//
// A connection held through inference is not available to other requests,
// so one is lent only when the pool has an idle connection at that moment
// and fewer than half of the pool's connections are lent already;
// otherwise the request takes the after-inference path and inference never
// waits for a connection. The transaction lives at most earlyStoreHold
// (longer than the engine's per-request timeout) and Postgres ends the
// session if it sits idle in the transaction longer than that.

// earlyStoreHold bounds how long a lent connection and its open transaction
// live: the engine deadline of a completion plus a margin. A request whose
// models take longer is written by the after-inference path.
const earlyStoreHold = completionTimeout + 5*time.Second

// earlyAcquireWait bounds the wait for the idle connection the pool
// reported; the lend fails rather than wait longer.
const earlyAcquireWait = 5 * time.Millisecond

var (
	errEarlyAborted = errors.New("early store: rolled back")
	errEarlyExpired = errors.New("early store: held too long")
)

// earlyLender decides whether a connection may be lent for the duration of
// a request. The zero value lends nothing.
type earlyLender struct {
	max  int32        // most connections lent at once; 0 disables lending
	held atomic.Int32 // connections lent now
	// lent and fellBack count requests stored each way (tests, metrics).
	lent, fellBack atomic.Int64
}

// newEarlyLender lends at most half the pool's connections.
func newEarlyLender(pool *pgxpool.Pool) *earlyLender {
	return &earlyLender{max: pool.Config().MaxConns / 2}
}

// reserve claims a lending slot when idle > 0 and fewer than max are lent.
func (l *earlyLender) reserve(idle int32) bool {
	if idle <= 0 {
		return false
	}
	for {
		n := l.held.Load()
		if n >= l.max {
			return false
		}
		if l.held.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *earlyLender) release() { l.held.Add(-1) }

// earlyStore is a transaction opened while the models run. Its goroutine
// owns the connection; finish and abort talk to it through channels.
type earlyStore struct {
	fin chan *pgx.Batch // the closing batch; nil rolls back
	res chan error      // the outcome of the transaction
}

// startEarlyStore lends a connection and, in a goroutine, begins a
// transaction on it and sends what queue adds to the batch. It returns nil
// when no connection can be lent now. ctx's cancellation does not reach
// the transaction: abort ends it.
func (s *Server) startEarlyStore(ctx context.Context, queue func(ctx context.Context, b *batchTx) error) *earlyStore {
	l := s.plugin.early
	if l == nil || !l.reserve(s.db.Stat().IdleConns()) {
		return nil
	}
	es := &earlyStore{fin: make(chan *pgx.Batch, 1), res: make(chan error, 1)}
	go func() {
		defer l.release()
		es.res <- s.runEarlyStore(context.WithoutCancel(ctx), es.fin, queue)
	}()
	return es
}

func (s *Server) runEarlyStore(ctx context.Context, fin <-chan *pgx.Batch, queue func(context.Context, *batchTx) error) error {
	ctx, cancel := context.WithTimeout(ctx, earlyStoreHold)
	defer cancel()
	actx, acancel := context.WithTimeout(ctx, earlyAcquireWait)
	conn, err := s.db.Acquire(actx)
	acancel()
	if err != nil {
		return fmt.Errorf("early store: acquire: %w", err)
	}
	// Release destroys a connection still inside a transaction, so an
	// unfinished transaction never returns to the pool.
	defer conn.Release()
	var pre batchTx
	pre.b.Queue("BEGIN")
	pre.b.Queue(fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = %d", (earlyStoreHold + 5*time.Second).Milliseconds()))
	if err := queue(ctx, &pre); err != nil {
		rollback(conn)
		return err
	}
	if err := conn.SendBatch(ctx, &pre.b).Close(); err != nil {
		rollback(conn)
		return fmt.Errorf("early store: %w", err)
	}
	select {
	case b := <-fin:
		if b == nil {
			rollback(conn)
			return errEarlyAborted
		}
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			rollback(conn)
			return fmt.Errorf("early store: commit: %w", err)
		}
		if st := conn.Conn().PgConn().TxStatus(); st != 'I' {
			rollback(conn)
			return fmt.Errorf("early store: transaction status %q after commit", st)
		}
		return nil
	case <-ctx.Done():
		rollback(conn)
		return errEarlyExpired
	}
}

// rollback ends conn's transaction, if any. When that fails the connection
// is left inside it, and Release destroys it.
func rollback(conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Exec(ctx, "ROLLBACK")
}

// finish sends b (which must end with COMMIT) in the transaction and
// returns when it is committed, or why not; then nothing of the
// transaction is stored.
func (es *earlyStore) finish(b *pgx.Batch) error {
	es.fin <- b
	return <-es.res
}

// abort rolls the transaction back without waiting. Safe on nil.
func (es *earlyStore) abort() {
	if es != nil {
		es.fin <- nil
	}
}
