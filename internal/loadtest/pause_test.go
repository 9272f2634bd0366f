package loadtest

import (
	"math/rand/v2"
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
