package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
)

// Draining. Drain ends the server's service in this order:
//
//  1. A flag makes every new request (HTTP or a WebSocket handshake)
//     answer 503 with Retry-After and Connection: close. It is checked
//     before routing, since fasthttp still reads requests from keep-alive
//     connections while it shuts down.
//  2. The listener closes; the HTTP requests in flight run to their end,
//     up to the grace period (Config.ShutdownGrace, bounded by Drain's
//     context).
//  3. Every WebSocket stops reading: its requests in flight run to their
//     end, up to the same grace period (those still running then are
//     cancelled and answer nothing), then it gets a close frame with code
//     1001 (going away) and is closed. A client's frames that arrive during
//     the drain are not read.
//  4. The background goroutines (the session sweeper, the first commits
//     of completions and the deletion of unanswered ones, mail jobs being
//     queued) are waited for, up to Drain's context.
//
// Drain leaves the engine, the job queue and the pools to the caller,
// which closes them afterwards in that order (Shutdown stops the job
// queue).

// shutdownCloseText is the reason of the close frame a WebSocket gets.
const shutdownCloseText = "server shutting down"

// drainState is what Drain and the middleware and WebSockets share.
type drainState struct {
	on atomic.Bool // draining: new requests answer 503

	mu    sync.Mutex
	conns map[*wsConn]struct{} // open WebSocket connections
	// grace ends when the requests in flight must have ended (set under
	// mu when the drain begins).
	grace context.Context
	// wsGone is closed when the last connection has gone, once the drain
	// has begun (nil before).
	wsGone chan struct{}

	once sync.Once
	err  error
}

// refuseWhileDraining answers 503 once the server drains.
func (s *Server) refuseWhileDraining(c *fiber.Ctx) error {
	if s.drain.on.Load() {
		c.Context().SetConnectionClose()
		return errShuttingDown
	}
	return c.Next()
}

// Drain stops the server's service: see the steps above. ctx bounds the
// whole; the grace period for requests in flight is the shorter of
// Config.ShutdownGrace and ctx. It may be called more than once and from
// several goroutines: later calls wait for and return the first's result.
func (s *Server) Drain(ctx context.Context) error {
	s.drain.once.Do(func() { s.drain.err = s.drainOnce(ctx) })
	return s.drain.err
}

func (s *Server) drainOnce(ctx context.Context) error {
	grace, cancel := ctx, context.CancelFunc(func() {})
	if s.cfg.ShutdownGrace > 0 {
		grace, cancel = context.WithTimeout(ctx, s.cfg.ShutdownGrace)
	}
	defer cancel()

	s.drain.mu.Lock()
	s.drain.on.Store(true)
	s.drain.grace = grace
	s.drain.wsGone = make(chan struct{})
	if len(s.drain.conns) == 0 {
		close(s.drain.wsGone)
	}
	for w := range s.drain.conns {
		w.wakeReader()
	}
	s.drain.mu.Unlock()

	var errs []error
	if err := s.app.ShutdownWithContext(grace); err != nil {
		errs = append(errs, errors.New("requests in flight at the end of the grace period"))
	}
	select {
	case <-s.drain.wsGone:
	case <-ctx.Done():
		errs = append(errs, errors.New("WebSocket connections still open"))
	}
	s.stop()
	if err := s.bg.wait(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return errors.Join(err, ctx.Err())
	}
	return nil
}

// wsOpened registers w for the drain. A connection opened after the drain
// began (its handshake was in flight) is told to stop reading at once.
func (s *Server) wsOpened(w *wsConn) {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	if s.drain.conns == nil {
		s.drain.conns = map[*wsConn]struct{}{}
	}
	s.drain.conns[w] = struct{}{}
	if s.drain.on.Load() {
		w.wakeReader()
	}
}

// wsClosed forgets w; the drain ends its wait when the last one goes.
func (s *Server) wsClosed(w *wsConn) {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	delete(s.drain.conns, w)
	if len(s.drain.conns) == 0 && s.drain.wsGone != nil {
		select {
		case <-s.drain.wsGone:
		default:
			close(s.drain.wsGone)
		}
	}
}

// drainIfShuttingDown is called by w's reader when its read fails. When
// the server drains (the failure is the drain's doing) and the connection
// is still good, it waits for w's requests in flight, up to the grace
// period, cancelling those left then, and sends the close frame 1001. It
// must be called from the reader's goroutine, the only one that starts
// requests, so that no request starts while it waits.
func (w *wsConn) drainIfShuttingDown() {
	if !w.s.drain.on.Load() || w.ctx.Err() != nil {
		return
	}
	w.s.drain.mu.Lock()
	grace := w.s.drain.grace
	w.s.drain.mu.Unlock()
	if grace == nil { // cannot happen: on is set under mu with grace
		return
	}
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-grace.Done():
		w.cancel()
		<-done
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, shutdownCloseText),
		time.Now().Add(time.Second))
}

// bgGroup counts the server's background goroutines: work that outlives
// the request that started it. Unlike a sync.WaitGroup it may start a
// goroutine while wait runs (a request still in flight when the drain
// waits), and wait takes a context.
type bgGroup struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

// Go runs fn in a goroutine that wait waits for.
func (g *bgGroup) Go(fn func()) {
	g.mu.Lock()
	if g.n == 0 {
		g.idle = make(chan struct{})
	}
	g.n++
	g.mu.Unlock()
	go func() {
		defer g.done()
		fn()
	}()
}

func (g *bgGroup) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 {
		close(g.idle)
	}
}

// wait returns when no goroutine of g runs, or with an error when ctx
// ends first.
func (g *bgGroup) wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		n, idle := g.n, g.idle
		g.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return errors.New("background work still running")
		}
	}
}
