package remote

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/code4me/code4me/engine"
)

// TestWireCarriesBudgetOutcome: a worker's result keeps what the prompt's
// time budget dropped, and a deadline refusal stays ErrDeadline on the API
// node, so the HTTP layer answers it as it does for an in-process engine.
func TestWireCarriesBudgetOutcome(t *testing.T) {
	in := &engine.Result{Stop: engine.StopDeadline, Err: &engine.DeadlineError{Estimate: 41e9, Left: 30e9},
		Trimmed: engine.Trimmed{ExtraChunks: 2, PrefixTokens: 120}, Truncated: true}
	b, err := json.Marshal(toWire(in))
	if err != nil {
		t.Fatal(err)
	}
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	out := w.result()
	if out.Trimmed != in.Trimmed || !out.Truncated {
		t.Errorf("trimmed %+v truncated %v, want %+v", out.Trimmed, out.Truncated, in.Trimmed)
	}
	if !errors.Is(out.Err, engine.ErrDeadline) {
		t.Errorf("err %v is not ErrDeadline", out.Err)
	}
}
