// Package jsonscan checks and takes apart JSON request bodies faster than
// encoding/json, for the server's hot path.
//
// A completion request is mostly two long strings (prefix and suffix).
// encoding/json checks a document's syntax on every Unmarshal, so reading
// body → "context" → "prefix" scans the prefix several times. Here a body
// is checked once (Valid, which agrees with json.Valid) and taken apart by
// Split and Unquote, which assume valid JSON and decode exactly as
// encoding/json does. Differential tests and fuzz targets against
// encoding/json (jsonscan_test.go) hold every function to that: a fast
// path is trusted only where the slow, obviously right one agrees.
//
// Like encoding/json, these functions accept invalid UTF-8 inside strings
// and decode it as U+FFFD; BadUTF8 finds the first string that holds some,
// so that a caller can refuse it.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Object returns the members of b when b is valid JSON holding an
// object (Valid, then Split); false otherwise.
func Object(b []byte) (map[string]json.RawMessage, bool) {
	if !Valid(b) {
		return nil, false
	}
	return Split(b)
}

// Split returns the members of b, a valid JSON text, when it is an
// object; false otherwise. The values alias b. A repeated key keeps its
// last value, as encoding/json does.
func Split(b []byte) (map[string]json.RawMessage, bool) {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	m := map[string]json.RawMessage{}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, true
	}
	for i < len(b) {
		end, ok := skipString(b, i)
		if !ok {
			return nil, false
		}
		key, ok := Unquote(b[i:end])
		if !ok {
			return nil, false
		}
		i = SkipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = SkipSpace(b, i+1)
		vend, ok := skipValue(b, i)
		if !ok {
			return nil, false
		}
		m[key] = json.RawMessage(b[i:vend:vend])
		i = SkipSpace(b, vend)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
		case '}':
			return m, true
		default:
			return nil, false
		}
	}
	return nil, false
}

// SkipSpace returns the index of the first byte at or after i in b that
// is not JSON white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i]: the
// first quote after it that an even number of backslashes precedes
// (bytes.IndexByte finds the quotes; the text between them is not read).
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for j := i + 1; ; j++ {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, false
		}
		j += k
		n := 0
		for m := j - 1; m > i && b[m] == '\\'; m-- {
			n++
		}
		if n%2 == 0 {
			return j + 1, true
		}
	}
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, ok := skipString(b, i)
				if !ok {
					return 0, false
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return 0, false
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j, j > i
	}
}

// Unquote decodes raw, a valid JSON value, when it is a string, as
// encoding/json does: invalid UTF-8 and unpaired surrogates become U+FFFD.
func Unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	var out strings.Builder
	out.Grow(len(s))
	for i := 0; i < len(s); {
		// The run of bytes that stand for themselves, copied at once.
		j := i
		for j < len(s) && s[j] != '\\' && s[j] != '"' && s[j] >= ' ' && s[j] < utf8.RuneSelf {
			j++
		}
		out.Write(s[i:j])
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return "", false
			}
			switch s[i+1] {
			case '"', '\\', '/':
				out.WriteByte(s[i+1])
			case 'b':
				out.WriteByte('\b')
			case 'f':
				out.WriteByte('\f')
			case 'n':
				out.WriteByte('\n')
			case 'r':
				out.WriteByte('\r')
			case 't':
				out.WriteByte('\t')
			case 'u':
				r, ok := hex4(s, i+2)
				if !ok {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r2, ok := hex4(s, i+2); ok && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out.WriteRune(dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out.WriteRune(r)
				continue
			default:
				return "", false
			}
			i += 2
		case c == '"' || c < ' ':
			return "", false // not valid JSON
		case c < utf8.RuneSelf:
			out.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				out.WriteRune(utf8.RuneError)
			} else {
				out.Write(s[i : i+n])
			}
			i += n
		}
	}
	return out.String(), true
}

// hex4 reads the four hex digits at s[i:].
func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s[i:i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}

// MaxDepth is encoding/json's nesting limit, which Valid keeps.
const MaxDepth = 10000

