package synth

import (
	"context"
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
