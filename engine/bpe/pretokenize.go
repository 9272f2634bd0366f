package bpe

import (
	"unicode"
	"unicode/utf8"
)

// Split cuts text into pre-tokens exactly as the Qwen2 pre-tokenizer regex
// does (ordered alternation, as llama.cpp's std::regex evaluates it):
//
//	(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])
//	|[^\r\n\p{L}\p{N}]?\p{L}+
//	|\p{N}
//	| ?[^\s\p{L}\p{N}]+[\r\n]*
//	|\s*[\r\n]+
//	|\s+(?!\S)
//	|\s+
//
// BPE merges never cross a pre-token boundary. Invalid UTF-8 bytes are
// treated as single "other" characters.
func Split(text string) []string {
	var out []string
	SplitFunc(text, func(s string) { out = append(out, s) })
	return out
}

// SplitFunc calls yield for each pre-token of text; see Split.
func SplitFunc(text string, yield func(string)) {
	type cp struct {
		r   rune
		off int
	}
	cps := make([]cp, 0, len(text))
	for off := 0; off < len(text); {
		r, n := utf8.DecodeRuneInString(text[off:])
		cps = append(cps, cp{r, off})
		off += n
	}
	n := len(cps)
	at := func(i int) rune {
		if i < n {
			return cps[i].r
		}
		return -1
	}
	offset := func(i int) int {
		if i < n {
			return cps[i].off
		}
		return len(text)
	}
	for i := 0; i < n; {
		j := matchAt(at, i, n)
		yield(text[offset(i):offset(j)])
		i = j
	}
}

func isLetter(r rune) bool {
	if r < 0x80 {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < 0x80 {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

func isSpace(r rune) bool {
	if r < 0x80 {
		return r == ' ' || ('\t' <= r && r <= '\r')
	}
	return unicode.IsSpace(r)
}

func isCRLF(r rune) bool { return r == '\r' || r == '\n' }

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return r >= 0 && !isSpace(r) && !isLetter(r) && !isNumber(r) }

func lower(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// matchAt returns the end of the pre-token starting at i (i < n).
func matchAt(at func(int) rune, i, n int) int {
	r := at(i)
	// contractions
	if r == '\'' {
		a, b := lower(at(i+1)), lower(at(i+2))
		switch {
		case a == 's' || a == 't' || a == 'm' || a == 'd':
			return i + 2
		case (a == 'r' || a == 'v') && b == 'e', a == 'l' && b == 'l':
			return i + 3
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) || (!isCRLF(r) && !isNumber(r) && r >= 0 && isLetter(at(i+1))) {
		j := i + 1
		for j < n && isLetter(at(j)) {
			j++
		}
		return j
	}
	// \p{N}
	if isNumber(r) {
		return i + 1
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	if isOther(r) || (r == ' ' && isOther(at(i+1))) {
		j := i + 1
		for j < n && isOther(at(j)) {
			j++
		}
		for j < n && isCRLF(at(j)) {
			j++
		}
		return j
	}
	// whitespace: r is a space here
	k := i
	lastNL := -1
	for k < n && isSpace(at(k)) {
		if isCRLF(at(k)) {
			lastNL = k
		}
		k++
	}
	// \s*[\r\n]+
	if lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S)
	if k == n {
		return k
	}
	if k-1 > i {
		return k - 1
	}
	// \s+
	return k
}
