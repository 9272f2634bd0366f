package engine_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

// qwenParts splits a Qwen repository-level prompt into its extra context
// (from the first file separator to the current file's), its prefix (the
// text after the prefix token, and the middle block after the middle token)
// and its suffix.
func qwenParts(t *testing.T, m *enginetest.Model, ts []engine.Token) (extra, prefix, suffix []engine.Token) {
	t.Helper()
	first, last := slices.Index(ts, enginetest.FIMSep), -1
	for i, tok := range ts {
		if tok == enginetest.FIMSep {
			last = i
		}
	}
	pre, suf, mid := slices.Index(ts, enginetest.FIMPre), slices.Index(ts, enginetest.FIMSuf), slices.Index(ts, enginetest.FIMMid)
	if first < 0 || pre < last || suf < pre || mid < suf {
		t.Fatalf("not a Qwen repository-level layout: %q", m.Detokenize(ts))
	}
	prefix = append(slices.Clone(ts[pre+1:suf]), ts[mid+1:]...)
	return ts[first:last], prefix, ts[suf+1 : mid]
}

// TestPromptSplitCaps: each cap of a PromptSplit holds, in tokens, and
// cuts only its own part: extra chunks go from the front, the prefix
// loses lines from its top (the cursor line stays), the suffix lines from
// its end. The budget is large enough that only the caps cut.
func TestPromptSplitCaps(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	sp := m.Special()
	req := engine.Request{
		Prefix: lines("p", 100) + "cur", Suffix: lines("s", 100), FilePath: "main.go", RepoName: "demo",
		Extra: []engine.Chunk{{Path: "a.go", Text: lines("a", 10)}, {Path: "b.go", Text: lines("b", 10)}, {Path: "c.go", Text: lines("c", 10)}},
	}
	const budget = 4000
	whole, err := engine.BuildPrompt(m, sp, engine.FamilyQwen, &req, budget, engine.PromptSplit{})
	if err != nil {
		t.Fatal(err)
	}
	if whole.Truncated {
		t.Fatal("the whole prompt does not fit the budget")
	}
	wholeExtra, wholePrefix, wholeSuffix := qwenParts(t, m, whole.Tokens)
	chunk := len(wholeExtra) / 3 // the three chunks have the same length

	for _, tc := range []struct {
		name  string
		split engine.PromptSplit
		// the parts' expected texts; empty: as in the whole prompt
		extra, prefix, suffix string
	}{
		{name: "extra drops the front chunk", split: engine.PromptSplit{Extra: 2*chunk + 1},
			extra: "<|file_sep|>b.go\n" + lines("b", 10) + "<|file_sep|>c.go\n" + lines("c", 10)},
		{name: "extra drops all but the last chunk", split: engine.PromptSplit{Extra: 2*chunk - 1},
			extra: "<|file_sep|>c.go\n" + lines("c", 10)},
		{name: "extra smaller than any chunk", split: engine.PromptSplit{Extra: 1}, extra: "-"},
		// 300 of the prefix's 1103 tokens: the cut, at 803 rounded up to
		// a multiple of 300/4, is at 825, a line start.
		{name: "prefix loses its top lines", split: engine.PromptSplit{Prefix: 300}, prefix: lines("p", 100)[825:] + "cur"},
		{name: "prefix smaller than the cursor line", split: engine.PromptSplit{Prefix: 2}, prefix: "ur"},
		{name: "suffix loses its end lines", split: engine.PromptSplit{Suffix: 100}, suffix: lines("s", 9)},
		{name: "suffix shorter than a line", split: engine.PromptSplit{Suffix: 8}, suffix: "s000...."},
		{name: "all three", split: engine.PromptSplit{Extra: 2*chunk - 1, Prefix: 300, Suffix: 100},
			extra: "<|file_sep|>c.go\n" + lines("c", 10), prefix: lines("p", 100)[825:] + "cur", suffix: lines("s", 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := engine.BuildPrompt(m, sp, engine.FamilyQwen, &req, budget, tc.split)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Truncated {
				t.Error("a cap cut the prompt, but it is not marked truncated")
			}
			extra, prefix, suffix := qwenParts(t, m, p.Tokens)
			for _, part := range []struct {
				name      string
				got, full []engine.Token
				limit     int
				want      string
			}{
				{"extra", extra, wholeExtra, tc.split.Extra, tc.extra},
				{"prefix", prefix, wholePrefix, tc.split.Prefix, tc.prefix},
				{"suffix", suffix, wholeSuffix, tc.split.Suffix, tc.suffix},
			} {
				if part.limit > 0 && len(part.got) > part.limit {
					t.Errorf("%s: %d tokens, over its cap of %d", part.name, len(part.got), part.limit)
				}
				want := part.want
				switch want {
				case "":
					want = m.Detokenize(part.full)
				case "-":
					want = ""
				}
				if got := m.Detokenize(part.got); got != want {
					t.Errorf("%s:\n got %q\nwant %q", part.name, got, want)
				}
			}
		})
	}
}

