package server

import (
	"testing"
	"time"
)

// An outage's 503s give one log line a second, each counting the 503s it
// stands for.
func TestLogEvery(t *testing.T) {
	var l logEvery
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	if n, ok := l.tick(t0); !ok || n != 1 {
		t.Fatalf("first 503: (%d, %v), want a line for 1", n, ok)
	}
	lines := 0
	for i := range 500 {
		if _, ok := l.tick(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			lines++
		}
	}
	if lines != 0 {
		t.Fatalf("%d lines for 500 503s within the second after a line, want 0", lines)
	}
	if n, ok := l.tick(t0.Add(time.Second)); !ok || n != 501 {
		t.Fatalf("a second later: (%d, %v), want a line for 501", n, ok)
	}
}
