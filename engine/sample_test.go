package engine

import (
	"math"
	"testing"
)

func TestLogProb(t *testing.T) {
	logits := []float32{1, 2, 3, 0}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v))
	}
	for i, v := range logits {
		want := float64(v) - math.Log(z)
		if got := LogProb(logits, Token(i)); math.Abs(float64(got)-want) > 1e-5 {
			t.Errorf("token %d: %v, want %v", i, got, want)
		}
	}
	// Large logits do not overflow.
	if got := LogProb([]float32{1000, 1000}, 0); math.Abs(float64(got)+math.Ln2) > 1e-5 {
		t.Errorf("large logits: %v", got)
	}
	if got := LogProb(logits, 9); !math.IsInf(float64(got), -1) {
		t.Errorf("out of range: %v", got)
	}
}

func TestConfidence(t *testing.T) {
	if c := Confidence(nil); c != 0 {
		t.Errorf("empty: %v", c)
	}
	c := Confidence([]float32{float32(math.Log(0.5)), 0})
	if math.Abs(c-0.75) > 1e-6 {
		t.Errorf("got %v, want 0.75", c)
	}
}

func TestExp32(t *testing.T) {
	for x := float32(-90); x <= 0; x += 0.001 {
		want := math.Exp(float64(x))
		got := float64(exp32(x))
		if want < 1e-37 {
			continue // clamped at e^-87
		}
		if math.Abs(got-want) > 1e-5*want {
			t.Fatalf("exp32(%v) = %v, want %v", x, got, want)
		}
	}
}
