package db_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/testenv"
)

// TestUnavailableTable: what counts as PostgreSQL being unavailable, and
// what does not (the call's own fault, or another client's network error).
func TestUnavailableTable(t *testing.T) {
	pgErr := func(code string) error { return &pgconn.PgError{Code: code, Message: "m"} }
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"no rows", pgx.ErrNoRows, false},
		{"unique violation", pgErr("23505"), false},
		{"undefined table", pgErr("42P01"), false},
		{"statement timeout", pgErr("57014"), true},
		{"admin shutdown", pgErr("57P01"), true},
		{"crash shutdown", pgErr("57P02"), true},
		{"starting up", pgErr("57P03"), true},
		{"too many connections", pgErr("53300"), true},
		{"connection failure", pgErr("08006"), true},
		{"wrapped twice", fmt.Errorf("handler: %w", fmt.Errorf("query: %w", pgErr("57P01"))), true},
		{"connect error", fmt.Errorf("acquire: %w", &pgconn.ConnectError{}), true},
		{"client deadline", fmt.Errorf("query: %w", db.ErrDeadline), true},
		{"closed pool", puddle.ErrClosedPool, true},
		{"closed connection", fmt.Errorf("exec: %w", pgconn.ErrConnClosed), true},
		{"caller cancelled", context.Canceled, false},
		{"caller cancelled, wrapped", fmt.Errorf("x: %w", context.Canceled), false},
		{"caller's own deadline", context.DeadlineExceeded, false},
		{"another client's dial error", fmt.Errorf("smtp: %w", dialErr), false},
		{"another client's EOF", io.EOF, false},
	} {
		if got := db.Unavailable(tc.err); got != tc.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestUnavailableDriverErrors: the driver's real errors for a refused
// connection, a connection that broke and a closed pool count.
func TestUnavailableDriverErrors(t *testing.T) {
	ctx := testCtx(t)
	_, err := pgx.Connect(ctx, "postgres://code4me:x@127.0.0.1:1/code4me?connect_timeout=2")
	if err == nil || !db.Unavailable(err) {
		t.Errorf("refused connection: Unavailable(%v) = false", err)
	}

	u := testenv.DatabaseURL(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	conn.PgConn().Conn().Close() // the socket goes away under the driver
	_, err = conn.Exec(ctx, "SELECT 1")
	if err == nil || !db.Unavailable(err) {
		t.Errorf("broken connection: Unavailable(%v) = false", err)
	}

	pool, err := db.Open(ctx, u, db.Options{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	_, err = pool.Exec(ctx, "SELECT 1")
	if err == nil || !db.Unavailable(err) {
		t.Errorf("closed pool: Unavailable(%v) = false", err)
	}
}

// TestOpenOptions: MaxConns caps the pool and StatementTimeout is each
// connection's statement_timeout: a longer statement is cancelled by the
// server (57014), which counts as unavailable.
func TestOpenOptions(t *testing.T) {
	ctx := testCtx(t)
	pool, err := db.Open(ctx, testenv.DatabaseURL(t), db.Options{MaxConns: 3, StatementTimeout: 300 * time.Millisecond}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if got := pool.Config().MaxConns; got != 3 {
		t.Errorf("MaxConns = %d, want 3", got)
	}
	var setting string
	if err := pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&setting); err != nil || setting != "300ms" {
		t.Fatalf("statement_timeout = %q, %v; want 300ms", setting, err)
	}
	_, err = pool.Exec(ctx, "SELECT pg_sleep(30)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("a 30 s statement under a 300 ms statement_timeout: %v, want SQLSTATE 57014", err)
	}
	if !db.Unavailable(err) {
		t.Errorf("Unavailable(%v) = false", err)
	}
	// The connection stays usable after the server's cancellation.
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(new(int)); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
}

// TestClientDeadline: a server that stops answering without closing its
// TCP connections (here a proxy that stops forwarding) ends a statement,
// and a wait for a new connection, at the client's deadline with
// ErrDeadline, instead of hanging.
func TestClientDeadline(t *testing.T) {
	ctx := testCtx(t)
	target, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	px := startFreezingProxy(t, target.Host)
	target.Host = px.addr()
	pool, err := db.Open(ctx, target.String(), db.Options{StatementTimeout: 200 * time.Millisecond}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// First: the proxy's connections closing ends a connection attempt the
	// frozen proxy holds, which pool.Close would wait for.
	t.Cleanup(px.close)
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(new(int)); err != nil {
		t.Fatal(err)
	}

	px.freeze()
	// The statement meets the deadline on its connection (the driver's
	// timeout), and the next one waiting for a new connection, which the
	// frozen server never completes (ErrDeadline).
	_, err = pool.Exec(ctx, "SELECT 1")
	if !pgconn.Timeout(err) || !db.Unavailable(err) {
		t.Fatalf("statement on an open connection: %v; want the driver's timeout, unavailable", err)
	}
	_, err = pool.Exec(ctx, "SELECT 1")
	if !errors.Is(err, db.ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) || !db.Unavailable(err) {
		t.Fatalf("statement on a new connection: %v; want ErrDeadline, unavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the test's own deadline passed")
	}
	// The caller's own earlier deadline stays the caller's.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = pool.Exec(short, "SELECT 1")
	if errors.Is(err, db.ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller's deadline: %v; want context.DeadlineExceeded, not ErrDeadline", err)
	}
}

// freezingProxy forwards TCP connections to a server until freeze, after
// which it holds every byte: the server looks hung to its clients.
type freezingProxy struct {
	ln        net.Listener
	frozen    chan struct{}
	once      sync.Once
	mu        sync.Mutex
	closeOnce sync.Once
	conns     []net.Conn
	wg        sync.WaitGroup
}

func startFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, frozen: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(s, c)
			go p.pipe(c, s)
		}
	}()
	t.Cleanup(p.close)
	return p
}

// close stops the proxy and closes its connections; a second call does
// nothing.
func (p *freezingProxy) close() {
	p.closeOnce.Do(func() {
		p.ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

func (p *freezingProxy) addr() string { return p.ln.Addr().String() }

func (p *freezingProxy) freeze() { p.once.Do(func() { close(p.frozen) }) }

// pipe copies src to dst until either fails; once frozen, it reads but
// forwards nothing.
func (p *freezingProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		select {
		case <-p.frozen:
			continue
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
