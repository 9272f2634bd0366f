package engine

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// textFilter turns the raw bytes of sampled tokens into the text a caller may
// see. It holds back an incomplete UTF-8 character, the longest tail that
// could still become a stop string, and, while a line rule is active, a new
// line that has no content yet (its fate depends on what follows). Bytes that
// can never form valid UTF-8 become U+FFFD. Only the scheduler goroutine uses
// a textFilter.
type textFilter struct {
	stops   [][]byte
	mode    Mode
	nIndent int

	raw  []byte // incomplete UTF-8 tail not yet in out
	out  []byte // valid UTF-8 text so far
	sent int    // bytes of out already handed out

	// line state over out[:scanned]
	scanned     int
	lineStart   int  // index of the current line's first byte
	lineContent bool // the current line has a non-blank byte
	lineIndent  int  // leading blanks of the current line
	sawContent  bool // some line had content
	hasNewline  bool // a newline was generated

	stopWord string // the stop string that matched
}

func newTextFilter(stops []string, mode Mode, nIndent int) *textFilter {
	f := &textFilter{mode: mode, nIndent: nIndent}
	for _, s := range stops {
		if s == "" {
			continue
		}
		f.stops = append(f.stops, []byte(strings.ToValidUTF8(s, "\uFFFD")))
	}
	return f
}

// push appends the bytes of one token. It reports whether a stop string or a
// line rule ended generation; the text is then already cut.
func (f *textFilter) push(piece []byte) (stopped bool) {
	f.raw = append(f.raw, piece...)
	i := 0
	for i < len(f.raw) {
		r, size := utf8.DecodeRune(f.raw[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(f.raw[i:]) {
				break // incomplete: wait for the next piece
			}
			f.out = append(f.out, "\uFFFD"...)
			i++
			continue
		}
		f.out = append(f.out, f.raw[i:i+size]...)
		i += size
	}
	f.raw = append(f.raw[:0], f.raw[i:]...)

	// Earliest stop string. A match cannot start before sent: its beginning
	// would have been held back as a partial match.
	limit, word := len(f.out), ""
	for _, s := range f.stops {
		if j := bytes.Index(f.out[f.sent:], s); j >= 0 && f.sent+j < limit {
			limit, word = f.sent+j, string(s)
		}
	}
	if cut := f.scanLines(limit); cut >= 0 {
		f.cutAt(cut)
		return true
	}
	if word != "" {
		f.stopWord = word
		f.cutAt(limit)
		return true
	}
	return false
}

// scanLines advances the line state over out[scanned:limit] and returns the
// index where a line rule cuts the text, or -1.
func (f *textFilter) scanLines(limit int) int {
	for i := f.scanned; i < limit; i++ {
		switch c := f.out[i]; c {
		case '\n':
			if f.mode == ModeSingleLine {
				return i
			}
			if f.mode == ModeBlankLine && !f.lineContent && f.sawContent && f.lineStart > 0 {
				return f.lineStart - 1
			}
			f.hasNewline = true
			f.lineStart, f.lineContent, f.lineIndent = i+1, false, 0
		case ' ', '\t', '\r':
			if !f.lineContent && c != '\r' {
				f.lineIndent++
			}
		default:
			if !f.lineContent {
				f.lineContent, f.sawContent = true, true
				if f.nIndent > 0 && f.lineStart > 0 && f.lineIndent < f.nIndent {
					return f.lineStart - 1
				}
			}
		}
	}
	f.scanned = limit
	return -1
}

func (f *textFilter) cutAt(n int) {
	if n < f.sent {
		n = f.sent
	}
	f.out = f.out[:n]
	f.raw = f.raw[:0]
	f.scanned = min(f.scanned, n)
}

// take returns the text that is safe to hand out now and marks it sent.
func (f *textFilter) take() string {
	safe := len(f.out)
	for _, s := range f.stops {
		for k := min(len(s)-1, len(f.out)-f.sent); k > 0; k-- {
			if bytes.HasSuffix(f.out, s[:k]) {
				safe = min(safe, len(f.out)-k)
				break
			}
		}
	}
	if (f.mode == ModeBlankLine || f.nIndent > 0) && !f.lineContent && f.lineStart > 0 {
		safe = min(safe, f.lineStart-1)
	}
	if safe <= f.sent {
		return ""
	}
	d := string(f.out[f.sent:safe])
	f.sent = safe
	return d
}

// flush ends the text: a held-back tail is real text now, an incomplete
// UTF-8 character is dropped. It returns what was not handed out yet.
func (f *textFilter) flush() string {
	f.raw = f.raw[:0]
	if f.sent >= len(f.out) {
		return ""
	}
	d := string(f.out[f.sent:])
	f.sent = len(f.out)
	return d
}

// text is everything generated so far, after cuts.
func (f *textFilter) text() string { return string(f.out) }
