package synth

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/code4me/code4me/engine/gguf"
)

// BenchmarkRandomSourceQ8_0 measures weight generation for one 896x4864
// feed-forward matrix of the 0.5B shape, quantised to Q8_0.
func BenchmarkRandomSourceQ8_0(b *testing.B) {
	dims := []uint64{896, 4864}
	src := randomSource("blk.0.ffn_up.weight", gguf.TensorQ8_0, dims, 1, 0.03)
	n, _ := gguf.TensorBytes(gguf.TensorQ8_0, dims)
	dst := make([]byte, n)
	b.SetBytes(int64(dims[0] * dims[1]))
	for b.Loop() {
		if err := src(context.Background(), dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRandomSourceF16 is the same matrix written as F16.
func BenchmarkRandomSourceF16(b *testing.B) {
	dims := []uint64{896, 4864}
	src := randomSource("blk.0.ffn_up.weight", gguf.TensorF16, dims, 1, 0.03)
	n, _ := gguf.TensorBytes(gguf.TensorF16, dims)
	dst := make([]byte, n)
	b.SetBytes(int64(dims[0] * dims[1]))
	for b.Loop() {
		if err := src(context.Background(), dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteTiny writes the tiny model (its vocabulary cached), the
// file every test package generates on a fresh machine: it should stay
// well under a second.
func BenchmarkWriteTiny(b *testing.B) {
	s, _ := Lookup("tiny")
	opts := Options{Seed: 1, CacheDir: b.TempDir()}
	if _, err := Vocab(context.Background(), s, opts); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "tiny.gguf")
	for b.Loop() {
		if err := Write(context.Background(), path, s, opts); err != nil {
			b.Fatal(err)
		}
	}
}
