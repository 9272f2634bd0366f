package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/testenv"
)

// TestPromptSplitCapsSuffix: a model loaded with a suffix cap of 8 tokens
// (engine.Config.Split, what MODEL_PROMPT_SPLIT {"split-coder": {"suffix": 8}}
// gives it at load) gets a prompt whose
// suffix part is at most 8 tokens, through the plugin API. One request goes
// to that model and to the same file loaded without caps: both get the
// same prefix and suffix (the engine tokenized that suffix), so their
// prompts, as the stored generations count them, differ by exactly the
// suffix tokens the cap cut.
func TestPromptSplitCapsSuffix(t *testing.T) {
	const capTokens = 8
	path, eng, rec := tinyEngine(t)
	plain := testSched
	capped := plain
	capped.Split = engine.PromptSplit{Suffix: capTokens}
	for name, sched := range map[string]engine.Config{"split-coder": capped, "plain-coder": plain} {
		if _, err := eng.Load(engine.ModelSpec{Name: name, Path: path, Load: engine.LoadOptions{UseMmap: true}, Sched: sched}, nil); err != nil {
			t.Fatal(err)
		}
	}

	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.DefaultRatePerHour, cfg.CompletionMaxTokens = t.TempDir(), 100000, 2
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := New(Deps{Config: cfg, Log: log, DB: testenv.Pool(t), Redis: testenv.Redis(t), Engine: eng, JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	e := &pluginEnv{env: &env{t: t, srv: srv}, rec: rec, ids: map[string]int64{}}
	for _, m := range srv.plugin.models.List() {
		e.ids[m.Name] = m.ID
	}
	c := e.member("split@example.com")

	prefix := "def total(values, weights):\n    acc = 0\n    for v, w in zip(values, weights):\n        acc += "
	var b strings.Builder
	for i := range 12 {
		fmt.Fprintf(&b, "    result_%02d = compute_weighted_total(values, weights, %d)\n", i, i)
	}
	// The rest of the cursor line is longer than the cap, so the cut falls
	// inside it.
	suffix := "v * w * scale_factor_of_the_weighted_total(values, weights)\n" + b.String()
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{e.ids["split-coder"], e.ids["plain-coder"]}, prefix, suffix), 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)

	// The engine got the suffix as sent; its tokens are the model's.
	rec.mu.Lock()
	sent := slices.Contains(rec.texts, suffix)
	rec.mu.Unlock()
	if !sent {
		t.Fatal("the engine never tokenized the suffix as sent")
	}
	sc, err := eng.Get("split-coder")
	if err != nil {
		t.Fatal(err)
	}
	toks, err := sc.Model().Tokenize(suffix, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) <= 4*capTokens {
		t.Fatalf("the suffix is only %d tokens: too short to show the cap", len(toks))
	}
	prompt := func(model string) int {
		return e.count(`SELECT tokens_cached + tokens_evaluated FROM generation WHERE meta_query_id = $1 AND model_id = $2`, mq, e.ids[model])
	}
	cut := prompt("plain-coder") - prompt("split-coder")
	kept := len(toks) - cut
	t.Logf("the capped prompt kept %d of the suffix's %d tokens", kept, len(toks))
	if kept < 1 || kept > capTokens {
		t.Fatalf("the capped model's prompt kept %d of the suffix's %d tokens (its prompt %d tokens, the uncapped one's %d), want 1-%d",
			kept, len(toks), prompt("split-coder"), prompt("plain-coder"), capTokens)
	}
}
