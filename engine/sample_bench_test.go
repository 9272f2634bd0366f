package engine

import (
	"math"
	"testing"
)

func BenchmarkLogProb151k(b *testing.B) {
	l := make([]float32, 151936)
	for i := range l {
		l[i] = float32(i%1000) / 100
	}
	for b.Loop() {
		LogProb(l, 5)
	}
}

func BenchmarkLogProbMathExp151k(b *testing.B) {
	l := make([]float32, 151936)
	for i := range l {
		l[i] = float32(i%1000) / 100
	}
	for b.Loop() {
		var s float64
		for _, v := range l {
			s += math.Exp(float64(v) - 10)
		}
		_ = s
	}
}
