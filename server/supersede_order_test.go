package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
)

// TestSupersedeOrder: requests reach arrive in their own goroutines, so an
// older keystroke's request may get there after a newer one. It must not
// stop the newer one's work: it is the one superseded. Nor may a request
// already ended (a WebSocket ends the previous keystroke's request before
// the next one starts) stop anything.
func TestSupersedeOrder(t *testing.T) {
	var r supersedes
	t0 := time.Now()
	bg := context.Background()

	// In order: the newer stops the older.
	c1, s1, done1 := r.arrive(bg, "k", t0)
	c2, s2, done2 := r.arrive(bg, "k", t0.Add(time.Millisecond))
	if !s1.is() || !errors.Is(context.Cause(c1), engine.ErrSuperseded) {
		t.Fatal("the older request was not superseded by the newer one")
	}
	if s2.is() || c2.Err() != nil {
		t.Fatal("the newer request was stopped")
	}
	done1()
	done2()

	// Out of order: the newer arrives first, the older later.
	cNew, sNew, doneNew := r.arrive(bg, "k", t0.Add(2*time.Second))
	cOld, sOld, doneOld := r.arrive(bg, "k", t0.Add(time.Second))
	if sNew.is() || cNew.Err() != nil {
		t.Fatal("an older request arriving late stopped the newer one")
	}
	if !sOld.is() || !errors.Is(context.Cause(cOld), engine.ErrSuperseded) {
		t.Fatal("the older request arriving late was not superseded")
	}
	doneOld()

	// An ended request stops nothing, though it is newer.
	ended, cancel := context.WithCancel(bg)
	cancel()
	_, sEnded, doneEnded := r.arrive(ended, "k", t0.Add(3*time.Second))
	if sNew.is() || cNew.Err() != nil {
		t.Fatal("an ended request stopped the running one")
	}
	if !sEnded.is() {
		t.Fatal("the ended request is not marked")
	}
	doneEnded()
	doneNew()
	if len(r.latest) != 0 {
		t.Fatalf("%d keys left registered", len(r.latest))
	}
}
