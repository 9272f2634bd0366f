package db

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// Unavailable reports whether err says that PostgreSQL could not serve the
// call, rather than that the call was wrong: a connection that failed or
// broke, a deadline met (ErrDeadline, pgconn's timeouts), a
// closed pool, or one of the server's errors of that kind (a cancelled
// statement, 57014, which is what statement_timeout gives; the server
// shutting down or starting, 57P01-57P03; too many connections, 53300; a
// connection exception, class 08). Trying again later may succeed. A
// context the caller cancelled is not an outage.
//
// A network error counts only when the driver reported it: pgconn wraps
// every error of its own in a type with a SafeToRetry method, which errors
// of other clients (Redis, SMTP, HTTP) lack.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57014", "57P01", "57P02", "57P03", "53300":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.Timeout(err) || errors.Is(err, ErrDeadline) ||
		errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	var fromDriver interface{ SafeToRetry() bool }
	if !errors.As(err, &fromDriver) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}
