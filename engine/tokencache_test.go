package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

// typingRequests returns one FIM request per keystroke of a developer
// retyping n bytes from the middle of a Go source file of GOROOT, in the
// server benchmark's editor window: 12 KiB of prefix (its start cut at a
// line and quantised to 256 bytes, so it stays put while the cursor moves),
// 4 KiB of suffix and two 4 KiB files of extra context.
func typingRequests(tb testing.TB, n int) []engine.Request {
	tb.Helper()
	src := filepath.Join(runtime.GOROOT(), "src", "net", "http")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			tb.Skipf("Go source tree: %v", err)
		}
		return string(b)
	}
	head := func(s string, keep int) string {
		if len(s) <= keep {
			return s
		}
		return s[:strings.LastIndexByte(s[:keep], '\n')+1]
	}
	const maxPrefix, maxSuffix, maxExtra = 12 << 10, 4 << 10, 4 << 10
	file := read("server.go")
	extra := []engine.Chunk{
		{Path: "net/http/request.go", Text: head(read("request.go"), maxExtra)},
		{Path: "net/http/transport.go", Text: head(read("transport.go"), maxExtra)},
	}
	start := strings.LastIndexByte(file[:len(file)/2], '\n') + 1
	region, after := file[start:start+n], file[start+n:]
	suffix := head(after, maxSuffix)
	var out []engine.Request
	for i := 1; i <= len(region); i++ {
		prefix := file[:start] + region[:i]
		if cut := len(prefix) - maxPrefix; cut > 0 {
			cut = (cut + 255) &^ 255
			prefix = prefix[cut:]
			prefix = prefix[strings.IndexByte(prefix, '\n')+1:]
		}
		out = append(out, engine.Request{
			Prefix: prefix, Suffix: suffix, Extra: extra,
			FilePath: "net/http/server.go", RepoName: "go",
		})
	}
	return out
}

// countingTokenizer counts the bytes it is asked to tokenize.
type countingTokenizer struct {
	engine.Tokenizer
	bytes, calls atomic.Int64
}

func (c *countingTokenizer) Tokenize(text string, addSpecial, parseSpecial bool) ([]engine.Token, error) {
	c.bytes.Add(int64(len(text)))
	c.calls.Add(1)
	return c.Tokenizer.Tokenize(text, addSpecial, parseSpecial)
}

// samePromptsWhileTyping checks that BuildPrompt gives the same prompts
// through a TokenCache as straight from tk, keystroke by keystroke, for every
// layout, with and without truncation.
func samePromptsWhileTyping(t *testing.T, tk engine.Tokenizer, sp engine.SpecialTokens, reqs []engine.Request, fams ...engine.Family) {
	t.Helper()
	for _, fam := range fams {
		for _, budget := range []int{1 << 20, 4080, 1500} {
			c := engine.NewTokenCache(tk, 8<<20)
			truncated := 0
			for i, r := range reqs {
				want, err := engine.BuildPrompt(tk, sp, fam, &r, budget, engine.PromptSplit{})
				if err != nil {
					t.Fatal(err)
				}
				got, err := engine.BuildPrompt(c, sp, fam, &r, budget, engine.PromptSplit{})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got.Tokens, want.Tokens) || got.Truncated != want.Truncated {
					t.Fatalf("%s budget %d keystroke %d: cached prompt differs (%d vs %d tokens)", fam, budget, i, len(got.Tokens), len(want.Tokens))
				}
				if got.Truncated {
					truncated++
				}
			}
			st := c.Stats()
			if st.Hits < uint64(len(reqs)) {
				t.Errorf("%s budget %d: %d hits in %d keystrokes", fam, budget, st.Hits, len(reqs))
			}
			if budget < 1<<20 && truncated == 0 {
				t.Errorf("%s budget %d: never truncated", fam, budget)
			}
		}
	}
}

func TestTokenCacheSamePromptsWhileTyping(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	reqs := typingRequests(t, 300)
	samePromptsWhileTyping(t, m, m.Special(), reqs, engine.FamilyQwen, engine.FamilyStarCoder, engine.FamilyDeepSeek, engine.FamilyCodestral)
}

func TestLlamaTokenCacheSamePromptsWhileTyping(t *testing.T) {
	m := tinyModel(t)
	reqs := typingRequests(t, 60)
	samePromptsWhileTyping(t, m, m.Special(), reqs, engine.FamilyQwen, engine.FamilyDeepSeek)
	// A raw prompt parses special tokens; the cache keys on that flag.
	c := engine.NewTokenCache(m, 1<<20)
	text := "<|fim_prefix|>" + strings.Repeat("x := 1\n", 20)
	for range 2 {
		for _, parse := range []bool{false, true} {
			want, _ := m.Tokenize(text, parse, parse)
			got, _ := c.Tokenize(text, parse, parse)
			if !slices.Equal(got, want) {
				t.Errorf("parseSpecial %v: cached tokens differ", parse)
			}
		}
	}
}

// TestTokenCacheTypingTokenizesOnlyTheCursorLine: once warm, a keystroke
// that stays on its line tokenizes only the cursor line.
func TestTokenCacheTypingTokenizesOnlyTheCursorLine(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	ct := &countingTokenizer{Tokenizer: m}
	c := engine.NewTokenCache(ct, 8<<20)
	reqs := typingRequests(t, 300)
	prev, onLine := "", 0
	for i, r := range reqs {
		before, calls := ct.bytes.Load(), ct.calls.Load()
		if _, err := engine.BuildPrompt(c, m.Special(), engine.FamilyQwen, &r, 4080, engine.PromptSplit{}); err != nil {
			t.Fatal(err)
		}
		lines, cursor := engine.SplitCursorLine(r.Prefix)
		if lines != prev {
			// A new line, or the window start moved.
			prev = lines
			continue
		}
		onLine++
		if n, k := ct.bytes.Load()-before, ct.calls.Load()-calls; n > int64(len(cursor)) || k > 1 {
			t.Fatalf("keystroke %d on its line tokenized %d bytes in %d calls; cursor line has %d", i, n, k, len(cursor))
		}
	}
	if onLine < len(reqs)/2 {
		t.Errorf("only %d of %d keystrokes stayed on their line", onLine, len(reqs))
	}
}

