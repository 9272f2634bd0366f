package jsonscan

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonCorpus is JSON texts that exercise the scanner: escapes, surrogate
// pairs and lone surrogates, invalid UTF-8, nesting, brackets and quotes
// inside strings, repeated keys, odd whitespace, and non-objects.
var jsonCorpus = []string{
	`{}`, ` { } `, "{\n\t\"a\" :\r 1 }", `{"a":"b"}`, `{"a":"\"}\\{","b":[1,"]",{"c":"}"}],"d":null}`,
	`{"a":1,"a":2}`, `{"k\u00e9y":"v\u00e9"}`, `{"s":"\ud83d\ude00 \ud83d x \ude00 \u0041\/\b\f\n\r\t"}`,
	`{"s":"\ud800\ud800"}`, `{"s":"\udbff\udfff"}`, "{\"s\":\"\xff\xfe bad \xc3\x28 ok \xe2\x82\xac\"}",
	`{"n":-1.5e+10,"t":true,"f":false,"z":0}`, `{"o":{"p":{"q":[[[]]],"r":"\\"}}}`,
	`[]`, `"str"`, `12`, `null`, `true`, `[{"a":1}]`, `{"a":[]} `, `{"":""}`, `{"a":"` + strings.Repeat(`x\"`, 300) + `"}`,
}

// TestSplitObjectMatchesEncodingJSON: on valid JSON, Split accepts
// exactly the objects and gives the same members as encoding/json, and
// Unquote decodes every string value exactly as encoding/json does.
func TestSplitObjectMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	docs := append([]string{}, jsonCorpus...)
	for range 2000 {
		docs = append(docs, randomObject(rng, 0))
	}
	for _, doc := range docs {
		if !json.Valid([]byte(doc)) {
			t.Fatalf("corpus entry is not valid JSON: %q", doc)
		}
		checkSplit(t, []byte(doc))
	}
}

// checkSplit fails t unless Split and Unquote agree with
// encoding/json on b, a valid JSON text.
func checkSplit(t *testing.T, b []byte) {
	t.Helper()
	checkBadUTF8(t, b)
	var want map[string]json.RawMessage
	wantErr := json.Unmarshal(b, &want)
	got, ok := Split(b)
	if ok != (wantErr == nil && want != nil) {
		t.Fatalf("Split(%q) ok = %v, encoding/json err %v map %v", b, ok, wantErr, want)
	}
	if !ok {
		return
	}
	if !reflect.DeepEqual(normalise(got), normalise(want)) {
		t.Fatalf("Split(%q)\n got  %q\n want %q", b, got, want)
	}
	for k, raw := range got {
		var ws string
		werr := json.Unmarshal(raw, &ws)
		gs, gok := Unquote(raw)
		if gok != (werr == nil && raw[0] == '"') {
			t.Fatalf("Unquote(%q) ok = %v, encoding/json err %v", raw, gok, werr)
		}
		if gok && gs != ws {
			t.Fatalf("Unquote of %q (key %q)\n got  %q\n want %q", raw, k, gs, ws)
		}
	}
}

// checkBadUTF8 fails t unless BadUTF8 finds, in b (a valid JSON text),
// the string that encoding/json's tokenizer finds first to hold invalid
// UTF-8, with the same path and the same decoded text.
func checkBadUTF8(t *testing.T, b []byte) {
	t.Helper()
	wantLoc, wantText, wantOK := tokenBadUTF8(b)
	loc, text, ok := BadUTF8(b)
	if ok != wantOK || ok != !utf8.Valid(b) {
		t.Fatalf("BadUTF8(%q) ok = %v, tokenizer %v", b, ok, wantOK)
	}
	if ok && (!reflect.DeepEqual(loc, wantLoc) || text != wantText) {
		t.Fatalf("BadUTF8(%q) = %#v %q, tokenizer %#v %q", b, loc, text, wantLoc, wantText)
	}
}

// tokenBadUTF8 is BadUTF8 by encoding/json's tokenizer: the path of the
// first string token (key or value) whose bytes are not valid UTF-8, and
// the string as encoding/json decodes it.
func tokenBadUTF8(b []byte) ([]any, string, bool) {
	type level struct {
		obj, wantKey bool
		key          string
		n            int
	}
	var open []level
	path := func() []any {
		loc := make([]any, len(open))
		for i, l := range open {
			if l.obj {
				loc[i] = l.key
			} else {
				loc[i] = l.n
			}
		}
		return loc
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	prev := int64(0)
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, "", false
		}
		// The bytes since the last token: delimiters, space and this one.
		raw := b[prev:d.InputOffset()]
		prev = d.InputOffset()
		s, isString := tok.(string)
		if n := len(open); n > 0 && open[n-1].obj && open[n-1].wantKey && isString {
			open[n-1].key, open[n-1].wantKey = s, false
			if !utf8.Valid(raw) {
				return path(), s, true
			}
			continue
		}
		if tok == json.Delim('}') || tok == json.Delim(']') {
			open = open[:len(open)-1]
		} else {
			if n := len(open); n > 0 && !open[n-1].obj {
				open[n-1].n++
			}
			switch tok {
			case json.Delim('{'):
				open = append(open, level{obj: true, wantKey: true})
				continue
			case json.Delim('['):
				open = append(open, level{n: -1})
				continue
			}
			if isString && !utf8.Valid(raw) {
				return path(), s, true
			}
		}
		if n := len(open); n > 0 && open[n-1].obj {
			open[n-1].wantKey = true // a member's value ended
		}
	}
}

