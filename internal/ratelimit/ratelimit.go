// Package ratelimit counts requests in Redis so that every server process
// shares one budget per subject and route.
//
// The window is fixed per counter: the first request of a subject on a route
// starts a window of Options.Window (an hour by default) and the counter
// expires with it, so there is no global reset and no sweeper. A subject is
// the authenticated user ("u:<id>") or, before login, the client address
// ("ip:<addr>"), and the route is the route template (/api/completion/{id},
// never the raw path), so ids in paths do not get one bucket each and both
// trailing-slash variants share a counter.
//
// The client address comes from ClientIP, which believes X-Forwarded-For
// only from configured trusted proxies.
package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a Limiter.
type Options struct {
	// Default is the number of requests allowed per window on a route that
	// ByRoute does not list. Must be at least 1.
	Default int
	// ByRoute maps route templates to their own limits.
	ByRoute map[string]int
	// Window is the length of a counting window; default one hour.
	Window time.Duration
	// Prefix starts every Redis key; default "ratelimit:".
	Prefix string
}

// Limiter decides whether a request may proceed. It is safe for concurrent
// use and holds no state outside Redis.
type Limiter struct {
	rdb redis.Cmdable
	o   Options
}

// New returns a Limiter counting in rdb.
func New(rdb redis.Cmdable, o Options) *Limiter {
	if o.Window <= 0 {
		o.Window = time.Hour
	}
	if o.Default < 1 {
		o.Default = 1
	}
	if o.Prefix == "" {
		o.Prefix = "ratelimit:"
	}
	return &Limiter{rdb: rdb, o: o}
}

// Result is the outcome of one Allow.
type Result struct {
	Allowed bool
	// Limit is the route's limit per window and Remaining what is left of it.
	Limit, Remaining int
	// Reset is how long until the window ends; when the request is refused
	// it is the Retry-After.
	Reset time.Duration
}

// RetryAfterSeconds is Reset rounded up to whole seconds, at least 1.
func (r Result) RetryAfterSeconds() int {
	s := int((r.Reset + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Limit returns the limit per window for route.
func (l *Limiter) Limit(route string) int {
	if n, ok := l.o.ByRoute[route]; ok {
		return n
	}
	return l.o.Default
}

// count increments the counter and starts its window on the first hit. The
// PTTL guard repairs a counter that lost its expiry.
var count = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
`)

// Allow counts one request of subject on route and reports whether it is
// within the limit. On a Redis error the caller decides: the server lets
// most routes through and logs the error, and refuses (503) the routes
// that check passwords without a login, whose limit is what stops
// password guessing.
func (l *Limiter) Allow(ctx context.Context, subject, route string) (Result, error) {
	vals, err := count.Run(ctx, l.rdb, []string{l.Key(route, subject)}, l.o.Window.Milliseconds()).Int64Slice()
	if err != nil {
		limit := l.Limit(route)
		return Result{Allowed: true, Limit: limit, Remaining: limit}, fmt.Errorf("ratelimit: count: %w", err)
	}
	return l.Result(route, vals[0], time.Duration(vals[1])*time.Millisecond), nil
}

// Key is the counter of subject on route. A caller that counts in its own
// Redis script (to save a round trip) increments this key as Allow's
// script does: INCR, starting a window of Window on the first hit, and
// restoring a lost expiry.
func (l *Limiter) Key(route, subject string) string { return l.o.Prefix + route + "|" + subject }

// Window is the length of a counting window.
func (l *Limiter) Window() time.Duration { return l.o.Window }

// Result is the outcome of a count of n on route, with ttl left in the
// window, made by Allow or by a caller's own script (see Key).
func (l *Limiter) Result(route string, n int64, ttl time.Duration) Result {
	limit := l.Limit(route)
	rem := max(limit-int(n), 0)
	return Result{Allowed: int(n) <= limit, Limit: limit, Remaining: rem, Reset: ttl}
}

// ParseTrusted parses proxy addresses and CIDR prefixes ("10.0.0.1",
// "10.0.0.0/8", "::1").
func ParseTrusted(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("ratelimit: trusted proxy %q: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: trusted proxy %q: %w", s, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func trusted(a netip.Addr, list []netip.Prefix) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of the client that sent a request which
// arrived from peer with the given X-Forwarded-For header. The header is
// believed only while the hop that appended to it is a trusted proxy: the
// list is walked from the right, skipping trusted proxies, and the first
// untrusted address is the client. A client cannot spoof its address by
// sending its own X-Forwarded-For, because its claim sits left of the first
// address a trusted proxy wrote.
func ClientIP(peer netip.Addr, xff string, trustedProxies []netip.Prefix) netip.Addr {
	peer = peer.Unmap()
	if !trusted(peer, trustedProxies) || xff == "" {
		return peer
	}
	hops := strings.Split(xff, ",")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return client
		}
		a = a.Unmap()
		client = a
		if !trusted(a, trustedProxies) {
			return a
		}
	}
	return client
}