func TestTokenCacheBounded(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	const limit = 64 << 10
	c := engine.NewTokenCache(m, limit)
	text := func(i int) string { return fmt.Sprintf("%05d", i) + strings.Repeat("x", 1000) }
	for i := range 1000 {
		if _, err := c.Tokenize(text(i), false, false); err != nil {
			t.Fatal(err)
		}
		// Keep text 0 in use: it must survive as the most recently used.
		if _, err := c.Tokenize(text(0), false, false); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats(); st.Bytes > limit {
			t.Fatalf("after %d texts the cache holds %d bytes > %d", i+1, st.Bytes, limit)
		}
	}
	st := c.Stats()
	if st.Entries < 10 || st.Entries > limit/1000 {
		t.Errorf("%d entries of about 5 KB in %d bytes", st.Entries, limit)
	}
	if st.Hits < 999 {
		t.Errorf("the text in use was evicted: %d hits", st.Hits)
	}
	// A text too large for the cache is not kept.
	c.Tokenize(strings.Repeat("y", limit), false, false)
	if got := c.Stats(); got.Entries != st.Entries || got.Bytes != st.Bytes {
		t.Errorf("oversized text changed the cache: %+v → %+v", st, got)
	}
	// A returned slice is the caller's: changing it leaves the cache intact.
	a, _ := c.Tokenize(text(0), false, false)
	a[0] = 0
	if b, _ := c.Tokenize(text(0), false, false); b[0] == 0 {
		t.Error("cached tokens share memory with a returned slice")
	}
	// Zero size: a pass-through.
	off := engine.NewTokenCache(m, 0)
	off.Tokenize(text(1), false, false)
	off.Tokenize(text(1), false, false)
	if st := off.Stats(); st.Entries != 0 || st.Hits != 0 {
		t.Errorf("disabled cache: %+v", st)
	}
}

// TestTokenCacheConcurrent runs callers that share and evict entries at
// once; run it with -race.
func TestTokenCacheConcurrent(t *testing.T) {
	m := enginetest.NewModel(enginetest.Options{})
	c := engine.NewTokenCache(m, 256<<10)
	reqs := typingRequests(t, 60)
	want := make([][]engine.Token, len(reqs))
	for i, r := range reqs {
		p, err := engine.BuildPrompt(m, m.Special(), engine.FamilyQwen, &r, 4080, engine.PromptSplit{})
		if err != nil {
			t.Fatal(err)
		}
		want[i] = p.Tokens
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range 3 * len(reqs) {
				i := (k*7 + g*13) % len(reqs)
				p, err := engine.BuildPrompt(c, m.Special(), engine.FamilyQwen, &reqs[i], 4080, engine.PromptSplit{})
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(p.Tokens, want[i]) {
					t.Errorf("goroutine %d keystroke %d: prompt differs", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Bytes > 256<<10 || st.Hits == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestSchedulerTokenCache: a scheduler tokenizes through its cache, its
// results match a scheduler without one, and Stats report it.
func TestSchedulerTokenCache(t *testing.T) {
	on, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1})
	off, _ := newSched(t, enginetest.Options{}, engine.Config{NParallel: 1, TokenCacheBytes: -1})
	for k := range 4 {
		r := fimReq(1, 40, 20)
		r.Prefix += strings.Repeat("y", k)
		sameTokens(t, fmt.Sprintf("keystroke %d", k), complete(t, on, r), complete(t, off, r))
	}
	if st := on.Stats().TokenCache; st.Hits == 0 || st.Entries == 0 || st.Bytes > engine.DefaultTokenCacheBytes {
		t.Errorf("cache on: %+v", st)
	}
	if st := off.Stats().TokenCache; st != (engine.TokenCacheStats{}) {
		t.Errorf("cache off: %+v", st)
	}
}

// BenchmarkBuildPromptTyping lays out and tokenizes one keystroke's prompt
// per iteration on the tiny model's real tokenizer (a 4096-token BPE), in
// the server benchmark's window (12 KiB prefix, 4 KiB suffix, two 4 KiB
// extra files), straight from the model and through a TokenCache. Every
// len(reqs) keystrokes the cache starts empty, so the first keystroke of
// each pass is cold, as a new typist's is.
func BenchmarkBuildPromptTyping(b *testing.B) {
	m := tinyModel(b)
	reqs := typingRequests(b, 400)
	fam := engine.DetectFamily(m.Info(), m.Special())
	for _, tc := range []struct {
		name string
		tk   func() engine.Tokenizer
	}{
		{"uncached", func() engine.Tokenizer { return m }},
		{"cached", func() engine.Tokenizer { return engine.NewTokenCache(m, engine.DefaultTokenCacheBytes) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var tk engine.Tokenizer
			var took []time.Duration
			ntok, i := 0, 0
			for b.Loop() {
				if i%len(reqs) == 0 {
					tk = tc.tk() // a new typist: no cursor line was seen before
				}
				t0 := time.Now()
				p, err := engine.BuildPrompt(tk, m.Special(), fam, &reqs[i%len(reqs)], 4080, engine.PromptSplit{})
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
				ntok += len(p.Tokens)
				i++
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*95/100].Microseconds())/1000, "p95-ms")
			b.ReportMetric(float64(ntok)/float64(i), "tokens/op")
		})
	}
}
