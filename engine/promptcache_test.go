package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

// typists returns the requests of two typists in different files of
// different projects, each with its own supersede key.
func typists() (a, b engine.Request) {
	a, b = fimReq(1, 80, 50), fimReq(2, 80, 50)
	a.SupersedeKey, b.SupersedeKey = "session-a:main.go", "session-b:main.go"
	a.RepoName, b.RepoName = "alpha", "beta"
	return a, b
}

// backAfterOther sends typist a's request, then typist b's, then a's next
// keystroke, and returns that keystroke's result and request, and b's
// request.
func backAfterOther(t *testing.T, s *engine.Scheduler) (*engine.Result, engine.Request, engine.Request) {
	t.Helper()
	a, b := typists()
	complete(t, s, a)
	complete(t, s, b)
	a.Prefix += "fo"
	return complete(t, s, a), a, b
}

// TestPromptCacheRestoresATypistsPrompt: with one slot for two typists, the
// second typist's request overwrites the first's cache; the first's next
// keystroke gets its prompt back from host memory and evaluates only what
// was typed, with the same tokens as a cold run. Without the prompt cache
// it evaluates the whole prompt again.
func TestPromptCacheRestoresATypistsPrompt(t *testing.T) {
	for _, on := range []bool{true, false} {
		cfg := engine.Config{NParallel: 1, NCtx: 4096}
		if !on {
			cfg.PromptCacheBytes = -1
		}
		s, _ := newSched(t, enginetest.Options{}, cfg)
		got, a, b := backAfterOther(t, s)
		sameTokens(t, "restored", got, cold(t, a))
		tm, st := got.Timings, s.Stats().PromptCache
		if !on {
			if tm.RestoredTokens != 0 || st.Saves != 0 || tm.EvaluatedTokens < tm.PromptTokens/2 {
				t.Errorf("prompt cache off: restored %d, saves %d, evaluated %d of %d", tm.RestoredTokens, st.Saves, tm.EvaluatedTokens, tm.PromptTokens)
			}
			continue
		}
		if tm.EvaluatedTokens > 4 || tm.CachedTokens+tm.EvaluatedTokens != tm.PromptTokens || tm.RestoredTokens < tm.PromptTokens/2 {
			t.Errorf("after another typist: cached %d (restored %d), evaluated %d of %d", tm.CachedTokens, tm.RestoredTokens, tm.EvaluatedTokens, tm.PromptTokens)
		}
		// a's prompt was saved when b took the slot, b's when a took it
		// back; a's left the cache for the slot.
		if st.Saves != 2 || st.Restores != 1 || st.Prompts != 1 || st.Bytes <= 0 || st.RestoredTokens != uint64(tm.RestoredTokens) {
			t.Errorf("stats %+v", st)
		}
		// b comes back too, and finds its prompt.
		b.Prefix += "x"
		if got := complete(t, s, b); got.Timings.RestoredTokens == 0 || got.Timings.EvaluatedTokens > 4 {
			t.Errorf("second typist back: restored %d, evaluated %d", got.Timings.RestoredTokens, got.Timings.EvaluatedTokens)
		}
	}
}

// TestPromptCacheLimits: a prompt larger than the cache's bound is not
// kept, one typist keeps one prompt, and a failed copy leaves a request
// that still answers right, from an empty slot.
func TestPromptCacheLimits(t *testing.T) {
	t.Run("bound", func(t *testing.T) {
		s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, NCtx: 4096, PromptCacheBytes: 100})
		if got, _, _ := backAfterOther(t, s); got.Timings.RestoredTokens != 0 {
			t.Errorf("restored %d tokens from a cache of 100 bytes", got.Timings.RestoredTokens)
		}
		if st := s.Stats().PromptCache; st.Prompts != 0 || st.Bytes != 0 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("one per typist", func(t *testing.T) {
		s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, NCtx: 4096})
		a, b := typists()
		c := fimReq(3, 80, 50)
		c.SupersedeKey, c.RepoName = "session-c:main.go", "gamma"
		// a, then b twice with prompts that share nothing (b's project
		// context changed at its top), then c: b's first prompt is
		// stale, and its second replaces it.
		complete(t, s, a)
		complete(t, s, b)
		b.RepoName = "beta2"
		complete(t, s, b)
		complete(t, s, c)
		if st := s.Stats().PromptCache; st.Prompts != 2 || st.Saves != 2 {
			t.Errorf("after a, b, b changed, c: %+v, want a's and b's latest prompts", st)
		}
	})
	for _, o := range []enginetest.Options{{FailSave: true}, {FailLoad: true}} {
		t.Run(fmt.Sprintf("save fails %v, load fails %v", o.FailSave, o.FailLoad), func(t *testing.T) {
			s, _ := newSched(t, o, engine.Config{NParallel: 1, NCtx: 4096})
			got, a, b := backAfterOther(t, s)
			sameTokens(t, "after a failed copy", got, cold(t, a))
			tm, st := got.Timings, s.Stats().PromptCache
			if tm.RestoredTokens != 0 || st.Restores != 0 || tm.EvaluatedTokens < tm.PromptTokens/2 {
				t.Errorf("restored %d, evaluated %d of %d, stats %+v", tm.RestoredTokens, tm.EvaluatedTokens, tm.PromptTokens, st)
			}
			// b's turn again: with loads failing, its slot was emptied
			// by the failed load, and it must still answer right.
			b.Prefix += "x"
			sameTokens(t, "the other typist after a failed copy", complete(t, s, b), cold(t, b))
		})
	}
}

// TestPromptCacheRestoresAfterAContextEdit: typist a's project context
// (before its prefix in the prompt) loses a line near its top while b holds
// the only slot. a's saved prompt shares only the tokens before that line
// with a's next prompt, but everything after the line is still in it, one
// line earlier: the cache restores it and shifts that part into place, so a
// evaluates only what was typed, not the whole prompt. (A line inserted
// cannot be handled so: llama.cpp decodes a sequence's positions only in
// order, so nothing can be evaluated in a gap before cells already there.)
func TestPromptCacheRestoresAfterAContextEdit(t *testing.T) {
	s, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, NCtx: 4096})
	a, b := typists()
	ctxFile := source(7, 40)
	a.Extra = []engine.Chunk{{Path: "util.go", Text: ctxFile}}
	complete(t, s, a)
	complete(t, s, b)
	from := strings.IndexByte(ctxFile, '\n') + 1
	to := from + strings.IndexByte(ctxFile[from:], '\n') + 1
	a.Extra = []engine.Chunk{{Path: "util.go", Text: ctxFile[:from] + ctxFile[to:]}}
	a.Prefix += "fo"
	got := complete(t, s, a)
	sameTokens(t, "after the edit", got, cold(t, a))
	if tm := got.Timings; tm.RestoredTokens < tm.PromptTokens/2 || tm.ShiftedTokens == 0 || tm.EvaluatedTokens > 4 {
		t.Errorf("after a context edit: restored %d, shifted %d, evaluated %d of %d", tm.RestoredTokens, tm.ShiftedTokens, tm.EvaluatedTokens, tm.PromptTokens)
	}
}
