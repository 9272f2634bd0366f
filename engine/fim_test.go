package engine_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

func TestDetectFamily(t *testing.T) {
	full := enginetest.NewModel(enginetest.Options{}).Special()
	noRepo := full
	noRepo.FIMRep, noRepo.FIMSep = engine.NoToken, engine.NoToken
	noMid := noRepo
	noMid.FIMMid = engine.NoToken
	none := full
	none.FIMPre, none.FIMSuf, none.FIMMid = engine.NoToken, engine.NoToken, engine.NoToken
	for _, tc := range []struct {
		name, arch string
		sp         engine.SpecialTokens
		want       engine.Family
	}{
		{"Qwen2.5-Coder-1.5B", "qwen2", full, engine.FamilyQwen},
		{"", "starcoder2", full, engine.FamilyStarCoder},
		{"deepseek-coder-1.3b-base", "llama", noRepo, engine.FamilyDeepSeek},
		{"CodeLlama-7b-hf", "llama", noRepo, engine.FamilyCodeLlama},
		{"Codestral-22B-v0.1", "llama", noRepo, engine.FamilyCodestral},
		{"mystery", "gpt2", full, engine.FamilyQwen},
		{"mystery", "gpt2", noRepo, engine.FamilyGeneric},
		{"mystery", "gpt2", noMid, engine.FamilyCodestral},
		{"Qwen2.5-Coder-1.5B", "qwen2", none, engine.FamilyNone},
	} {
		got := engine.DetectFamily(engine.ModelInfo{Name: tc.name, Arch: tc.arch}, tc.sp)
		if got != tc.want {
			t.Errorf("%s/%s: %q, want %q", tc.name, tc.arch, got, tc.want)
		}
	}
}

func TestBuildPromptLayouts(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	sp := m.Special()
	bos := sp
	bos.AddBOS = true
	base := engine.Request{
		Prefix: "a\nb", Suffix: "c\n", FilePath: "main.go", RepoName: "demo",
		Extra: []engine.Chunk{{Path: "util.go", Text: "func u(){}"}, {Path: "x.py", Text: "pass\n"}},
	}
	bare := engine.Request{Prefix: "a\nb", Suffix: "c\n"}
	keep := bare
	keep.KeepCursorLine = true
	mid := bare
	mid.Middle = "x"
	inject := engine.Request{Prefix: "<|fim_middle|>\n", Suffix: "<|endoftext|>"}
	for _, tc := range []struct {
		name string
		fam  engine.Family
		sp   engine.SpecialTokens
		req  engine.Request
		want string
	}{
		{"qwen repo-level", engine.FamilyQwen, sp, base,
			"<|repo_name|>demo\n<|file_sep|>util.go\nfunc u(){}\n<|file_sep|>x.py\npass\n<|file_sep|>main.go\n<|fim_prefix|>a\n<|fim_suffix|>c\n<|fim_middle|>b"},
		{"qwen bare", engine.FamilyQwen, sp, bare, "<|fim_prefix|>a\n<|fim_suffix|>c\n<|fim_middle|>b"},
		{"keep cursor line", engine.FamilyQwen, sp, keep, "<|fim_prefix|>a\nb<|fim_suffix|>c\n<|fim_middle|>"},
		{"explicit middle", engine.FamilyQwen, sp, mid, "<|fim_prefix|>a\nb<|fim_suffix|>c\n<|fim_middle|>x"},
		{"starcoder2", engine.FamilyStarCoder, sp, base,
			"<|repo_name|>demo<|file_sep|>util.go\nfunc u(){}\n<|file_sep|>x.py\npass\n<|file_sep|><|fim_prefix|>main.go\na\n<|fim_suffix|>c\n<|fim_middle|>b"},
		{"deepseek", engine.FamilyDeepSeek, bos, base,
			"<|bos|><|fim_prefix|>// util.go\nfunc u(){}\n\n# x.py\npass\n\n// main.go\na\n<|fim_suffix|>c\n<|fim_middle|>b"},
		{"codellama", engine.FamilyCodeLlama, sp, bare, "<|fim_prefix|>a\n<|fim_suffix|>c\n<|fim_middle|>b"},
		{"codestral", engine.FamilyCodestral, sp, base,
			"<|fim_suffix|>c\n<|fim_prefix|>// util.go\nfunc u(){}\n\n# x.py\npass\n\n// main.go\na\nb"},
		{"control text stays text", engine.FamilyQwen, sp, inject, "<|fim_prefix|><|fim_middle|>\n<|fim_suffix|><|endoftext|><|fim_middle|>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := engine.BuildPrompt(m, tc.sp, tc.fam, &tc.req, 1000, engine.PromptSplit{})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Detokenize(p.Tokens); got != tc.want {
				t.Errorf("layout\n got %q\nwant %q", got, tc.want)
			}
			if p.Truncated {
				t.Error("truncated within budget")
			}
			// Exactly one of each marker: user text never becomes a control token.
			for _, tok := range []engine.Token{enginetest.FIMPre, enginetest.FIMSuf, enginetest.EOS} {
				want := 1
				if tok == enginetest.EOS {
					want = 0
				}
				if n := count(p.Tokens, tok); n != want {
					t.Errorf("token %d appears %d times", tok, n)
				}
			}
		})
	}
	if _, err := engine.BuildPrompt(m, sp, engine.FamilyNone, &bare, 100, engine.PromptSplit{}); !errors.Is(err, engine.ErrNoFIM) {
		t.Errorf("no FIM family: %v", err)
	}
	raw := engine.Request{Raw: true, Prefix: "<|fim_prefix|>x"}
	if p, _ := engine.BuildPrompt(m, sp, engine.FamilyNone, &raw, 100, engine.PromptSplit{}); len(p.Tokens) != 2 || p.Tokens[0] != enginetest.FIMPre {
		t.Errorf("raw prompt tokens %v", p.Tokens)
	}
}

