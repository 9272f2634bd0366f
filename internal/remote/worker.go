package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
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

// workerClientPrefix and the worker's id make its River client's id, which
// River records in attempted_by of each job the worker takes.
const workerClientPrefix = "worker-"

// WorkerConfig is what a worker runs on.
type WorkerConfig struct {
	DB     *pgxpool.Pool
	Redis  *redis.Client
	Engine *engine.Engine
	// Models maps each engine model to serve onto its model_id (the model
	// table's row, as the server registers loaded models).
	Models  map[string]int64
	Version string
	Log     *slog.Logger
	// ID names the worker; a random one when zero.
	ID uuid.UUID
}

// Worker takes engine requests from its models' queues and its own queue
// and runs them on its engine.
type Worker struct {
	cfg   WorkerConfig
	id    uuid.UUID
	q     *models.Queries
	river *river.Client[pgx.Tx]

	mu       sync.Mutex
	draining bool
	stopBeat context.CancelFunc
	beatDone chan struct{}

	// mute (tests) stops every reply, as a killed worker sends none.
	mute atomic.Bool
}

// StartWorker registers the worker and its models, starts its heartbeat
// and starts taking jobs.
func StartWorker(ctx context.Context, cfg WorkerConfig) (*Worker, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{cfg: cfg, id: cfg.ID, q: models.New(), beatDone: make(chan struct{})}
	if w.id == uuid.Nil {
		w.id = uuid.New()
	}
	if err := w.register(ctx); err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &jobWorker{w: w}); err != nil {
		return nil, err
	}
	// Interactive queues: a notified insert is fetched within a
	// millisecond; polling is only the fallback for a missed notification.
	queue := func(n int) river.QueueConfig {
		return river.QueueConfig{MaxWorkers: max(n, 1), FetchCooldown: time.Millisecond, FetchPollInterval: 200 * time.Millisecond}
	}
	queues := map[string]river.QueueConfig{}
	total := 0
	for _, st := range cfg.Engine.Stats() {
		if _, ok := cfg.Models[st.Model]; ok {
			queues[ModelQueue(st.Model)] = queue(st.Slots)
			queues[EmbedQueue(st.Model)] = queue(embedJobs)
			total += st.Slots
		}
	}
	if len(queues) == 0 {
		return nil, errors.New("remote: the worker serves no loaded model")
	}
	queues[WorkerQueue(w.id)] = queue(total)
	c, err := river.NewClient(riverpgxv5.New(cfg.DB), &river.Config{
		ID:                workerClientPrefix + w.id.String(),
		Queues:            queues,
		Workers:           workers,
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 200 * time.Millisecond,
		// River's maintenance (periodic jobs such as retention and export
		// clean-up, the job cleaner, the rescuer) runs on the elected
		// leader; a worker knows none of the periodic jobs, so it never
		// stands: the API nodes' clients do.
		LeaderElectionDisabled: true,
		Logger:                 cfg.Log.With(slog.String("component", "river")),
	})
	if err != nil {
		return nil, fmt.Errorf("remote: worker job client: %w", err)
	}
	w.river = c
	beatCtx, stop := context.WithCancel(context.Background())
	w.stopBeat = stop
	go w.heartbeat(beatCtx)
	if err := c.Start(ctx); err != nil {
		stop()
		return nil, fmt.Errorf("remote: start worker jobs: %w", err)
	}
	return w, nil
}

// ID is the worker's id.
func (w *Worker) ID() uuid.UUID { return w.id }

// register writes the worker's row and its models' rows, with each
// model's memory (the bytes of its weights and its KV cache's cells).
func (w *Worker) register(ctx context.Context) error {
	host, _ := os.Hostname()
	if err := w.q.EngineWorkerRegister(ctx, w.cfg.DB, models.EngineWorkerRegisterParams{WorkerID: w.id, Host: host,
		Pid: int32(os.Getpid()), Version: w.cfg.Version}); err != nil {
		return fmt.Errorf("remote: register worker: %w", err)
	}
	for _, st := range w.cfg.Engine.Stats() {
		id, ok := w.cfg.Models[st.Model]
		if !ok {
			continue
		}
		var tmpl *string
		if st.Info.ChatTemplate != "" {
			tmpl = &st.Info.ChatTemplate
		}
		// The model's memory, fixed at load: written here only, not on
		// every heartbeat.
		weights, cells := int64(st.Info.SizeBytes), int32(st.NCtx)
		if err := w.q.EngineWorkerModelSet(ctx, w.cfg.DB, models.EngineWorkerModelSetParams{WorkerID: w.id, ModelID: id,
			Slots: int32(st.Slots), SlotsBusy: int32(st.SlotsBusy), QueueLen: int32(st.QueueLen), ChatTemplate: tmpl,
			WeightsBytes: &weights, KvCells: &cells}); err != nil {
			return fmt.Errorf("remote: register model %s: %w", st.Model, err)
		}
	}
	return nil
}