// normalise compacts each value so whitespace inside values compares equal
// (encoding/json keeps raw bytes too; this only guards the comparison).
func normalise(m map[string]json.RawMessage) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		var buf bytes.Buffer
		json.Compact(&buf, v)
		out[k] = buf.String()
	}
	return out
}

// randomObject builds a valid JSON object with random keys and values,
// strings holding escapes, surrogates and raw (sometimes invalid) UTF-8.
func randomObject(rng *rand.Rand, depth int) string {
	var b strings.Builder
	b.WriteString("{")
	n := rng.IntN(5)
	for i := range n {
		if i > 0 {
			b.WriteString(ws(rng) + "," + ws(rng))
		}
		b.WriteString(randomString(rng) + ws(rng) + ":" + ws(rng) + randomValue(rng, depth+1))
	}
	b.WriteString(ws(rng) + "}")
	return b.String()
}

func ws(rng *rand.Rand) string { return []string{"", "", " ", "\n\t", "\r\n "}[rng.IntN(5)] }

func randomValue(rng *rand.Rand, depth int) string {
	k := rng.IntN(7)
	if depth > 3 {
		k = rng.IntN(3)
	}
	switch k {
	case 0, 1:
		return randomString(rng)
	case 2:
		return []string{"0", "-12.5e3", "true", "false", "null", "1E-2"}[rng.IntN(6)]
	case 3:
		var b strings.Builder
		b.WriteString("[" + ws(rng))
		for i := range rng.IntN(4) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(randomValue(rng, depth+1))
		}
		return b.String() + ws(rng) + "]"
	default:
		return randomObject(rng, depth+1)
	}
}

func randomString(rng *rand.Rand) string {
	pieces := []string{`a`, `Z`, ` `, `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u0041`, `\u00e9`,
		`\ud83d\ude00`, `\ud83d`, `\ude00`, `\uD834\uDD1E`, `\ud800\u0041`, "é", "€", "\xff", "\xc3", "\xe2\x82",
		"{", "}", "[", "]", ",", ":", `\"}`}
	var b strings.Builder
	b.WriteString(`"`)
	for range rng.IntN(12) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	b.WriteString(`"`)
	return b.String()
}

// FuzzSplitObject: on any valid JSON text, Split and Unquote agree
// with encoding/json (`go test -fuzz FuzzSplitObject ./internal/jsonscan/`).
func FuzzSplitObject(f *testing.F) {
	for _, doc := range jsonCorpus {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if json.Valid(b) {
			checkSplit(t, b)
		}
	})
}

// invalidJSON is texts json.Valid rejects, each near a valid one.
var invalidJSON = []string{
	``, ` `, `01`, `-`, `-a`, `1.`, `1.e5`, `1e`, `1e+`, `.5`, `+1`, `tru`, `nul`, `falsE`, `truex`, `[1,]`, `{"a":1,}`,
	`{,}`, `[,1]`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"\x01\"", "\"a\tb\"", `"abc`, `["a"`, `{"a" 1}`, `{1:2}`, `{"a"}`,
	`{} {}`, `[]]`, `[}`, `{]`, `{"a":[}`, `[1 2]`, `{"a":1 "b":2}`, "\xef\xbb\xbf{}", `"\`, `"\u`, `nulll`, `[-]`,
	`{"a":-01}`, `[1,,2]`, `{"a"::1}`, `[true false]`,
}

// TestValidJSONMatchesEncodingJSON: Valid agrees with json.Valid on
// the corpus, on random objects, on the texts above, on every prefix of
// each, on every single-byte change of each to a JSON-significant byte,
// and at encoding/json's nesting limit.
func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	docs := append(append([]string{}, jsonCorpus...), invalidJSON...)
	for range 60 { // FuzzValidJSON explores further
		docs = append(docs, randomObject(rng, 0))
	}
	for _, d := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1} {
		docs = append(docs, strings.Repeat("[", d)+strings.Repeat("]", d), strings.Repeat(`{"a":`, d)+"1"+strings.Repeat("}", d))
	}
	check := func(b []byte) {
		t.Helper()
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid %v", b, got, want)
		}
	}
	special := []byte("{}[]:,\"\\ \n0123456789-+.eEtfnulr\x00\x1f\x7f\xc3\xff")
	valid := 0
	for _, d := range docs {
		b := []byte(d)
		if json.Valid(b) {
			valid++
		}
		check(b)
		if len(b) > 2000 {
			continue // the nesting limit texts: whole only
		}
		for n := range len(b) {
			check(b[:n])
			for _, c := range special {
				m := bytes.Clone(b)
				m[n] = c
				check(m)
			}
		}
	}
	if valid < 60 || valid == len(docs) {
		t.Fatalf("%d of %d texts valid: the corpus must hold both kinds", valid, len(docs))
	}
}

// FuzzValidJSON: Valid and json.Valid agree on any input
// (`go test -fuzz FuzzValidJSON ./internal/jsonscan/`).
func FuzzValidJSON(f *testing.F) {
	for _, d := range append(append([]string{}, jsonCorpus...), invalidJSON...) {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}
