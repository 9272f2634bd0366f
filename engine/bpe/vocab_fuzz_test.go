package bpe

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fuzzVocab is a small vocabulary trained on the fallback corpus, with
// Qwen's special tokens: trained once per process.
var fuzzVocab = sync.OnceValues(func() (*Vocab, error) {
	v, err := Train(context.Background(), FallbackCorpus(64<<10), 1000)
	if err != nil {
		return nil, err
	}
	if _, err := v.AddSpecial(QwenSpecials...); err != nil {
		return nil, err
	}
	return v, nil
})

// FuzzEncode tokenizes arbitrary text (any bytes, special-token texts
// included). Properties:
//   - the pre-tokens are non-empty, add up to the text, and each is one
//     pre-token on its own;
//   - Encode decodes back to the text, uses no more tokens than the text
//     has bytes, and never yields a control token: text typed by a user
//     cannot become <|fim_middle|>;
//   - EncodeSpecial decodes back to the text with special tokens written
//     out, and yields exactly one control token per special-token text in
//     it.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "package main\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n", "don't STOP'LL",
		"héllo 世界 123", "x\r\n\r\n  y", "end   ", "\xff\xfe bad \xc3", FIMPrefix + "a" + FIMSuffix + "b" + FIMMiddle,
		"<|fim_pre<|fim_prefix|>", "<|endoftext|><|endoftext|>", "\u00a0\u2028\t \u3000x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 4096 {
			return
		}
		v, err := fuzzVocab()
		if err != nil {
			t.Fatal(err)
		}
		pieces := Split(text)
		if strings.Join(pieces, "") != text {
			t.Fatalf("pre-tokens %q do not add up to %q", pieces, text)
		}
		for _, p := range pieces {
			if p == "" {
				t.Fatalf("empty pre-token in %q", pieces)
			}
			if again := Split(p); len(again) != 1 {
				t.Fatalf("pre-token %q of %q splits again into %q", p, text, again)
			}
		}

		ids := v.Encode(text)
		if len(ids) > len(text) {
			t.Fatalf("%d tokens for %d bytes", len(ids), len(text))
		}
		for _, id := range ids {
			if v.Types[id] == TokenControl {
				t.Fatalf("Encode(%q) yields control token %q", text, v.Tokens[id])
			}
		}
		if got, err := v.Decode(ids, false); err != nil || got != text {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", text, got, err)
		}

		sids := v.EncodeSpecial(text)
		if got, err := v.Decode(sids, true); err != nil || got != text {
			t.Fatalf("Decode(EncodeSpecial(%q), special) = %q, %v", text, got, err)
		}
		specials := 0
		for _, id := range sids {
			if v.Types[id] == TokenControl {
				specials++
			}
		}
		if want := countSpecials(text); specials != want {
			t.Fatalf("EncodeSpecial(%q) yields %d control tokens, want %d", text, specials, want)
		}
	})
}

// countSpecials counts the special-token texts in s, scanning left to
// right (no two of Qwen's overlap: each starts with "<|" and ends with
// "|>", which no other one holds inside).
func countSpecials(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		for _, sp := range QwenSpecials {
			if strings.HasPrefix(s[i:], sp) {
				n++
				i += len(sp) - 1
				break
			}
		}
	}
	return n
}

// FuzzParseMerges reads arbitrary text as a cached merge list. Properties:
// it is refused with an error, or gives a vocabulary whose tokens are the
// 256 bytes followed by one token per distinct merge result, each the
// concatenation of its merge's two sides, that decodes every one of its
// ids and round-trips text through Encode and Decode.
func FuzzParseMerges(f *testing.F) {
	f.Add("Ġ t\nĠ a\nĠt he\ne r\n", "the ther")
	f.Add("a b\na b\nab c\n", "abcab")
	f.Add("a\nb c\n", "x")
	f.Add("a z\nq ab\n", "qab")
	f.Add("Ċ Ċ\nĉ ĉ\nĠ Ġ\nĠĠ ĠĠ\n", "\n\n\t\t    x")
	f.Add(" \n\n", "")
	f.Fuzz(func(t *testing.T, merges, text string) {
		if len(merges) > 4096 || len(text) > 1024 {
			return
		}
		v, err := parseMerges([]byte("#bpe merges v1\n" + merges))
		if err != nil {
			return
		}
		if len(v.Tokens) < 256 || len(v.Tokens) > 256+len(v.Merges) || len(v.Tokens) != len(v.Types) {
			t.Fatalf("%d tokens (%d types) from %d merges", len(v.Tokens), len(v.Types), len(v.Merges))
		}
		results := map[string]bool{}
		for _, m := range v.Merges {
			a, b, _ := strings.Cut(m, " ")
			if id, ok := v.ID(a + b); !ok || v.Tokens[id] != a+b {
				t.Fatalf("merge %q: no token %q", m, a+b)
			}
			results[a+b] = true
		}
		for id, tok := range v.Tokens[256:] {
			if !results[tok] {
				t.Fatalf("token %d %q is no merge's result", 256+id, tok)
			}
		}
		all := make([]int, len(v.Tokens))
		for i := range all {
			all[i] = i
		}
		if _, err := v.Decode(all, false); err != nil {
			t.Fatal(err)
		}
		ids := v.Encode(text)
		if got, err := v.Decode(ids, false); err != nil || got != text {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", text, got, err)
		}
		if slices.ContainsFunc(ids, func(id int) bool { return id < 0 || id >= len(v.Tokens) }) {
			t.Fatalf("Encode(%q) = %v: ids out of range", text, ids)
		}
	})
}