// heartbeat marks the worker alive and records its load every
// HeartbeatEvery until ctx ends.
func (w *Worker) heartbeat(ctx context.Context) {
	defer close(w.beatDone)
	t := time.NewTicker(HeartbeatEvery)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := w.beat(ctx, n%600 == 0); err != nil && ctx.Err() == nil {
			w.cfg.Log.Warn("worker heartbeat failed", slog.String("error", err.Error()))
		}
	}
}

func (w *Worker) beat(ctx context.Context, forget bool) error {
	ctx, cancel := context.WithTimeout(ctx, HeartbeatEvery)
	defer cancel()
	w.mu.Lock()
	draining := w.draining
	w.mu.Unlock()
	n, err := w.q.EngineWorkerHeartbeat(ctx, w.cfg.DB, models.EngineWorkerHeartbeatParams{Draining: draining, WorkerID: w.id})
	if err != nil {
		return err
	}
	if n == 0 {
		return w.register(ctx)
	}
	for _, st := range w.cfg.Engine.Stats() {
		if id, ok := w.cfg.Models[st.Model]; ok {
			if err := w.q.EngineWorkerLoad(ctx, w.cfg.DB, models.EngineWorkerLoadParams{SlotsBusy: int32(st.SlotsBusy),
				QueueLen: int32(st.QueueLen), WorkerID: w.id, ModelID: id}); err != nil {
				return err
			}
		}
	}
	if forget {
		_, err = w.q.EngineWorkerForgetDead(ctx, w.cfg.DB)
	}
	return err
}

// Drain stops taking jobs, lets running ones finish until ctx ends (then
// cancels them: their API nodes see them cancelled), and leaves the worker
// in the registry as a dead one (EngineWorkerStop), so that a request for
// a model no other worker serves answers 503, as after a crash.
func (w *Worker) Drain(ctx context.Context) error {
	w.mu.Lock()
	w.draining = true
	w.mu.Unlock()
	// Marked draining at once, so API nodes stop routing sessions here.
	w.beat(ctx, false)
	err := w.river.Stop(ctx)
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = w.river.StopAndCancel(stopCtx)
		cancel()
	}
	w.stopBeat()
	<-w.beatDone
	markCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rerr := w.q.EngineWorkerStop(markCtx, w.cfg.DB, models.EngineWorkerStopParams{AliveMs: float64(AliveFor.Milliseconds()),
		WorkerID: w.id}); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// embedJobs is how many embedding jobs of one model a worker runs at once.
// Its engine embeds one text at a time on the model's embedding context;
// the second job waits there, fetched, while the first runs.
const embedJobs = 2

// jobWorker runs engine_request jobs.
type jobWorker struct {
	river.WorkerDefaults[JobArgs]
	w *Worker
}

// Timeout: the request's own deadline bounds it; without one, River's
// default minute would cut long generations short.
func (j *jobWorker) Timeout(*river.Job[JobArgs]) time.Duration { return -1 }

func (j *jobWorker) Work(ctx context.Context, job *river.Job[JobArgs]) error {
	a := job.Args
	publish := func(r reply) {
		if j.w.mute.Load() {
			return
		}
		r.RequestID = a.RequestID
		b, _ := json.Marshal(r)
		// Published even when ctx has ended: the API node waits for the end.
		pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := j.w.cfg.Redis.Publish(pctx, a.ReplyTo, b).Err(); err != nil {
			j.w.cfg.Log.Warn("worker: cannot publish a reply", slog.String("error", err.Error()))
		}
	}
	if !a.Deadline.IsZero() {
		if !time.Now().Before(a.Deadline) {
			if a.Embed != nil {
				publish(reply{Type: replyError, Worker: j.w.id, Err: errText(context.DeadlineExceeded)})
			} else {
				publish(reply{Type: replyEnd, Worker: j.w.id, Result: &wireResult{Stop: engine.StopDeadline,
					Err: errText(context.DeadlineExceeded)}})
			}
			return river.JobCancel(errors.New("the request's deadline passed before it started"))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, a.Deadline)
		defer cancel()
	}
	publish(reply{Type: replyStart, Worker: j.w.id})
	if a.Embed != nil {
		vecs, err := j.w.cfg.Engine.Embed(ctx, a.Model, a.Embed)
		if err != nil {
			publish(reply{Type: replyError, Worker: j.w.id, Err: errText(err)})
			return river.JobCancel(err)
		}
		publish(reply{Type: replyEnd, Worker: j.w.id, Vectors: vectorBytes(vecs)})
		return nil
	}
	st, err := j.w.cfg.Engine.Stream(ctx, a.Model, a.Request)
	if err != nil {
		publish(reply{Type: replyError, Worker: j.w.id, Err: errText(err)})
		return river.JobCancel(err)
	}
	if a.Stream {
		for {
			text, err := st.Next(ctx)
			if err != nil {
				break // io.EOF, or ctx ended: the engine ends the request too
			}
			publish(reply{Type: replyText, Text: text})
		}
	}
	res, _ := st.Wait()
	publish(reply{Type: replyEnd, Worker: j.w.id, Result: toWire(res)})
	if res.Stop == engine.StopCancelled || res.Stop == engine.StopDeadline {
		return river.JobCancel(fmt.Errorf("request %s", res.Stop))
	}
	return nil
}
