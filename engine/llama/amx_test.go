package llama

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/synth"
)

// amxShape is a small Q8_0 model whose matmuls all qualify for ggml's AMX
// kernels (input columns a multiple of 2048): none of the named synthetic
// shapes does.
var amxShape = synth.Shape{
	Name: "amx-test", Arch: "qwen2", NLayer: 2, NEmbd: 2048, NFF: 4096, NHead: 16, NHeadKV: 2,
	NCtx: 4096, NVocab: 4096, RopeTheta: 1e6, RMSEps: 1e-6, QKVBias: true,
	BPEVocab: 4096 - 9, CorpusSize: 1 << 20,
}

func amxModelPath(t testing.TB) string {
	t.Helper()
	dir := modelDir(t)
	path := filepath.Join(dir, "synthetic-amx-test-q8_0-s1.gguf")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tmp := path + ".tmp"
	if err := synth.Write(ctx, tmp, amxShape, synth.Options{Seed: 1, Type: "q8_0", CacheDir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// captureHandler records llama.cpp's log lines.
type captureHandler struct {
	mu    sync.Mutex
	lines []string
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.Attrs(func(a slog.Attr) bool {
		h.lines = append(h.lines, a.Value.String())
		return true
	})
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func (h *captureHandler) contains(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// loadAMXModel loads the AMX test model with or without the CPU backend's
// extra buffer types and reports whether weights went to an AMX buffer.
func loadAMXModel(t testing.TB, path string, extra bool) (*Model, bool) {
	t.Helper()
	h := &captureHandler{}
	SetLogger(slog.New(h))
	defer SetLogger(testLogger())
	noExtraBufts.Store(!extra)
	defer noExtraBufts.Store(false)
	b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.LoadModel(path, engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, h.contains("AMX model buffer")
}

// TestAMXMatchesCPU compares logits of the AMX kernels (prompt: tile path;
// one token: VNNI path; eight sequences in a batch) with ggml's ordinary CPU
// kernels. Both quantize activations to Q8_0; only the summation order
// differs.
func TestAMXMatchesCPU(t *testing.T) {
	if !strings.Contains(SystemInfo(), "AMX_INT8 = 1") {
		t.Skip("ggml built without AMX")
	}
	path := amxModelPath(t)
	amx, used := loadAMXModel(t, path, true)
	if !used {
		t.Fatal("no weights in an AMX buffer")
	}
	cpu, used := loadAMXModel(t, path, false)
	if used {
		t.Fatal("weights in an AMX buffer without extra buffer types")
	}

	toks := tokens(t, amx, prompt)
	run := func(m *Model) [][]float32 {
		const n = 8
		c := newContext(t, m, engine.ContextParams{NCtx: 1024 * n, NBatch: 512, NSeqMax: n})
		var out [][]float32
		out = append(out, decodePrompt(t, c, 0, 0, toks))
		var b engine.Batch
		b.Add(toks[0], int32(len(toks)), 0, true)
		if err := c.Decode(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]float32(nil), c.Logits(0)...))
		for s := 1; s < n; s++ {
			decodePrompt(t, c, int32(s), 0, toks[:len(toks)-s])
		}
		b.Reset()
		b.Add(toks[1], int32(len(toks))+1, 0, true)
		for s := 1; s < n; s++ {
			b.Add(toks[s], int32(len(toks)-s), int32(s), true)
		}
		if err := c.Decode(&b); err != nil {
			t.Fatal(err)
		}
		for s := range n {
			out = append(out, append([]float32(nil), c.Logits(s)...))
		}
		return out
	}
	got, want := run(amx), run(cpu)
	for i := range want {
		// Normalized mean squared error, the measure of ggml's
		// test-backend-ops; an activation that rounds to another Q8_0 step
		// in one layer perturbs every later one.
		var num, den float64
		for j, w := range want[i] {
			d := float64(got[i][j]) - float64(w)
			num += d * d
			den += float64(w) * float64(w)
		}
		nmse := num / den
		t.Logf("logits %d: nmse %.3g, max diff %.3g, argmax %d vs %d", i, nmse, maxAbsDiff(got[i], want[i]), argmax(got[i]), argmax(want[i]))
		if nmse > 1e-3 {
			t.Errorf("logits %d: AMX vs CPU nmse %g", i, nmse)
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
