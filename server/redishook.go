package server

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// redisOutageHook marks the Redis errors that say Redis could not serve a
// command as unavailable(depRedis, err), where they happen, so that every
// caller's error answers 503 naming Redis however the caller wrapped it:
// a connection refused, broken or timed out (the client's dial, read,
// write and pool timeouts), a closed client, or a server that is loading
// its data, has no reachable master or too many clients. redis.Nil (no such key), the
// server's other error replies (a wrong command, a failed transaction)
// and a context the caller cancelled are left alone. The command's own
// error (cmd.Err, what Result returns) is replaced too.
type redisOutageHook struct{}

// redisUnavailable reports whether err from a Redis command is an outage.
func redisUnavailable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	if redis.IsLoadingError(err) || redis.IsMasterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsClusterDownError(err) || redis.IsMaxClientsError(err) {
		return true
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}

func markRedis(err error) error {
	var ue *unavailableError
	if !redisUnavailable(err) || errors.As(err, &ue) {
		return err
	}
	return unavailable(depRedis, err)
}

func (redisOutageHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (redisOutageHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if marked := markRedis(cmd.Err()); marked != cmd.Err() {
			cmd.SetErr(marked)
		}
		return markRedis(err)
	}
}

func (redisOutageHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if marked := markRedis(cmd.Err()); marked != cmd.Err() {
				cmd.SetErr(marked)
			}
		}
		return markRedis(err)
	}
}
