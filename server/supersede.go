package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/code4me/code4me/engine"
)

// supersedes lets a completion request stop the work of the older request
// of the same session and file the moment it arrives. The engine also
// supersedes by that key, but only when the newer request reaches it,
// after its context stage (retrieval embeds the lines before the cursor
// on the same busy engine): until then the older request kept its queue
// place or slot.
type supersedes struct {
	mu     sync.Mutex
	latest map[string]*superseded // the newest request in flight per key
}

// superseded is one request's mark: set once a newer request of its key
// arrived.
type superseded struct {
	cancel context.CancelCauseFunc
	t0     time.Time // when the request arrived
	set    atomic.Bool
}

func (m *superseded) is() bool { return m.set.Load() }

// arrive registers a request of key that arrived at t0. Its work
// (retrieval, the models) runs under the returned context, which a newer
// request of key cancels after setting the mark; the caller still answers
// and stores, with ctx. done must be called when the request ends.
//
// Requests reach arrive in their own goroutines, after their context
// stage, so an older request may get here after a newer one: it never
// supersedes that one, it is superseded at once. A request whose ctx has
// ended (the WebSocket ends the previous keystroke's request before the
// next one starts) supersedes nothing.
func (r *supersedes) arrive(ctx context.Context, key string, t0 time.Time) (context.Context, *superseded, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	me := &superseded{cancel: cancel, t0: t0}
	r.mu.Lock()
	if r.latest == nil {
		r.latest = map[string]*superseded{}
	}
	old := r.latest[key]
	if ctx.Err() != nil || (old != nil && t0.Before(old.t0)) {
		r.mu.Unlock()
		me.set.Store(true)
		cancel(engine.ErrSuperseded)
		return wctx, me, func() {}
	}
	if old != nil {
		old.set.Store(true)
		old.cancel(engine.ErrSuperseded) // the engine ends its request as superseded
	}
	r.latest[key] = me
	r.mu.Unlock()
	return wctx, me, func() {
		r.mu.Lock()
		if r.latest[key] == me {
			delete(r.latest, key)
		}
		r.mu.Unlock()
		cancel(nil)
	}
}
