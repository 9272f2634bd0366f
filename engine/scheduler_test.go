package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newSched starts a scheduler on a fresh fake model and checks at cleanup
// that every sampler and context was closed.
func newSched(t *testing.T, o enginetest.Options, cfg engine.Config) (*engine.Scheduler, *enginetest.Model) {
	t.Helper()
	m := enginetest.NewModel(o)
	s, err := engine.NewScheduler("fake", m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if n := m.OpenSamplers(); n != 0 {
			t.Errorf("%d samplers left open", n)
		}
		if n := m.OpenContexts(); n != 0 {
			t.Errorf("%d contexts left open", n)
		}
		if n := m.LiveStates(); n != 0 {
			t.Errorf("%d saved sequence states left unfreed", n)
		}
	})
	return s, m
}

// source is a deterministic Go-like file of n lines.
func source(seed, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "\tv%d_%d := compute(%d, \"s%d\")\n", seed, i, i*seed+7, i^seed)
	}
	return b.String()
}

// fimReq is a FIM request around a cursor after line `at` of a file.
func fimReq(seed, lines, at int) engine.Request {
	src := source(seed, lines)
	idx := 0
	for range at {
		idx += strings.IndexByte(src[idx:], '\n') + 1
	}
	return engine.Request{
		Prefix: "package main\n\nfunc main() {\n" + src[:idx] + "\tx := ", Suffix: src[idx:] + "}\n",
		FilePath: "main.go", RepoName: "demo", MaxTokens: 24, CachePrompt: true,
	}
}

// typeAtOnce types key at the end of the prefix of each typist in order
// (updating reqs) and sends those keystrokes concurrently, the k-th after
// k*gap; it returns the results by typist (nil for those not in order).
func typeAtOnce(t *testing.T, s *engine.Scheduler, reqs []engine.Request, order []int, key string, gap time.Duration) []*engine.Result {
	t.Helper()
	res := make([]*engine.Result, len(reqs))
	var wg sync.WaitGroup
	for k, i := range order {
		r := reqs[i]
		r.Prefix += key
		reqs[i] = r
		wg.Go(func() {
			time.Sleep(time.Duration(k) * gap)
			res[i] = complete(t, s, r)
		})
	}
	wg.Wait()
	return res
}

func complete(t *testing.T, s *engine.Scheduler, r engine.Request) *engine.Result {
	t.Helper()
	res, err := s.Complete(context.Background(), r)
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	return res
}

func sameTokens(t *testing.T, what string, got, want *engine.Result) {
	t.Helper()
	if fmt.Sprint(got.Tokens) != fmt.Sprint(want.Tokens) || got.Text != want.Text {
		t.Errorf("%s: tokens differ\n got %v %q\nwant %v %q", what, got.Tokens, got.Text, want.Tokens, want.Text)
	}
}

func cold(t *testing.T, r engine.Request) *engine.Result {
	t.Helper()
	s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, NCtx: 4096})
	r.CachePrompt = false
	return complete(t, s, r)
}

// TestIdleWhenNothingToDecode: the scheduler tells its context once each
// time it runs out of work (when it starts, and after each request here),
// never between the steps of a request.
func TestIdleWhenNothingToDecode(t *testing.T) {
	s, m := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, NCtx: 4096})
	c := m.LastContext()
	waitIdles := func(want int) int {
		deadline := time.Now().Add(5 * time.Second)
		for c.Idles() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		return c.Idles()
	}
	if got := waitIdles(1); got != 1 {
		t.Fatalf("a new scheduler called Idle %d times, want 1", got)
	}
	for i := range 3 {
		res := complete(t, s, fimReq(i+1, 20, 10))
		if len(res.Tokens) < 2 {
			t.Fatalf("request %d generated %d tokens: too few to tell steps from requests", i, len(res.Tokens))
		}
		if got, want := waitIdles(i+2), i+2; got != want {
			t.Fatalf("after %d requests Idle was called %d times, want %d", i+1, got, want)
		}
	}
}

func TestGreedyDeterministic(t *testing.T) {
	r := fimReq(1, 20, 10)
	a, b := cold(t, r), cold(t, r)
	if len(a.Tokens) == 0 {
		t.Fatal("no tokens generated")
	}
	sameTokens(t, "two cold runs", a, b)
	if a.Confidence <= 0 || a.Confidence > 1 || len(a.Logprobs) != len(a.Tokens) {
		t.Errorf("confidence %v with %d logprobs for %d tokens", a.Confidence, len(a.Logprobs), len(a.Tokens))
	}
	for _, lp := range a.Logprobs {
		if lp > 0 {
			t.Errorf("logprob %v > 0", lp)
		}
	}
	// A different suffix changes the output: the logits depend on the whole KV.
	r2 := r
	r2.Suffix = "// other\n" + r.Suffix
	if c := cold(t, r2); fmt.Sprint(c.Tokens) == fmt.Sprint(a.Tokens) {
		t.Error("output does not depend on the suffix")
	}
}

