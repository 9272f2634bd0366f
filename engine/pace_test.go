package engine

import (
	"math"
	"testing"
	"time"
)

// TestPaceStepFor: the time of a step of generated tokens is the measured
// one for as many sequences as the measured steps had or fewer, and grows
// in proportion above them.
func TestPaceStepFor(t *testing.T) {
	var p pace
	if got := p.stepFor(4); got != 0 {
		t.Fatalf("nothing measured: %v, want 0", got)
	}
	for range 20 {
		p.record(1, 0, 40*time.Millisecond) // steps of one sequence
	}
	for n, want := range map[int]float64{1: 0.040, 4: 0.160} {
		if got := p.stepFor(n); math.Abs(got-want) > 1e-9 {
			t.Errorf("after steps of 1: stepFor(%d) = %v, want %v", n, got, want)
		}
	}
	var g pace
	for range 20 {
		g.record(16, 0, 10*time.Millisecond) // steps of sixteen
	}
	for n, want := range map[int]float64{4: 0.010, 16: 0.010, 32: 0.020} {
		if got := g.stepFor(n); math.Abs(got-want) > 1e-9 {
			t.Errorf("after steps of 16: stepFor(%d) = %v, want %v", n, got, want)
		}
	}
	// A batch with prompt tokens is no step sample.
	g.record(300, 200, time.Second)
	if got := g.stepFor(16); math.Abs(got-0.010) > 1e-9 {
		t.Errorf("a prompt batch changed the step: %v", got)
	}
}