// Valid reports whether b is one JSON text, exactly as json.Valid does
// (TestValidJSONMatchesEncodingJSON, FuzzValidJSON). A body is mostly long
// strings, which it checks in a tight loop rather than json.Valid's call
// per byte. Like json.Valid it does not check UTF-8.
func Valid(b []byte) bool {
	var open []byte // '{' or '[' of each container not yet closed
	i := SkipSpace(b, 0)
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return false
		}
		closed := true
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(open) == MaxDepth {
				return false
			}
			open = append(open, c)
			i = SkipSpace(b, i+1)
			switch {
			case i < len(b) && b[i] == c+2: // '}' or ']': empty
				open = open[:len(open)-1]
				i++
			case c == '{':
				if i = validMember(b, i); i < 0 {
					return false
				}
				closed = false
			default:
				closed = false
			}
		case c == '"':
			if i = validString(b, i); i < 0 {
				return false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i = validNumber(b, i); i < 0 {
				return false
			}
		case c == 't' && bytes.HasPrefix(b[i:], []byte("true")), c == 'n' && bytes.HasPrefix(b[i:], []byte("null")):
			i += 4
		case c == 'f' && bytes.HasPrefix(b[i:], []byte("false")):
			i += 5
		default:
			return false
		}
		if !closed {
			continue // the first value of the container just opened
		}
		// After a value: close containers until a comma leads to the next.
		for next := false; !next; {
			i = SkipSpace(b, i)
			if len(open) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := open[len(open)-1]
			switch {
			case b[i] == top+2:
				open = open[:len(open)-1]
				i++
			case b[i] == ',':
				i = SkipSpace(b, i+1)
				if top == '{' {
					if i = validMember(b, i); i < 0 {
						return false
					}
				}
				next = true
			default:
				return false
			}
		}
	}
}

// validMember checks the key and colon of an object member starting at
// b[i] and returns the index of its value, or -1.
func validMember(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = validString(b, i); i < 0 {
		return -1
	}
	if i = SkipSpace(b, i); i >= len(b) || b[i] != ':' {
		return -1
	}
	return SkipSpace(b, i+1)
}

// validString returns the index after the valid JSON string at b[i], or -1.
func validString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < ' ':
			return -1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+6 > len(b) {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 5
			default:
				return -1
			}
		}
	}
	return -1
}

// validNumber returns the index after the valid JSON number at b[i], or -1.
func validNumber(b []byte, i int) int {
	digits := func(i int) int { // at least one digit at b[i]
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}

// BadUTF8 finds the first string of b, a valid JSON text, that is not
// valid UTF-8. loc is the path to it: the keys and list indices that lead
// to a value, ending with the key itself when the key is what is invalid
// (nil for a text that is one string). text is the string as Unquote
// decodes it. ok is false when b is valid UTF-8. It reads b once: invalid
// bytes can only sit inside strings in valid JSON, so the string holding
// the first one is the first whose end lies past it.
func BadUTF8(b []byte) (loc []any, text string, ok bool) {
	off := firstInvalidUTF8(b)
	if off < 0 {
		return nil, "", false
	}
	type level struct {
		obj     bool
		wantKey bool   // an object expecting a key (after '{' or ',')
		key     [2]int // an object's current key (span in b)
		n       int    // a list's current index
	}
	var open []level
	for i := 0; i < len(b); {
		switch b[i] {
		case '{':
			open = append(open, level{obj: true, wantKey: true})
		case '[':
			open = append(open, level{})
		case '}', ']':
			open = open[:len(open)-1]
		case ',':
			if top := &open[len(open)-1]; top.obj {
				top.wantKey = true
			} else {
				top.n++
			}
		case '"':
			end, _ := skipString(b, i)
			isKey := len(open) > 0 && open[len(open)-1].obj && open[len(open)-1].wantKey
			if isKey {
				top := &open[len(open)-1]
				top.key, top.wantKey = [2]int{i, end}, false
			}
			if end > off {
				loc = make([]any, len(open))
				for k, l := range open {
					if l.obj {
						loc[k], _ = Unquote(b[l.key[0]:l.key[1]])
					} else {
						loc[k] = l.n
					}
				}
				text, _ = Unquote(b[i:end])
				return loc, text, true
			}
			i = end
			continue
		}
		i++
	}
	return nil, "", false // cannot happen in valid JSON
}

// firstInvalidUTF8 is the offset of the first byte of b that is not part
// of a valid UTF-8 sequence, or -1.
func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}
