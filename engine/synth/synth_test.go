package synth

import (
	"context"
	"crypto/sha256"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/code4me/code4me/engine/bpe"
	"github.com/code4me/code4me/engine/gguf"
)

// cacheDir is shared by the tests so the tiny vocabulary is trained once.
var cacheDir = filepath.Join(os.TempDir(), "code4me-synth-test-bpe")

func writeTiny(t *testing.T, name string, opts Options) (string, *gguf.File) {
	t.Helper()
	s, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = cacheDir
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(context.Background(), path, s, opts); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, f
}

func TestTinyMetadata(t *testing.T) {
	s, _ := Lookup("tiny")
	_, f := writeTiny(t, "tiny", Options{Seed: 1, Type: "q8_0"})

	str := func(k string) string { v, _ := f.String(k); return v }
	u32 := func(k string) uint32 {
		v, ok := f.Uint32(k)
		if !ok {
			t.Errorf("%s missing or not uint32", k)
		}
		return v
	}
	if str("general.architecture") != "qwen2" || str("general.name") != "synthetic tiny" {
		t.Errorf("architecture %q, name %q", str("general.architecture"), str("general.name"))
	}
	if v, ok := f.Bool(KeySynthetic); !ok || !v {
		t.Error("general.synthetic is not true")
	}
	for k, want := range map[string]uint32{
		"qwen2.block_count": 2, "qwen2.embedding_length": 64, "qwen2.feed_forward_length": 128,
		"qwen2.attention.head_count": 4, "qwen2.attention.head_count_kv": 2, "qwen2.context_length": 4096,
		"general.file_type": gguf.FileTypeMostlyQ80,
	} {
		if got := u32(k); got != want {
			t.Errorf("%s = %d, want %d", k, got, want)
		}
	}
	if v, _ := f.Float32("qwen2.rope.freq_base"); v != 1e6 {
		t.Errorf("rope.freq_base = %v", v)
	}
	if str("tokenizer.ggml.model") != "gpt2" || str("tokenizer.ggml.pre") != "qwen2" {
		t.Error("tokenizer model/pre wrong")
	}
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	if len(tokens) != s.NVocab {
		t.Fatalf("%d tokens, want %d", len(tokens), s.NVocab)
	}
	kv, _ := f.Get("tokenizer.ggml.token_type")
	types, _ := kv.Value.([]int32)
	if len(types) != len(tokens) {
		t.Fatalf("%d token types for %d tokens", len(types), len(tokens))
	}
	for key, text := range map[string]string{
		"tokenizer.ggml.fim_pre_token_id": bpe.FIMPrefix, "tokenizer.ggml.fim_suf_token_id": bpe.FIMSuffix,
		"tokenizer.ggml.fim_mid_token_id": bpe.FIMMiddle, "tokenizer.ggml.fim_pad_token_id": bpe.FIMPad,
		"tokenizer.ggml.fim_rep_token_id": bpe.RepoName, "tokenizer.ggml.fim_sep_token_id": bpe.FileSep,
		"tokenizer.ggml.eos_token_id": bpe.EndOfText, "tokenizer.ggml.eot_token_id": bpe.IMEnd,
	} {
		id := u32(key)
		if tokens[id] != text || types[id] != int32(bpe.TokenControl) {
			t.Errorf("%s = %d (%q type %d), want %q CONTROL", key, id, tokens[id], types[id], text)
		}
	}
	merges, _ := f.Strings("tokenizer.ggml.merges")
	if len(merges) < s.BPEVocab-256 {
		t.Errorf("%d merges", len(merges))
	}
	if str("tokenizer.chat_template") == "" {
		t.Error("no chat template")
	}

	if f.ParamCount() != uint64(s.ParamCount()) {
		t.Errorf("file has %d params, shape says %d", f.ParamCount(), s.ParamCount())
	}
	for name, want := range map[string][]uint64{
		"token_embd.weight": {64, 4096}, "output.weight": {64, 4096}, "blk.1.attn_k.weight": {64, 32},
		"blk.0.attn_q.bias": {64}, "blk.0.ffn_down.weight": {128, 64}, "output_norm.weight": {64},
	} {
		ti, ok := f.Tensor(name)
		if !ok {
			t.Errorf("tensor %s missing", name)
			continue
		}
		if !equalDims(ti.Dims, want) {
			t.Errorf("%s dims %v, want %v", name, ti.Dims, want)
		}
		wantType := gguf.TensorQ8_0
		if len(want) == 1 {
			wantType = gguf.TensorF32
		}
		if ti.Type != wantType {
			t.Errorf("%s type %s, want %s", name, ti.Type, wantType)
		}
	}
}

