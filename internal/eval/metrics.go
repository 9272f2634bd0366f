package eval

import (
	"math"
	"slices"
	"strings"
	"unicode"
)

// ExactMatch reports whether output equals expected once trailing
// whitespace (spaces, tabs, newlines) is trimmed from both.
func ExactMatch(output, expected string) bool {
	return strings.TrimRightFunc(output, unicode.IsSpace) == strings.TrimRightFunc(expected, unicode.IsSpace)
}

// EditSimilarity is 1 - Levenshtein(a, b) / max(len(a), len(b)), with
// lengths and edits counted in characters (runes) and trailing whitespace
// trimmed first, as in ExactMatch: 1 for equal texts, 0 for texts with no
// character in place in common. Two empty texts are equal (1).
func EditSimilarity(a, b string) float64 {
	ra := []rune(strings.TrimRightFunc(a, unicode.IsSpace))
	rb := []rune(strings.TrimRightFunc(b, unicode.IsSpace))
	n := max(len(ra), len(rb))
	if n == 0 {
		return 1
	}
	return 1 - float64(levenshtein(ra, rb))/float64(n)
}

// levenshtein is the least number of single-character insertions,
// deletions and substitutions that turn a into b (two rows of the
// Wagner-Fischer table).
func levenshtein(a, b []rune) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs: the
// smallest value that at least p % of the values are at or below. It is 0
// for no values. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// The small slack keeps a rank that is whole on paper (95 % of 20 is
	// 19) from rounding up past it in floating point.
	rank := int(math.Ceil(float64(len(s))*p/100 - 1e-9))
	return s[min(max(rank, 1), len(s))-1]
}

// cutToLines keeps the first n lines of output (n counted in expected): a
// completion is scored on as many lines as the text it should reproduce,
// since a model may go on past the cut.
func cutToLines(output, expected string) string {
	n := strings.Count(strings.TrimRight(expected, "\n"), "\n") + 1
	i := 0
	for range n {
		j := strings.IndexByte(output[i:], '\n')
		if j < 0 {
			return output
		}
		i += j + 1
	}
	return output[:i]
}