func TestSameTokensBatchedWithSevenOthers(t *testing.T) {
	reqs := make([]engine.Request, 8)
	want := make([]*engine.Result, 8)
	for i := range reqs {
		reqs[i] = fimReq(i+1, 10+3*i, 5+i)
		want[i] = cold(t, reqs[i])
	}
	gate := make(chan struct{})
	var once sync.Once
	s, m := newSched(t, enginetest.Options{BeforeDecode: func(*engine.Batch) error {
		once.Do(func() { <-gate })
		return nil
	}}, engine.Config{NParallel: 8, NCtx: 8 * 2048, NBatch: 256})
	streams := make([]*engine.Stream, 8)
	for i, r := range reqs {
		st, err := s.Stream(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = st
	}
	close(gate)
	for i, st := range streams {
		res, err := st.Wait()
		if err != nil {
			t.Fatal(err)
		}
		sameTokens(t, fmt.Sprintf("request %d batched", i), res, want[i])
	}
	if _, _, maxSeqs := m.LastContext().Counters(); maxSeqs < 6 {
		t.Errorf("at most %d sequences shared a batch; want continuous batching", maxSeqs)
	}
}

func TestSameTokensAfterPrefixCacheHit(t *testing.T) {
	s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, NCtx: 4096})
	r := fimReq(3, 30, 12)
	want := cold(t, r)
	first := complete(t, s, r)
	sameTokens(t, "first", first, want)
	again := complete(t, s, r)
	sameTokens(t, "identical prompt again", again, want)
	if n := again.Timings.PromptTokens; again.Timings.CachedTokens != n-1 || again.Timings.EvaluatedTokens != 1 {
		t.Errorf("identical prompt: cached %d evaluated %d of %d", again.Timings.CachedTokens, again.Timings.EvaluatedTokens, n)
	}
	// Typing: the cursor line grows; everything before it stays cached.
	typed := r
	typed.Prefix += "fo"
	wantTyped := cold(t, typed)
	got := complete(t, s, typed)
	sameTokens(t, "after typing", got, wantTyped)
	tm := got.Timings
	if tm.EvaluatedTokens > 4 || tm.CachedTokens+tm.EvaluatedTokens != tm.PromptTokens {
		t.Errorf("after typing: cached %d evaluated %d of %d", tm.CachedTokens, tm.EvaluatedTokens, tm.PromptTokens)
	}
}

func TestSameTokensAfterShiftReuse(t *testing.T) {
	r := fimReq(4, 40, 30)
	// Delete a line early in the prefix: the rest of the prompt moves left.
	del := r
	first := strings.Index(del.Prefix, "\tv4_")
	end := first + strings.IndexByte(del.Prefix[first:], '\n') + 1
	del.Prefix = del.Prefix[:first] + del.Prefix[end:]
	want := cold(t, del)

	for _, tc := range []struct {
		name    string
		o       enginetest.Options
		shifted bool
	}{
		{"shift", enginetest.Options{}, true},
		{"no shift", enginetest.Options{NoShift: true}, false},
		{"no partial removal", enginetest.Options{NoPartialRm: true, NoShift: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newSched(t, tc.o, engine.Config{NParallel: 1, NCtx: 4096, CacheReuse: 16})
			complete(t, s, r)
			got := complete(t, s, del)
			sameTokens(t, "after deletion", got, want)
			tm := got.Timings
			if tc.shifted != (tm.ShiftedTokens > 0) {
				t.Errorf("shifted %d tokens", tm.ShiftedTokens)
			}
			if tc.shifted && tm.EvaluatedTokens > tm.PromptTokens/4 {
				t.Errorf("shift reuse evaluated %d of %d tokens", tm.EvaluatedTokens, tm.PromptTokens)
			}
			if tc.o.NoPartialRm && tm.CachedTokens != 0 {
				t.Errorf("cached %d tokens though the cache cannot be trimmed", tm.CachedTokens)
			}
			// A further identical request still agrees: the mirror is right.
			sameTokens(t, "again", complete(t, s, del), want)
		})
	}
}

// script makes the fake model emit text byte by byte after the FIM middle
// token (and then EOS), whatever came before.
func script(text string) func([]engine.Token, []float32) {
	return func(seq []engine.Token, out []float32) {
		k := 0
		for i := len(seq) - 1; i >= 0 && seq[i] != enginetest.FIMMid; i-- {
			k++
		}
		for i := range out {
			out[i] = float32(i%7) * 0.1
		}
		if k < len(text) {
			out[text[k]] = 10
		} else {
			out[enginetest.EOS] = 10
		}
	}
}

func collect(t *testing.T, st *engine.Stream) ([]string, *engine.Result) {
	t.Helper()
	var deltas []string
	for {
		d, err := st.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		deltas = append(deltas, d)
	}
	res, _ := st.Wait()
	return deltas, res
}

