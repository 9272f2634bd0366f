package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/auth"
)

// Speculative authentication. A plugin sends a completion per keystroke
// with the same session and project tokens; checking them is a Redis
// round trip (0.3–0.8 ms on an idle machine) that used to come before
// anything else. For a token pair that passed recently, the completion
// now starts with the Principal that pass gave while Redis checks the
// pair again, and nothing leaves the server until it has: no row is
// written, no token streamed and no answer sent before the check, whose
// verdict (401, 429, or a different Principal) wins over the work's.
//
//   - Only a pair that authenticated on this server within speculateTTL is
//     used, so credentials nobody has seen succeed never reach the engine.
//   - A refusal (401 or 429) forgets the pair: the next request with it is
//     checked before any work, so a revoked token or a spent limit costs
//     the engine at most one cancelled prompt.
//   - A confirmed Principal that differs from the remembered one (the
//     project's context changed on another server) makes the request run
//     again with the confirmed one. A context update through this server
//     forgets the project's pairs at once (forgetProject), so a plugin that
//     updates the context before its completions does not pay for a run
//     under the old context.
//
// The read-only work started early (the caller's state and context files
// from Postgres, the engine) needs nothing the check could change.

// speculateTTL bounds how long a confirmed pair is remembered.
const speculateTTL = 2 * time.Minute

// principalCacheMax bounds the remembered pairs; a full cache is swept of
// expired pairs, then cleared.
const principalCacheMax = 4096

// principalCache remembers the Principal each recent token pair gave.
// Keys are hashes of the tokens.
type principalCache struct {
	mu sync.Mutex
	m  map[[32]byte]cachedPrincipal
	// epoch counts each project's context updates on this server; a pair
	// remembered under an older count is not used.
	epoch map[uuid.UUID]uint64
	// cleared counts the times epoch was cleared to bound it.
	cleared uint64
	// speculated counts requests started before their check; stale those
	// run again because the check confirmed another Principal.
	speculated, stale atomic.Int64
}

type cachedPrincipal struct {
	p     Principal
	at    time.Time
	epoch uint64
}

func pairKey(sess, proj string) [32]byte { return sha256.Sum256([]byte(sess + "\x00" + proj)) }

// get returns a copy of the Principal the pair last gave.
func (pc *principalCache) get(sess, proj string) (*Principal, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	e, ok := pc.m[pairKey(sess, proj)]
	if !ok || time.Since(e.at) > speculateTTL || e.epoch != pc.epoch[e.p.ProjectID] {
		return nil, false
	}
	p := e.p
	return &p, true
}

// put remembers what the pair gave now.
func (pc *principalCache) put(sess, proj string, p *Principal) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil {
		pc.m = map[[32]byte]cachedPrincipal{}
	}
	if len(pc.m) >= principalCacheMax {
		for k, e := range pc.m {
			if time.Since(e.at) > speculateTTL {
				delete(pc.m, k)
			}
		}
		if len(pc.m) >= principalCacheMax {
			clear(pc.m)
		}
	}
	pc.m[pairKey(sess, proj)] = cachedPrincipal{p: *p, at: time.Now(), epoch: pc.epoch[p.ProjectID]}
}

// forgetProject stops the use of every pair remembered for project: its
// context has changed, so their context version is stale.
func (pc *principalCache) forgetProject(project uuid.UUID) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.epoch == nil {
		pc.epoch = map[uuid.UUID]uint64{}
	}
	if len(pc.epoch) >= principalCacheMax {
		// Bounded like the pairs: forgetting every pair makes the counts
		// unnecessary (a pair remembered later records the count of then).
		clear(pc.m)
		clear(pc.epoch)
		pc.cleared++
	}
	pc.epoch[project]++
}

// ctxEpoch identifies the state of a project's context updates through
// this server: two reads give the same value only if no update came
// between them.
type ctxEpoch struct{ cleared, n uint64 }

// epochOf is the project's ctxEpoch now.
func (pc *principalCache) epochOf(project uuid.UUID) ctxEpoch {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return ctxEpoch{pc.cleared, pc.epoch[project]}
}

// drop forgets the pair.
func (pc *principalCache) drop(sess, proj string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.m, pairKey(sess, proj))
}

// errStalePrincipal: the check confirmed the caller with another Principal
// than the one the work started with.
var errStalePrincipal = errors.New("speculation: the confirmed principal differs")

// authGate is a Redis check of the caller running beside work started
// with spec. Pipeline code takes a nil *authGate as already confirmed.
type authGate struct {
	spec    *Principal
	done    chan struct{}
	p       *Principal
	counted *auth.Counted
	err     error
	ms      float64
	// allowed is the rate limiter's verdict for counted.
	allowed bool
	// Set by settle, on the request's goroutine: settled, and the answer
	// the check gave (nil: confirmed).
	settled bool
	refusal error
}

