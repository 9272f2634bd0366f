package loadtest

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/code4me/code4me/internal/workload"
)

// TestPause checks the think-time model: 0.5–2 s after every line end,
// 0.3–1 s after about one space in six, none within a word, and the same
// pauses for the same seed.
func TestPause(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		if d := pause(rng, workload.Keystroke{Prefix: "func main() {\n"}); d < 500*time.Millisecond || d >= 2*time.Second {
			t.Fatalf("pause at a line end %v, want 0.5–2 s", d)
		}
		if d := pause(rng, workload.Keystroke{Prefix: "func ma"}); d != 0 {
			t.Fatalf("pause within a word %v, want none", d)
		}
	}
	spaces := 0
	for range 6000 {
		d := pause(rng, workload.Keystroke{Prefix: "func "})
		if d != 0 {
			spaces++
			if d < 300*time.Millisecond || d >= time.Second {
				t.Fatalf("pause after a space %v, want 0.3–1 s", d)
			}
		}
	}
	if spaces < 800 || spaces > 1200 {
		t.Errorf("%d pauses after 6000 spaces, want about 1000", spaces)
	}
	a, b := rand.New(rand.NewPCG(3, 4)), rand.New(rand.NewPCG(3, 4))
	for range 50 {
		k := workload.Keystroke{Prefix: "x := 1\n"}
		if pause(a, k) != pause(b, k) {
			t.Fatal("the same seed gave different pauses")
		}
	}
}

// TestWindows: answers fall in the stretch of the run they came in, those
// after the typing in the last; each stretch's latencies are sorted, and
// those the user waited for are left out of its pauses.
func TestWindows(t *testing.T) {
	s := time.Second
	answers := []Answer{
		{At: 1 * s, MS: 900}, {At: 29 * s, MS: 100, Waited: true}, {At: 30 * s, MS: 50},
		{At: 70 * s, MS: 20}, {At: 95 * s, MS: 10, Waited: true}, {At: 130 * s, MS: 5000, Waited: true},
	}
	ws := Windows(answers, 30*s, 90*s+s)
	if len(ws) != 4 {
		t.Fatalf("%d windows of 30 s over 91 s, want 4", len(ws))
	}
	want := []struct {
		from, to    time.Duration
		all, paused []float64
	}{
		{0, 30 * s, []float64{100, 900}, []float64{900}},
		{30 * s, 60 * s, []float64{50}, []float64{50}},
		{60 * s, 90 * s, []float64{20}, []float64{20}},
		{90 * s, 91 * s, []float64{10, 5000}, nil},
	}
	for i, w := range want {
		g := ws[i]
		if g.From != w.from || g.To != w.to || !slices.Equal(g.All, w.all) || !slices.Equal(g.Paused, w.paused) {
			t.Errorf("window %d: %v–%v all %v paused %v; want %v–%v all %v paused %v", i, g.From, g.To, g.All, g.Paused, w.from, w.to, w.all, w.paused)
		}
	}
	if Windows(answers, 0, time.Minute) != nil || Windows(answers, time.Second, 0) != nil {
		t.Error("no windows without a width and a run")
	}
}

// TestEvery: a periodic action comes first after period - phase
// keystrokes, then after every period of them.
func TestEvery(t *testing.T) {
	for _, tc := range []struct{ period, phase, first int }{{25, 0, 24}, {25, 24, 0}, {25, 10, 14}, {1, 0, 0}} {
		var got []int
		for n := range 3*tc.period + tc.first {
			if every(n, tc.period, tc.phase) {
				got = append(got, n)
			}
		}
		want := []int{tc.first, tc.first + tc.period, tc.first + 2*tc.period}
		if !slices.Equal(got[:min(3, len(got))], want) {
			t.Errorf("period %d, phase %d: after keystrokes %v, want %v first", tc.period, tc.phase, got, want)
		}
	}
}
