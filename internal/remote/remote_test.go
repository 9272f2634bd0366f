package remote

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
	"github.com/code4me/code4me/internal/testenv"
	"github.com/code4me/code4me/models"
)

// These tests run workers and a client in one process on real Postgres,
// Redis and River, with the fake engine backend: "slow" models take 200 ms
// per decode and always write "a", so a request is still running when it
// is cancelled or its worker dies.

func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// slowEngine loads a slow fake model under name.
func slowEngine(t *testing.T, name string) *engine.Engine {
	t.Helper()
	b := enginetest.New(enginetest.Options{DecodeDelay: 200 * time.Millisecond,
		Logits: func(_ []engine.Token, out []float32) { clear(out); out['a'] = 20 }})
	eng := engine.New(b, nil)
	t.Cleanup(func() { eng.Close() })
	if _, err := eng.Load(engine.ModelSpec{Name: name, Path: "fake", Sched: engine.Config{NParallel: 2, NCtx: 2 * 512, NBatch: 64, QueueSize: 8}}, nil); err != nil {
		t.Fatal(err)
	}
	return eng
}

// registerModel writes name's model row and returns its id.
func registerModel(t *testing.T, name string) int64 {
	t.Helper()
	row, err := models.New().ModelUpsert(context.Background(), testenv.Pool(t), models.ModelUpsertParams{Name: name, Family: "qwen",
		FileSha256: strings.Repeat("0", 32) + strings.ReplaceAll(uuid.NewString(), "-", ""), Parameters: []byte("{}"),
		PromptTemplates: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	return row.ModelID
}

func startWorker(t *testing.T, eng *engine.Engine, name string, id int64) *Worker {
	t.Helper()
	w, err := StartWorker(context.Background(), WorkerConfig{DB: testenv.Pool(t), Redis: testenv.Redis(t), Engine: eng,
		Models: map[string]int64{name: id}, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.Drain(ctx)
	})
	return w
}

func newTestClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(context.Background(), testenv.Pool(t), testenv.Redis(t), testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func modelName(t *testing.T) string {
	return "slow-" + strings.ToLower(t.Name()) + "-" + uuid.NewString()[:6]
}

// jobState is the River state of the newest job of model's queue.
func jobState(t *testing.T, model string) string {
	t.Helper()
	var state string
	if err := testenv.Pool(t).QueryRow(context.Background(),
		`SELECT state FROM river_job WHERE args->>'model' = $1 ORDER BY id DESC LIMIT 1`, model).Scan(&state); err != nil {
		t.Fatal(err)
	}
	return state
}

func slotsBusy(eng *engine.Engine) int {
	n := 0
	for _, st := range eng.Stats() {
		n += st.SlotsBusy
	}
	return n
}

// A cancelled request stops on the worker: the engine frees its slot
// within a batch step and the job ends cancelled, not retried.
func TestCancelReachesWorker(t *testing.T) {
	name := modelName(t)
	eng := slowEngine(t, name)
	startWorker(t, eng, name, registerModel(t, name))
	c := newTestClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := c.Stream(ctx, name, engine.Request{Prefix: "x", MaxTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(ctx); err != nil { // running: the first text came
		t.Fatal(err)
	}
	cancel()
	res, _ := st.Wait()
	if res == nil || res.Stop != engine.StopCancelled {
		t.Fatalf("result after cancel: %+v", res)
	}
	deadline := time.Now().Add(3 * time.Second)
	for slotsBusy(eng) > 0 || jobState(t, name) != "cancelled" {
		if time.Now().After(deadline) {
			t.Fatalf("slots busy %d, job %s: want 0 and cancelled", slotsBusy(eng), jobState(t, name))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job taken after its deadline is not started.
func TestDeadlinePassedNotStarted(t *testing.T) {
	name := modelName(t)
	eng := slowEngine(t, name)
	w := startWorker(t, eng, name, registerModel(t, name))
	c := newTestClient(t)
	// Queued with a deadline already past (as when it waited too long).
	id := uuid.New()
	call := &call{replies: make(chan reply, 8)}
	c.mu.Lock()
	c.calls[id] = call
	c.mu.Unlock()
	if _, err := c.river.Insert(context.Background(), JobArgs{RequestID: id, ReplyTo: replyChannel(c.node), Model: name,
		Request: engine.Request{Prefix: "x", MaxTokens: 4}, Deadline: time.Now().Add(-time.Second)},
		&river.InsertOpts{Queue: WorkerQueue(w.ID()), MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-call.replies:
		if r.Type != replyEnd || r.Result == nil || r.Result.Stop != engine.StopDeadline {
			t.Fatalf("reply %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
	}
	var requests uint64
	for _, st := range eng.Stats() {
		requests += st.Requests
	}
	if requests != 0 {
		t.Errorf("the engine ran %d requests", requests)
	}
	deadline := time.Now().Add(3 * time.Second)
	for jobState(t, name) != "cancelled" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := jobState(t, name); s != "cancelled" {
		t.Errorf("job state %s, want cancelled", s)
	}
}

// A worker that dies with a request running has it sent again to another
// worker, and the caller gets that one answer.
func TestWorkerDeathRetried(t *testing.T) {
	name := modelName(t)
	id := registerModel(t, name)
	first := startWorker(t, slowEngine(t, name), name, id)
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Stream(ctx, name, engine.Request{Prefix: "x", MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(ctx); err != nil {
		t.Fatal(err)
	}
	// The first worker goes silent, as after kill -9: no heartbeat, no
	// reply, its job abandoned.
	first.mute.Store(true)
	first.stopBeat()
	first.river.StopAndCancel(context.Background())
	second := slowEngine(t, name)
	startWorker(t, second, name, id)
	start := time.Now()
	res, err := st.Wait()
	if err != nil || res.Stop != engine.StopLength || res.Text != strings.Repeat("a", 8) {
		t.Fatalf("after the first worker died: %+v, %v", res, err)
	}
	if d := time.Since(start); d > AliveFor+5*time.Second {
		t.Errorf("the retry took %v", d)
	}
	var n uint64
	for _, s := range second.Stats() {
		n += s.Requests
	}
	if n != 1 {
		t.Errorf("the second worker ran %d requests, want 1", n)
	}
}

// A worker that dies after taking a job from the model's queue, before
// its start reply, is known by the job's row: the request is sent again to
// another worker, and the caller gets that one answer.
func TestWorkerDeathBeforeStartRetried(t *testing.T) {
	name := modelName(t)
	id := registerModel(t, name)
	first := startWorker(t, slowEngine(t, name), name, id)
	first.mute.Store(true) // no reply at all: not even the start
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.Stream(ctx, name, engine.Request{Prefix: "x", MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); jobState(t, name) != "running"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s, want running on the first worker", jobState(t, name))
		}
	}
	first.stopBeat()
	first.river.StopAndCancel(context.Background())
	second := slowEngine(t, name)
	startWorker(t, second, name, id)
	res, err := st.Wait()
	if err != nil || res.Stop != engine.StopLength || res.Text != strings.Repeat("a", 8) {
		t.Fatalf("after the first worker died: %+v, %v", res, err)
	}
	var n uint64
	for _, s := range second.Stats() {
		n += s.Requests
	}
	if n != 1 {
		t.Errorf("the second worker ran %d requests, want 1", n)
	}
}

// A request waiting in the model's queue when the model's last worker
// stops answers ErrNoWorker at once, not at its deadline.
func TestLastWorkerGoneWhileQueued(t *testing.T) {
	name := modelName(t)
	eng := slowEngine(t, name) // two slots
	w := startWorker(t, eng, name, registerModel(t, name))
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var streams []*Stream
	for range 3 {
		st, err := c.Stream(ctx, name, engine.Request{Prefix: "x", MaxTokens: 64})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	for deadline := time.Now().Add(5 * time.Second); slotsBusy(eng) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots busy, want 2", slotsBusy(eng))
		}
	}
	// The third waits in the model's queue; the worker stops, cancelling
	// the two it runs.
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	w.Drain(dctx)
	start := time.Now()
	var noWorker int
	for _, st := range streams {
		if _, err := st.Wait(); errors.Is(err, ErrNoWorker) {
			noWorker++
		}
	}
	if noWorker != 1 {
		t.Errorf("%d requests answered ErrNoWorker, want the queued one", noWorker)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the requests ended %v after the worker stopped", d)
	}
}

// No live worker: ErrNoWorker at once.
func TestNoWorker(t *testing.T) {
	c := newTestClient(t)
	if _, err := c.Complete(context.Background(), modelName(t), engine.Request{Prefix: "x"}); !errors.Is(err, ErrNoWorker) {
		t.Fatalf("err = %v, want ErrNoWorker", err)
	}
}
