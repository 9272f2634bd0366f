package llama

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/synth"
)

func TestMain(m *testing.M) {
	// llama.cpp prints hundreds of lines per load and a warning per small
	// context; show only errors.
	SetLogger(testLogger())
	goleak.VerifyTestMain(m)
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// modelDir is where synthetic test models are cached between runs.
func modelDir(t testing.TB) string {
	t.Helper()
	dir, err := os.UserCacheDir()
	if err != nil {
		return t.TempDir()
	}
	return filepath.Join(dir, "code4me-test-models")
}

var (
	tinyOnce sync.Once
	tinyPath string
	tinyErr  error
)

// tinyModelPath returns the path of the tiny synthetic f16 model.
func tinyModelPath(t testing.TB) string {
	t.Helper()
	tinyOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		tinyPath, tinyErr = synth.Ensure(ctx, modelDir(t), "tiny", "f16")
	})
	if tinyErr != nil {
		t.Fatalf("synth tiny model: %v", tinyErr)
	}
	return tinyPath
}

// testConfig is the backend configuration of the tests. GGML_BACKEND_DIR,
// when set, loads the GPU backend built there (scripts/gpu-check.sh), and
// loadTiny offloads every layer to it, so the same tests check the GPU path.
func testConfig() Config { return Config{BackendDir: os.Getenv("GGML_BACKEND_DIR")} }

// TestGPUBackendLoaded fails when CODE4ME_EXPECT_GPU=1 and no GPU device is
// usable: the GPU check must not pass on the CPU by accident.
func TestGPUBackendLoaded(t *testing.T) {
	if os.Getenv("CODE4ME_EXPECT_GPU") != "1" {
		t.Skip("CODE4ME_EXPECT_GPU is not 1")
	}
	b, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	var gpus []string
	for _, d := range b.Devices() {
		if d.GPU {
			gpus = append(gpus, fmt.Sprintf("%s (%s, %d MiB)", d.Name, d.Description, d.TotalBytes>>20))
		}
	}
	if len(gpus) == 0 {
		t.Fatalf("no GPU device after loading backends from %q: %+v", os.Getenv("GGML_BACKEND_DIR"), b.Devices())
	}
	t.Logf("gpu devices: %v", gpus)
}

// loadTiny loads the tiny model (on the GPU when testConfig loads one) and
// closes it at the end of the test.
func loadTiny(t testing.TB) *Model {
	t.Helper()
	b, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.LoadModel(tinyModelPath(t), engine.LoadOptions{NGPULayers: -1, UseMmap: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close model: %v", err)
		}
	})
	return m
}

// newContext creates a context on m, closed at the end of the test.
func newContext(t testing.TB, m *Model, p engine.ContextParams) *Context {
	t.Helper()
	c, err := m.NewLlamaContext(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
