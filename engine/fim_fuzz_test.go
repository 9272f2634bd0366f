package engine_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

var fuzzFamilies = []engine.Family{engine.FamilyQwen, engine.FamilyStarCoder, engine.FamilyDeepSeek,
	engine.FamilyCodeLlama, engine.FamilyCodestral, engine.FamilyGeneric}

// FuzzBuildPrompt lays out random editor windows for every family within
// random budgets, on the byte-level tokenizer of enginetest (one token a
// byte, so the token counts below are byte counts). Properties:
//   - the prompt fits the budget, or the error is ErrPromptTooLong and the
//     markers alone do not fit;
//   - each marker appears exactly once (BOS first, when the model adds it):
//     user text never becomes a control token;
//   - an untruncated prompt is the prompt of an unlimited budget, and a
//     truncated one differs from it;
//   - the suffix section is a start of the suffix, the middle section an end
//     of the middle block, the prefix section an end of the text before it:
//     the prefix's end and the suffix's start are what is kept;
//   - with no extra context and no file comment in the prefix section, the
//     middle keeps min(its length, half the room) tokens and the suffix
//     keeps its first min(its length, max(room/4, room-prefix)) tokens, cut
//     after the last newline among them: nothing beyond what the budget
//     forces is dropped.
//
// extra holds chunks separated by '|'; flags: 1 keep the cursor line, 2 no
// repository tokens, 4 BOS, 8 a repository name, 16 no middle token
// (suffix-first layouts only).
func FuzzBuildPrompt(f *testing.F) {
	f.Add("a\nb", "c\n", "", "main.go", "", uint8(0), uint16(1000), uint8(8))
	f.Add("a\nb", "c\n", "", "main.go", "func u(){}|pass\n", uint8(1), uint16(1000), uint8(8))
	f.Add("line1\nline2\nline3\ncur", "s1\ns2\ns3\n", "", "", "", uint8(0), uint16(20), uint8(0))
	f.Add("x\ny\nz", "tail\nmore", "mid", "", "", uint8(4), uint16(9), uint8(16))
	f.Add("<|fim_middle|>\n", "<|endoftext|>", "", "", "", uint8(2), uint16(100), uint8(6))
	f.Add(strings.Repeat("p.....\n", 40)+"cur", strings.Repeat("s.....\n", 40), "", "a.py", "x = 1\n|y = 2\n", uint8(3), uint16(200), uint8(2))
	f.Add("no newline at all", "neither here", "", "", "", uint8(5), uint16(12), uint8(1))
	f.Add("", "", "", "", "", uint8(0), uint16(3), uint8(4))
	f.Fuzz(func(t *testing.T, prefix, suffix, middle, path, extra string, famIdx uint8, budget16 uint16, flags uint8) {
		if len(prefix)+len(suffix)+len(middle)+len(path)+len(extra) > 8192 {
			return
		}
		m := enginetest.NewModel(enginetest.Options{})
		fam := fuzzFamilies[int(famIdx)%len(fuzzFamilies)]
		sp := m.Special()
		if flags&2 != 0 {
			sp.FIMRep, sp.FIMSep = engine.NoToken, engine.NoToken
		}
		sp.AddBOS = flags&4 != 0
		if flags&16 != 0 && fam == engine.FamilyCodestral {
			sp.FIMMid = engine.NoToken
		}
		req := &engine.Request{Prefix: prefix, Suffix: suffix, Middle: middle, FilePath: path, KeepCursorLine: flags&1 != 0}
		if flags&8 != 0 {
			req.RepoName = "repo"
		}
		if extra != "" {
			for i, text := range strings.Split(extra, "|") {
				req.Extra = append(req.Extra, engine.Chunk{Path: string(rune('a'+i%26)) + ".go", Text: text})
			}
		}
		budget := int(budget16) % 4096

		full, err := engine.BuildPrompt(m, sp, fam, req, 1<<30, engine.PromptSplit{})
		if err != nil {
			t.Fatalf("unlimited budget: %v", err)
		}
		p, err := engine.BuildPrompt(m, sp, fam, req, budget, engine.PromptSplit{})

		// The parts as the layout should see them.
		before, mid := prefix, middle
		if middle == "" && !req.KeepCursorLine && fam != engine.FamilyCodestral {
			before, mid = engine.SplitCursorBlock(prefix)
			if before+mid != prefix || (before != "" && !strings.HasSuffix(before, "\n")) || strings.Count(mid, "\n") > 32 {
				t.Fatalf("SplitCursorBlock(%q) = %q, %q", prefix, before, mid)
			}
		}
		repoTokens := (fam == engine.FamilyQwen || fam == engine.FamilyStarCoder) && sp.FIMRep != engine.NoToken
		// head is what the prefix section starts with before the prefix
		// itself, when that is known: the path line of StarCoder2, nothing
		// for Qwen; for the others a comment naming the file and the extra
		// chunks, known only when both are absent.
		head, known := "", true
		switch {
		case fam == engine.FamilyStarCoder && repoTokens:
			head = path + "\n"
		case !repoTokens:
			known = path == "" && len(req.Extra) == 0
		}
		local := len(before) + len(mid) + len(suffix)
		fixed := len(full.Tokens) - local // markers, head, extras

		if err != nil {
			if !errors.Is(err, engine.ErrPromptTooLong) {
				t.Fatalf("budget %d: %v", budget, err)
			}
			if known && len(req.Extra) == 0 && budget > fixed {
				t.Fatalf("budget %d refused, but the %d fixed tokens fit", budget, fixed)
			}
			return
		}
		if len(p.Tokens) > budget {
			t.Fatalf("%d tokens for a budget of %d", len(p.Tokens), budget)
		}
		if same := slices.Equal(p.Tokens, full.Tokens); same == p.Truncated {
			t.Fatalf("truncated %v, but the prompt equals the unlimited one: %v", p.Truncated, same)
		}

		nMid := 1
		if sp.FIMMid == engine.NoToken || fam == engine.FamilyCodestral {
			nMid = 0
		}
		for tok, want := range map[engine.Token]int{enginetest.FIMPre: 1, enginetest.FIMSuf: 1, enginetest.FIMMid: nMid, enginetest.EOS: 0} {
			if n := count(p.Tokens, tok); n != want {
				t.Fatalf("token %d appears %d times, want %d", tok, n, want)
			}
		}
		if n := count(p.Tokens, enginetest.BOS); n != btoi(sp.AddBOS) || (n == 1 && p.Tokens[0] != enginetest.BOS) {
			t.Fatalf("BOS appears %d times (first token %d), AddBOS %v", n, p.Tokens[0], sp.AddBOS)
		}

		iPre, iSuf := slices.Index(p.Tokens, enginetest.FIMPre), slices.Index(p.Tokens, enginetest.FIMSuf)
		var preSec, sufSec, midSec string
		if fam == engine.FamilyCodestral {
			if iSuf > iPre {
				t.Fatalf("suffix-first layout has the suffix after the prefix")
			}
			sufSec = m.Detokenize(p.Tokens[iSuf+1 : iPre])
			preSec = m.Detokenize(p.Tokens[iPre+1:]) // prefix, then middle
		} else {
			iMid := slices.Index(p.Tokens, enginetest.FIMMid)
			if !(iPre < iSuf && iSuf < iMid) {
				t.Fatalf("markers out of order: prefix %d, suffix %d, middle %d", iPre, iSuf, iMid)
			}
			preSec = m.Detokenize(p.Tokens[iPre+1 : iSuf])
			sufSec = m.Detokenize(p.Tokens[iSuf+1 : iMid])
			midSec = m.Detokenize(p.Tokens[iMid+1:])
		}
		if !strings.HasPrefix(suffix, sufSec) {
			t.Fatalf("suffix section %q is not a start of the suffix %q", sufSec, suffix)
		}
		if !known {
			return
		}
		if !strings.HasPrefix(preSec, head) {
			t.Fatalf("prefix section %q does not start with %q", preSec, head)
		}
		preSec = preSec[len(head):]
		if len(req.Extra) > 0 { // a layout with repository tokens
			if !strings.HasSuffix(mid, midSec) || !strings.HasSuffix(before, preSec) {
				t.Fatalf("prefix section %q, middle %q: not ends of %q, %q", preSec, midSec, before, mid)
			}
			return
		}
		// With no extras, fixed is the markers and the head alone.
		avail := budget - fixed
		wantMid := len(mid)
		if p.Truncated {
			wantMid = min(len(mid), avail/2)
		}
		if fam == engine.FamilyCodestral {
			// The middle follows the prefix in the same section.
			if len(preSec) < wantMid {
				t.Fatalf("prefix section %q is shorter than the %d middle tokens", preSec, wantMid)
			}
			midSec, preSec = preSec[len(preSec)-wantMid:], preSec[:len(preSec)-wantMid]
		}
		if len(midSec) != wantMid || !strings.HasSuffix(mid, midSec) {
			t.Fatalf("middle keeps %q of %q, want its last %d tokens (room %d)", midSec, mid, wantMid, avail)
		}
		if !strings.HasSuffix(before, preSec) {
			t.Fatalf("prefix section %q is not an end of %q", preSec, before)
		}
		if !p.Truncated {
			return
		}
		a := avail - len(midSec)
		nSuf := min(len(suffix), max(a/4, a-len(before)))
		wantSuf := suffix[:nSuf]
		if i := strings.LastIndexByte(wantSuf, '\n'); i >= 0 && nSuf < len(suffix) {
			wantSuf = wantSuf[:i+1]
		}
		if sufSec != wantSuf {
			t.Fatalf("suffix keeps %q, want %q (room %d, prefix %d tokens)", sufSec, wantSuf, a, len(before))
		}
		if len(preSec) > a-len(sufSec) {
			t.Fatalf("prefix keeps %d tokens, room for %d", len(preSec), a-len(sufSec))
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
