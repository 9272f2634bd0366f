package redact

import (
	"context"
	"slices"
	"testing"
)

// TestObserve: every Text and Cached call that replaces something reports
// the findings it returns, a cached result and a cut-short scan included;
// a clean text reports nothing; Observe(nil) stops the reports.
func TestObserve(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]Finding
	r.Observe(func(fs []Finding) { got = append(got, slices.Clone(fs)) })
	rnd := seeded(7)
	pat, aws := githubPAT(rnd), awsKey(rnd)
	text := "a := \"" + pat + "\"\nb := \"" + pat + "\"\nc := \"" + aws + "\"\n"
	ctx := context.Background()

	var want [][]Finding
	for _, call := range []func() []Finding{
		func() []Finding { _, fs := r.Text(ctx, text); return fs },
		func() []Finding { _, fs := r.Cached(ctx, text); return fs }, // scanned
		func() []Finding { _, fs := r.Cached(ctx, text); return fs }, // from the cache
		func() []Finding { _, fs := r.Tail(ctx, text, 8); return fs },
	} {
		fs := call()
		if len(fs) != 2 || fs[0] != (Finding{"aws-access-token", 1}) || fs[1] != (Finding{"github-pat", 2}) {
			t.Fatalf("findings %v", fs)
		}
		want = append(want, fs)
	}
	r.Text(ctx, "func clean() {}\n")
	r.Cached(ctx, "func clean() {}\n")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, fs := r.Text(cancelled, text)
	want = append(want, fs)
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("observed %v, want %v", got, want)
	}

	r.Observe(nil)
	r.Text(ctx, text)
	if len(got) != len(want) {
		t.Errorf("observed %d calls after Observe(nil), want %d", len(got), len(want))
	}
}
