package bpe

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode"
)

func TestSplitQwen2(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"func main() {", []string{"func", " main", "()", " {"}},
		{"x := 42\n", []string{"x", " :=", " ", "4", "2", "\n"}},
		{"\tif err != nil {\n\t\treturn err\n\t}\n", []string{"\tif", " err", " !=", " nil", " {\n", "\t", "\treturn", " err", "\n", "\t", "}\n"}},
		{"don't STOP'LL", []string{"don", "'t", " STOP", "'LL"}},
		{"héllo 世界 123", []string{"héllo", " 世界", " ", "1", "2", "3"}},
		{"a  b", []string{"a", " ", " b"}},
		{"end   ", []string{"end", "   "}},
		{"x\r\n\r\n  y", []string{"x", "\r\n\r\n", " ", " y"}},
		{"foo_bar", []string{"foo", "_bar"}},
		{"...\n\n", []string{"...\n\n"}},
		{"", nil},
	}
	for _, c := range cases {
		if got := Split(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Split(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestByteMap(t *testing.T) {
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		r := byteToRune[b]
		if seen[r] || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			t.Fatalf("byte %#x maps to %U: duplicate, space or unprintable", b, r)
		}
		seen[r] = true
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	back, ok := UnicodeToByte(ByteToUnicode(all))
	if !ok || !reflect.DeepEqual(back, all) {
		t.Fatal("byte map does not round-trip")
	}
	if ByteToUnicode([]byte(" \n")) != "ĠĊ" {
		t.Fatalf("space and newline map to %q", ByteToUnicode([]byte(" \n")))
	}
}

func testCorpus(t testing.TB) [][]byte {
	t.Helper()
	docs, err := GoCorpus(filepath.Join(runtime.GOROOT(), "src"), 256<<10)
	if err != nil {
		t.Skipf("no Go source tree: %v", err)
	}
	return docs
}

func TestTrainDeterministic(t *testing.T) {
	docs := testCorpus(t)
	ctx := context.Background()
	a, err := Train(ctx, docs, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// Document order does not matter: pre-tokens are counted, then sorted.
	rev := append([][]byte(nil), docs...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	b, err := Train(ctx, rev, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Merges, b.Merges) || !reflect.DeepEqual(a.Tokens, b.Tokens) {
		t.Fatal("two trainings on the same corpus differ")
	}
	if len(a.Tokens) != 1000 || len(a.Merges) < 1000-256 {
		t.Fatalf("%d tokens, %d merges", len(a.Tokens), len(a.Merges))
	}
	// Go source: the most frequent pairs are indentation and keywords.
	found := false
	for _, tok := range a.Tokens {
		if tok == "Ġerr" || tok == "func" {
			found = true
		}
	}
	if !found {
		t.Error("no ' err' or 'func' token learned from Go source")
	}
	// Rebuilding from the merges gives the same vocabulary.
	c, err := FromMerges(a.Merges)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Tokens, a.Tokens) {
		t.Fatal("FromMerges does not reproduce the tokens")
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	v, err := Train(context.Background(), testCorpus(t), 2000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddSpecial(QwenSpecials...); err != nil {
		t.Fatal(err)
	}
	texts := []string{
		"package main\n\nfunc main() {\n\tfmt.Println(\"hello\")\n}\n",
		"héllo wörld, 世界! Ünïcödé — ∑ 😀 emoji\r\n",
		"  leading and trailing   ",
		"\xff\xfe invalid utf-8 \xc3",
		"",
	}
	for _, s := range texts {
		ids := v.Encode(s)
		got, err := v.Decode(ids, false)
		if err != nil {
			t.Fatal(err)
		}
		if got != s {
			t.Errorf("round trip of %q gave %q", s, got)
		}
		if len(s) > 20 && len(ids) >= len(s) {
			t.Errorf("%q: %d tokens for %d bytes: no compression", s, len(ids), len(s))
		}
	}
	// Code compresses well: common keywords are single tokens.
	if ids := v.Encode("func"); len(ids) != 1 {
		t.Errorf("\"func\" is %d tokens", len(ids))
	}
}

func TestEncodeSpecial(t *testing.T) {
	v, err := Train(context.Background(), testCorpus(t), 1000)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := v.AddSpecial(QwenSpecials...)
	if err != nil {
		t.Fatal(err)
	}
	pre, suf, mid := ids[3], ids[5], ids[4]
	if v.Tokens[pre] != FIMPrefix || v.Tokens[suf] != FIMSuffix || v.Tokens[mid] != FIMMiddle {
		t.Fatal("special ids do not match QwenSpecials order")
	}
	text := FIMPrefix + "func main() {" + FIMSuffix + "}" + FIMMiddle
	got := v.EncodeSpecial(text)
	if got[0] != pre || got[len(got)-1] != mid {
		t.Fatalf("EncodeSpecial = %v", got)
	}
	n := 0
	for _, id := range got {
		if id == suf {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("suffix token appears %d times in %v", n, got)
	}
	if dec, _ := v.Decode(got, true); dec != text {
		t.Fatalf("decode with specials = %q", dec)
	}
	if dec, _ := v.Decode(got, false); dec != "func main() {}" {
		t.Fatalf("decode without specials = %q", dec)
	}
	// Without special parsing the markers are ordinary text.
	plain := v.Encode(text)
	for _, id := range plain {
		if v.Types[id] == TokenControl {
			t.Fatalf("Encode produced control token %d", id)
		}
	}
	if _, err := v.AddSpecial(FIMPrefix); err == nil {
		t.Fatal("duplicate special accepted")
	}
}

func TestPadTo(t *testing.T) {
	v, err := FromMerges(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.PadTo(300); err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) != 300 || v.Tokens[299] != "[PAD299]" || v.Types[299] != TokenUnused {
		t.Fatalf("padding: %d tokens, last %q type %d", len(v.Tokens), v.Tokens[299], v.Types[299])
	}
	if err := v.PadTo(10); err == nil {
		t.Fatal("padding down accepted")
	}
}

func TestTrainCached(t *testing.T) {
	docs := testCorpus(t)
	dir := t.TempDir()
	ctx := context.Background()
	a, err := TrainCached(ctx, dir, docs, 600)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "bpe-600-*.merges"))
	if len(files) != 1 {
		t.Fatalf("cache files: %v", files)
	}
	b, err := TrainCached(ctx, dir, docs, 600)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Tokens, b.Tokens) || !reflect.DeepEqual(a.Merges, b.Merges) {
		t.Fatal("cached vocabulary differs")
	}
	// A corrupt entry is retrained, not trusted.
	if err := os.WriteFile(files[0], []byte("#bpe merges v1\nnot-a-merge\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := TrainCached(ctx, dir, docs, 600)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Merges, c.Merges) {
		t.Fatal("corrupt cache entry was used")
	}
	// A different corpus is a different key.
	if CacheKey(docs, 600) == CacheKey(docs[1:], 600) || CacheKey(docs, 600) == CacheKey(docs, 601) {
		t.Fatal("cache key ignores its inputs")
	}
}

func TestGoCorpusDeterministic(t *testing.T) {
	root := filepath.Join(runtime.GOROOT(), "src")
	a, err := GoCorpus(root, 512<<10)
	if err != nil {
		t.Skip(err)
	}
	b, _ := GoCorpus(root, 512<<10)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("corpus sample differs between calls")
	}
	var n int
	for _, d := range a {
		n += len(d)
		if !strings.Contains(string(d), "package ") {
			t.Fatal("sampled a file that is not Go source")
		}
	}
	if n < 512<<10 || n > 2<<20 {
		t.Fatalf("sample is %d bytes for a 512 KiB budget", n)
	}
	if _, err := GoCorpus(t.TempDir(), 1000); err == nil {
		t.Fatal("empty tree accepted")
	}
}

func BenchmarkTrain8k(b *testing.B) {
	docs, err := GoCorpus(filepath.Join(runtime.GOROOT(), "src"), 4<<20)
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		if _, err := Train(context.Background(), docs, 8192); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFallbackCorpus(t *testing.T) {
	a, b := FallbackCorpus(64<<10), FallbackCorpus(64<<10)
	if !reflect.DeepEqual(a, b) || len(a[0]) < 64<<10 {
		t.Fatal("fallback corpus is not deterministic or too short")
	}
	v, err := Train(context.Background(), FallbackCorpus(1<<20), 4000)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) != 4000 {
		t.Fatalf("%d tokens from the fallback corpus", len(v.Tokens))
	}
}
