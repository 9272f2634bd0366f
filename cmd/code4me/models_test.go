package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/synth"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/server"
)

// testModelConfig is the configuration with no model configured, its
// synthetic models under the user's cache (made once), one slot, one
// thread.
func testModelConfig(t *testing.T) config.Config {
	t.Helper()
	c, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	c.DataDir = t.TempDir()
	c.ModelDir = filepath.Join(cache, "code4me-test-models", "serve")
	c.SyntheticShape, c.NParallel, c.NThreads = "tiny", 1, 1
	return c
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// TestServeModelsChat: with no model configured, serve loads the
// synthetic completion model and a synthetic chat model beside it: the
// chat model's name makes it a chat model (the rule RegisterModels
// applies) and its file's ChatML template renders a chat prompt, while
// the completion model is not taken for a chat model.
func TestServeModelsChat(t *testing.T) {
	c := testModelConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	refs, err := serveModels(ctx, c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[0].Name != "synthetic-tiny" || refs[1].Name != "synthetic-tiny-chat" {
		t.Fatalf("serve loads %+v, want synthetic-tiny and synthetic-tiny-chat", refs)
	}
	if server.IsChatName(refs[0].Name) || !server.IsChatName(refs[1].Name) {
		t.Fatalf("chat by name: %s %v, %s %v", refs[0].Name, server.IsChatName(refs[0].Name), refs[1].Name, server.IsChatName(refs[1].Name))
	}
	eng, err := newEngine(c, quietLogger(), refs)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	sc, err := eng.Get("synthetic-tiny-chat")
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Model().Info().ChatTemplate; got != synth.ChatTemplate {
		t.Fatalf("the chat model's template is %q, want the ChatML template", got)
	}
	prompt, err := eng.ChatPrompt("synthetic-tiny-chat", []engine.ChatMessage{{Role: "user", Content: "hello"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"; prompt != want {
		t.Fatalf("chat prompt %q, want %q", prompt, want)
	}
	// The chat model answers a chat prompt.
	res, err := eng.Complete(ctx, "synthetic-tiny-chat", engine.Request{Prefix: prompt, Raw: true, MaxTokens: 4})
	if err != nil || res.Timings.GeneratedTokens == 0 {
		t.Fatalf("chat completion: %+v, %v", res, err)
	}

	// A configured model replaces both.
	c.Models = []string{"tiny"}
	if refs, err := serveModels(ctx, c, quietLogger()); err != nil || len(refs) != 1 || refs[0].Name != "synthetic-tiny" {
		t.Fatalf("MODELS=tiny loads %+v, %v", refs, err)
	}
}

// TestModelStatusSynthetic: /api/ping's synthetic flag comes from the
// file's general.synthetic, so a synthetic file loaded by its path, under
// a name of its own, is reported synthetic too.
func TestModelStatusSynthetic(t *testing.T) {
	c := testModelConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	byShape, err := resolveModel(ctx, c, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	renamed := filepath.Join(t.TempDir(), "my-model.gguf")
	if err := os.Symlink(byShape.Path, renamed); err != nil {
		t.Fatal(err)
	}
	byPath, err := resolveModel(ctx, c, renamed)
	if err != nil {
		t.Fatal(err)
	}
	if byPath.Name != "my-model" || byPath.Synthetic {
		t.Fatalf("by path: %+v", byPath)
	}
	eng, err := newEngine(c, quietLogger(), []modelRef{byPath})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	st := modelStatus(eng)
	if len(st) != 1 || st[0]["name"] != "my-model" || st[0]["synthetic"] != true {
		t.Fatalf("modelStatus = %v, want my-model reported synthetic", st)
	}
	if !strings.HasSuffix(byShape.Path, ".gguf") {
		t.Fatalf("synthetic path %s", byShape.Path)
	}
}

// TestSchedConfigPromptBudget: a model listed in MODEL_PROMPT_BUDGET_MS
// gets its own prompt budget (0 included), the others
// ENGINE_PROMPT_BUDGET_MS.
func TestSchedConfigPromptBudget(t *testing.T) {
	c, err := config.Load(func(k string) (string, bool) {
		v, ok := map[string]string{"ENGINE_PROMPT_BUDGET_MS": "10000", "MODEL_PROMPT_BUDGET_MS": `{"big": 2500, "none": 0}`}[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]time.Duration{"big": 2500 * time.Millisecond, "none": 0, "other": 10 * time.Second} {
		if got := schedConfig(c, modelRef{Name: name}, nil).TMaxPrompt; got != want {
			t.Errorf("%s: TMaxPrompt %v, want %v", name, got, want)
		}
	}
	// ENGINE_PROMPT_CACHE_MIB too, 0 turning the prompt cache off.
	c.PromptCacheMiB = 3
	if got := schedConfig(c, modelRef{Name: "other"}, nil).PromptCacheBytes; got != 3<<20 {
		t.Errorf("PromptCacheBytes %d, want 3 MiB", got)
	}
	c.PromptCacheMiB = 0
	if got := schedConfig(c, modelRef{Name: "other"}, nil).PromptCacheBytes; got >= 0 {
		t.Errorf("PromptCacheBytes %d for ENGINE_PROMPT_CACHE_MIB=0, want negative (off)", got)
	}
	// ENGINE_MIXED_PREFILL reaches every model's scheduler.
	c.MixedPrefill = 24
	if got := schedConfig(c, modelRef{Name: "other"}, nil).MixedPrefill; got != 24 {
		t.Errorf("MixedPrefill %d, want 24", got)
	}
	if _, err := config.Load(func(k string) (string, bool) {
		v, ok := map[string]string{"MODEL_PROMPT_BUDGET_MS": `{"big": -1}`}[k]
		return v, ok
	}); err == nil || !strings.Contains(err.Error(), "MODEL_PROMPT_BUDGET_MS") {
		t.Errorf("a negative budget: %v, want an error naming MODEL_PROMPT_BUDGET_MS", err)
	}
}

// TestSchedConfigPromptSplit: a model listed in MODEL_PROMPT_SPLIT gets its
// caps in its engine configuration, the others none; the names that no
// loaded model has are the ones newEngine warns about.
func TestSchedConfigPromptSplit(t *testing.T) {
	c, err := config.Load(func(k string) (string, bool) {
		v, ok := map[string]string{"MODEL_PROMPT_SPLIT": `{"big": {"extra": 2048, "prefix": 1024, "suffix": 256}, "typo": {"suffix": 8}, "gone": {}}`}[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]engine.PromptSplit{"big": {Extra: 2048, Prefix: 1024, Suffix: 256}, "other": {}}
	for name, w := range want {
		if got := schedConfig(c, modelRef{Name: name}, nil).Split; got != w {
			t.Errorf("%s: Split %+v, want %+v", name, got, w)
		}
	}
	refs := []modelRef{{Name: "big"}, {Name: "other"}}
	if got := unloadedSplits(c, refs); !slices.Equal(got, []string{"gone", "typo"}) {
		t.Errorf("unloaded names %v, want [gone typo]", got)
	}
}
