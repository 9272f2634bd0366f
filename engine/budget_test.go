package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

// gate holds the scheduler in its first Decode until released, so that
// requests sent meanwhile reach it together.
type gate struct {
	entered, release chan struct{}
	once             sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) hook(*engine.Batch) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return nil
}

// hold starts a cache-warming request that blocks in the gate, and waits
// until it does.
func (g *gate) hold(t *testing.T, s *engine.Scheduler) *engine.Stream {
	t.Helper()
	st, err := s.Stream(context.Background(), engine.Request{Raw: true, Prefix: "warm"})
	if err != nil {
		t.Fatal(err)
	}
	<-g.entered
	return st
}

// TestBudgetFourColdPromptsDeadlineFitsThree: four cold prompts arrive at
// once with a deadline that, at the planned prefill speed, leaves time for
// three. Earliest deadline first serves the first three; the fourth (last
// submitted) is refused at once with a DeadlineError that gives the
// estimate and the time left, having evaluated nothing.
func TestBudgetFourColdPromptsDeadlineFitsThree(t *testing.T) {
	g := newGate()
	// The fake evaluates 10,000 tokens/s; plans assume 1,000 tokens/s, so
	// the three admitted end long before the deadline, however noisy the
	// machine.
	s, _ := newSched(t, enginetest.Options{TokenDelay: 100 * time.Microsecond, BeforeDecode: g.hook},
		engine.Config{NParallel: 4, NCtx: 4 * 2048})
	s.SetPrefillSpeed(1000)
	warm := g.hold(t, s)

	const n = 500 // tokens per prompt: 0.5 s each at the planned speed
	reqs := make([]engine.Request, 4)
	for i := range reqs {
		r := fimReq(i+1, 40, 20)
		r.Prefix = r.Prefix[len(r.Prefix)-300:]
		r.Suffix = r.Suffix[:n-300-40]
		r.MaxTokens = 4
		reqs[i] = r
	}
	// 1.75 s: three prompts (1.5 s, 1.65 s with the plans' margin) fit,
	// four (2.2 s) do not.
	ctx, cancel := context.WithTimeout(context.Background(), 1750*time.Millisecond)
	defer cancel()
	streams := make([]*engine.Stream, len(reqs))
	for i, r := range reqs {
		st, err := s.Stream(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = st
	}
	close(g.release)
	if _, err := warm.Wait(); err != nil {
		t.Fatal(err)
	}
	results := make([]*engine.Result, len(streams))
	sum := 0
	for i, st := range streams {
		res, err := st.Wait()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if p := res.Timings.PromptTokens; p < n-40 || p > n+20 {
			t.Fatalf("request %d: %d prompt tokens, want about %d", i, p, n)
		}
		results[i] = res
		sum += res.Timings.PromptTokens
	}
	for i, res := range results[:3] {
		if res.Stop == engine.StopDeadline || res.Stop == engine.StopError || res.Timings.GeneratedTokens == 0 {
			t.Errorf("request %d: stop %s (%v), %d tokens; want an answer", i, res.Stop, res.Err, res.Timings.GeneratedTokens)
		}
	}
	res := results[3]
	var de *engine.DeadlineError
	if res.Stop != engine.StopDeadline || !errors.Is(res.Err, engine.ErrDeadline) || !errors.As(res.Err, &de) {
		t.Fatalf("request 3: stop %s, err %v; want a deadline refusal", res.Stop, res.Err)
	}
	// The estimate: all four prompts at 1,000 tokens/s (no generation step
	// has been measured yet), stretched by the plans' 10 % margin.
	want := time.Duration(float64(sum)*1.1) * time.Millisecond
	if d := de.Estimate - want; d < -time.Millisecond || d > time.Millisecond || de.Left > 1750*time.Millisecond || de.Left < time.Second {
		t.Errorf("request 3: estimate %v, left %v; want %v and at most 1.75 s", de.Estimate, de.Left, want)
	}
	if msg := fmt.Sprintf("estimated %.1f s, ", want.Seconds()); !strings.Contains(de.Error(), msg) {
		t.Errorf("request 3: message %q does not say %q", de.Error(), msg)
	}
	if res.Timings.EvaluatedTokens != 0 {
		t.Errorf("request 3: %d tokens evaluated before the refusal", res.Timings.EvaluatedTokens)
	}
}

// TestBudgetPlannedOnceSpeedIsMeasured: requests admitted before the
// model has measured any prefill are planned at the first step after it
// has: the second prompt, which cannot end before its deadline behind the
// first, is refused then, having evaluated nothing.
func TestBudgetPlannedOnceSpeedIsMeasured(t *testing.T) {
	g := newGate()
	// At most 1,000 tokens/s: the fake sleeps 1 ms per token.
	s, _ := newSched(t, enginetest.Options{TokenDelay: time.Millisecond, BeforeDecode: g.hook}, engine.Config{NParallel: 2, NCtx: 2 * 4096})
	warm := g.hold(t, s)
	first := engine.Request{Raw: true, Prefix: strings.Repeat("a", 2000), MaxTokens: 2}
	second := engine.Request{Raw: true, Prefix: strings.Repeat("b", 600), MaxTokens: 2}
	ctx1, cancel1 := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel1()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 1600*time.Millisecond)
	defer cancel2()
	st1, err := s.Stream(ctx1, first)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := s.Stream(ctx2, second)
	if err != nil {
		t.Fatal(err)
	}
	if speed, _ := s.PrefillSpeed(); speed != 0 {
		t.Fatalf("speed %v measured before any prefill", speed)
	}
	close(g.release)
	if _, err := warm.Wait(); err != nil {
		t.Fatal(err)
	}
	res, err := st2.Wait()
	if err != nil {
		t.Fatal(err)
	}
	// Behind the first prompt's 1,488 tokens left, at 1,000 tokens/s at
	// most, the second ends after 2 s; 1.1 s at most are left.
	if !errors.Is(res.Err, engine.ErrDeadline) || res.Timings.EvaluatedTokens != 0 {
		t.Errorf("second: stop %s, err %v, %d evaluated; want a refusal before any evaluation", res.Stop, res.Err, res.Timings.EvaluatedTokens)
	}
	st1.Cancel()
	st1.Wait()
}

