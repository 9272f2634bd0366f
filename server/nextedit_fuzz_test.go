package server

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/code4me/code4me/internal/catalog"
)

// FuzzNextEdit checks the next-edit text functions on any two texts: the
// line diff rebuilds both, the unified diff is empty exactly when they are
// equal and changes as many lines as the edit script, the replacement
// applied to the old region gives the new one, and every format writes a
// prompt with the cursor where it was and reads a region back without
// panicking.
func FuzzNextEdit(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nB\nc\n", 2)
	f.Add("", "x", 0)
	f.Add("k = 'é'\n", "k = 'è'\nz", 5)
	f.Add("x\n<|editable_region_start|>\ny", "<|user_cursor_is_here|>\n", 1)
	f.Fuzz(func(t *testing.T, a, b string, cursor int) {
		if !utf8.ValidString(a) || !utf8.ValidString(b) {
			return
		}
		ops := diffLines(splitLines(a), splitLines(b))
		if applyDiff(ops, false) != a || applyDiff(ops, true) != b {
			t.Fatalf("the script does not rebuild %q -> %q", a, b)
		}
		d := unifiedDiff("f", a, b)
		if (d == "") != (a == b) {
			t.Fatalf("diff of %q and %q: %q", a, b, d)
		}
		changed, lines := 0, 0
		for _, op := range ops {
			if op.kind != ' ' {
				changed++
			}
		}
		for _, l := range splitLines(d)[min(2, len(splitLines(d))):] {
			if l[0] == '-' || l[0] == '+' {
				lines++
			}
		}
		if lines != changed {
			t.Fatalf("diff %q changes %d lines, the script %d", d, lines, changed)
		}
		out := &nextEditResult{region: a, rewritten: b}
		out.replacement(a)
		if out.ok != (a != b) || out.ok && a[:out.start]+out.text+a[out.end:] != b {
			t.Fatalf("replacement of %q by %q: %+v", a, b, out)
		}
		runes := []rune(a)
		cursor = min(max(cursor, 0), len(runes))
		in := &nextEditInput{path: "f", region: a, cursor: len(string(runes[:cursor])), before: b,
			edits: []editEvent{{"f", d}}}
		for _, format := range catalog.NextEditFormats {
			p := nextEditPrompt(format, in)
			if format == catalog.NextEditZeta && !strings.Contains(p, a[:in.cursor]+zetaCursor+a[in.cursor:]) {
				t.Fatalf("zeta prompt without the cursor in place: %q", p)
			}
			nextEditRegion(format, b, a)
		}
	})
}
