package redact

import (
	"context"
	"strings"
)

// Margin is the number of bytes beyond the requested size that Tail and
// Head scan, so that a secret cut by the window's edge is still matched whole
// and replaced rather than half of it leaking.
const Margin = 256

// Tail redacts the end of s that will be sent: at least its last n bytes,
// widened to a line start at least Margin bytes further back, and further
// still to the start of a private-key block open at that point. It returns
// that redacted window, which is longer than n; trim it to its final size
// after redacting, never before. When the window covers s, Tail is Text.
func (r *Redactor) Tail(ctx context.Context, s string, n int) (string, []Finding) {
	start := len(s) - n - Margin
	if n < 0 || start <= 0 {
		return r.Text(ctx, s)
	}
	start = strings.LastIndexByte(s[:start], '\n') + 1
	start = openPEMStart(s, start)
	return r.Text(ctx, s[start:])
}

// Head is Tail for the start of s (the suffix after the cursor): at least its
// first n bytes, widened to a line end at least Margin bytes further on, and
// further still to the end of a private-key block open at that point.
func (r *Redactor) Head(ctx context.Context, s string, n int) (string, []Finding) {
	end := n + Margin
	if n < 0 || end >= len(s) {
		return r.Text(ctx, s)
	}
	if nl := strings.IndexByte(s[end:], '\n'); nl >= 0 {
		end += nl + 1
	} else {
		end = len(s)
	}
	end = openPEMEnd(s, end)
	return r.Text(ctx, s[:end])
}

// openPEMStart returns the start of the line holding the BEGIN marker of a
// private-key block that is open at pos, or pos when none is.
func openPEMStart(s string, pos int) int {
	for j := pos; ; {
		k := strings.LastIndex(s[:j], "-----")
		if k < 0 {
			return pos
		}
		ls := strings.LastIndexByte(s[:k], '\n') + 1
		le := len(s)
		if nl := strings.IndexByte(s[k:], '\n'); nl >= 0 {
			le = k + nl + 1
		}
		if lower := strings.ToLower(s[ls:le]); strings.Contains(lower, "-----begin") || strings.Contains(lower, "-----end") {
			// The last marker line before pos decides: an END closes, a
			// private-key BEGIN opens.
			if pemOpen(s[ls:min(le, pos)], false) {
				return ls
			}
			return pos
		}
		j = ls
		if j == 0 {
			return pos
		}
	}
}

// openPEMEnd returns the end of the line holding the END marker of a
// private-key block that is open at pos, len(s) when it never closes, or pos
// when no block is open.
func openPEMEnd(s string, pos int) int {
	if openPEMStart(s, pos) == pos {
		return pos
	}
	rest := strings.ToLower(s[pos:])
	k := strings.Index(rest, "-----end")
	if k < 0 {
		return len(s)
	}
	if nl := strings.IndexByte(rest[k:], '\n'); nl >= 0 {
		return pos + k + nl + 1
	}
	return len(s)
}