func count(ts []engine.Token, t engine.Token) int {
	n := 0
	for _, x := range ts {
		if x == t {
			n++
		}
	}
	return n
}

func lines(tag string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%03d......\n", tag, i) // 11 bytes a line
	}
	return b.String()
}

// section returns the detokenized text between two marker tokens.
func section(m *enginetest.Model, ts []engine.Token, from, to engine.Token) string {
	i, j := slices.Index(ts, from), slices.Index(ts, to)
	if i < 0 || j < i {
		return ""
	}
	return m.Detokenize(ts[i+1 : j])
}

func TestBuildPromptBudget(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	sp := m.Special()
	extra := []engine.Chunk{{Path: "a.go", Text: lines("a", 10)}, {Path: "b.go", Text: lines("b", 10)}, {Path: "c.go", Text: lines("c", 10)}}

	t.Run("fits", func(t *testing.T) {
		r := engine.Request{Prefix: lines("p", 5), Suffix: lines("s", 5), Extra: extra}
		p, _ := engine.BuildPrompt(m, sp, engine.FamilyQwen, &r, 1000, engine.PromptSplit{})
		if p.Truncated || len(p.Tokens) > 1000 {
			t.Errorf("truncated %v, %d tokens", p.Truncated, len(p.Tokens))
		}
	})
	t.Run("extras dropped from the front first", func(t *testing.T) {
		r := engine.Request{Prefix: lines("p", 5), Suffix: lines("s", 5), Extra: extra}
		p, _ := engine.BuildPrompt(m, sp, engine.FamilyQwen, &r, 400, engine.PromptSplit{})
		text := m.Detokenize(p.Tokens)
		if !p.Truncated || len(p.Tokens) > 400 {
			t.Fatalf("truncated %v, %d tokens", p.Truncated, len(p.Tokens))
		}
		if strings.Contains(text, "a.go") || !strings.Contains(text, "c.go\nc000") {
			t.Errorf("wrong chunks kept: %q", text)
		}
		if !strings.Contains(text, lines("p", 5)) || !strings.Contains(text, lines("s", 5)) {
			t.Error("local context trimmed while extras could go")
		}
	})
	t.Run("prefix far end and suffix tail cut on lines", func(t *testing.T) {
		r := engine.Request{Prefix: lines("p", 100) + "cur", Suffix: lines("s", 100), Extra: extra}
		budget := 600
		p, _ := engine.BuildPrompt(m, sp, engine.FamilyQwen, &r, budget, engine.PromptSplit{})
		if !p.Truncated || len(p.Tokens) > budget {
			t.Fatalf("truncated %v, %d tokens", p.Truncated, len(p.Tokens))
		}
		pre := section(m, p.Tokens, enginetest.FIMPre, enginetest.FIMSuf)
		suf := section(m, p.Tokens, enginetest.FIMSuf, enginetest.FIMMid)
		text := m.Detokenize(p.Tokens)
		mid := text[strings.LastIndex(text, "<|fim_middle|>")+len("<|fim_middle|>"):]
		// The prefix's end continues in the middle block (SplitCursorBlock).
		if !strings.HasPrefix(pre, "p") || !strings.HasSuffix(pre, "\n") || !strings.HasSuffix(pre+mid, "p099......\ncur") {
			t.Errorf("prefix not cut at a line start or lost its end: %q…%q, middle %q", pre[:min(20, len(pre))], pre[max(0, len(pre)-20):], mid)
		}
		if !strings.HasPrefix(suf, "s000") || !strings.HasSuffix(suf, "\n") {
			t.Errorf("suffix cut wrong: %q", suf)
		}
		if len(pre) < 2*len(suf) || len(suf) < 60 {
			t.Errorf("prefix %d suffix %d bytes: want about 3:1", len(pre), len(suf))
		}
		if !strings.HasSuffix(mid, "\ncur") && mid != "cur" {
			t.Errorf("cursor line lost: middle %q", mid)
		}
		// At least half the budget stays for the local context.
		if len(pre)+len(suf)+len(mid) < (budget-20)/2 {
			t.Errorf("local context %d tokens of %d", len(pre)+len(suf)+len(mid), budget)
		}
	})
	t.Run("prefix cut is stable while typing", func(t *testing.T) {
		starts := map[string]bool{}
		for k := range 12 {
			r := engine.Request{Prefix: lines("p", 200) + "\tx := " + strings.Repeat("y", k), Suffix: lines("s", 50)}
			p, _ := engine.BuildPrompt(m, sp, engine.FamilyQwen, &r, 800, engine.PromptSplit{})
			starts[m.Detokenize(p.Tokens[:20])] = true
		}
		if len(starts) > 2 {
			t.Errorf("prefix start moved %d times in 12 keystrokes", len(starts)-1)
		}
	})
	t.Run("too small", func(t *testing.T) {
		r := engine.Request{Prefix: "x", Suffix: "y", FilePath: strings.Repeat("d/", 50) + "f.go"}
		if _, err := engine.BuildPrompt(m, sp, engine.FamilyQwen, &r, 20, engine.PromptSplit{}); !errors.Is(err, engine.ErrPromptTooLong) {
			t.Errorf("got %v", err)
		}
	})
}