// TestBudgetRawPromptRefused: a client-formatted prompt has no parts to
// drop, but one that cannot meet its deadline is refused all the same.
func TestBudgetRawPromptRefused(t *testing.T) {
	s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1})
	s.SetPrefillSpeed(100) // 500 tokens: 5 s
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := s.Complete(ctx, engine.Request{Raw: true, Prefix: strings.Repeat("x", 500), MaxTokens: 4, TMaxPrompt: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Err, engine.ErrDeadline) || res.Timings.EvaluatedTokens != 0 || res.Trimmed.Any() {
		t.Errorf("stop %s, err %v, %d evaluated, trimmed %+v; want a refusal", res.Stop, res.Err, res.Timings.EvaluatedTokens, res.Trimmed)
	}
}

// TestBudgetTrimsChunksThenPrefixLines: a throttled prefill speed makes a
// prompt budget drop extra chunks, least relevant (first) first, and only
// then prefix lines from the top, whole lines; the result says what went.
func TestBudgetTrimsChunksThenPrefixLines(t *testing.T) {
	base := fimReq(3, 60, 40)
	base.KeepCursorLine = true // the whole prefix may be cut
	base.CachePrompt = false   // every prompt token is evaluated
	chunk := func(i int) engine.Chunk { return engine.Chunk{Path: "lib.go", Text: source(10+i, 6)} }
	base.Extra = []engine.Chunk{chunk(0), chunk(1), chunk(2)}
	// With qwen's layout a chunk is <|file_sep|>, the path, a newline and
	// its text; the fake has one token per byte.
	chunkTokens := 1 + len("lib.go\n") + len(base.Extra[0].Text)

	full := func() int {
		s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1})
		res := complete(t, s, base)
		if res.Truncated || res.Trimmed.Any() {
			t.Fatalf("no budget: truncated %v, trimmed %+v", res.Truncated, res.Trimmed)
		}
		return res.Timings.PromptTokens
	}()

	run := func(budgetTokens int) *engine.Result {
		t.Helper()
		s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1})
		s.SetPrefillSpeed(1000) // 1 token per ms: the budget in ms is in tokens
		r := base
		r.TMaxPrompt = time.Duration(budgetTokens) * time.Millisecond
		return complete(t, s, r)
	}

	// Two chunks must go: the first two.
	res := run(full - 2*chunkTokens + 5)
	if want := (engine.Trimmed{ExtraChunks: 2}); res.Trimmed != want || !res.Truncated {
		t.Errorf("two chunks: trimmed %+v truncated %v, want %+v", res.Trimmed, res.Truncated, want)
	}
	if got, want := res.Timings.PromptTokens, full-2*chunkTokens; got != want {
		t.Errorf("two chunks: %d prompt tokens, want %d", got, want)
	}

	// All chunks and then 300 tokens of prefix: the cut ends at a line end,
	// the first one at or after 300.
	res = run(full - 3*chunkTokens - 300)
	cut := res.Trimmed.PrefixTokens
	if res.Trimmed.ExtraChunks != 3 || cut < 300 || !res.Truncated {
		t.Fatalf("prefix: trimmed %+v truncated %v, want 3 chunks and at least 300 prefix tokens", res.Trimmed, res.Truncated)
	}
	if base.Prefix[cut-1] != '\n' || strings.Contains(base.Prefix[300:cut-1], "\n") {
		t.Errorf("prefix cut at %d is not the first line end at or after 300: %q", cut, base.Prefix[cut-8:cut+8])
	}
	if got, want := res.Timings.PromptTokens, full-3*chunkTokens-cut; got != want {
		t.Errorf("prefix: %d prompt tokens, want %d", got, want)
	}

	// Budget met without trimming: nothing dropped.
	res = run(full + 10)
	if res.Trimmed.Any() || res.Truncated {
		t.Errorf("ample budget: trimmed %+v truncated %v", res.Trimmed, res.Truncated)
	}
}

