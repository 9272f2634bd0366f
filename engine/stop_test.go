package engine

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTextFilter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stops   []string
		mode    Mode
		nIndent int
		pieces  []string
		// emitted after each piece, and whether that piece stopped
		want   []string
		stopAt int // index of the piece that stops, -1 for none
		final  string
		word   string
	}{
		{name: "plain", pieces: []string{"ab", "c"}, want: []string{"ab", "c"}, stopAt: -1, final: "abc"},
		{name: "stop across pieces", stops: []string{"END"}, pieces: []string{"x E", "N", "D y"},
			want: []string{"x ", "", ""}, stopAt: 2, final: "x ", word: "END"},
		{name: "partial released", stops: []string{"END"}, pieces: []string{"x E", "Nz"},
			want: []string{"x ", "ENz"}, stopAt: -1, final: "x ENz"},
		{name: "earliest occurrence wins", stops: []string{"b", "a"}, pieces: []string{"xab"},
			want: []string{""}, stopAt: 0, final: "x", word: "a"},
		{name: "overlapping prefixes", stops: []string{"aab"}, pieces: []string{"a", "a", "a", "b"},
			want: []string{"", "", "a", ""}, stopAt: 3, final: "a", word: "aab"},
		{name: "split rune", pieces: []string{"\xe4", "\xb8", "\x96x"}, want: []string{"", "", "世x"}, stopAt: -1, final: "世x"},
		{name: "invalid bytes", pieces: []string{"a\xff", "\xc3("}, want: []string{"a\uFFFD", "\uFFFD("}, stopAt: -1, final: "a\uFFFD\uFFFD("},
		{name: "incomplete at end dropped", pieces: []string{"ok\xe4\xb8"}, want: []string{"ok"}, stopAt: -1, final: "ok"},
		{name: "multibyte stop", stops: []string{"世界"}, pieces: []string{"hi 世", "\xe7", "\x95\x8c!"},
			want: []string{"hi ", "", ""}, stopAt: 2, final: "hi ", word: "世界"},
		{name: "single line", mode: ModeSingleLine, pieces: []string{"foo(", ")\nbar"}, want: []string{"foo(", ""}, stopAt: 1, final: "foo()"},
		{name: "single line leading newline", mode: ModeSingleLine, pieces: []string{"\nbar"}, want: []string{""}, stopAt: 0, final: ""},
		{name: "blank line", mode: ModeBlankLine, pieces: []string{"a\n", "b\n", "\n", "c"},
			want: []string{"a", "\nb", "", ""}, stopAt: 2, final: "a\nb"},
		{name: "blank line with spaces", mode: ModeBlankLine, pieces: []string{"a\n  \n"}, want: []string{""}, stopAt: 0, final: "a"},
		{name: "leading blank lines kept", mode: ModeBlankLine, pieces: []string{"\n\nx"}, want: []string{"\n\nx"}, stopAt: -1, final: "\n\nx"},
		{name: "indent ok", nIndent: 4, pieces: []string{"x\n", "    y\n", "\t\t\t\tz"}, want: []string{"x", "\n    y", "\n\t\t\t\tz"}, stopAt: -1, final: "x\n    y\n\t\t\t\tz"},
		{name: "dedent stops", nIndent: 4, pieces: []string{"x\n", "  ", "}"}, want: []string{"x", "", ""}, stopAt: 2, final: "x"},
		{name: "first line not checked", nIndent: 4, pieces: []string{"y\n    z"}, want: []string{"y\n    z"}, stopAt: -1, final: "y\n    z"},
		{name: "stop before line rule", stops: []string{";"}, mode: ModeSingleLine, pieces: []string{"a;b\n"}, want: []string{""}, stopAt: 0, final: "a", word: ";"},
		{name: "line rule before stop", stops: []string{";"}, mode: ModeSingleLine, pieces: []string{"a\nb;"}, want: []string{""}, stopAt: 0, final: "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTextFilter(tc.stops, tc.mode, tc.nIndent)
			var all strings.Builder
			stoppedAt := -1
			for i, p := range tc.pieces {
				stopped := f.push([]byte(p))
				var got string
				if stopped {
					got = f.flush()
				} else {
					got = f.take()
				}
				if !utf8.ValidString(got) {
					t.Errorf("piece %d: invalid UTF-8 %q", i, got)
				}
				all.WriteString(got)
				if !stopped && got != tc.want[i] {
					t.Errorf("piece %d: emitted %q, want %q", i, got, tc.want[i])
				}
				if stopped {
					stoppedAt = i
					break
				}
			}
			if stoppedAt < 0 {
				all.WriteString(f.flush())
			}
			if stoppedAt != tc.stopAt {
				t.Errorf("stopped at piece %d, want %d", stoppedAt, tc.stopAt)
			}
			if all.String() != tc.final || f.text() != tc.final {
				t.Errorf("final %q (emitted %q), want %q", f.text(), all.String(), tc.final)
			}
			if f.stopWord != tc.word {
				t.Errorf("stop word %q, want %q", f.stopWord, tc.word)
			}
		})
	}
}
