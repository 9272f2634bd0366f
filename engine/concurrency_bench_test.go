package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/llama"
	"github.com/code4me/code4me/engine/synth"
)

// BenchmarkConcurrentComplete measures aggregate generated tokens/s of n
// goroutines calling Engine.Complete in a closed loop with short prompts,
// on the synthetic model CODE4ME_BENCH_SHAPE (default tiny) with
// CODE4ME_BENCH_THREADS threads (default 1). Compare the sub-benchmarks'
// tok/s: it isolates the scheduler and llama.cpp from the typing
// workload of `code4me bench engine`.
func BenchmarkConcurrentComplete(b *testing.B) {
	shape := os.Getenv("CODE4ME_BENCH_SHAPE")
	if shape == "" {
		shape = "tiny"
	}
	threads := 1
	if v := os.Getenv("CODE4ME_BENCH_THREADS"); v != "" {
		fmt.Sscan(v, &threads)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	path, err := synth.Ensure(ctx, filepath.Join(dir, "code4me-test-models"), shape, "q8_0")
	if err != nil {
		b.Fatal(err)
	}
	be, err := llama.New(llama.Config{})
	if err != nil {
		b.Fatal(err)
	}
	e := engine.New(be, nil)
	defer e.Close()
	if _, err := e.Load(engine.ModelSpec{Name: "m", Path: path, Load: engine.LoadOptions{UseMmap: os.Getenv("CODE4ME_BENCH_MMAP") != "0"},
		Sched: engine.Config{NParallel: 8, NCtx: 4096 * 8, NThreads: threads}}, nil); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			var mu sync.Mutex
			gen := 0
			for b.Loop() {
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						r, err := e.Complete(ctx, "m", engine.Request{
							Prefix: fmt.Sprintf("func f%d() {\n\tx := %d", i, b.N), Suffix: "\n}\n",
							FilePath: "x.go", RepoName: "bench", MaxTokens: 16, CachePrompt: true,
						})
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						gen += r.Timings.GeneratedTokens
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(gen)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
