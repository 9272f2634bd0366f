package llama

import (
	"context"
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

// loadTiny loads the tiny model and closes it at the end of the test.
func loadTiny(t testing.TB) *Model {
	t.Helper()
	b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.LoadModel(tinyModelPath(t), engine.LoadOptions{UseMmap: true}, nil)
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
