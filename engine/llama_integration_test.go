package engine_test

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
	"unicode/utf8"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/llama"
	"github.com/code4me/code4me/engine/synth"
)

// These tests run the scheduler on real llama.cpp with the synthetic "tiny"
// model (generated once and cached like engine/llama's tests do). Its text is
// noise; the tests assert structure, determinism and equality between code
// paths.

var (
	tinyOnce sync.Once
	tinyPath string
	tinyErr  error
)

func tinyModel(t testing.TB) engine.Model {
	t.Helper()
	if testing.Short() {
		t.Skip("llama.cpp integration test")
	}
	tinyOnce.Do(func() {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		tinyPath, tinyErr = synth.Ensure(ctx, filepath.Join(dir, "code4me-test-models"), "tiny", "f16")
	})
	if tinyErr != nil {
		t.Fatalf("synth tiny: %v", tinyErr)
	}
	b, err := llama.New(llama.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.Load(tinyPath, engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func llamaSched(t *testing.T, m engine.Model, cfg engine.Config) *engine.Scheduler {
	t.Helper()
	if cfg.NThreads == 0 {
		cfg.NThreads = 1 // no spinning thread barrier on a shared machine
	}
	s, err := engine.NewScheduler("tiny", m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLlamaFamilyAndDeterminism(t *testing.T) {
	m := tinyModel(t)
	s := llamaSched(t, m, engine.Config{NParallel: 1, NCtx: 2048})
	if s.Family() == engine.FamilyNone {
		t.Fatalf("tiny model has no FIM layout: %+v", m.Special())
	}
	r := fimReq(1, 20, 10)
	r.CachePrompt = false
	a, b := complete(t, s, r), complete(t, s, r)
	if len(a.Tokens) == 0 {
		t.Fatal("no tokens")
	}
	sameTokens(t, "greedy twice", b, a)
	if a.Confidence <= 0 || a.Confidence > 1 {
		t.Errorf("confidence %v", a.Confidence)
	}
}

func TestLlamaSameTokensAloneBatchedCached(t *testing.T) {
	m := tinyModel(t)
	reqs := make([]engine.Request, 8)
	alone := make([]*engine.Result, 8)
	solo := llamaSched(t, m, engine.Config{NParallel: 1, NCtx: 2048})
	for i := range reqs {
		reqs[i] = fimReq(i+1, 8+2*i, 4+i)
		reqs[i].MaxTokens = 16
		r := reqs[i]
		r.CachePrompt = false
		alone[i] = complete(t, solo, r)
	}
	// After a prefix-cache hit (the identical prompt, then its typed
	// continuation is compared with a cold run of it).
	again := complete(t, solo, reqs[7])
	sameTokens(t, "after a cache hit", again, alone[7])
	if again.Timings.CachedTokens != again.Timings.PromptTokens-1 {
		t.Errorf("cache hit reused %d of %d", again.Timings.CachedTokens, again.Timings.PromptTokens)
	}

	batched := llamaSched(t, m, engine.Config{NParallel: 8, NCtx: 8 * 1024, NBatch: 512})
	var wg sync.WaitGroup
	got := make([]*engine.Result, 8)
	for i, r := range reqs {
		wg.Go(func() {
			res, err := batched.Complete(context.Background(), r)
			if err != nil {
				t.Error(err)
			}
			got[i] = res
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != nil {
			sameTokens(t, "batched with seven others", got[i], alone[i])
		}
	}
}

func TestLlamaCancelFreesSlot(t *testing.T) {
	m := tinyModel(t)
	s := llamaSched(t, m, engine.Config{NParallel: 1, NCtx: 4096, NBatch: 16})
	// Mid-prefill: a long prompt in chunks of 16 tokens.
	ctx, cancel := context.WithCancel(context.Background())
	r := fimReq(2, 80, 40)
	st, err := s.Stream(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	cancel()
	res, _ := st.Wait()
	if res.Stop != engine.StopCancelled || len(res.Tokens) != 0 || res.Timings.EvaluatedTokens >= res.Timings.PromptTokens {
		t.Errorf("mid-prefill: stop %s, %d tokens, evaluated %d of %d", res.Stop, len(res.Tokens), res.Timings.EvaluatedTokens, res.Timings.PromptTokens)
	}
	if s.Stats().SlotsBusy != 0 {
		t.Error("slot busy after cancel")
	}
	// Mid-decode: cancel after the first streamed text.
	r = engine.Request{Prefix: "func main() {\n", Suffix: "}\n", MaxTokens: 100000, CachePrompt: true}
	st, err = s.Stream(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, err := st.Next(context.Background())
		if err != nil || d != "" {
			break
		}
	}
	st.Cancel()
	res, _ = st.Wait()
	if res.Stop != engine.StopCancelled && res.Stop != engine.StopEOS {
		t.Errorf("mid-decode: stop %s after %d tokens", res.Stop, len(res.Tokens))
	}
	if s.Stats().SlotsBusy != 0 {
		t.Error("slot busy after cancel")
	}
}

func TestLlamaSupersede(t *testing.T) {
	m := tinyModel(t)
	s := llamaSched(t, m, engine.Config{NParallel: 2, NCtx: 4096})
	r := fimReq(3, 10, 5)
	r.MaxTokens, r.SupersedeKey = 100000, "user:doc"
	old, err := s.Stream(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	r.MaxTokens = 4
	if _, err := s.Complete(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	res, _ := old.Wait()
	if res.Stop == engine.StopCancelled && !errors.Is(res.Err, engine.ErrSuperseded) {
		t.Errorf("old request: %s %v", res.Stop, res.Err)
	}
	if res.Stop == engine.StopLength {
		t.Error("superseded request ran to its limit")
	}
}

func TestLlamaStopStringAndUTF8(t *testing.T) {
	m := tinyModel(t)
	s := llamaSched(t, m, engine.Config{NParallel: 4, NCtx: 4 * 1024})
	// Learn what the model writes, then stop on a piece of it that spans
	// tokens.
	r := fimReq(4, 12, 6)
	r.MaxTokens = 32
	base := complete(t, s, r)
	var stop string
	for i := 0; i+4 <= len(base.Text) && stop == ""; i++ {
		if c := base.Text[i : i+4]; utf8.ValidString(c) && strings.TrimSpace(c) != "" {
			stop = c
		}
	}
	if stop == "" {
		t.Skipf("model text %q too short for a stop string", base.Text)
	}
	r.Stop = []string{stop}
	st, err := s.Stream(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	var streamed strings.Builder
	for {
		d, err := st.Next(context.Background())
		if err != nil {
			break
		}
		if strings.Contains(streamed.String()+d, stop) {
			t.Errorf("stop string streamed")
		}
		streamed.WriteString(d)
	}
	res, _ := st.Wait()
	want := base.Text[:strings.Index(base.Text, stop)]
	if res.Text != want || streamed.String() != want || res.Stop != engine.StopWord {
		t.Errorf("got %q streamed %q stop %s, want %q", res.Text, streamed.String(), res.Stop, want)
	}
	// Sampled output of several requests: every delta is valid UTF-8.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			q := fimReq(5+i, 10, 5)
			q.MaxTokens, q.Sampling = 48, engine.SamplingParams{Temperature: 1.5, Seed: uint32(i + 1)}
			st, err := s.Stream(context.Background(), q)
			if err != nil {
				t.Error(err)
				return
			}
			for {
				d, err := st.Next(context.Background())
				if err != nil {
					break
				}
				if !utf8.ValidString(d) {
					t.Errorf("invalid UTF-8 delta %q", d)
				}
			}
			if res, _ := st.Wait(); !utf8.ValidString(res.Text) {
				t.Errorf("invalid UTF-8 result %q", res.Text)
			}
		})
	}
	wg.Wait()
}

// TestLlamaCompactionMovesCache: on llama.cpp's per-sequence KV streams, a
// request whose cache sits above a cold slot runs in that slot, the two
// caches swapped through the spare sequence (whole-stream copies): both
// still serve their prompts, with the same tokens as cold runs.
func TestLlamaCompactionMovesCache(t *testing.T) {
	m := tinyModel(t)
	const after = 500 * time.Millisecond
	s := llamaSched(t, m, engine.Config{NParallel: 4, NCtx: 4 * 1024, CompactAfter: after})
	reqs := make([]engine.Request, 4)
	for i := range reqs {
		reqs[i] = fimReq(i+1, 12+2*i, 6)
		reqs[i].MaxTokens = 1 // quick: no slot may go cold before all are warm
		if r := complete(t, s, reqs[i]); r.Slot != i {
			t.Fatalf("request %d warmed slot %d", i, r.Slot)
		}
	}
	time.Sleep(after + 50*time.Millisecond)
	r := reqs[3]
	r.Prefix += "x = 1\n"
	r.MaxTokens = 16
	got := complete(t, s, r)
	if got.Slot != 0 {
		t.Fatalf("ran in slot %d; want slot 0 (cold, below)", got.Slot)
	}
	if st := s.Stats(); st.Moves != 1 {
		t.Fatalf("%d moves; want 1", st.Moves)
	}
	if got.Timings.CachedTokens < got.Timings.PromptTokens/2 {
		t.Errorf("reused %d of %d prompt tokens: the cache did not move", got.Timings.CachedTokens, got.Timings.PromptTokens)
	}
	solo := llamaSched(t, m, engine.Config{NParallel: 1, NCtx: 2048})
	r.CachePrompt = false
	sameTokens(t, "after its cache moved", got, complete(t, solo, r))

	// Slot 0's own cache went to slot 3 in the swap and still serves; its
	// request is swapped down again, to slot 1, the lowest cold one.
	r = reqs[0]
	r.Prefix += "y = 2\n"
	r.MaxTokens = 16
	back := complete(t, s, r)
	if back.Slot != 1 || back.Timings.CachedTokens < back.Timings.PromptTokens/2 {
		t.Errorf("slot %d, reused %d of %d prompt tokens; want slot 1 from the swapped cache", back.Slot, back.Timings.CachedTokens, back.Timings.PromptTokens)
	}
	if st := s.Stats(); st.Moves != 2 {
		t.Errorf("%d moves; want 2", st.Moves)
	}
	r.CachePrompt = false
	sameTokens(t, "after its cache was swapped up", back, complete(t, solo, r))
}
