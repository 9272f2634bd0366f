package bpe

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"
)

func goCorpus(t testing.TB, n int64) [][]byte {
	t.Helper()
	docs, err := GoCorpus(filepath.Join(runtime.GOROOT(), "src"), n)
	if err != nil {
		t.Skipf("no Go source tree: %v", err)
	}
	return docs
}

func TestTrainTiming(t *testing.T) {
	if os.Getenv("BPE_TIMING") == "" {
		t.Skip()
	}
	for _, sz := range []int64{2 << 20, 4 << 20} {
		docs := goCorpus(t, sz)
		for _, n := range []int{4096, 8192, 32768} {
			start := time.Now()
			v, err := Train(context.Background(), docs, n)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("corpus %d MB, %d docs, vocab %d: %v (%d merges)", sz>>20, len(docs), n, time.Since(start), len(v.Merges))
		}
	}
}

var _ = reflect.DeepEqual

func TestTrainTimingBig(t *testing.T) {
	if os.Getenv("BPE_TIMING") == "" {
		t.Skip()
	}
	for _, sz := range []int64{64 << 20} {
		docs := goCorpus(t, sz)
		start := time.Now()
		v, err := Train(context.Background(), docs, 151643-9)
		if err != nil {
			t.Fatal(err)
		}
		var chars, toks int
		held, _ := GoCorpus("/root/go/pkg/mod/github.com/jackc/pgx/v5@v5.12.0", 1<<20)
		for _, d := range held {
			chars += len(d)
			toks += len(v.Encode(string(d)))
		}
		t.Logf("corpus %d MB, vocab %d: %v (%d merges) %.2f bytes/token", sz>>20, len(v.Tokens), time.Since(start), len(v.Merges), float64(chars)/float64(toks))
	}
}
