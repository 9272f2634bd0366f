package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/llama"
)

// tinyEngine is an Engine with the tiny synthetic model loaded as "tiny".
func tinyEngine(t *testing.T) *engine.Engine { return tinyEngineThreads(t, 0) }

// tinyEngineThreads is tinyEngine with the scheduler's threads set.
func tinyEngineThreads(t *testing.T, threads int) *engine.Engine {
	t.Helper()
	tinyModel(t) // builds the model file once
	b, err := llama.New(llama.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(b, nil)
	t.Cleanup(func() { e.Close() })
	if _, err := e.Load(engine.ModelSpec{Name: "tiny", Path: tinyPath, Load: engine.LoadOptions{UseMmap: true},
		Sched: engine.Config{NParallel: 1, NCtx: 512, NBatch: 128, NThreads: threads}}, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestEmbed: one vector per text, of the model's width, equal for equal
// texts whether embedded alone, in a list or from several goroutines at
// once, different for different texts; a completion runs beside it.
func TestEmbed(t *testing.T) {
	e := tinyEngine(t)
	ctx := context.Background()
	texts := []string{"func add(a, b int) int { return a + b }", "SELECT * FROM users WHERE id = 1", "func add(a, b int) int { return a + b }"}
	vecs, err := e.Embed(ctx, "tiny", texts)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e.Get("tiny")
	width := s.Model().Info().NEmbd
	if len(vecs) != len(texts) {
		t.Fatalf("%d vectors for %d texts", len(vecs), len(texts))
	}
	for i, v := range vecs {
		if len(v) != width {
			t.Fatalf("vector %d has %d dimensions, want %d", i, len(v), width)
		}
	}
	if d := maxDiff(vecs[0], vecs[2]); d > 1e-4 {
		t.Errorf("equal texts differ by %g", d)
	}
	if maxDiff(vecs[0], vecs[1]) == 0 {
		t.Error("different texts gave equal vectors")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			if i%2 == 0 {
				if _, err := e.Complete(ctx, "tiny", engine.Request{Prefix: "x = ", MaxTokens: 4, CachePrompt: true}); err != nil {
					errs <- err
				}
				return
			}
			v, err := e.Embed(ctx, "tiny", texts[1:2])
			if err != nil {
				errs <- err
				return
			}
			if d := maxDiff(v[0], vecs[1]); d > 1e-4 {
				errs <- errors.New("concurrent embedding differs")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestEmbedErrors: an unknown or unloaded model and a cancelled call
// answer errors; nothing to embed is no vectors.
func TestEmbedErrors(t *testing.T) {
	e := tinyEngine(t)
	if _, err := e.Embed(context.Background(), "nope", []string{"x"}); !errors.Is(err, engine.ErrUnknownModel) {
		t.Errorf("unknown model: %v, want ErrUnknownModel", err)
	}
	if v, err := e.Embed(context.Background(), "tiny", nil); err != nil || v != nil {
		t.Errorf("no texts: %v, %v", v, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Embed(ctx, "tiny", []string{"x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
	if _, err := e.Embed(context.Background(), "tiny", []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Unload("tiny"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Embed(context.Background(), "tiny", []string{"x"}); !errors.Is(err, engine.ErrUnknownModel) {
		t.Errorf("unloaded model: %v, want ErrUnknownModel", err)
	}
}

// TestEmbedderSleepsBetweenJobs: an embedder with several threads (the
// scheduler's ENGINE_THREADS) puts its worker threads to sleep once no job
// waits, so that a query embedded now and then does not keep a core busy
// polling for the next graph beside the completions.
func TestEmbedderSleepsBetweenJobs(t *testing.T) {
	e := tinyEngineThreads(t, 2)
	for i := range 3 {
		if _, err := e.Embed(context.Background(), "tiny", []string{fmt.Sprintf("func f%d() int { return %d }", i, i)}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // the embedder's loop reaches its wait
	t0 := processCPU(t)
	time.Sleep(300 * time.Millisecond)
	if used := processCPU(t) - t0; used > 60*time.Millisecond {
		t.Fatalf("with no embedding to do, the process used %v of CPU in 300ms: the embedder's workers poll", used)
	}
}

// processCPU is the CPU time the test process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