// TestBudgetEarliestDeadlineFirst: of two long prompts, the one submitted
// second with the earlier deadline gets the batches first and finishes
// first.
func TestBudgetEarliestDeadlineFirst(t *testing.T) {
	s, _ := newSched(t, enginetest.Options{TokenDelay: 100 * time.Microsecond}, engine.Config{NParallel: 2, NCtx: 2 * 8192})
	long := func(seed int) engine.Request {
		r := fimReq(seed, 120, 100) // about 4,000 tokens: 8 batches
		r.MaxTokens = 4
		return r
	}
	late, cancelLate := context.WithTimeout(context.Background(), time.Minute)
	defer cancelLate()
	soon, cancelSoon := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSoon()
	order := make(chan int, 2)
	var wg sync.WaitGroup
	for i, ctx := range []context.Context{late, soon} {
		st, err := s.Stream(ctx, long(i+1))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if res, err := st.Wait(); err != nil || res.Stop == engine.StopDeadline || res.Stop == engine.StopError {
				t.Errorf("request %d: %v %v", i, res.Stop, err)
			}
			order <- i
		})
	}
	wg.Wait()
	if first := <-order; first != 1 {
		t.Errorf("request %d finished first; want the one with the earlier deadline (1)", first)
	}
}

// TestLlamaBudgetTrimmedPromptIsTheShorterRequest: on real llama.cpp, a
// prompt budget that drops the extra chunks and prefix lines gives exactly
// the tokens of the request sent without them, and a request that cannot
// meet its deadline at the throttled speed is refused having evaluated
// nothing.
func TestLlamaBudgetTrimmedPromptIsTheShorterRequest(t *testing.T) {
	m := tinyModel(t)
	s := llamaSched(t, m, engine.Config{NParallel: 1, NCtx: 4096})
	s.SetPrefillSpeed(1000) // 1 token per ms

	r := fimReq(5, 60, 40)
	r.KeepCursorLine, r.CachePrompt, r.MaxTokens = true, false, 8
	r.Extra = []engine.Chunk{{Path: "a.go", Text: source(21, 8)}, {Path: "b.go", Text: source(22, 8)}}
	full := complete(t, s, r).Timings.PromptTokens
	// The chunks and a third of the rest must go.
	r.TMaxPrompt = time.Duration(full/3) * time.Millisecond
	got := complete(t, s, r)
	cut := got.Trimmed.PrefixTokens
	if got.Trimmed.ExtraChunks != 2 || cut == 0 || !got.Truncated || len(got.Tokens) == 0 {
		t.Fatalf("trimmed %+v, truncated %v, %d of %d prompt tokens, %d generated; want both chunks and prefix lines dropped",
			got.Trimmed, got.Truncated, got.Timings.PromptTokens, full, len(got.Tokens))
	}
	// The prefix lines whose tokens were cut.
	at := -1
	for i := 0; i < len(r.Prefix); i++ {
		if r.Prefix[i] != '\n' {
			continue
		}
		if toks, err := m.Tokenize(r.Prefix[:i+1], false, false); err == nil && len(toks) == cut {
			at = i + 1
			break
		}
	}
	if at < 0 {
		t.Fatalf("no line end after %d tokens of the prefix", cut)
	}
	short := r
	short.Extra, short.TMaxPrompt, short.Prefix = nil, 0, r.Prefix[at:]
	want := complete(t, s, short)
	if want.Timings.PromptTokens != got.Timings.PromptTokens || want.Trimmed.Any() {
		t.Fatalf("shorter request: %d prompt tokens, trimmed %+v; trimmed one %d", want.Timings.PromptTokens, want.Trimmed, got.Timings.PromptTokens)
	}
	sameTokens(t, "trimmed vs sent without", got, want)

	s.SetPrefillSpeed(10) // about a minute for this prompt
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.Complete(ctx, short)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Err, engine.ErrDeadline) || res.Stop != engine.StopDeadline || res.Timings.EvaluatedTokens != 0 {
		t.Errorf("stop %s, err %v, %d evaluated; want a deadline refusal before any evaluation", res.Stop, res.Err, res.Timings.EvaluatedTokens)
	}
}

