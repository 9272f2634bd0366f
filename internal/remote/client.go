package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/models"
)

// affinityTTL is how long a supersede key remembers its worker.
const affinityTTL = 10 * time.Minute

// registryFresh is how long a read of the registry is used.
const registryFresh = 500 * time.Millisecond

// Client sends engine requests to workers. It is the engine of an API
// node started with --engine=remote; any goroutine may use it.
type Client struct {
	db    *pgxpool.Pool
	rdb   *redis.Client
	log   *slog.Logger
	q     *models.Queries
	river *river.Client[pgx.Tx] // inserts only
	node  uuid.UUID
	sub   *redis.PubSub

	mu    sync.Mutex
	calls map[uuid.UUID]*call

	regMu   sync.Mutex
	regAt   time.Time
	reg     []models.EngineWorkerServingRow
	stopped chan struct{}

	observer atomic.Pointer[engine.Observer] // Observe's
}

// Observe makes every request that ends with a result (the worker's, or
// cancelled here) report it to f before its caller gets it, as the
// in-process engine's Observe does (nil stops it).
func (c *Client) Observe(f engine.Observer) {
	if f == nil {
		c.observer.Store(nil)
		return
	}
	c.observer.Store(&f)
}

// NewClient subscribes to the node's reply channel and returns the
// client; Close ends it.
func NewClient(ctx context.Context, db *pgxpool.Pool, rdb *redis.Client, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// An insert-only River client. Its fetch cooldown also paces insert
	// notifications per queue: at 1 ms every keystroke's job notifies.
	rc, err := river.NewClient(riverpgxv5.New(db), &river.Config{FetchCooldown: time.Millisecond,
		Logger: log.With(slog.String("component", "river"))})
	if err != nil {
		return nil, fmt.Errorf("remote: job client: %w", err)
	}
	c := &Client{db: db, rdb: rdb, log: log, q: models.New(), river: rc, node: uuid.New(), calls: map[uuid.UUID]*call{},
		stopped: make(chan struct{})}
	c.sub = rdb.Subscribe(ctx, replyChannel(c.node))
	if _, err := c.sub.Receive(ctx); err != nil { // the subscription's confirmation
		c.sub.Close()
		return nil, fmt.Errorf("remote: subscribe to replies: %w", err)
	}
	go c.receive()
	return c, nil
}

// Close stops receiving replies; calls still waiting end cancelled.
func (c *Client) Close() error {
	err := c.sub.Close()
	<-c.stopped
	return err
}

// receive hands each reply to its call.
func (c *Client) receive() {
	defer close(c.stopped)
	for msg := range c.sub.Channel() {
		var r reply
		if err := json.Unmarshal([]byte(msg.Payload), &r); err != nil {
			c.log.Warn("remote: bad reply", slog.String("error", err.Error()))
			continue
		}
		c.mu.Lock()
		cl := c.calls[r.RequestID]
		c.mu.Unlock()
		if cl != nil {
			cl.deliver(r)
		}
	}
	c.mu.Lock()
	for _, cl := range c.calls {
		cl.deliver(reply{Type: replyError, Err: errText(context.Canceled)})
	}
	c.mu.Unlock()
}

// Serving is a live worker's model with its load.
type Serving = models.EngineWorkerServingRow