// TestPromptSplitUncapped: a split without caps, and one whose caps are
// above every part, give the prompt of no split, byte for byte, with and
// without the token budget cutting, for every family.
func TestPromptSplitUncapped(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	sp := m.Special()
	sp.AddBOS = true
	req := engine.Request{
		Prefix: lines("p", 100) + "cur", Suffix: lines("s", 100), FilePath: "main.go", RepoName: "demo",
		Extra: []engine.Chunk{{Path: "a.go", Text: lines("a", 10)}, {Path: "b.go", Text: lines("b", 10)}},
	}
	above := engine.PromptSplit{Extra: 10000, Prefix: 10000, Suffix: 10000}
	for _, fam := range []engine.Family{engine.FamilyQwen, engine.FamilyStarCoder, engine.FamilyDeepSeek, engine.FamilyCodestral} {
		for _, budget := range []int{300, 4000} {
			want, err := engine.BuildPrompt(m, sp, fam, &req, budget, engine.PromptSplit{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := engine.BuildPrompt(m, sp, fam, &req, budget, above)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Tokens, want.Tokens) || got.Truncated != want.Truncated {
				t.Errorf("%s, budget %d: caps above every part changed the prompt:\n got %q\nwant %q", fam, budget, m.Detokenize(got.Tokens), m.Detokenize(want.Tokens))
			}
			if want.Truncated != (budget < 4000) {
				t.Errorf("%s, budget %d: truncated %v", fam, budget, want.Truncated)
			}
		}
	}
}

// TestPromptSplitThenBudget: the token budget still applies after the caps,
// on what the caps left.
func TestPromptSplitThenBudget(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	sp := m.Special()
	req := engine.Request{Prefix: lines("p", 100) + "cur", Suffix: lines("s", 100), RepoName: "demo",
		Extra: []engine.Chunk{{Path: "a.go", Text: lines("a", 20)}, {Path: "b.go", Text: lines("b", 20)}}}
	split := engine.PromptSplit{Extra: 1000, Prefix: 500, Suffix: 300}
	const budget = 600
	p, err := engine.BuildPrompt(m, sp, engine.FamilyQwen, &req, budget, split)
	if err != nil {
		t.Fatal(err)
	}
	extra, prefix, suffix := qwenParts(t, m, p.Tokens)
	if len(p.Tokens) > budget || !p.Truncated {
		t.Fatalf("%d tokens over a budget of %d, truncated %v", len(p.Tokens), budget, p.Truncated)
	}
	if len(extra) > split.Extra || len(prefix) > split.Prefix || len(suffix) > split.Suffix {
		t.Errorf("parts %d/%d/%d over the caps %+v", len(extra), len(prefix), len(suffix), split)
	}
	if !strings.HasSuffix(m.Detokenize(prefix), "p099......\ncur") {
		t.Errorf("prefix lost its end: %q", m.Detokenize(prefix))
	}
}

// TestPromptSplitPrefixStable: with a prefix cap, the prefix's first line
// stays where it is while the user types or moves the cursor by one
// character: the cut moves in steps of a quarter of the cap, not with each
// keystroke. Cut one token at a time, it would move every 11 keystrokes
// (the length of a line).
func TestPromptSplitPrefixStable(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	sp := m.Special()
	split := engine.PromptSplit{Prefix: 256} // steps of 64 tokens
	const line = "\tx := yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
	var typing, moving []engine.Request
	for k := 0; k <= 40; k++ {
		typing = append(typing, engine.Request{Prefix: lines("p", 200) + line[:k], Suffix: "\n" + lines("s", 50)})
		moving = append(moving, engine.Request{Prefix: lines("p", 200) + line[:k], Suffix: line[k:] + "\n" + lines("s", 50)})
	}
	for name, reqs := range map[string][]engine.Request{"typing": typing, "moving the cursor": moving} {
		moves := 0
		prev := ""
		for i, r := range reqs {
			p, err := engine.BuildPrompt(m, sp, engine.FamilyQwen, &r, 4080, split)
			if err != nil {
				t.Fatal(err)
			}
			prefix := section(m, p.Tokens, enginetest.FIMPre, enginetest.FIMSuf)
			_, middle, _ := strings.Cut(m.Detokenize(p.Tokens), "<|fim_middle|>")
			if n := len(prefix) + len(middle); !p.Truncated || n > split.Prefix || n < split.Prefix*3/4-11 {
				t.Fatalf("%s, keystroke %d: %d prefix tokens for a cap of %d (truncated %v)", name, i, n, split.Prefix, p.Truncated)
			}
			if !strings.HasPrefix(prefix, "p") {
				t.Fatalf("%s, keystroke %d: prefix starts mid-line: %q", name, i, prefix[:min(20, len(prefix))])
			}
			first := prefix[:11]
			if i > 0 && first != prev {
				moves++
			}
			prev = first
		}
		if moves > 1 {
			t.Errorf("%s: the prefix start moved %d times in 40 keystrokes", name, moves)
		}
	}
}

// TestPromptSplitTyping: through real code typed keystroke by keystroke,
// for every family, budget and split, the prompt fits its budget, keeps
// the end of the cursor line, and in the Qwen layout each part
// fits its cap.
func TestPromptSplitTyping(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	sp := m.Special()
	reqs := typingRequests(t, 1500)
	splits := []engine.PromptSplit{{Extra: 500}, {Prefix: 300}, {Suffix: 50}, {Extra: 100, Prefix: 100, Suffix: 100}, {Prefix: 5, Suffix: 1}}
	for _, fam := range []engine.Family{engine.FamilyQwen, engine.FamilyStarCoder, engine.FamilyDeepSeek, engine.FamilyCodestral} {
		for _, budget := range []int{300, 1000, 4080} {
			for _, split := range splits {
				for i := 0; i < len(reqs); i += 37 {
					r := reqs[i]
					p, err := engine.BuildPrompt(m, sp, fam, &r, budget, split)
					if err != nil {
						t.Fatalf("%s, budget %d, split %+v, keystroke %d: %v", fam, budget, split, i, err)
					}
					if len(p.Tokens) > budget || !p.Truncated {
						t.Fatalf("%s, budget %d, split %+v, keystroke %d: %d tokens, truncated %v", fam, budget, split, i, len(p.Tokens), p.Truncated)
					}
					_, cursorLine := engine.SplitCursorLine(r.Prefix)
					end := cursorLine[len(cursorLine)-min(len(cursorLine), 4):]
					if !strings.HasSuffix(m.Detokenize(p.Tokens), end) && !strings.Contains(m.Detokenize(p.Tokens), end+"<|fim_suffix|>") {
						t.Fatalf("%s, budget %d, split %+v, keystroke %d: the prompt lost the end of the cursor line %q", fam, budget, split, i, end)
					}
					if fam != engine.FamilyQwen {
						continue
					}
					extra, prefix, suffix := qwenParts(t, m, p.Tokens)
					for _, part := range []struct{ n, limit int }{{len(extra), split.Extra}, {len(prefix), split.Prefix}, {len(suffix), split.Suffix}} {
						if part.limit > 0 && part.n > part.limit {
							t.Fatalf("budget %d, split %+v, keystroke %d: parts %d/%d/%d over their caps", budget, split, i, len(extra), len(prefix), len(suffix))
						}
					}
				}
			}
		}
	}
}
