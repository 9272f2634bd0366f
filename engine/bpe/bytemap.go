package bpe

import "strings"

// byteToRune is the GPT-2 byte-to-unicode map: printable Latin-1 bytes stand
// for themselves and the rest are shifted to U+0100 and up, so every byte has
// a visible, non-space character.
var byteToRune [256]rune

// runeToByte inverts byteToRune.
var runeToByte = map[rune]byte{}

func init() {
	printable := func(b int) bool {
		return ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
	}
	next := rune(256)
	for b := 0; b < 256; b++ {
		if printable(b) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = next
			next++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// ByteToUnicode maps raw bytes to their GPT-2 token text.
func ByteToUnicode(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) * 2)
	for _, c := range b {
		sb.WriteRune(byteToRune[c])
	}
	return sb.String()
}

// UnicodeToByte maps GPT-2 token text back to raw bytes. It reports false
// if s holds a character outside the map.
func UnicodeToByte(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := runeToByte[r]
		if !ok {
			return out, false
		}
		out = append(out, b)
	}
	return out, true
}