// TestBudgetMixedStepsCapPrompt: a request that generates while a long
// prompt is evaluated gets steps that carry at most Config.MixedPrefill of
// that prompt's tokens, so it ends long before the long prompt is done;
// with no cap (the default) every step carries a whole batch of the
// prompt and it ends only after the prompt.
func TestBudgetMixedStepsCapPrompt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mixed  int
		capped bool
	}{
		{"cap 8", 8, true},
		{"no cap (the default)", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			hooked := false
			s, _ := newSched(t, enginetest.Options{Logits: endless, DecodeDelay: time.Millisecond, TokenDelay: 20 * time.Microsecond,
				BeforeDecode: func(b *engine.Batch) error {
					if hooked {
						return g.hook(b)
					}
					return nil
				}},
				engine.Config{NParallel: 2, NCtx: 2 * 8192, MixedPrefill: tc.mixed})
			hooked = true
			warm := g.hold(t, s)
			short := engine.Request{Prefix: "func f() {\n\tx := ", Suffix: "\n}\n", MaxTokens: 30, CachePrompt: true}
			long := fimReq(1, 120, 100) // about 3,600 tokens: 7 batches
			long.MaxTokens = 1
			a, err := s.Stream(context.Background(), short)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Stream(context.Background(), long)
			if err != nil {
				t.Fatal(err)
			}
			close(g.release)
			if _, err := warm.Wait(); err != nil {
				t.Fatal(err)
			}
			ra, err := a.Wait()
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if ra.Timings.GeneratedTokens != 30 || rb.Timings.PromptTokens < 4*512 {
				t.Fatalf("short generated %d tokens, long prompt %d tokens; want 30 and at least 4 batches", ra.Timings.GeneratedTokens, rb.Timings.PromptTokens)
			}
			// Both were submitted together: the short one ended first
			// exactly when its 30 steps carried less than the long prompt.
			endedFirst := ra.Timings.TotalMS < rb.Timings.FirstMS
			if endedFirst != tc.capped {
				t.Errorf("short ended after %.1f ms, long prompt done after %.1f ms; want short first: %v",
					ra.Timings.TotalMS, rb.Timings.FirstMS, tc.capped)
			}
		})
	}
}

