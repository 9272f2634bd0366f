package server

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/testenv"
)

// noFIMModel is a completion model whose vocabulary has no FIM tokens, as
// a plain base model's has none.
type noFIMModel struct{ engine.Model }

func (m noFIMModel) Special() engine.SpecialTokens {
	sp := m.Model.Special()
	sp.FIMPre, sp.FIMSuf, sp.FIMMid = engine.NoToken, engine.NoToken, engine.NoToken
	return sp
}

type noFIMBackend struct{ engine.Backend }

func (b noFIMBackend) Load(path string, o engine.LoadOptions, progress func(float32)) (engine.Model, error) {
	m, err := b.Backend.Load(path, o, progress)
	if err != nil {
		return nil, err
	}
	return noFIMModel{m}, nil
}

// TestLlamaInfillWithoutFIMTokens: /infill on a model without FIM tokens
// (its name says nothing of chat) answers llama-server's 501.
func TestLlamaInfillWithoutFIMTokens(t *testing.T) {
	eng := engine.New(noFIMBackend{enginetest.New(enginetest.Options{Name: "plain base model"})}, nil)
	t.Cleanup(func() { eng.Close() })
	if _, err := eng.Load(engine.ModelSpec{Name: "plain-base", Path: "plain", Sched: testSched}, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.DefaultRatePerHour = t.TempDir(), 100000
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
	e := &pluginEnv{env: &env{t: t, srv: srv}, ids: map[string]int64{}}
	c, _ := e.llamaClientOf("llama-nofim-"+uuid.NewString()[:8]+"@example.com", "curl/8.5.0")

	r := c.do("POST", "/infill", map[string]any{"input_prefix": "def f():\n", "input_suffix": "\n", "prompt": "    return ",
		"n_predict": 4, "model": "plain-base"})
	if r.status != 501 || string(r.raw) != `{"error":{"code":501,"message":"Infill is not supported by this model","type":"not_supported_error"}}` {
		t.Errorf("/infill on a model without FIM tokens = %d %s, want llama-server's 501", r.status, r.raw)
	}
}