func equalDims(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func TestWriteDeterministic(t *testing.T) {
	a, _ := writeTiny(t, "tiny", Options{Seed: 7})
	b, _ := writeTiny(t, "tiny", Options{Seed: 7})
	c, _ := writeTiny(t, "tiny", Options{Seed: 8})
	if fileHash(t, a) != fileHash(t, b) {
		t.Fatal("same seed gave different files")
	}
	if fileHash(t, a) == fileHash(t, c) {
		t.Fatal("different seeds gave the same file")
	}
}

// readTensor decodes a whole tensor to float32.
func readTensor(t *testing.T, path string, f *gguf.File, name string) []float32 {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	raw, err := f.ReadTensor(fh, ti)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, ti.Elements())
	if err := gguf.Decode(ti.Type, out, raw); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWeightsAcrossTypes(t *testing.T) {
	p32, f32 := writeTiny(t, "tiny-llama", Options{Seed: 3, Type: "f32"})
	p16, f16 := writeTiny(t, "tiny-llama", Options{Seed: 3, Type: "f16"})
	p8, f8 := writeTiny(t, "tiny-llama", Options{Seed: 3, Type: "q8_0"})
	if a, _ := f16.String("general.architecture"); a != "llama" {
		t.Fatalf("architecture %q", a)
	}
	for _, name := range []string{"token_embd.weight", "blk.0.ffn_down.weight", "output.weight"} {
		w := readTensor(t, p32, f32, name)
		h := readTensor(t, p16, f16, name)
		q := readTensor(t, p8, f8, name)
		var sum, sq, maxAbs float64
		for _, v := range w {
			maxAbs = max(maxAbs, math.Abs(float64(v)))
		}
		for i, v := range w {
			sum += float64(v)
			sq += float64(v) * float64(v)
			if math.Abs(float64(h[i]-v)) > 1e-3*math.Abs(float64(v))+1e-7 {
				t.Fatalf("%s[%d]: f16 %v vs f32 %v", name, i, h[i], v)
			}
			if math.Abs(float64(q[i]-v)) > maxAbs/127 {
				t.Fatalf("%s[%d]: q8_0 %v vs f32 %v", name, i, q[i], v)
			}
		}
		n := float64(len(w))
		std := math.Sqrt(sq/n - (sum/n)*(sum/n))
		ti, _ := f32.Tensor(name)
		s, _ := Lookup("tiny-llama")
		want := matrixStd(s, name, ti.Dims[0])
		if math.Abs(std-want) > 0.05*want || math.Abs(sum/n) > 0.05*want {
			t.Errorf("%s: mean %.4f std %.4f, want mean 0 std %.4f", name, sum/n, std, want)
		}
	}
	for _, v := range readTensor(t, p16, f16, "blk.1.attn_norm.weight") {
		if v != 1 {
			t.Fatalf("norm weight %v, want 1", v)
		}
	}
	var neg int
	for _, v := range readTensor(t, p16, f16, "output_norm.weight") {
		if v != 1 && v != -1 {
			t.Fatalf("output norm weight %v, want ±1", v)
		}
		if v < 0 {
			neg++
		}
	}
	if neg < 16 || neg > 48 {
		t.Errorf("%d of 64 output norm weights negative", neg)
	}
}

func TestRealShapes(t *testing.T) {
	// Parameter counts of the published Qwen2.5-Coder models.
	for name, want := range map[string]int64{
		"qwen2.5-coder-0.5b": 494_032_768,
		"qwen2.5-coder-1.5b": 1_543_714_304,
	} {
		s, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := s.ParamCount(); got != want {
			t.Errorf("%s: %d params, want %d", name, got, want)
		}
	}
	for _, s := range Shapes() {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	if _, err := Lookup("no-such-shape"); err == nil {
		t.Error("unknown shape accepted")
	}
	bad, _ := Lookup("tiny")
	bad.NHead = 3
	if bad.Validate() == nil {
		t.Error("64 embedding with 3 heads accepted")
	}
}

func TestEnsureReuses(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p1, err := Ensure(ctx, dir, "tiny", "q8_0")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p1) != FileName("tiny", "q8_0", DefaultSeed) {
		t.Fatalf("path %s", p1)
	}
	st1, _ := os.Stat(p1)
	p2, err := Ensure(ctx, dir, "tiny", "q8_0")
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(p2)
	if p1 != p2 || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("Ensure rewrote a cached model")
	}
	// A truncated file is replaced.
	if err := os.Truncate(p1, st1.Size()/2); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, dir, "tiny", "q8_0"); err != nil {
		t.Fatal(err)
	}
	if st3, _ := os.Stat(p1); st3.Size() != st1.Size() {
		t.Fatalf("truncated model not rewritten: %d bytes", st3.Size())
	}
	if _, err := Ensure(ctx, dir, "tiny", "q4_k"); err == nil {
		t.Fatal("unsupported type accepted")
	}
}

func TestWriteCancelled(t *testing.T) {
	s, _ := Lookup("tiny")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(ctx, path, s, Options{CacheDir: cacheDir}); err == nil {
		t.Fatal("cancelled write succeeded")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("cancelled write left a file")
	}
}