func TestStreamHoldback(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		req        engine.Request
		want       string
		stop       engine.StopReason
		word       string
	}{
		{"stop spans tokens", "hello END world", engine.Request{Stop: []string{"END"}}, "hello ", engine.StopWord, "END"},
		{"near miss is emitted", "hello ENx END", engine.Request{Stop: []string{"END"}}, "hello ENx ", engine.StopWord, "END"},
		{"earliest of several", "a = b; // c\n", engine.Request{Stop: []string{"\n", "//"}}, "a = b; ", engine.StopWord, "//"},
		{"partial at eos is text", "x EN", engine.Request{Stop: []string{"END"}}, "x EN", engine.StopEOS, ""},
		{"utf8 split", "héllo 世界 ok", engine.Request{}, "héllo 世界 ok", engine.StopEOS, ""},
		{"invalid byte", "a\xffb", engine.Request{}, "a\uFFFDb", engine.StopEOS, ""},
		{"cut mid rune by length", "ab世", engine.Request{MaxTokens: 4}, "ab", engine.StopLength, ""},
		{"single line", "foo()\nbar()\n", engine.Request{Mode: engine.ModeSingleLine}, "foo()", engine.StopWord, ""},
		{"blank line", "a\n  b\n\nc\n", engine.Request{Mode: engine.ModeBlankLine}, "a\n  b", engine.StopWord, ""},
		{"indent", "x)\n\t\treturn 1\n\t}\n", engine.Request{NIndent: 2}, "x)\n\t\treturn 1", engine.StopWord, ""},
		{"indent blank line kept", "x\n\n\t\ty\n", engine.Request{NIndent: 2}, "x\n\n\t\ty\n", engine.StopEOS, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newSched(t, enginetest.Options{Logits: script(tc.text)}, engine.Config{NParallel: 1, NCtx: 1024})
			r := tc.req
			r.Prefix, r.Suffix, r.KeepCursorLine = "func f() {\n", "}\n", true
			if r.MaxTokens == 0 {
				r.MaxTokens = 64
			}
			st, err := s.Stream(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			deltas, res := collect(t, st)
			for _, d := range deltas {
				if !utf8.ValidString(d) {
					t.Errorf("invalid UTF-8 delta %q", d)
				}
			}
			if got := strings.Join(deltas, ""); got != res.Text {
				t.Errorf("deltas %q do not add up to the result %q", deltas, res.Text)
			}
			if res.Text != tc.want || res.Stop != tc.stop || res.StoppingWord != tc.word {
				t.Errorf("got %q %s %q, want %q %s %q", res.Text, res.Stop, res.StoppingWord, tc.want, tc.stop, tc.word)
			}
		})
	}
}

// TestDeltasNeverPartialStop reads every delta as it is produced (the
// scheduler waits for the reader after each token) and checks that no
// prefix of the stream ever ends with text that the final result drops.
func TestDeltasNeverPartialStop(t *testing.T) {
	text := "ab <END> cd"
	step := make(chan struct{})
	o := enginetest.Options{Logits: script(text), BeforeDecode: func(*engine.Batch) error {
		select {
		case <-step:
		case <-time.After(50 * time.Millisecond):
		}
		return nil
	}}
	s, _ := newSched(t, o, engine.Config{NParallel: 1, NCtx: 1024})
	st, err := s.Stream(context.Background(), engine.Request{Prefix: "p\n", Suffix: "s", MaxTokens: 32, Stop: []string{"<END>"}})
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	go func() {
		for range 40 {
			select {
			case step <- struct{}{}:
			case <-st.Done():
				return
			}
		}
	}()
	for {
		d, err := st.Next(context.Background())
		if err == io.EOF {
			break
		}
		seen += d
		if strings.Contains(seen, "<") {
			t.Fatalf("partial stop string streamed: %q", seen)
		}
	}
	if res := st.Result(); res.Text != "ab " || seen != "ab " {
		t.Errorf("text %q streamed %q", res.Text, seen)
	}
}

// endless makes the fake model emit "a" forever.
func endless(seq []engine.Token, out []float32) { out['a'] = 5 }

