package jsonscan

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzObject: on any bytes, valid JSON or not, Object accepts exactly the
// texts encoding/json reads as an object, with the same members.
func FuzzObject(f *testing.F) {
	for _, d := range append(append([]string{}, jsonCorpus...), invalidJSON...) {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want map[string]json.RawMessage
		isObject := json.Unmarshal(b, &want) == nil && want != nil
		got, ok := Object(b)
		if ok != isObject {
			t.Fatalf("Object(%q) ok = %v, encoding/json reads an object: %v", b, ok, isObject)
		}
		if ok && !reflect.DeepEqual(normalise(got), normalise(want)) {
			t.Fatalf("Object(%q)\n got  %q\n want %q", b, got, want)
		}
	})
}

// FuzzUnquote: Unquote decodes every JSON string exactly as encoding/json
// does (escapes, surrogate pairs, lone surrogates and invalid UTF-8 as
// U+FFFD) and refuses every other valid JSON value. The input is tried as
// it is and as the inside of a string.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`"a"`, `\u00e9`, `\ud83d\ude00`, `\ud83d`, `\ude00x`, `\ud800\u0041`, `\uD834\uDD1E`,
		"\xff\xfe", "\xed\xa0\x80", `\"\\\/\b\f\n\r\t`, `\u0000`, `12`, `null`, `"\u12"`, "\x01"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, raw := range [][]byte{b, append(append([]byte{'"'}, b...), '"')} {
			if !json.Valid(raw) || SkipSpace(raw, 0) != 0 || SkipSpace(raw[len(raw)-1:], 0) != 0 {
				continue // Unquote reads one valid JSON value, as Split cuts them
			}
			var want string
			werr := json.Unmarshal(raw, &want)
			got, ok := Unquote(raw)
			if ok != (werr == nil && raw[0] == '"') {
				t.Fatalf("Unquote(%q) ok = %v, encoding/json: %v", raw, ok, werr)
			}
			if ok && got != want {
				t.Fatalf("Unquote(%q)\n got  %q\n want %q", raw, got, want)
			}
		}
	})
}
