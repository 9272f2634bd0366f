package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// replyError is a Redis server's error reply, as go-redis returns it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// TestRedisUnavailable: which Redis errors the hook marks as an outage.
func TestRedisUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"no such key", redis.Nil, false},
		{"wrong command", replyError("ERR unknown command 'X'"), false},
		{"wrong type", replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"caller cancelled", context.Canceled, false},
		{"connection refused", refused, true},
		{"connection lost", io.EOF, true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"client closed", redis.ErrClosed, true},
		{"deadline", context.DeadlineExceeded, true},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"master down", replyError("MASTERDOWN Link with MASTER is down"), true},
	} {
		if got := redisUnavailable(tc.err); got != tc.want {
			t.Errorf("%s: redisUnavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
	// Marked once, however often the hook sees the error.
	marked := markRedis(markRedis(refused))
	var ue *unavailableError
	if !errors.As(marked, &ue) || ue.dep != depRedis || !errors.Is(marked, refused) {
		t.Fatalf("markRedis = %v", marked)
	}
	if errors.As(ue.cause, &ue) {
		t.Fatalf("marked twice: %v", marked)
	}
}

// TestUnavailableDep: the dependency the error mapping names, found under
// a handler's wrapping; other errors name none.
func TestUnavailableDep(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		dep  string
	}{
		{"redis, under internal", internal(MsgCreateProjectError, fmt.Errorf("x: %w", unavailable(depRedis, io.EOF))), depRedis},
		{"statement timeout, under internal", internal(MsgCreateProjectError, &pgconn.PgError{Code: "57014"}), depDatabase},
		{"a failed query", internal(MsgCreateProjectError, &pgconn.PgError{Code: "23505"}), ""},
		{"a 401", fail(401, MsgInvalidOrExpiredSession), ""},
		{"shutting down", errShuttingDown, ""},
	} {
		dep, ok := unavailableDep(tc.err)
		if dep != tc.dep || ok != (tc.dep != "") {
			t.Errorf("%s: unavailableDep = %q, %v; want %q", tc.name, dep, ok, tc.dep)
		}
	}
}