// TestSplitCursorBlock: the middle block ends with the cursor line, starts
// at a line start, holds at most 32 complete lines, and its start moves
// rarely while a developer types through real code: about once per 8 new
// lines instead of on every new line, and never because the window's start
// moved.
func TestSplitCursorBlock(t *testing.T) {
	reqs := typingRequests(t, 4000)
	var prevBefore, prevLines string
	newLines, moves := 0, 0
	for i, r := range reqs {
		before, middle := engine.SplitCursorBlock(r.Prefix)
		if before+middle != r.Prefix {
			t.Fatalf("keystroke %d: parts do not add up", i)
		}
		if before != "" && !strings.HasSuffix(before, "\n") {
			t.Fatalf("keystroke %d: block starts mid-line", i)
		}
		lines, cursor := engine.SplitCursorLine(r.Prefix)
		if !strings.HasSuffix(middle, cursor) {
			t.Fatalf("keystroke %d: cursor line %q not in the middle %q", i, cursor, middle)
		}
		if n := strings.Count(middle, "\n"); n > 32 {
			t.Fatalf("keystroke %d: %d complete lines in the middle", i, n)
		}
		if i > 0 && lines != prevLines {
			newLines++
			// Compare what survives of the previous block start: the window
			// start may have moved, so compare the block start's text.
			if !strings.HasSuffix(prevBefore, before) && !strings.HasSuffix(before, prevBefore) || len(before) > len(prevBefore) {
				moves++
			}
		}
		prevBefore, prevLines = before, lines
	}
	if newLines < 50 {
		t.Fatalf("only %d new lines typed", newLines)
	}
	if moves*3 > newLines {
		t.Errorf("block start moved on %d of %d new lines", moves, newLines)
	}
	t.Logf("block start moved on %d of %d new lines", moves, newLines)
	// Short prefixes without a block start keep the cursor line alone.
	if b, m := engine.SplitCursorBlock("x"); b != "" || m != "x" {
		t.Errorf("no newline: %q %q", b, m)
	}
}