func TestCancelMidPrefillFreesSlotWithinOneStep(t *testing.T) {
	var decodes atomic.Int64
	var cancelAt atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	o := enginetest.Options{Logits: endless, BeforeDecode: func(b *engine.Batch) error {
		if n := decodes.Add(1); n == 3 {
			cancelAt.Store(n)
			cancel()
		}
		return nil
	}}
	s, _ := newSched(t, o, engine.Config{NParallel: 1, NCtx: 8192, NBatch: 16})
	r := fimReq(5, 60, 30) // ~1500 tokens: ~90 prefill steps of 16
	st, err := s.Stream(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Stop != engine.StopCancelled || !errors.Is(res.Err, context.Canceled) {
		t.Errorf("stop %s err %v", res.Stop, res.Err)
	}
	if got := decodes.Load(); got != cancelAt.Load() {
		t.Errorf("%d decodes after the cancel", got-cancelAt.Load())
	}
	if res.Timings.EvaluatedTokens != 3*16 || len(res.Tokens) != 0 {
		t.Errorf("evaluated %d, generated %d", res.Timings.EvaluatedTokens, len(res.Tokens))
	}
	if st := s.Stats(); st.SlotsBusy != 0 || st.QueueLen != 0 {
		t.Errorf("stats after cancel: %+v", st)
	}
	// The slot serves the next request, continuing from the 48 cached tokens.
	r.MaxTokens = 3
	next := complete(t, s, r)
	if next.Stop != engine.StopLength || next.Timings.CachedTokens != 48 {
		t.Errorf("next: stop %s cached %d", next.Stop, next.Timings.CachedTokens)
	}
}

func TestCancelMidDecodeFreesSlotWithinOneStep(t *testing.T) {
	var decodes, cancelAt atomic.Int64
	var st *engine.Stream
	ready := make(chan struct{})
	o := enginetest.Options{Logits: endless, BeforeDecode: func(b *engine.Batch) error {
		if n := decodes.Add(1); n == 10 {
			<-ready
			cancelAt.Store(n)
			st.Cancel()
		}
		return nil
	}}
	s, _ := newSched(t, o, engine.Config{NParallel: 2, NCtx: 4096, NBatch: 512})
	var err error
	st, err = s.Stream(context.Background(), engine.Request{Prefix: "x", Suffix: "y", MaxTokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	res, _ := st.Wait()
	if res.Stop != engine.StopCancelled {
		t.Fatalf("stop %s", res.Stop)
	}
	if got := decodes.Load(); got != cancelAt.Load() {
		t.Errorf("%d decodes after the cancel", got-cancelAt.Load())
	}
	if len(res.Tokens) != 10 || res.Text != strings.Repeat("a", 10) {
		t.Errorf("generated %d tokens %q", len(res.Tokens), res.Text)
	}
	if s.Stats().SlotsBusy != 0 {
		t.Error("slot still busy")
	}
}

func TestDeadline(t *testing.T) {
	s, _ := newSched(t, enginetest.Options{Logits: endless, DecodeDelay: time.Millisecond}, engine.Config{NParallel: 1, NCtx: 4096})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	res, err := s.Complete(ctx, engine.Request{Prefix: "x", Suffix: "y", MaxTokens: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stop != engine.StopDeadline || !errors.Is(res.Err, context.DeadlineExceeded) || res.Text == "" {
		t.Errorf("stop %s err %v text %q", res.Stop, res.Err, res.Text)
	}
}

func TestTimeBudgets(t *testing.T) {
	// The generation budget applies only once a newline was generated.
	lines := func(seq []engine.Token, out []float32) {
		if seq[len(seq)-1] == 'a' {
			out['\n'] = 5
		} else {
			out['a'] = 5
		}
	}
	s, _ := newSched(t, enginetest.Options{Logits: lines, DecodeDelay: 2 * time.Millisecond}, engine.Config{NParallel: 1, NCtx: 4096})
	res := complete(t, s, engine.Request{Prefix: "x", Suffix: "y", MaxTokens: 100000, TMaxPredict: 20 * time.Millisecond})
	if res.Stop != engine.StopLength || len(res.Tokens) > 100 || !strings.Contains(res.Text, "\n") {
		t.Errorf("generation budget: stop %s after %d tokens", res.Stop, len(res.Tokens))
	}
	noNL, _ := newSched(t, enginetest.Options{Logits: endless, DecodeDelay: 2 * time.Millisecond}, engine.Config{NParallel: 1, NCtx: 4096})
	res = complete(t, noNL, engine.Request{Prefix: "x", Suffix: "y", MaxTokens: 30, TMaxPredict: time.Millisecond})
	if res.Stop != engine.StopLength || len(res.Tokens) != 30 {
		t.Errorf("no newline: stop %s after %d tokens", res.Stop, len(res.Tokens))
	}
	// The prompt budget stops a long prefill but not a cache-warming request.
	slow, _ := newSched(t, enginetest.Options{Logits: endless, DecodeDelay: 5 * time.Millisecond}, engine.Config{NParallel: 1, NCtx: 8192, NBatch: 16})
	r := fimReq(6, 30, 10)
	r.TMaxPrompt = 20 * time.Millisecond
	res = complete(t, slow, r)
	if res.Stop != engine.StopDeadline || !errors.Is(res.Err, engine.ErrPromptBudget) {
		t.Errorf("prompt budget: stop %s err %v", res.Stop, res.Err)
	}
	r.MaxTokens = 0
	res = complete(t, slow, r)
	if res.Stop != engine.StopLength || res.Timings.CachedTokens+res.Timings.EvaluatedTokens != res.Timings.PromptTokens {
		t.Errorf("warm-up: stop %s timings %+v", res.Stop, res.Timings)
	}
	// The scheduler's default budget trims (when it has a speed to plan
	// with) but never stops a prompt after the fact: here nothing is
	// measured yet, so the long prompt runs whole and answers.
	byDefault, _ := newSched(t, enginetest.Options{Logits: endless, DecodeDelay: 5 * time.Millisecond},
		engine.Config{NParallel: 1, NCtx: 8192, NBatch: 16, TMaxPrompt: 20 * time.Millisecond})
	r = fimReq(7, 30, 10)
	r.MaxTokens = 2
	res = complete(t, byDefault, r)
	if res.Err != nil || res.Stop != engine.StopLength || res.Timings.PrefillMS < 20 {
		t.Errorf("default budget: stop %s err %v after %.0f ms of prompt; want an answer after more than 20 ms", res.Stop, res.Err, res.Timings.PrefillMS)
	}
}

func TestSupersede(t *testing.T) {
	s, _ := newSched(t, enginetest.Options{Logits: endless, DecodeDelay: time.Millisecond}, engine.Config{NParallel: 2, NCtx: 4096})
	old, err := s.Stream(context.Background(), engine.Request{Prefix: "a", Suffix: "b", MaxTokens: 100000, SupersedeKey: "u1:doc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Next(context.Background()); err != nil { // running
		t.Fatal(err)
	}
	other, err := s.Stream(context.Background(), engine.Request{Prefix: "c", Suffix: "d", MaxTokens: 20, SupersedeKey: "u2:doc"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Complete(context.Background(), engine.Request{Prefix: "ab", Suffix: "b", MaxTokens: 5, SupersedeKey: "u1:doc"})
	if err != nil || res.Stop != engine.StopLength {
		t.Fatalf("new request: %v %v", res, err)
	}
	oldRes, _ := old.Wait()
	if oldRes.Stop != engine.StopCancelled || !errors.Is(oldRes.Err, engine.ErrSuperseded) {
		t.Errorf("old request: stop %s err %v", oldRes.Stop, oldRes.Err)
	}
	if otherRes, _ := other.Wait(); otherRes.Stop != engine.StopLength {
		t.Errorf("other key was disturbed: %s", otherRes.Stop)
	}
}

func TestQueueFullIsOverloaded(t *testing.T) {
	entered := make(chan struct{}, 100)
	release := make(chan struct{})
	o := enginetest.Options{BeforeDecode: func(*engine.Batch) error {
		entered <- struct{}{}
		<-release
		return nil
	}}
	s, _ := newSched(t, o, engine.Config{NParallel: 1, NCtx: 4096, QueueSize: 2})
	r := engine.Request{Prefix: "a", Suffix: "b", MaxTokens: 2}
	var streams []*engine.Stream
	st, err := s.Stream(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	streams = append(streams, st)
	<-entered // the first request holds the only slot
	for range 2 {
		st, err := s.Stream(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	if got := s.Stats().QueueLen; got != 2 {
		t.Errorf("queue length %d", got)
	}
	if _, err := s.Stream(context.Background(), r); !errors.Is(err, engine.ErrOverloaded) {
		t.Errorf("third queued request: %v", err)
	}
	close(release)
	for _, st := range streams {
		if res, err := st.Wait(); err != nil || res.Stop != engine.StopLength {
			t.Errorf("%v %v", res, err)
		}
	}
	// Capacity is back.
	if _, err := s.Complete(context.Background(), r); err != nil {
		t.Error(err)
	}
}

func TestKVFull(t *testing.T) {
	t.Run("evict idle slot", func(t *testing.T) {
		s, _ := newSched(t, enginetest.Options{KVCells: 400}, engine.Config{NParallel: 2, NCtx: 2048, CacheReuse: -1})
		a, b := fimReq(7, 6, 3), fimReq(8, 6, 3)
		a.Prefix, b.Prefix = "A"+a.Prefix, "B"+b.Prefix
		wantB := cold(t, b)
		ra := complete(t, s, a)
		if ra.Stop == engine.StopError {
			t.Fatal(ra.Err)
		}
		rb := complete(t, s, b) // needs the cells slot 0 still holds
		sameTokens(t, "b after eviction", rb, wantB)
		if ra.Slot == rb.Slot {
			t.Fatal("both requests used one slot")
		}
		again := complete(t, s, a)
		if again.Timings.CachedTokens != 0 {
			t.Errorf("slot of a kept %d cached tokens after eviction", again.Timings.CachedTokens)
		}
	})
	t.Run("too big fails the request only", func(t *testing.T) {
		s, _ := newSched(t, enginetest.Options{KVCells: 40}, engine.Config{NParallel: 1, NCtx: 2048})
		res, err := s.Complete(context.Background(), fimReq(9, 6, 3))
		if !errors.Is(err, engine.ErrKVFull) || res.Stop != engine.StopError {
			t.Fatalf("got %v, %v", res, err)
		}
		small := complete(t, s, engine.Request{Prefix: "a", Suffix: "b", MaxTokens: 3})
		if small.Stop != engine.StopLength {
			t.Errorf("small request after KV-full: %s %v", small.Stop, small.Err)
		}
	})
}

func TestDecodeErrorFailsOnlyThatBatch(t *testing.T) {
	boom := errors.New("boom")
	var armed atomic.Bool
	armed.Store(true)
	o := enginetest.Options{BeforeDecode: func(b *engine.Batch) error {
		for _, tok := range b.Tokens {
			if tok == '#' && armed.CompareAndSwap(true, false) {
				return boom
			}
		}
		return nil
	}}
	s, _ := newSched(t, o, engine.Config{NParallel: 1, NCtx: 4096})
	bad := fimReq(10, 8, 4)
	bad.Prefix = "#" + bad.Prefix
	want := cold(t, bad)
	st, err := s.Stream(context.Background(), bad)
	if err != nil {
		t.Fatal(err)
	}
	queued, err := s.Stream(context.Background(), fimReq(11, 8, 4)) // waits for the slot
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Wait()
	if !errors.Is(err, boom) || res.Stop != engine.StopError {
		t.Fatalf("failed batch: %v %v", res, err)
	}
	if qr, err := queued.Wait(); err != nil || qr.Stop == engine.StopError {
		t.Errorf("queued request failed too: %v", err)
	}
	// The KV mirror stayed consistent: the same request now matches a cold run.
	sameTokens(t, "retry", complete(t, s, bad), want)
}

func TestPromptLayoutErrors(t *testing.T) {
	s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, NCtx: 64})
	if _, err := s.Complete(context.Background(), engine.Request{Prefix: "x", MaxTokens: 1000}); err != nil {
		t.Errorf("max tokens beyond the context should be clamped: %v", err)
	}
	if _, err := s.Complete(context.Background(), engine.Request{Raw: true, MaxTokens: 1}); !errors.Is(err, engine.ErrEmptyPrompt) {
		t.Errorf("empty raw prompt: %v", err)
	}
	res := complete(t, s, engine.Request{Raw: true, Prefix: strings.Repeat("z", 500), MaxTokens: 4})
	if !res.Truncated || res.Timings.PromptTokens > 60 {
		t.Errorf("raw prompt not truncated: %+v", res.Timings)
	}
	noFIM, _ := newSched(t, enginetest.Options{Name: "plain", Arch: "llama"}, engine.Config{NParallel: 1, NCtx: 256, Family: engine.FamilyNone})
	_ = noFIM // the fake has FIM tokens, so detection still finds a layout
}

func TestStatsAndClose(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{Logits: endless, DecodeDelay: time.Millisecond})
	s, err := engine.NewScheduler("fake", m, engine.Config{NParallel: 3, NCtx: 3 * 512, NBatch: 64})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Slots != 3 || st.NCtxPerSlot != 512 || st.NBatch != 64 || st.QueueCap != 64 || !st.CanShift || st.Family != engine.FamilyQwen {
		t.Errorf("stats %+v", st)
	}
	inflight, err := s.Stream(context.Background(), engine.Request{Prefix: "a", Suffix: "b", MaxTokens: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inflight.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Stats().SlotsBusy != 1 {
		t.Error("busy slot not counted")
	}
	s.Close()
	res, err := inflight.Wait()
	if !errors.Is(err, engine.ErrClosed) || res.Stop != engine.StopError {
		t.Errorf("in-flight at close: %v %v", res, err)
	}
	if _, err := s.Stream(context.Background(), engine.Request{Prefix: "a"}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if m.OpenSamplers() != 0 || m.OpenContexts() != 0 {
		t.Errorf("open samplers %d contexts %d", m.OpenSamplers(), m.OpenContexts())
	}
}

func TestEngineModels(t *testing.T) {
	b := enginetest.New(enginetest.Options{})
	e := engine.New(b, nil)
	defer e.Close()
	for _, name := range []string{"small", "big"} {
		var last float32
		if _, err := e.Load(engine.ModelSpec{Name: name, Path: name + ".gguf", Sched: engine.Config{NParallel: 2, NCtx: 2048}},
			func(p float32) { last = p }); err != nil {
			t.Fatal(err)
		}
		if last != 1 {
			t.Errorf("progress ended at %v", last)
		}
	}
	if _, err := e.Load(engine.ModelSpec{Name: "small", Path: "x.gguf"}, nil); err == nil {
		t.Error("duplicate name accepted")
	}
	if _, err := e.Load(engine.ModelSpec{Name: "gone", Path: "missing.gguf"}, nil); err == nil || !strings.Contains(err.Error(), "missing.gguf") {
		t.Errorf("missing file: %v", err)
	}
	if got := fmt.Sprint(e.Names()); got != "[big small]" {
		t.Errorf("names %s", got)
	}
	// Both models serve at once.
	var wg sync.WaitGroup
	r := fimReq(12, 10, 5)
	results := make([]*engine.Result, 2)
	for i, name := range []string{"small", "big"} {
		wg.Go(func() {
			res, err := e.Complete(context.Background(), name, r)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	if results[0] != nil && results[1] != nil {
		sameTokens(t, "two models, same weights", results[0], results[1])
	}
	if _, err := e.Complete(context.Background(), "nope", r); !errors.Is(err, engine.ErrUnknownModel) {
		t.Errorf("unknown model: %v", err)
	}
	if st := e.Stats(); len(st) != 2 || st[0].Requests != 1 || st[0].PromptTokens == 0 {
		t.Errorf("stats %+v", st)
	}
	if err := e.Unload("small"); err != nil {
		t.Fatal(err)
	}
	if err := e.Unload("small"); !errors.Is(err, engine.ErrUnknownModel) {
		t.Errorf("second unload: %v", err)
	}
	for _, m := range b.Models() {
		if m.OpenSamplers() != 0 {
			t.Error("sampler left open")
		}
	}
	if !b.Models()[0].Closed() {
		t.Error("unloaded model not closed")
	}
}

func TestConcurrentStress(t *testing.T) {
	s, m := newSched(t, enginetest.Options{}, engine.Config{NParallel: 4, NCtx: 4 * 1024, NBatch: 64, QueueSize: 256})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := fimReq(i%5, 8+i%7, i%6)
			r.Stop = []string{")"}
			r.SupersedeKey = fmt.Sprint("k", i%3)
			st, err := s.Stream(ctx, r)
			if err != nil {
				t.Error(err)
				return
			}
			if i%4 == 0 {
				cancel()
			}
			if _, err := st.Wait(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.SlotsBusy != 0 || st.QueueLen != 0 || st.Requests != 40 {
		t.Errorf("stats after stress: %+v", st)
	}
	if m.OpenSamplers() != 0 {
		t.Errorf("%d samplers open", m.OpenSamplers())
	}
}

// TestStreamsOneMicroBatchPerStep: with a KV stream per sequence, typists
// whose keystrokes arrive out of order and with idle slots between busy
// ones still share one micro-batch (one pass over the weights) per step:
// the scheduler orders the batch by slot, fills holes with placeholders
// and feeds short prompt tails one token per step (batchlayout.go). The
// placeholders leave nothing behind: every result equals the same request
// run alone.
func TestStreamsOneMicroBatchPerStep(t *testing.T) {
	const n = 8
	s, m := newSched(t, enginetest.Options{Streams: true, DecodeDelay: time.Millisecond},
		engine.Config{NParallel: n, NCtx: n * 2048, NBatch: 512})
	reqs := make([]engine.Request, n)
	for i := range reqs {
		reqs[i] = fimReq(i+1, 30+i, 10+i)
		complete(t, s, reqs[i]) // each typist's slot holds its file
	}
	start := len(m.LastContext().MicroBatches())
	// The next keystroke of each typist, in a scrambled order, arriving
	// while others generate.
	res := typeAtOnce(t, s, reqs, []int{5, 2, 7, 0, 3, 6, 1, 4}, "y", 3*time.Millisecond)
	mbs := m.LastContext().MicroBatches()[start:]
	if len(mbs) == 0 {
		t.Fatal("no decodes")
	}
	for i, c := range mbs {
		if c != 1 {
			t.Fatalf("decode %d of %d split into %d micro-batches (all: %v)", i, len(mbs), c, mbs)
		}
	}
	if _, _, most := m.LastContext().Counters(); most < n/2 {
		t.Fatalf("at most %d sequences in a batch: the test did not batch", most)
	}
	for i, r := range res {
		if r.Timings.EvaluatedTokens > 2 {
			t.Errorf("typist %d evaluated %d prompt tokens: its slot's cache was lost", i, r.Timings.EvaluatedTokens)
		}
		sameTokens(t, fmt.Sprintf("typist %d", i), r, cold(t, reqs[i]))
	}
}

// TestStreamsPlaceholderNotRemovable: a memory that cannot remove a
// partial range (recurrent models) cannot take placeholders back; the
// scheduler then drops that slot's cache, stops padding, and every result
// is still the request's own.
func TestStreamsPlaceholderNotRemovable(t *testing.T) {
	const n = 4
	s, _ := newSched(t, enginetest.Options{Streams: true, NoPartialRm: true, DecodeDelay: time.Millisecond},
		engine.Config{NParallel: n, NCtx: n * 2048, NBatch: 512})
	reqs := make([]engine.Request, n)
	res := make([]*engine.Result, n)
	var wg sync.WaitGroup
	for i := range reqs {
		reqs[i] = fimReq(i+1, 20+i, 8+i)
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 2 * time.Millisecond)
			res[i] = complete(t, s, reqs[i])
		})
	}
	wg.Wait()
	for i, r := range res {
		sameTokens(t, fmt.Sprintf("request %d", i), r, cold(t, reqs[i]))
	}
}

// TestStreamsCompactsScatteredTypists: four typists whose caches sit in
// slots 1, 3, 5 and 7 of eight, the others cold, move to slots 0-3 at their
// next keystroke, their caches with them; from then on their steps carry no
// placeholder for the slots between them. Results are the requests' own, and
// no cache is evaluated again, theirs or the paused typists'.
func TestStreamsCompactsScatteredTypists(t *testing.T) {
	const n = 8
	var mu sync.Mutex
	record := false
	highest := -1 // highest sequence id in a recorded batch
	o := enginetest.Options{Streams: true, DecodeDelay: time.Millisecond, BeforeDecode: func(b *engine.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if record {
			for _, sq := range b.Seq {
				highest = max(highest, int(sq))
			}
		}
		return nil
	}}
	const after = 500 * time.Millisecond
	s, m := newSched(t, o, engine.Config{NParallel: n, NCtx: n * 2048, NBatch: 512, CompactAfter: after})
	reqs := make([]engine.Request, n)
	for i := range reqs {
		reqs[i] = fimReq(i+1, 30+i, 10+i)
		warm := reqs[i]
		warm.MaxTokens = 1 // quick: no slot may go cold before all are warm
		if r := complete(t, s, warm); r.Slot != i {
			t.Fatalf("typist %d warmed slot %d; want %d", i, r.Slot, i)
		}
	}
	time.Sleep(after + 50*time.Millisecond) // every slot is cold now
	active := []int{1, 3, 5, 7}
	for k, i := range active {
		r := reqs[i]
		r.Prefix += "y"
		reqs[i] = r
		res := complete(t, s, r)
		if res.Slot != k {
			t.Errorf("typist %d ran in slot %d; want %d", i, res.Slot, k)
		}
		if res.Timings.EvaluatedTokens > 2 {
			t.Errorf("typist %d evaluated %d prompt tokens: its cache did not move with it", i, res.Timings.EvaluatedTokens)
		}
		sameTokens(t, fmt.Sprintf("typist %d after the move", i), res, cold(t, r))
	}
	if st := s.Stats(); st.Moves != uint64(len(active)) || st.MovedTokens == 0 {
		t.Errorf("Stats: %d moves (%d tokens); want %d", st.Moves, st.MovedTokens, len(active))
	}

	// All four type at once: their slots are 0-3, recently used, so nothing
	// moves again and no batch reaches past slot 3.
	mu.Lock()
	record = true
	mu.Unlock()
	start := len(m.LastContext().MicroBatches())
	res := typeAtOnce(t, s, reqs, active, "z", 2*time.Millisecond)
	for k, i := range active {
		if res[i].Slot != k || res[i].Timings.EvaluatedTokens > 2 {
			t.Errorf("typist %d: slot %d, %d evaluated; want slot %d from its cache", i, res[i].Slot, res[i].Timings.EvaluatedTokens, k)
		}
		sameTokens(t, fmt.Sprintf("typist %d", i), res[i], cold(t, reqs[i]))
	}
	mu.Lock()
	record = false
	if highest != len(active)-1 {
		t.Errorf("batches reached slot %d; want the four typists packed in slots 0-%d", highest, len(active)-1)
	}
	mu.Unlock()
	for i, c := range m.LastContext().MicroBatches()[start:] {
		if c != 1 {
			t.Fatalf("decode %d split into %d micro-batches", i, c)
		}
	}
	if st := s.Stats(); st.Moves != uint64(len(active)) {
		t.Errorf("%d moves after the typists were packed; want %d", st.Moves, len(active))
	}

	// The caches of the typists who paused were swapped up, not lost.
	for _, i := range []int{0, 2, 4, 6} {
		r := reqs[i]
		r.Prefix += "w"
		res := complete(t, s, r)
		if res.Timings.EvaluatedTokens > 2 {
			t.Errorf("typist %d, back after a pause, evaluated %d prompt tokens: its cache was lost", i, res.Timings.EvaluatedTokens)
		}
		sameTokens(t, fmt.Sprintf("typist %d after a pause", i), res, cold(t, r))
	}
}

// TestStreamsCompactionKeepsWarmSlots: a slot used within CompactAfter is
// never taken, and with compaction off nothing moves.
func TestStreamsCompactionKeepsWarmSlots(t *testing.T) {
	for _, after := range []time.Duration{time.Hour, -1} {
		s, _ := newSched(t, enginetest.Options{Streams: true}, engine.Config{NParallel: 4, NCtx: 4 * 2048, CompactAfter: after})
		reqs := make([]engine.Request, 4)
		for i := range reqs {
			reqs[i] = fimReq(i+1, 30, 10)
			complete(t, s, reqs[i])
		}
		r := reqs[3]
		r.Prefix += "y"
		if res := complete(t, s, r); res.Slot != 3 || res.Timings.EvaluatedTokens > 2 {
			t.Errorf("CompactAfter %v: slot %d, %d evaluated; want slot 3 from its cache", after, res.Slot, res.Timings.EvaluatedTokens)
		}
		if st := s.Stats(); st.Moves != 0 {
			t.Errorf("CompactAfter %v: %d moves", after, st.Moves)
		}
	}
}

// TestSupersededPrefillGoesOnInItsSlot: a keystroke that supersedes a
// request mid-prefill runs in that request's slot and keeps what it
// evaluated, though that is far below the slot-similarity threshold; in
// the least recently used slot it would start again from nothing, and
// under load no long prompt would ever finish its prefill.
func TestSupersededPrefillGoesOnInItsSlot(t *testing.T) {
	var decodes atomic.Int64
	o := enginetest.Options{Logits: endless, DecodeDelay: 2 * time.Millisecond,
		BeforeDecode: func(*engine.Batch) error { decodes.Add(1); return nil }}
	s, _ := newSched(t, o, engine.Config{NParallel: 3, NCtx: 3 * 4096, NBatch: 32, SlotSimilarity: 0.5})
	r := fimReq(1, 60, 40)
	r.SupersedeKey, r.MaxTokens = "u1:main.go", 1000
	old, err := s.Stream(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	for decodes.Load() < 3 { // three batches of 32 prompt tokens
		time.Sleep(time.Millisecond)
	}
	r.Prefix += "y"
	r.MaxTokens = 1
	res := complete(t, s, r)
	oldRes, _ := old.Wait()
	if oldRes.Stop != engine.StopCancelled || !errors.Is(oldRes.Err, engine.ErrSuperseded) {
		t.Fatalf("old request: stop %s, err %v", oldRes.Stop, oldRes.Err)
	}
	if oldRes.Timings.EvaluatedTokens*2 >= res.Timings.PromptTokens {
		t.Skipf("the old request evaluated %d of %d tokens before it was superseded: above the threshold, no case", oldRes.Timings.EvaluatedTokens, res.Timings.PromptTokens)
	}
	if res.Slot != oldRes.Slot || res.Timings.CachedTokens < oldRes.Timings.EvaluatedTokens-1 {
		t.Errorf("the keystroke ran in slot %d with %d cached tokens; the superseded request had slot %d and evaluated %d",
			res.Slot, res.Timings.CachedTokens, oldRes.Slot, oldRes.Timings.EvaluatedTokens)
	}
}
