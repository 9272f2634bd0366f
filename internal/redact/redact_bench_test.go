package redact

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sourceSlice returns n bytes of net/http/server.go starting at the first line
// after byte 32 KiB: real Go source with the usual density of "key", "token"
// and "auth".
func sourceSlice(b *testing.B, n int) string {
	src := serverGo(b)
	start := strings.IndexByte(src[32<<10:], '\n') + 32<<10 + 1
	if start+n > len(src) {
		b.Fatalf("server.go has fewer than %d bytes after offset %d", n, start)
	}
	return src[start : start+n]
}

// withSecrets plants an AWS access key and a GitHub PAT in the middle of s,
// on their own lines, keeping the length close to len(s).
func withSecrets(s string) string {
	rng := seeded(42)
	mid := strings.IndexByte(s[len(s)/2:], '\n') + len(s)/2 + 1
	plant := "\tawsKey := \"" + awsKey(rng) + "\"\n\tghToken := \"" + githubPAT(rng) + "\"\n"
	return s[:mid] + plant + s[mid:len(s)-len(plant)]
}

// runTimed runs f b.N times and reports p50 and p95 latency next to the mean.
func runTimed(b *testing.B, f func()) {
	f() // warm up: compile lazily built state, fill caches
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		f()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.95), "p95-µs")
}

func benchRedact(b *testing.B, size int, opts Options) {
	// A small cache, so that the typing benchmark's chunks from one lap over
	// its 4 KiB of keystrokes are evicted before the next lap.
	cached := opts
	cached.CacheSize = 64
	r, err := New(cached)
	if err != nil {
		b.Fatal(err)
	}
	uncached := opts
	uncached.CacheSize = -1
	cold, err := New(uncached)
	if err != nil {
		b.Fatal(err)
	}
	clean := sourceSlice(b, size)
	dirty := withSecrets(clean)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		in   string
	}{{"clean", clean}, {"secrets", dirty}} {
		// cold: no cache at all, every byte scanned.
		b.Run(tc.name+"/cold", func(b *testing.B) {
			b.SetBytes(int64(len(tc.in)))
			runTimed(b, func() { cold.Text(ctx, tc.in) })
		})
		// cached: an unchanged context file, whole-result cache hit.
		b.Run(tc.name+"/cached", func(b *testing.B) {
			b.SetBytes(int64(len(tc.in)))
			runTimed(b, func() { r.Cached(ctx, tc.in) })
		})
		// typing: each iteration is the text after one more keystroke, typed
		// from the next 4 KiB of real source, so Text re-scans the chunks
		// around the cursor and takes the others from its chunk cache.
		b.Run(tc.name+"/typing", func(b *testing.B) {
			more := sourceSlice(b, size+4<<10)[size:]
			b.SetBytes(int64(len(tc.in)))
			i := 0
			runTimed(b, func() {
				i = (i + 1) % len(more)
				r.Text(ctx, tc.in+more[:i])
			})
		})
	}
}

func BenchmarkRedact4KiB(b *testing.B)  { benchRedact(b, 4<<10, Options{}) }
func BenchmarkRedact16KiB(b *testing.B) { benchRedact(b, 16<<10, Options{}) }
func BenchmarkRedact64KiB(b *testing.B) { benchRedact(b, 64<<10, Options{}) }

func BenchmarkRedact16KiBGeneric(b *testing.B) {
	benchRedact(b, 16<<10, Options{IncludeGeneric: true})
}

// BenchmarkNew measures building a Redactor after the rules are parsed
// (the first New in a process also parses them).
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func Example() {
	r, err := New(Options{})
	if err != nil {
		panic(err)
	}
	key := "AKIA" + "Z7Q3XK2MB4PLW6TY" // split so scanners of this file stay quiet
	out, findings := r.Text(context.Background(), "client := s3.New(\""+key+"\")")
	fmt.Println(out)
	fmt.Println(findings)
	// Output:
	// client := s3.New("<redacted:aws-access-token>")
	// [{aws-access-token 1}]
}

// BenchmarkRedactCompletion is one generated completion (a few hundred
// bytes of code, no secret), redacted before it is returned and stored.
func BenchmarkRedactCompletion(b *testing.B) {
	r, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	text := "if err != nil {\n\t\treturn nil, fmt.Errorf(\"read %s: %w\", name, err)\n\t}\n\tdefer f.Close()\n\tbuf := make([]byte, 0, 4096)\n\tfor {\n\t\tn, err := f.Read(buf[len(buf):cap(buf)])\n"
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++ // a new text each time: completions differ, the cache never helps
		r.Text(ctx, text+strconv.Itoa(i))
	}
}

// BenchmarkContextRules16KiB is the part of a cold scan of 16 KiB that the
// rules of assign.go take: every chunk searched once, without gitleaks.
func BenchmarkContextRules16KiB(b *testing.B) {
	src := sourceSlice(b, 16<<10)
	spans := chunkSpans(src)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		for _, c := range spans {
			contextHits(src[c[0]:c[1]])
		}
	}
}