// TestBudgetPromptTimeExcludesTheWait: the prompt budget bounds a
// request's own prompt time, not the wait behind another request's
// prompt: a request whose prompt fits its budget answers even though the
// prompt before it took longer than that budget, and is not trimmed.
func TestBudgetPromptTimeExcludesTheWait(t *testing.T) {
	g := newGate()
	s, _ := newSched(t, enginetest.Options{TokenDelay: 100 * time.Microsecond, BeforeDecode: g.hook},
		engine.Config{NParallel: 2, NCtx: 2 * 8192})
	s.SetPrefillSpeed(10000) // the fake's speed: 100 µs a token
	warm := g.hold(t, s)
	first := fimReq(1, 120, 100) // about 3,600 tokens: 0.36 s
	first.MaxTokens = 2
	second := fimReq(2, 40, 20) // about 1,300 tokens: 0.13 s
	second.MaxTokens = 2
	second.TMaxPrompt = 300 * time.Millisecond // fits its own prompt, not the wait as well
	// The same deadline for both: the first submitted is evaluated first.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := s.Stream(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Stream(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if _, err := warm.Wait(); err != nil {
		t.Fatal(err)
	}
	if ra, err := a.Wait(); err != nil || ra.Err != nil || ra.Timings.GeneratedTokens == 0 {
		t.Fatalf("first: %v %+v", err, ra)
	}
	rb, err := b.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if rb.Err != nil || rb.Stop == engine.StopDeadline || rb.Trimmed.Any() || rb.Timings.GeneratedTokens == 0 {
		t.Errorf("second: stop %s, err %v, trimmed %+v, %d tokens; want an untrimmed answer", rb.Stop, rb.Err, rb.Trimmed, rb.Timings.GeneratedTokens)
	}
	if rb.Timings.FirstMS < 300 {
		t.Errorf("second's first token after %.0f ms; want it after the first prompt (0.36 s at least)", rb.Timings.FirstMS)
	}
}

// TestBudgetMakeRoomForAThird: four cold prompts whose suffixes cannot be
// trimmed arrive at once with a deadline that fits one at full length and
// one trimmed, or three trimmed to a third of the time each, and never
// four. Trimming only the newcomer answered two and refused two; sharing
// the time among the prompts not started yet answers three and refuses
// the fourth.
func TestBudgetMakeRoomForAThird(t *testing.T) {
	g := newGate()
	s, _ := newSched(t, enginetest.Options{TokenDelay: 100 * time.Microsecond, BeforeDecode: g.hook},
		// A known cap on mixed steps: the requests generating carry few
		// of the later prompts' tokens.
		engine.Config{NParallel: 4, NCtx: 4 * 2048, MixedPrefill: 8})
	s.SetPrefillSpeed(1000) // the fake runs at 10,000 tokens/s: plans err long
	warm := g.hold(t, s)
	reqs := make([]engine.Request, 4)
	lines := func(tag string, n int) string { // n lines of 20 bytes
		var b strings.Builder
		for j := range n {
			fmt.Fprintf(&b, "v%s_%03d = %07d\n", tag, j, j*j)
		}
		return b.String()
	}
	for i := range reqs {
		reqs[i] = engine.Request{
			Prefix:   lines(fmt.Sprint(i), 30),                                         // 600 bytes in lines: prefix cuts are possible
			Suffix:   lines("s", 20),                                                   // 400 bytes, kept whole by every cut
			FilePath: "main.py", MaxTokens: 4, CachePrompt: true, KeepCursorLine: true, // no middle block: every line may go
			TMaxPrompt: time.Minute, // trimming allowed, the budget never binds
		}
	}
	// 871 tokens each (0.87 s planned, 0.96 s with the plans' 10 %
	// margin), 429 after every cut: 1.8 s fits one at full length and one
	// trimmed, or three of about 540, never four.
	ctx, cancel := context.WithTimeout(context.Background(), 1800*time.Millisecond)
	defer cancel()
	streams := make([]*engine.Stream, len(reqs))
	for i, r := range reqs {
		st, err := s.Stream(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = st
	}
	close(g.release)
	if _, err := warm.Wait(); err != nil {
		t.Fatal(err)
	}
	for i, st := range streams {
		res, err := st.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			if res.Err != nil || res.Stop == engine.StopDeadline || res.Timings.GeneratedTokens == 0 {
				t.Errorf("request %d: stop %s (%v); want an answer", i, res.Stop, res.Err)
			}
			if !res.Trimmed.Any() || res.Timings.PromptTokens > 600 {
				t.Errorf("request %d: %d prompt tokens, trimmed %+v; want about 540", i, res.Timings.PromptTokens, res.Trimmed)
			}
			continue
		}
		if !errors.Is(res.Err, engine.ErrDeadline) || res.Timings.EvaluatedTokens != 0 {
			t.Errorf("request %d: stop %s (%v), %d evaluated; want a deadline refusal before any work", i, res.Stop, res.Err, res.Timings.EvaluatedTokens)
		}
	}
}

