package llama

import (
	"bytes"
	"testing"

	"github.com/code4me/code4me/engine"
)

func TestTokenizeRoundTrip(t *testing.T) {
	m := loadTiny(t)
	for _, text := range []string{
		"",
		"func main() {\n\tfmt.Println(\"hello, world\")\n}\n",
		"x := 1 + 2 // comment",
		"héllo wörld – ünïcode ✓ 日本語",
		"    indented\n\n\ttabs",
	} {
		toks, err := m.Tokenize(text, false, false)
		if err != nil {
			t.Fatalf("Tokenize(%q): %v", text, err)
		}
		if text != "" && len(toks) == 0 {
			t.Fatalf("Tokenize(%q) = no tokens", text)
		}
		var pieces []byte
		for _, tok := range toks {
			pieces = append(pieces, m.Piece(tok, false)...)
		}
		if string(pieces) != text {
			t.Errorf("pieces of %q = %q", text, pieces)
		}
		got, err := m.Detokenize(toks, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if got != text {
			t.Errorf("Detokenize(Tokenize(%q)) = %q", text, got)
		}
	}
}

func TestTokenizeLongText(t *testing.T) {
	m := loadTiny(t)
	text := string(bytes.Repeat([]byte("for i := range n { sum += i }\n"), 2000))
	toks, err := m.Tokenize(text, false, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Detokenize(toks, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if got != text {
		t.Error("long text does not round-trip")
	}
}

func TestSpecialTokens(t *testing.T) {
	m := loadTiny(t)
	sp := m.Special()
	t.Logf("special: %+v", sp)
	for name, tok := range map[string]engine.Token{
		"<|fim_prefix|>": sp.FIMPre,
		"<|fim_suffix|>": sp.FIMSuf,
		"<|fim_middle|>": sp.FIMMid,
		"<|fim_pad|>":    sp.FIMPad,
		"<|repo_name|>":  sp.FIMRep,
		"<|file_sep|>":   sp.FIMSep,
	} {
		if tok == engine.NoToken {
			t.Errorf("%s: NoToken", name)
			continue
		}
		got, err := m.Tokenize(name, false, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != tok {
			t.Errorf("Tokenize(%s, parseSpecial) = %v, want [%d]", name, got, tok)
		}
		plain, err := m.Tokenize(name, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) < 2 {
			t.Errorf("Tokenize(%s) without parseSpecial = %v, want plain-text tokens", name, plain)
		}
		if p := string(m.Piece(tok, true)); p != name {
			t.Errorf("Piece(%d, special) = %q, want %q", tok, p, name)
		}
		if p := m.Piece(tok, false); len(p) != 0 {
			t.Errorf("Piece(%d, !special) = %q, want empty", tok, p)
		}
	}
	if sp.EOS == engine.NoToken {
		t.Fatal("no EOS")
	}
	if !m.IsEOG(sp.EOS) {
		t.Errorf("IsEOG(EOS %d) = false", sp.EOS)
	}
	toks, _ := m.Tokenize("abc", false, false)
	if m.IsEOG(toks[0]) {
		t.Errorf("IsEOG(%d) = true for a text token", toks[0])
	}
	if m.IsEOG(-5) || m.Piece(-5, true) != nil || m.Piece(engine.Token(m.Info().NVocab), true) != nil {
		t.Error("out-of-range token not rejected")
	}
	if _, err := m.Detokenize([]engine.Token{engine.Token(m.Info().NVocab)}, false, false); err == nil {
		t.Error("Detokenize accepted an out-of-range token")
	}
}

func TestFIMPromptTokenizes(t *testing.T) {
	m := loadTiny(t)
	sp := m.Special()
	toks, err := m.Tokenize("<|fim_prefix|>func add(a, b int) int {\n\treturn <|fim_suffix|>\n}\n<|fim_middle|>", true, true)
	if err != nil {
		t.Fatal(err)
	}
	count := map[engine.Token]int{}
	for _, tok := range toks {
		count[tok]++
	}
	for _, want := range []engine.Token{sp.FIMPre, sp.FIMSuf, sp.FIMMid} {
		if count[want] != 1 {
			t.Errorf("token %d appears %d times in %v", want, count[want], toks)
		}
	}
	if toks[len(toks)-1] != sp.FIMMid {
		t.Errorf("last token %d, want FIM middle %d", toks[len(toks)-1], sp.FIMMid)
	}
}
