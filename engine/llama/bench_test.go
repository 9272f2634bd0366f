package llama

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/synth"
)

// benchModel loads the synthetic model named by CODE4ME_BENCH_SHAPE (default
// "tiny") and CODE4ME_BENCH_TYPE (default "q8_0"). Speed on a synthetic
// model of a real shape is the speed of the real model. Shape "amx-test" is
// amxShape (Q8_0 only), whose matmuls all run on ggml's AMX kernels where
// the CPU has them. CODE4ME_BENCH_NO_EXTRA_BUFTS=1 loads the weights
// without the CPU backend's extra buffer types (no AMX).
func benchModel(b *testing.B) *Model {
	b.Helper()
	shape := os.Getenv("CODE4ME_BENCH_SHAPE")
	if shape == "" {
		shape = "tiny"
	}
	typ := os.Getenv("CODE4ME_BENCH_TYPE")
	if typ == "" {
		typ = "q8_0"
	}
	var path string
	if shape == amxShape.Name {
		path = amxModelPath(b)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		var err error
		path, err = synth.Ensure(ctx, modelDir(b), shape, typ)
		if err != nil {
			b.Fatal(err)
		}
	}
	noExtraBufts.Store(os.Getenv("CODE4ME_BENCH_NO_EXTRA_BUFTS") == "1")
	defer noExtraBufts.Store(false)
	be, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	m, err := be.LoadModel(path, engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	b.Logf("model %s, extra buffer types %v, %s", m.Info().Description, !noExtraBufts.Load(), SystemInfo())
	return m
}

func benchTokens(b *testing.B, m *Model, n int) []engine.Token {
	b.Helper()
	toks, err := m.Tokenize(prompt, false, false)
	if err != nil {
		b.Fatal(err)
	}
	for len(toks) < n {
		toks = append(toks, toks...)
	}
	return toks[:n]
}

// BenchmarkPrefill decodes a 512-token prompt in one batch; the metric is
// prompt tokens per second.
func BenchmarkPrefill(b *testing.B) {
	m := benchModel(b)
	const n = 512
	c, err := m.NewLlamaContext(engine.ContextParams{NCtx: 1024, NBatch: n})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	toks := benchTokens(b, m, n)
	var batch engine.Batch
	for i, t := range toks {
		batch.Add(t, int32(i), 0, i == n-1)
	}
	b.ResetTimer()
	for b.Loop() {
		c.Clear()
		if err := c.Decode(&batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
}

// BenchmarkDecode generates one token at a time after a 256-token prompt;
// the metric is generated tokens per second.
func BenchmarkDecode(b *testing.B) {
	m := benchModel(b)
	c, err := m.NewLlamaContext(engine.ContextParams{NCtx: 4096, NBatch: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	toks := benchTokens(b, m, 256)
	var batch engine.Batch
	for i, t := range toks {
		batch.Add(t, int32(i), 0, i == len(toks)-1)
	}
	if err := c.Decode(&batch); err != nil {
		b.Fatal(err)
	}
	pos := int32(len(toks))
	tok := toks[0]
	b.ResetTimer()
	for b.Loop() {
		if int(pos) >= c.NCtx() {
			c.SeqRm(0, int32(len(toks)), -1)
			pos = int32(len(toks))
		}
		batch.Reset()
		batch.Add(tok, pos, 0, true)
		pos++
		if err := c.Decode(&batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

// BenchmarkDecodeSeqs decodes one token for each of n sequences per Decode
// call, after a 64-token prompt per sequence (each sequence its own KV
// cells); the metric is the aggregate of generated tokens per second over
// all sequences.
func BenchmarkDecodeSeqs(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("seqs=%d", n), func(b *testing.B) {
			m := benchModel(b)
			// CODE4ME_BENCH_PROMPT sets the tokens already in each sequence
			// (the typing workload's prompts are about 1,000).
			prompt := 64
			if v, err := strconv.Atoi(os.Getenv("CODE4ME_BENCH_PROMPT")); err == nil && v > 0 {
				prompt = v
			}
			perSeq := max(1024, (prompt+256+255)&^255)
			c, err := m.NewLlamaContext(engine.ContextParams{NCtx: perSeq * n, NBatch: min(prompt*n, 2048), NSeqMax: n,
				FlashAttn: os.Getenv("CODE4ME_BENCH_FLASH_ATTN") == "1", NThreads: benchThreads()})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			toks := benchTokens(b, m, prompt)
			var batch engine.Batch
			for s := range n {
				for i0 := 0; i0 < len(toks); i0 += 512 {
					batch.Reset()
					for i, t := range toks[i0:min(i0+512, len(toks))] {
						batch.Add(t, int32(i0+i), int32(s), i0+i == len(toks)-1)
					}
					if err := c.Decode(&batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			pos := int32(prompt)
			tok := toks[0]
			b.ResetTimer()
			for b.Loop() {
				if int(pos) >= c.NCtx()/n {
					for s := range n {
						c.SeqRm(int32(s), int32(prompt), -1)
					}
					pos = int32(prompt)
				}
				batch.Reset()
				for s := range n {
					batch.Add(tok, pos, int32(s), true)
				}
				pos++
				if err := c.Decode(&batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// benchThreads is CODE4ME_BENCH_THREADS, 0 (all cores) when unset.
func benchThreads() int {
	n, _ := strconv.Atoi(os.Getenv("CODE4ME_BENCH_THREADS"))
	return max(n, 0)
}
