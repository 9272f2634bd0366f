package redact

import "strings"

// Chunking parameters. A chunk ends after a line whose FNV-1a hash has its
// low bits clear (one line in cutEvery) once the chunk holds minChunk bytes,
// or after the line that takes it past maxChunk. With Go's ~35-byte lines the
// chunks average about a kilobyte.
const (
	minChunk = 512
	maxChunk = 4 << 10
	cutEvery = 16 // a power of two
)

// chunkSpans cuts s into chunks at line boundaries and returns, for each, the
// byte range to scan: the chunk plus the line before it and the line after
// it.
//
// The cuts depend only on the content of the lines around them, never on
// their offset in s, so text that grows at its end (typing) or loses lines at
// its start (a sliding window) keeps its other chunks, and their cache
// entries, unchanged.
//
// Secrets on a single line are never cut. A PEM private-key block is never
// cut: no chunk ends between a "-----BEGIN … PRIVATE KEY" line and the next
// "-----END" line. A secret that spans two lines is seen whole thanks to the
// one-line overlap; a secret spread over three or more lines other than a
// PEM block (a base64 blob wrapped over several lines) may be cut.
func chunkSpans(s string) [][2]int {
	if len(s) <= 2*minChunk {
		return [][2]int{{0, len(s)}}
	}
	cuts := []int{0}
	chunkStart, inPEM := 0, false
	for lineStart := 0; lineStart < len(s); {
		lineEnd := len(s)
		if nl := strings.IndexByte(s[lineStart:], '\n'); nl >= 0 {
			lineEnd = lineStart + nl + 1
		}
		line := s[lineStart:lineEnd]
		if strings.Contains(line, "-----") {
			inPEM = pemOpen(line, inPEM)
		}
		if size := lineEnd - chunkStart; lineEnd < len(s) && !inPEM &&
			(size >= maxChunk || size >= minChunk && fnv32a(line)&(cutEvery-1) == 0) {
			cuts = append(cuts, lineEnd)
			chunkStart = lineEnd
		}
		lineStart = lineEnd
	}

	spans := make([][2]int, len(cuts))
	for i, lo := range cuts {
		hi := len(s)
		if i+1 < len(cuts) {
			hi = cuts[i+1]
		}
		if i > 0 { // include the previous line
			lo = strings.LastIndexByte(s[:lo-1], '\n') + 1
		}
		if hi < len(s) { // include the next line
			if nl := strings.IndexByte(s[hi:], '\n'); nl >= 0 {
				hi += nl + 1
			} else {
				hi = len(s)
			}
		}
		spans[i] = [2]int{lo, hi}
	}
	return spans
}

// pemOpen reports whether a private-key block is open after line, given
// whether one was open before it.
func pemOpen(line string, open bool) bool {
	lower := strings.ToLower(line)
	begin := strings.LastIndex(lower, "-----begin")
	end := strings.LastIndex(lower, "-----end")
	if begin > end {
		return strings.Contains(lower[begin:], "private key")
	}
	if end >= 0 {
		return false
	}
	return open
}

// fnv32a is the 32-bit FNV-1a hash of s without its line ending.
func fnv32a(s string) uint32 {
	s = strings.TrimRight(s, "\r\n")
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
