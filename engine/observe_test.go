package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

// TestEngineObserve: Observe hears the end of every request once, with
// its model and the very result its caller gets, on models loaded before
// and after it, whichever way the caller waits, a superseded request
// included (its Err says so); Observe(nil) stops it.
func TestEngineObserve(t *testing.T) {
	e := engine.New(enginetest.New(enginetest.Options{DecodeDelay: 10 * time.Millisecond}), nil)
	defer e.Close()
	load := func(name string) {
		t.Helper()
		if _, err := e.Load(engine.ModelSpec{Name: name, Path: name + ".gguf", Sched: engine.Config{NParallel: 2, NCtx: 2048}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	load("before")
	var mu sync.Mutex
	seen := map[*engine.Result][]string{}
	e.Observe(func(model string, res *engine.Result) {
		mu.Lock()
		seen[res] = append(seen[res], model)
		mu.Unlock()
	})
	load("after")

	ctx := context.Background()
	done, err := e.Complete(ctx, "before", fimReq(1, 10, 5))
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.Stream(ctx, "after", fimReq(2, 10, 5))
	if err != nil {
		t.Fatal(err)
	}
	streamed, _ := st.Wait()

	// A long request, superseded by a newer one with its key.
	long := fimReq(3, 10, 5)
	long.MaxTokens, long.SupersedeKey = 200, "session\x00file"
	old, err := e.Stream(ctx, "after", long)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if s, _ := e.Get("after"); s.Stats().SlotsBusy == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long request never got a slot")
		}
	}
	newer := long
	newer.MaxTokens = 2
	replaced, err := e.Complete(ctx, "after", newer)
	if err != nil {
		t.Fatal(err)
	}
	superseded, _ := old.Wait()
	if superseded.Stop != engine.StopCancelled || !errors.Is(superseded.Err, engine.ErrSuperseded) {
		t.Fatalf("the older request ended %s (%v), want cancelled by its successor", superseded.Stop, superseded.Err)
	}

	mu.Lock()
	want := map[*engine.Result]string{done: "before", streamed: "after", superseded: "after", replaced: "after"}
	if len(seen) != len(want) {
		t.Errorf("observed %d results, want %d", len(seen), len(want))
	}
	for res, model := range want {
		if got := seen[res]; len(got) != 1 || got[0] != model {
			t.Errorf("result %s of %s observed as %v, want once as %s", res.Stop, model, got, model)
		}
	}
	mu.Unlock()

	e.Observe(nil)
	if _, err := e.Complete(ctx, "before", fimReq(4, 10, 5)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(want) {
		t.Errorf("observed %d results after Observe(nil), want %d", len(seen), len(want))
	}
}