// TestBudgetKeystrokeKeepsItsCut: a keystroke whose prompt was trimmed to
// its budget leaves the trimmed prompt in its slot; the next keystroke
// keeps that cut, evaluating a few tokens, even when its whole prompt
// would now fit the budget (taking it would evaluate it all again). When
// the prompt changes before the cut (an edited context chunk), the cut no
// longer saves the work and the whole prompt is planned anew.
func TestBudgetKeystrokeKeepsItsCut(t *testing.T) {
	base := fimReq(5, 60, 40)
	chunk := func(i int) engine.Chunk { return engine.Chunk{Path: "lib.go", Text: source(20+i, 6)} }
	base.Extra = []engine.Chunk{chunk(0), chunk(1)}
	// With qwen's layout a chunk is <|file_sep|>, the path, a newline and
	// its text; the fake has one token per byte.
	chunkTokens := 1 + len("lib.go\n") + len(base.Extra[0].Text)
	s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1})
	s.SetPrefillSpeed(1000) // 1 token per ms: a budget in ms is in tokens

	r := base
	whole := complete(t, s, engine.Request{Prefix: r.Prefix, Suffix: r.Suffix, FilePath: r.FilePath, RepoName: r.RepoName,
		Extra: r.Extra, MaxTokens: 1}).Timings.PromptTokens
	// A cold slot: the budget leaves room for all but the first chunk.
	s2, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1})
	s2.SetPrefillSpeed(1000)
	r.TMaxPrompt = time.Duration(whole-chunkTokens+5) * time.Millisecond
	res := complete(t, s2, r)
	if want := (engine.Trimmed{ExtraChunks: 1}); res.Trimmed != want {
		t.Fatalf("first keystroke: trimmed %+v, want %+v", res.Trimmed, want)
	}

	// The next keystroke, with a budget the whole prompt fits.
	r.Prefix += "y"
	r.TMaxPrompt = time.Duration(whole+100) * time.Millisecond
	res = complete(t, s2, r)
	if want := (engine.Trimmed{ExtraChunks: 1}); res.Trimmed != want || !res.Truncated {
		t.Errorf("next keystroke: trimmed %+v truncated %v, want the slot's cut %+v", res.Trimmed, res.Truncated, want)
	}
	if ev := res.Timings.EvaluatedTokens; ev > 4 {
		t.Errorf("next keystroke evaluated %d tokens, want a few (the cut prompt is cached)", ev)
	}

	// The second chunk changes: the cut saves little, the whole prompt runs.
	r.Extra = []engine.Chunk{chunk(0), chunk(7)}
	res = complete(t, s2, r)
	if res.Trimmed.Any() {
		t.Errorf("after the chunk changed: trimmed %+v, want the whole prompt", res.Trimmed)
	}
}