// Registry returns every worker's models as of at most registryFresh ago
// (alive tells the live ones).
func (c *Client) Registry(ctx context.Context) ([]Serving, error) {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	if time.Since(c.regAt) < registryFresh {
		return c.reg, nil
	}
	rows, err := c.q.EngineWorkerServing(ctx, c.db, float64(AliveFor.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("remote: read the worker registry: %w", err)
	}
	c.reg, c.regAt = rows, time.Now()
	return rows, nil
}

// pickQueue chooses the queue of a request for model with supersede key
// key, and the worker whose own queue it is (Nil: the model's queue).
func (c *Client) pickQueue(ctx context.Context, model, key string, avoid uuid.UUID) (string, uuid.UUID, error) {
	reg, err := c.Registry(ctx)
	if err != nil {
		return "", uuid.Nil, err
	}
	live := map[uuid.UUID]Serving{}
	for _, r := range reg {
		if r.Alive && !r.Draining && r.ModelName == model && r.WorkerID != avoid {
			live[r.WorkerID] = r
		}
	}
	if len(live) == 0 {
		return "", uuid.Nil, ErrNoWorker
	}
	if key != "" && avoid == uuid.Nil {
		if id, err := uuid.Parse(c.rdb.Get(ctx, affinityKey(model, key)).Val()); err == nil {
			if r, ok := live[id]; ok && r.SlotsBusy < r.Slots {
				return WorkerQueue(id), id, nil
			}
		}
	}
	return ModelQueue(model), uuid.Nil, nil
}

func affinityKey(model, key string) string { return "code4me:engine-affinity:" + model + "\x00" + key }

// alive reports whether worker id is alive and not draining, by the
// registry.
func (c *Client) alive(ctx context.Context, id uuid.UUID) bool {
	reg, err := c.Registry(ctx)
	if err != nil {
		return true // cannot tell: do not retry on a database hiccup
	}
	for _, r := range reg {
		if r.WorkerID == id {
			return r.Alive
		}
	}
	return false
}

// serving reports whether a live worker that is not draining serves model,
// by the registry.
func (c *Client) serving(ctx context.Context, model string) bool {
	reg, err := c.Registry(ctx)
	if err != nil {
		return true // cannot tell: keep waiting
	}
	for _, r := range reg {
		if r.Alive && !r.Draining && r.ModelName == model {
			return true
		}
	}
	return false
}

// Complete runs req on model on a worker and returns its result.
func (c *Client) Complete(ctx context.Context, model string, req engine.Request) (*engine.Result, error) {
	st, err := c.start(ctx, model, req, false)
	if err != nil {
		return nil, err
	}
	return st.Wait()
}

// Stream runs req on model on a worker, its text arriving as generated.
func (c *Client) Stream(ctx context.Context, model string, req engine.Request) (*Stream, error) {
	return c.start(ctx, model, req, true)
}

// Embed returns the embedding of each text by model, in order, as the
// engine's Embed computes it on a live worker that serves the model. The
// request takes the path of a completion (package doc), in the model's
// embedding queue: ErrNoWorker at once when no live worker serves the
// model; ctx's end cancels it on its worker and returns ctx's error at
// once; a worker that dies with it has it sent once more, to another. A NUL in a text becomes U+FFFD (River's
// jsonb args refuse it).
func (c *Client) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	safe := make([]string, len(texts))
	for i, t := range texts {
		safe[i] = strings.ReplaceAll(t, "\x00", "\uFFFD")
	}
	a := &attempt{c: c, model: model, embed: safe}
	if err := a.send(ctx, uuid.Nil); err != nil {
		return nil, err
	}
	s := &Stream{text: make(chan string), done: make(chan struct{})}
	a.follow(ctx, s)
	switch {
	case s.err != nil:
		return nil, s.err
	case s.vecs == nil && ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case s.vecs == nil:
		return nil, errors.New("remote: the embedding ended without vectors")
	}
	return s.vecs, nil
}

// call is one request attempt waiting for its replies.
type call struct {
	replies chan reply
}

func (cl *call) deliver(r reply) {
	select {
	case cl.replies <- r:
	default: // the reader is gone or far behind: the end still arrives below
		if r.Type == replyEnd || r.Type == replyError {
			go func() { cl.replies <- r }()
		}
	}
}

// Stream is a remote request's text and result, read as from an
// engine.Stream.
type Stream struct {
	text chan string
	done chan struct{}
	res  *engine.Result
	err  error
	vecs [][]float32 // an embedding request's result
}

