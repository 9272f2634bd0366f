package llama

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/code4me/code4me/engine"
)

// BenchmarkColdPrefill evaluates the same cold prompt (1,300 tokens) through
// the scheduler (one slot, prefix reuse off, one token generated from the
// prompt's logits) and through bare Decode calls of NBatch tokens on a
// context of the same shape; the metric is prompt tokens per second. The
// two sub-benchmarks alternate within each run (-count), so a noisy
// machine affects both alike. CODE4ME_BENCH_THREADS sets the threads;
// CODE4ME_BENCH_SETTINGS=1 adds bare runs with other CPU settings;
// CODE4ME_BENCH_PROMPT sets the prompt's length (at most 4,000 tokens).
func BenchmarkColdPrefill(b *testing.B) {
	const nBatch = 512
	n0 := 1300
	if v, err := strconv.Atoi(os.Getenv("CODE4ME_BENCH_PROMPT")); err == nil && v > 0 {
		n0 = min(v, 4000)
	}
	m := benchModel(b)
	threads, _ := strconv.Atoi(os.Getenv("CODE4ME_BENCH_THREADS"))
	// The prompt text, tokenized as the scheduler tokenizes a raw prompt.
	text := prompt
	var toks []engine.Token
	for len(toks) < n0 {
		text += prompt
		var err error
		if toks, err = m.Tokenize(text, true, true); err != nil {
			b.Fatal(err)
		}
	}
	n := len(toks)
	// raw runs bare Decode calls on a context of p (the scheduler's
	// settings, or one CPU setting changed).
	raw := func(p engine.ContextParams) func(b *testing.B) {
		return func(b *testing.B) {
			c, err := m.NewLlamaContext(p)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var batch engine.Batch
			for b.Loop() {
				c.Clear()
				for at := 0; at < n; at += nBatch {
					batch.Reset()
					end := min(at+nBatch, n)
					for i := at; i < end; i++ {
						batch.Add(toks[i], int32(i), 0, i == n-1)
					}
					if err := c.Decode(&batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
		}
	}
	base := engine.ContextParams{NCtx: 4096, NBatch: nBatch, NSeqMax: 1, NThreads: threads}
	b.Run("raw", raw(base))
	// The CPU settings the scheduler could use instead of its defaults
	// (CODE4ME_BENCH_SETTINGS=1): flash attention, smaller micro-batches,
	// and one thread.
	if os.Getenv("CODE4ME_BENCH_SETTINGS") != "" {
		flash := base
		flash.FlashAttn = true
		b.Run("raw-flash-attn", raw(flash))
		for _, u := range []int{128, 256} {
			ub := base
			ub.NUbatch = u
			b.Run("raw-ubatch-"+strconv.Itoa(u), raw(ub))
		}
		one := base
		one.NThreads = 1
		b.Run("raw-threads-1", raw(one))
	}
	b.Run("scheduler", func(b *testing.B) {
		s, err := engine.NewScheduler("bench", m, engine.Config{NParallel: 1, NCtx: 4096, NBatch: nBatch, NThreads: threads})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		got := 0
		for b.Loop() {
			res, err := s.Complete(context.Background(), engine.Request{Raw: true, Prefix: text, MaxTokens: 1})
			if err != nil || res.Err != nil {
				b.Fatal(err, res.Err)
			}
			got += res.Timings.EvaluatedTokens
		}
		b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "tok/s")
	})
}
