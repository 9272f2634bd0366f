package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
	"github.com/code4me/code4me/engine/llama"
	"github.com/code4me/code4me/engine/synth"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/testenv"
)

// The plugin tests run the real llama.cpp backend on the tiny synthetic
// model, loaded twice: "tiny-coder" (a FIM model) and "tiny-instruct" (a
// chat model, by its name). Two fake-backend models cover what a real model
// cannot be made to do on demand: "broken-coder" fails every decode and
// "slow-coder" takes 400 ms per decode (its prompt alone) and never stops early, so a request is still running when
// it is superseded or cancelled. Every text the engine tokenizes is
// recorded, to prove secrets never reach a model.

// recorder keeps every text the engine was asked to tokenize.
type recorder struct {
	mu    sync.Mutex
	texts []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.texts = append(r.texts, s)
	r.mu.Unlock()
}

// all returns everything recorded so far, joined.
func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.texts, "\n\x00\n")
}

type recBackend struct {
	real engine.Backend
	rec  *recorder
}

func (b recBackend) Load(path string, o engine.LoadOptions, progress func(float32)) (engine.Model, error) {
	var m engine.Model
	var err error
	switch path {
	case "broken":
		m, err = enginetest.New(enginetest.Options{Name: "broken qwen2.5-coder",
			BeforeDecode: func(*engine.Batch) error { return errors.New("decode failed") }}).Load(path, o, progress)
	case "slow":
		// It always writes "a": a request runs its 64 tokens (26 s) unless
		// it is cancelled.
		m, err = enginetest.New(enginetest.Options{Name: "slow qwen2.5-coder", DecodeDelay: 400 * time.Millisecond,
			Logits: func(_ []engine.Token, out []float32) { clear(out); out['a'] = 20 }}).Load(path, o, progress)
	default:
		m, err = b.real.Load(path, o, progress)
	}
	if err != nil {
		return nil, err
	}
	return recModel{m, b.rec}, nil
}

type recModel struct {
	engine.Model
	rec *recorder
}

// ApplyChatTemplate forwards to the real model's template, so the chat path
// under test renders prompts as in production.
func (m recModel) ApplyChatTemplate(msgs []engine.ChatMessage, addAssistant bool) (string, error) {
	ct, ok := m.Model.(engine.ChatTemplater)
	if !ok {
		return "", engine.ErrNoChatTemplate
	}
	return ct.ApplyChatTemplate(msgs, addAssistant)
}

func (m recModel) Tokenize(text string, addSpecial, parseSpecial bool) ([]engine.Token, error) {
	m.rec.add(text)
	return m.Model.Tokenize(text, addSpecial, parseSpecial)
}

var testEngine struct {
	once sync.Once
	eng  *engine.Engine
	rec  *recorder
	err  error
}

// testSched is the scheduler configuration of the tests' models.
var testSched = engine.Config{NParallel: 2, NCtx: 2 * 2048, NBatch: 256, QueueSize: 16}

// tinyModel returns the path of the tiny synthetic model (generated once
// into the user's cache) and a llama.cpp backend to load it with.
func tinyModel() (string, *llama.Backend, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	path, err := synth.Ensure(ctx, filepath.Join(dir, "code4me-test-models"), "tiny", "f16")
	if err != nil {
		return "", nil, err
	}
	lb, err := llama.New(llama.Config{})
	if err != nil {
		return "", nil, err
	}
	return path, lb, nil
}

// tinyEngine is an engine of the test's own on the tiny model, recording
// what it tokenizes; the caller loads the models.
func tinyEngine(t *testing.T) (string, *engine.Engine, *recorder) {
	t.Helper()
	sharedEngine(t) // llama.cpp's logger and backend, set up once
	path, lb, err := tinyModel()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	eng := engine.New(recBackend{real: lb, rec: rec}, nil)
	t.Cleanup(func() { eng.Close() })
	return path, eng, rec
}

// sharedEngine loads the test models once per test binary.
func sharedEngine(t testing.TB) (*engine.Engine, *recorder) {
	t.Helper()
	testEngine.once.Do(func() {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
		path, lb, err := tinyModel()
		if err != nil {
			testEngine.err = err
			return
		}
		rec := &recorder{}
		eng := engine.New(recBackend{real: lb, rec: rec}, nil)
		for name, p := range map[string]string{"tiny-coder": path, "tiny-instruct": path, "broken-coder": "broken", "slow-coder": "slow"} {
			if _, err := eng.Load(engine.ModelSpec{Name: name, Path: p, Load: engine.LoadOptions{UseMmap: true}, Sched: testSched}, nil); err != nil {
				testEngine.err = err
				return
			}
		}
		testEngine.eng, testEngine.rec = eng, rec
	})
	if testEngine.err != nil {
		t.Fatalf("test engine: %v", testEngine.err)
	}
	return testEngine.eng, testEngine.rec
}

// pluginEnv is a server with the test engine, on real Postgres and Redis.
type pluginEnv struct {
	*env
	rec *recorder
	ids map[string]int64 // engine name -> model id
}

func newPluginEnv(t *testing.T, mut func(*config.Config)) *pluginEnv {
	t.Helper()
	eng, rec := sharedEngine(t)
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.DefaultRatePerHour = 100000
	if mut != nil {
		mut(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := New(Deps{Config: cfg, Log: log, DB: testenv.Pool(t), Redis: testenv.Redis(t), Engine: eng, JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	pe := &pluginEnv{env: &env{t: t, srv: srv}, rec: rec, ids: map[string]int64{}}
	for _, m := range srv.plugin.models.List() {
		pe.ids[m.Name] = m.ID
	}
	return pe
}

// member returns a logged-in client with an active new project.
func (e *pluginEnv) member(email string) *client {
	e.t.Helper()
	e.signup(email)
	c := e.loggedIn(email)
	c.expect("POST", "/api/project/create", map[string]any{"project_name": "demo"}, 201)
	return c
}

// completionBody is a valid RequestCompletion.
func completionBody(ids []int64, prefix, suffix string) map[string]any {
	return map[string]any{
		"model_ids": ids,
		"context":   map[string]any{"prefix": prefix, "suffix": suffix, "file_name": "main.py", "selected_text": "", "context_files": []string{}},
		"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 47,
			"file_path": "src/main.py", "caret_line": 3, "document_char_length": 120, "relative_document_position": 0.5},
		"behavioral_telemetry": map[string]any{"time_since_last_shown": 1200, "time_since_last_accepted": 5000, "typing_speed": 3.5},
	}
}

// count runs a counting query.
func (e *pluginEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.srv.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}
