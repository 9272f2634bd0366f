package db_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/testenv"
)

// opLog records what a pool reports to Observe's function.
type opLog struct {
	mu  sync.Mutex
	ops []db.Op
	dur map[db.Op][]time.Duration
}

func (l *opLog) observe(op db.Op, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
	l.dur[op] = append(l.dur[op], d)
}

// take returns what was recorded since the last take.
func (l *opLog) take() ([]db.Op, map[db.Op][]time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops, dur := l.ops, l.dur
	l.ops, l.dur = nil, map[db.Op][]time.Duration{}
	return ops, dur
}

// TestObserve: a pool from Open reports each call it makes, by kind and
// with its duration (a statement that sleeps 50 ms takes at least that,
// and no longer than the caller waited), with and without a statement
// timeout, which still applies; Observe(nil) stops the reports, and a
// pool Open did not make is left alone.
func TestObserve(t *testing.T) {
	ctx := testCtx(t)
	for _, timeout := range []time.Duration{0, 400 * time.Millisecond} {
		pool, err := db.Open(ctx, testenv.DatabaseURL(t), db.Options{MaxConns: 2, StatementTimeout: timeout}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		log := &opLog{dur: map[db.Op][]time.Duration{}}
		if !db.Observe(pool, log.observe) {
			t.Fatal("Observe refused a pool that Open made")
		}

		start := time.Now()
		if _, err := pool.Exec(ctx, "SELECT pg_sleep(0.05)"); err != nil {
			t.Fatal(err)
		}
		waited := time.Since(start)
		ops, dur := log.take()
		if len(ops) != 2 || ops[0] != db.OpAcquire || ops[1] != db.OpQuery {
			t.Fatalf("timeout %v: one Exec reported %v, want [acquire query]", timeout, ops)
		}
		if d := dur[db.OpQuery][0]; d < 50*time.Millisecond || d > waited {
			t.Errorf("timeout %v: the 50 ms statement took %v (the caller waited %v)", timeout, d, waited)
		}

		b := &pgx.Batch{}
		b.Queue("SELECT 1")
		b.Queue("SELECT 2")
		if err := pool.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		if ops, _ := log.take(); len(ops) != 2 || ops[0] != db.OpAcquire || ops[1] != db.OpBatch {
			t.Errorf("timeout %v: one batch reported %v, want [acquire batch]", timeout, ops)
		}

		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CREATE TEMP TABLE observed (x int)"); err != nil {
			t.Fatal(err)
		}
		if n, err := conn.CopyFrom(ctx, pgx.Identifier{"observed"}, []string{"x"}, pgx.CopyFromRows([][]any{{1}, {2}})); err != nil || n != 2 {
			t.Fatalf("copy: %d rows, %v", n, err)
		}
		conn.Release()
		// The copy prepares its statement first, to learn the columns' types.
		if ops, _ := log.take(); fmt.Sprint(ops) != "[acquire query prepare copy]" {
			t.Errorf("timeout %v: acquire, exec, copy reported %v, want [acquire query prepare copy]", timeout, ops)
		}

		if timeout > 0 {
			_, err := pool.Exec(ctx, "SELECT pg_sleep(30)")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
				t.Errorf("a 30 s statement under a %v statement_timeout: %v, want SQLSTATE 57014", timeout, err)
			}
			if _, dur := log.take(); len(dur[db.OpQuery]) != 1 || dur[db.OpQuery][0] < timeout || dur[db.OpQuery][0] > 10*time.Second {
				t.Errorf("the cancelled statement was reported as %v", dur[db.OpQuery])
			}
		}

		db.Observe(pool, nil)
		if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		if ops, _ := log.take(); len(ops) != 0 {
			t.Errorf("timeout %v: after Observe(nil) the pool reported %v", timeout, ops)
		}
	}

	plain, err := pgxpool.New(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if db.Observe(plain, func(db.Op, time.Duration) {}) {
		t.Error("Observe took a pool that Open did not make")
	}
}
