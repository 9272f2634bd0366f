package remote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
	"github.com/code4me/code4me/internal/testenv"
)

// embedEngine loads a fake model that embeds under name; each decode (one
// text) takes delay.
func embedEngine(t *testing.T, name string, delay time.Duration) *engine.Engine {
	t.Helper()
	eng := engine.New(enginetest.New(enginetest.Options{Embeds: true, DecodeDelay: delay}), nil)
	t.Cleanup(func() { eng.Close() })
	if _, err := eng.Load(engine.ModelSpec{Name: name, Path: "fake", Sched: engine.Config{NParallel: 2, NCtx: 2 * 512, NBatch: 64, QueueSize: 8}}, nil); err != nil {
		t.Fatal(err)
	}
	return eng
}

func embedTexts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("def f%d(): return %d", i, i*i)
	}
	return out
}

// embedJobState is the queue and River state of the newest embedding job
// of model ("" before there is one).
func embedJobState(t *testing.T, model string) (queue, state string) {
	t.Helper()
	err := testenv.Pool(t).QueryRow(context.Background(),
		`SELECT queue, state FROM river_job WHERE args->>'model' = $1 AND args ? 'embed' ORDER BY id DESC LIMIT 1`, model).Scan(&queue, &state)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return queue, state
}

// awaitEmbedJob waits until the newest embedding job of model is in state.
func awaitEmbedJob(t *testing.T, model, state string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(10 * time.Millisecond) {
		_, st := embedJobState(t, model)
		if st == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("embedding job %q after %v, want %s", st, within, state)
		}
	}
}

// Embed runs on a worker's engine, in the model's embedding queue, and
// returns the vectors that engine computes, in order, through the wire's
// encoding unchanged.
func TestEmbedOnWorker(t *testing.T) {
	name := modelName(t)
	eng := embedEngine(t, name, 0)
	startWorker(t, eng, name, registerModel(t, name))
	c := newTestClient(t)
	texts := append(embedTexts(5), "a NUL \x00 in a text")
	got, err := c.Embed(context.Background(), name, texts)
	if err != nil {
		t.Fatal(err)
	}
	texts[5] = "a NUL \uFFFD in a text"
	want, err := eng.Embed(context.Background(), name, texts)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d vectors, want %d", len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("vector %d differs from the worker engine's", i)
		}
	}
	if slices.Equal(got[0], got[1]) {
		t.Fatal("two texts have the same vector")
	}
	awaitEmbedJob(t, name, "completed", 3*time.Second)
	if q, _ := embedJobState(t, name); q != EmbedQueue(name) {
		t.Fatalf("job in %s, want %s", q, EmbedQueue(name))
	}
	// A model that cannot embed answers the engine's error, not a hang.
	other := modelName(t)
	startWorker(t, slowEngine(t, other), other, registerModel(t, other))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Embed(ctx, other, []string{"x"}); err == nil || ctx.Err() != nil {
		t.Fatalf("embedding by a model that does not embed: %v (ctx %v)", err, ctx.Err())
	}
}

// No live worker serves the model: ErrNoWorker at once.
func TestEmbedNoWorker(t *testing.T) {
	c := newTestClient(t)
	if _, err := c.Embed(context.Background(), modelName(t), []string{"x"}); !errors.Is(err, ErrNoWorker) {
		t.Fatalf("err = %v, want ErrNoWorker", err)
	}
}

// A cancelled embedding stops on the worker: the job ends cancelled after
// the text being embedded, not after all of them.
func TestEmbedCancelReachesWorker(t *testing.T) {
	name := modelName(t)
	eng := embedEngine(t, name, 200*time.Millisecond) // 40 texts: 8 s
	startWorker(t, eng, name, registerModel(t, name))
	c := newTestClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Embed(ctx, name, embedTexts(40))
		done <- err
	}()
	awaitEmbedJob(t, name, "running", 5*time.Second)
	cancel()
	start := time.Now()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	awaitEmbedJob(t, name, "cancelled", 3*time.Second)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the job ended %v after the cancel; the whole embedding takes 8 s", d)
	}
}

// A worker that dies with an embedding running (it took the job, then
// stopped beating, fetching and answering, as after kill -9) has it sent
// again to another worker, whose vectors the caller gets.
func TestEmbedWorkerDeathRetried(t *testing.T) {
	name := modelName(t)
	id := registerModel(t, name)
	// The first worker's engine hangs in its first decode until the test ends.
	release := make(chan struct{})
	hung := engine.New(enginetest.New(enginetest.Options{Embeds: true, BeforeDecode: func(*engine.Batch) error {
		<-release
		return nil
	}}), nil)
	t.Cleanup(func() { hung.Close() })
	if _, err := hung.Load(engine.ModelSpec{Name: name, Path: "fake", Sched: engine.Config{NParallel: 1, NCtx: 512, NBatch: 64, QueueSize: 8}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release) })
	first := startWorker(t, hung, name, id)
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	texts := embedTexts(4)
	type result struct {
		vecs [][]float32
		err  error
	}
	done := make(chan result, 1)
	go func() {
		v, err := c.Embed(ctx, name, texts)
		done <- result{v, err}
	}()
	awaitEmbedJob(t, name, "running", 5*time.Second) // on the first worker
	first.mute.Store(true)
	first.stopBeat()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	first.river.Stop(stopCtx) // fetches nothing more; its job stays running, hung
	stopCancel()
	second := embedEngine(t, name, 0)
	startWorker(t, second, name, id)
	start := time.Now()
	r := <-done
	if r.err != nil {
		t.Fatalf("after the first worker died: %v", r.err)
	}
	if d := time.Since(start); d > AliveFor+5*time.Second {
		t.Errorf("the retry took %v", d)
	}
	want, err := second.Embed(context.Background(), name, texts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !slices.Equal(r.vecs[i], want[i]) {
			t.Fatalf("vector %d differs from the second worker's", i)
		}
	}
	var attempts int
	if err := testenv.Pool(t).QueryRow(context.Background(),
		`SELECT count(*) FROM river_job WHERE args->>'model' = $1 AND args ? 'embed'`, name).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Errorf("%d embedding jobs, want 2 (the dead worker's and the retry)", attempts)
	}
}

// An embedding that no worker took yet when its caller's context ends
// returns at once, its job cancelled: the caller does not wait for a
// worker's answer, as a completion does for its result.
func TestEmbedCancelledWhileQueued(t *testing.T) {
	name := modelName(t)
	model := registerModel(t, name)
	// A live worker that serves the model and takes nothing (an older
	// worker that does not take embedding requests).
	pool := testenv.Pool(t)
	ghost := uuid.New()
	if _, err := pool.Exec(context.Background(), `INSERT INTO engine_worker (worker_id, host, pid, heartbeat_at)
		VALUES ($1, 'ghost', 1, now() + interval '1 minute')`, ghost); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), `INSERT INTO engine_worker_model (worker_id, model_id, slots)
		VALUES ($1, $2, 2)`, ghost, model); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Exec(context.Background(), `DELETE FROM engine_worker WHERE worker_id = $1`, ghost) })
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Embed(ctx, name, []string{"x"})
	// Waiting for an answer would take AliveFor more.
	if d := time.Since(start); d >= AliveFor {
		t.Errorf("Embed returned %v after it was called, its context ending after 300 ms", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if q, st := embedJobState(t, name); q != EmbedQueue(name) || st != "cancelled" {
		t.Fatalf("job in %s, %s; want %s, cancelled", q, st, EmbedQueue(name))
	}
}