// Next returns the text generated since the previous call, io.EOF after
// the last, or ctx's error.
func (s *Stream) Next(ctx context.Context) (string, error) {
	select {
	case t, ok := <-s.text:
		if !ok {
			return "", io.EOF
		}
		return t, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Wait blocks until the request ends and returns its result; the error
// is the engine's refusal, or the result's error for StopError.
func (s *Stream) Wait() (*engine.Result, error) {
	<-s.done
	return s.res, s.err
}

// start sends the request and follows it in a goroutine: its replies,
// its worker's liveness (one retry on another worker when it dies) and
// ctx (cancellation reaches the worker as River's JobCancel).
func (c *Client) start(ctx context.Context, model string, req engine.Request, stream bool) (*Stream, error) {
	a := &attempt{c: c, model: model, req: jsonbSafe(req), stream: stream}
	if err := a.send(ctx, uuid.Nil); err != nil {
		return nil, err
	}
	s := &Stream{text: make(chan string, 64), done: make(chan struct{})}
	go a.follow(ctx, s)
	return s, nil
}

// attempt is the request's current try.
type attempt struct {
	c      *Client
	model  string
	req    engine.Request
	stream bool
	embed  []string // an embedding request's texts (Client.Embed)

	id     uuid.UUID
	call   *call
	jobID  int64
	target uuid.UUID // the worker whose queue holds it (Nil: the model's)
	worker uuid.UUID // the worker that took it (Nil: none yet)
	sent   time.Time
	tries  int
}

// send inserts the request's job, avoiding worker avoid.
func (a *attempt) send(ctx context.Context, avoid uuid.UUID) error {
	queue, target, err := a.c.pickQueue(ctx, a.model, a.req.SupersedeKey, avoid)
	if err != nil {
		return err
	}
	if a.embed != nil {
		queue = EmbedQueue(a.model) // no supersede key: target is Nil
	}
	a.id, a.target, a.worker, a.sent, a.tries = uuid.New(), target, uuid.Nil, time.Now(), a.tries+1
	a.call = &call{replies: make(chan reply, 256)}
	a.c.mu.Lock()
	a.c.calls[a.id] = a.call
	a.c.mu.Unlock()
	args := JobArgs{RequestID: a.id, ReplyTo: replyChannel(a.c.node), Model: a.model, Request: a.req, Stream: a.stream,
		Embed: a.embed}
	if d, ok := ctx.Deadline(); ok {
		args.Deadline = d
	}
	res, err := a.c.river.Insert(ctx, args, &river.InsertOpts{Queue: queue, MaxAttempts: 1})
	if err != nil {
		a.forget()
		return fmt.Errorf("remote: insert the request: %w", err)
	}
	a.jobID = res.Job.ID
	return nil
}

func (a *attempt) forget() {
	a.c.mu.Lock()
	delete(a.c.calls, a.id)
	a.c.mu.Unlock()
}

// cancelJob cancels the attempt's job on its worker (or in its queue).
func (a *attempt) cancelJob() {
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := a.c.river.JobCancel(cctx, a.jobID); err != nil {
		a.c.log.Debug("remote: cancel job", slog.Int64("job_id", a.jobID), slog.String("error", err.Error()))
	}
}

// takenBy is the worker that took the attempt's job from the model's queue
// by River's job row (Nil: none yet). follow asks only when no start reply
// came for a while: a worker that dies between taking a job and sending
// its start is known by this alone.
func (a *attempt) takenBy(ctx context.Context) uuid.UUID {
	job, err := a.c.river.JobGet(ctx, a.jobID)
	if err != nil || len(job.AttemptedBy) == 0 {
		return uuid.Nil
	}
	id, err := uuid.Parse(strings.TrimPrefix(job.AttemptedBy[len(job.AttemptedBy)-1], workerClientPrefix))
	if err != nil {
		return uuid.Nil
	}
	return id
}

// follow reads the attempt's replies into s until the result.
func (a *attempt) follow(ctx context.Context, s *Stream) {
	defer close(s.done)
	defer close(s.text)
	defer func() {
		if f := a.c.observer.Load(); f != nil && s.res != nil && a.embed == nil {
			(*f)(a.model, s.res)
		}
	}()
	check := time.NewTicker(AliveFor / 6)
	defer check.Stop()
	cancelled, done := false, ctx.Done()
	for {
		var r reply
		select {
		case r = <-a.call.replies:
		case <-done:
			cancelled, done = true, nil
			a.cancelJob()
			if a.embed != nil {
				// Vectors are of no use once the caller left: do not wait for
				// the worker to answer the cancellation.
				a.forget()
				s.err = context.Cause(ctx)
				return
			}
			// The worker answers the cancellation with its result; if it
			// never does (it died), give up after a while.
			check.Reset(AliveFor)
			continue
		case <-check.C:
			if cancelled {
				a.forget()
				s.res = &engine.Result{Stop: engine.StopCancelled, Err: context.Cause(ctx), Slot: -1}
				return
			}
			// A dead worker holding the request (running it, or in its own
			// queue) never answers: send it once more, elsewhere.
			holder := a.worker
			if holder == uuid.Nil {
				holder = a.target
			}
			if holder == uuid.Nil && time.Since(a.sent) > AliveFor {
				holder = a.takenBy(ctx)
			}
			if holder == uuid.Nil {
				// Still in the model's queue. With no live worker serving
				// the model any more (the last one stopped or died after
				// the request was sent), nothing will take it.
				if !a.c.serving(ctx, a.model) {
					a.forget()
					a.cancelJob()
					s.err = ErrNoWorker
					return
				}
				continue
			}
			if a.c.alive(ctx, holder) {
				continue
			}
			a.forget()
			if a.tries >= 2 {
				s.err = fmt.Errorf("remote: worker %s died with the request, twice", holder)
				return
			}
			a.c.log.Warn("remote: worker died with a request; sending it again", slog.String("worker", holder.String()))
			a.cancelJob()
			if err := a.send(ctx, holder); err != nil {
				s.err = err
				return
			}
			continue
		}
		switch r.Type {
		case replyStart:
			a.worker = r.Worker
			if a.req.SupersedeKey != "" {
				a.c.rdb.Set(context.Background(), affinityKey(a.model, a.req.SupersedeKey), r.Worker.String(), affinityTTL)
			}
		case replyText:
			select {
			case s.text <- r.Text:
			case <-ctx.Done():
			}
		case replyError:
			a.forget()
			s.err = textErr(r.Err)
			return
		case replyEnd:
			a.forget()
			if a.embed != nil {
				s.vecs, s.err = bytesVectors(r.Vectors, len(a.embed))
				return
			}
			s.res = r.Result.result()
			if s.res.Stop == engine.StopError {
				s.err = s.res.Err
			}
			if s.res.Err == nil && (s.res.Stop == engine.StopCancelled || s.res.Stop == engine.StopDeadline) {
				s.res.Err = errors.New("remote: " + string(s.res.Stop))
			}
			return
		}
	}
}

// jsonbSafe makes req storable in River's jsonb args, which refuse the NUL
// character: the supersede key (callers join its parts with NUL) becomes
// its SHA-256, equal keys staying equal, and a NUL in text becomes U+FFFD,
// as the server does before storing text.
func jsonbSafe(req engine.Request) engine.Request {
	if req.SupersedeKey != "" {
		sum := sha256.Sum256([]byte(req.SupersedeKey))
		req.SupersedeKey = hex.EncodeToString(sum[:])
	}
	fix := func(s string) string { return strings.ReplaceAll(s, "\x00", "\uFFFD") }
	req.Prefix, req.Suffix, req.Middle, req.FilePath, req.RepoName = fix(req.Prefix), fix(req.Suffix), fix(req.Middle), fix(req.FilePath), fix(req.RepoName)
	if len(req.Extra) > 0 {
		extra := make([]engine.Chunk, len(req.Extra))
		for i, c := range req.Extra {
			c.Path, c.Text = fix(c.Path), fix(c.Text)
			extra[i] = c
		}
		req.Extra = extra
	}
	if len(req.Stop) > 0 {
		stop := make([]string, len(req.Stop))
		for i, x := range req.Stop {
			stop[i] = fix(x)
		}
		req.Stop = stop
	}
	return req
}
