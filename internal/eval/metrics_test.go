package eval

import (
	"math"
	"testing"
)

func TestEditSimilarity(t *testing.T) {
	// Distances worked out by hand: kitten→sitting substitutes k→s, e→i
	// and appends g (3 edits over 7 characters); flaw→lawn deletes f and
	// appends n (2 over 4).
	for _, tc := range []struct {
		a, b string
		want float64
	}{
		{"kitten", "sitting", 1 - 3.0/7},
		{"flaw", "lawn", 0.5},
		{"abc", "abc", 1},
		{"", "", 1},
		{"", "abc", 0},
		{"abc", "xyz", 0},
		{"héllo", "hello", 0.8},            // runes, not bytes: é is one character
		{"日本語", "日本", 1 - 1.0/3},           // one deletion over three characters
		{"return x  \n", "return x", 1},    // trailing whitespace does not count
		{"return x\n\n", "return x\t ", 1}, // on either side
		{" a", "a", 0.5},                   // leading whitespace does
	} {
		got := EditSimilarity(tc.a, tc.b)
		if math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("EditSimilarity(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if rev := EditSimilarity(tc.b, tc.a); rev != got {
			t.Errorf("EditSimilarity is not symmetric on %q, %q: %v vs %v", tc.a, tc.b, got, rev)
		}
	}
}

func TestExactMatch(t *testing.T) {
	for _, tc := range []struct {
		out, exp string
		want     bool
	}{
		{"x := 1", "x := 1", true},
		{"x := 1\n", "x := 1", true},
		{"x := 1  \t\n\n", "x := 1\n", true},
		{" x := 1", "x := 1", false},
		{"x := 2", "x := 1", false},
		{"a\nb\n", "a\nb", true},
		{"a\n b", "a\nb", false},
		{"", "", true},
		{"", "x", false},
	} {
		if got := ExactMatch(tc.out, tc.exp); got != tc.want {
			t.Errorf("ExactMatch(%q, %q) = %v, want %v", tc.out, tc.exp, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	// 1..20 shuffled: the nearest rank of p % of 20 values is ceil(p/5).
	xs := []float64{20, 3, 17, 1, 8, 12, 5, 19, 2, 14, 6, 11, 4, 16, 9, 13, 7, 18, 10, 15}
	for _, tc := range []struct{ p, want float64 }{
		{50, 10}, {95, 19}, {99, 20}, {100, 20}, {5, 1}, {1, 1}, {51, 11},
	} {
		if got := Percentile(xs, tc.p); got != tc.want {
			t.Errorf("Percentile(1..20, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if xs[0] != 20 {
		t.Error("Percentile sorted its argument")
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	if got := Percentile([]float64{7}, 99); got != 7 {
		t.Errorf("Percentile of one value = %v, want 7", got)
	}
}

func TestCutToLines(t *testing.T) {
	for _, tc := range []struct{ out, exp, want string }{
		{"abc\ndef\n", "abc", "abc\n"},
		{"abc", "abc", "abc"},
		{"a\nb\nc\nd", "x\ny\n", "a\nb\n"},
		{"a\nb", "x\ny\nz\n", "a\nb"},
		{"", "x", ""},
		{"\nrest", "x", "\n"},
	} {
		if got := cutToLines(tc.out, tc.exp); got != tc.want {
			t.Errorf("cutToLines(%q, %q) = %q, want %q", tc.out, tc.exp, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	rs := []Result{
		{Task: Task{Kind: SingleLine, Language: "go"}, Exact: true, EditSimilarity: 1, LatencyMS: 10},
		{Task: Task{Kind: SingleLine, Language: "go"}, Exact: false, EditSimilarity: 0.5, LatencyMS: 30},
		{Task: Task{Kind: Span, Language: "go"}, Exact: false, EditSimilarity: 0.25, LatencyMS: 20},
		{Task: Task{Kind: SingleLine, Language: "python"}, Exact: true, EditSimilarity: 1, LatencyMS: 40},
	}
	s := Summarize(rs)
	want := Figures{Tasks: 4, ExactMatchRate: 0.5, MeanEditSimilarity: 2.75 / 4, LatencyP50MS: 20, LatencyP95MS: 40, LatencyP99MS: 40}
	if s.Overall != want {
		t.Errorf("overall = %+v, want %+v", s.Overall, want)
	}
	if len(s.Groups) != 3 {
		t.Fatalf("groups = %+v, want 3", s.Groups)
	}
	g := s.Groups[0]
	if g.Kind != SingleLine || g.Language != "go" || g.Tasks != 2 || g.ExactMatchRate != 0.5 || g.MeanEditSimilarity != 0.75 || g.LatencyP50MS != 10 || g.LatencyP95MS != 30 {
		t.Errorf("single_line/go = %+v", g)
	}
	if s.Groups[1].Kind != SingleLine || s.Groups[1].Language != "python" || s.Groups[2].Kind != Span {
		t.Errorf("groups not sorted by kind, then language: %+v", s.Groups)
	}
}

func TestScoreNUL(t *testing.T) {
	r := Score(Task{Expected: "ab"}, Completion{Text: "a\x00\nnext"}, 1)
	if r.Output != "a\uFFFD\n" || r.Exact || r.EditSimilarity != 0.5 {
		t.Errorf("Score = %+v", r)
	}
}
