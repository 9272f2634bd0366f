package llama

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/code4me/code4me/engine"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogRoutedToSlog(t *testing.T) {
	var buf syncBuffer
	SetLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer SetLogger(testLogger())

	b, _ := New(Config{})
	m, err := b.LoadModel(tinyModelPath(t), engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	out := buf.String()
	if !strings.Contains(out, "msg=llama.cpp") || !strings.Contains(out, "level=DEBUG") {
		t.Fatalf("no llama.cpp lines at debug level in:\n%.2000s", out)
	}
	if !strings.Contains(out, "qwen2") {
		t.Errorf("load log does not mention the architecture:\n%.2000s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(line, "msg=llama.cpp") {
			t.Errorf("line without the constant message: %q", line)
		}
	}

	// At warn level the load's info lines are dropped.
	buf = syncBuffer{}
	SetLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	m, err = b.LoadModel(tinyModelPath(t), engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if strings.Contains(buf.String(), "level=DEBUG") || strings.Contains(buf.String(), "level=INFO") {
		t.Errorf("info lines logged at warn level:\n%.1000s", buf.String())
	}
}

func TestSlogLevelMapping(t *testing.T) {
	for ggml, want := range map[int]slog.Level{1: slog.LevelDebug - 4, 2: slog.LevelDebug, 3: slog.LevelWarn, 4: slog.LevelError} {
		if got := slogLevel(ggml); got != want {
			t.Errorf("slogLevel(%d) = %v, want %v", ggml, got, want)
		}
	}
}