// verdict waits for the check and returns nil when work started with spec
// may have effects, errStalePrincipal, or the refusal (which admit turns
// into the answer).
func (g *authGate) verdict() error {
	if g == nil {
		return nil
	}
	<-g.done
	switch {
	case g.err != nil:
		return g.err
	case !g.allowed:
		return fail(fiber.StatusTooManyRequests, MsgTooManyRequests)
	case *g.p != *g.spec:
		return errStalePrincipal
	}
	return nil
}

const localsGate = "code4me.gate"

// gate returns the request's authGate, nil when it was checked first.
func gate(c *fiber.Ctx) *authGate {
	g, _ := c.Locals(localsGate).(*authGate)
	return g
}

// guardSpeculative is guardOverlap(ClassSP, work) that, for a token pair
// confirmed recently, runs the handler at once under the remembered
// Principal while the pair is checked (authGate). The handler passes the
// gate to the pipeline (withGate), which waits for its verdict before any
// effect, and answers through settle. Should a handler not settle, the
// check still decides the answer here.
func (s *Server) guardSpeculative(work bodyWork) fiber.Handler {
	checked := s.guardOverlap(ClassSP, work)
	return func(c *fiber.Ctx) error {
		creds := s.sessionCredsOf(c)
		spec, ok := s.principals.get(creds.session, creds.project)
		if creds.session == "" || !ok {
			err := checked(c)
			s.remember(creds, principal(c), err)
			return err
		}
		s.principals.speculated.Add(1)
		t := &stageTimes{start: time.Now()}
		c.Locals(localsTiming, t)
		ctx := c.UserContext()
		g := &authGate{spec: spec, done: make(chan struct{})}
		go func() {
			defer close(g.done)
			t0 := time.Now()
			g.p, g.counted, g.err = s.authSession(ctx, creds, ClassSP)
			g.ms = msSince(t0)
			g.allowed = g.counted == nil || s.limiter.Result(creds.route, g.counted.N, g.counted.TTL).Allowed
		}()
		c.Locals(localsGate, g)
		c.Locals(localsPrincipal, spec)
		body := c.Body()
		c.Locals(localsOverlapped, sync.OnceValue(func() any { return work(ctx, body) }))
		err := c.Next()
		if !g.settled {
			if serr := s.settle(c); serr != nil {
				c.Response().Reset()
				err = serr
			}
		}
		p := g.p
		if g.refusal != nil {
			p, err = nil, g.refusal
		}
		s.remember(creds, p, err)
		return err
	}
}

// settle ends speculation on the request's goroutine: it waits for the
// check, records its stage, applies the rate limit exactly as guard does,
// and returns the refusal to answer (nil when the caller is confirmed).
// The confirmed Principal replaces the remembered one in c. Without an
// authGate it returns nil.
func (s *Server) settle(c *fiber.Ctx) error {
	g := gate(c)
	if g == nil {
		return nil
	}
	if g.settled {
		return g.refusal
	}
	<-g.done
	g.settled = true
	timing(c).add(StageAuth, g.ms)
	g.refusal = s.admit(c, ClassSP, g.p, g.counted, g.err)
	if g.refusal == nil {
		c.Locals(localsPrincipal, g.p)
	}
	return g.refusal
}

// remember keeps the Principal a pair was confirmed with (p, when the
// request was not refused), or forgets the pair when the request was
// refused for its credentials or its limit.
func (s *Server) remember(creds sessionCreds, p *Principal, err error) {
	if creds.session == "" {
		return
	}
	var ae *apiError
	switch {
	case errors.As(err, &ae) && (ae.status == fiber.StatusUnauthorized || ae.status == fiber.StatusTooManyRequests):
		s.principals.drop(creds.session, creds.project)
	case p != nil:
		s.principals.put(creds.session, creds.project, p)
	}
}

// withGate makes ctx carry g for the pipeline (runCompletion).
func withGate(ctx context.Context, g *authGate) context.Context {
	if g == nil {
		return ctx
	}
	return context.WithValue(ctx, gateKey{}, g)
}

// withoutGate is ctx without its authGate: for work that runs after the
// check has settled.
func withoutGate(ctx context.Context) context.Context {
	if gateFrom(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, gateKey{}, (*authGate)(nil))
}

type gateKey struct{}

// gateFrom is the authGate ctx carries, nil when none.
func gateFrom(ctx context.Context) *authGate {
	g, _ := ctx.Value(gateKey{}).(*authGate)
	return g
}
