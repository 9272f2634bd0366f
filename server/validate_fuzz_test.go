package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets of the request decoders (*_fuzz_test.go in this
// package) hold each decoder to the same contract: for any body it either
// gives a value or a 422 in the house shape, never both or neither, never a
// panic; a value agrees with encoding/json's reading of the body
// (decodeDoc); a 422 encodes as JSON and each of its entries names a place
// in the body (checkValidation).

// fuzzBodies are request bodies of every decoder, valid and not: the seeds
// each target starts from besides its own.
var fuzzBodies = []string{
	``, ` `, `null`, `[]`, `"x"`, `{`, `{}`, `{"a":1,"a":2}`, `{"s":"\u0000"}`, `{"s":"\\u0000"}`, "{\"s\":\"\xff\"}", "{\"\xff\":1}",
	`{"s":"\ud800"}`, `{"n":1e400}`, `{"n":-0}`, `{"n":1.0}`, `{"n":9223372036854775808}`, `{"o":{"p":[1,{"q":null}]}}`,
}

// decodeDoc is body as encoding/json reads it, numbers as json.Number: the
// independent reading each decoder's result is compared with.
func decodeDoc(t *testing.T, body []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		t.Fatalf("accepted body %q is no JSON object: %v", body, err)
	}
	return m
}

// docAt walks doc along loc: object keys and list indices.
func docAt(doc any, loc []any) (any, bool) {
	for _, step := range loc {
		switch k := step.(type) {
		case string:
			m, ok := doc.(map[string]any)
			if !ok {
				return nil, false
			}
			if doc, ok = m[k]; !ok {
				return nil, false
			}
		case json.Number: // an index read back from JSON
			l, ok := doc.([]any)
			i, err := strconv.Atoi(string(k))
			if !ok || err != nil || i < 0 || i >= len(l) {
				return nil, false
			}
			doc = l[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// hasDuplicateKeys reports whether some object in body, a valid JSON
// text, repeats a key. encoding/json keeps the last value, while a decoder
// that reads members in order (the context update) reports errors of the
// earlier ones too: their locations are then ambiguous.
func hasDuplicateKeys(body []byte) bool {
	d := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		keys    map[string]bool
		wantKey bool
	}
	var open []*level
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		top := (*level)(nil)
		if len(open) > 0 {
			top = open[len(open)-1]
		}
		if s, ok := tok.(string); ok && top != nil && top.keys != nil && top.wantKey {
			if top.keys[s] {
				return true
			}
			top.keys[s], top.wantKey = true, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			open = append(open, &level{keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			open = append(open, &level{})
			continue
		case json.Delim('}'), json.Delim(']'):
			open = open[:len(open)-1]
			if len(open) > 0 {
				top = open[len(open)-1]
			} else {
				top = nil
			}
		}
		if top != nil && top.keys != nil {
			top.wantKey = true // a member's value ended
		}
	}
}

// validationTypes are the error types the decoders report.
var validationTypes = map[string]bool{
	"missing": true, "json_invalid": true, "model_attributes_type": true, "model_type": true, "dict_type": true,
	"list_type": true, "tuple_type": true, "string_type": true, "string_too_short": true, "string_too_long": true,
	"string_nul": true, "string_unicode": true, "int_type": true, "int_parsing": true, "greater_than_equal": true,
	"less_than_equal": true, "bool_type": true, "bool_parsing": true, "float_type": true, "uuid_parsing": true,
	"datetime_parsing": true, "datetime_from_date_parsing": true, "literal_error": true, "value_error": true,
}

// checkValidation fails t unless err is what the error mapping answers
// with 422, and the answer passes check422.
func checkValidation(t *testing.T, err error, body []byte) {
	t.Helper()
	var ve *validationError
	if !errors.As(err, &ve) || len(ve.errs) == 0 {
		t.Fatalf("body %q: error %v is no validation error", body, err)
	}
	status, resp := (&Server{}).errorResponse(context.Background(), err)
	raw, jerr := json.Marshal(resp)
	if jerr != nil {
		t.Fatalf("body %q: the 422 does not encode: %v", body, jerr)
	}
	check422(t, status, raw, body)
}

// check422 fails t unless status and raw are a 422 in the house shape,
// FastAPI's {"detail": [{"type","loc","msg","input"[,"ctx"]}]}, each entry
// located under "body". When body is a JSON object without repeated keys,
// each entry also names a place in it: a missing field's object holds no
// such key, and any other entry's location holds a value.
func check422(t *testing.T, status int, raw, body []byte) []map[string]any {
	t.Helper()
	var shape struct {
		Detail []map[string]any `json:"detail"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if status != 422 || d.Decode(&shape) != nil || len(shape.Detail) == 0 {
		t.Fatalf("body %q: answer %d %s is no 422 {\"detail\": [...]}", body, status, raw)
	}
	var doc map[string]any
	if json.Valid(body) && !hasDuplicateKeys(body) {
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		d.Decode(&doc)
	}
	for _, e := range shape.Detail {
		typ, _ := e["type"].(string)
		msg, _ := e["msg"].(string)
		loc, _ := e["loc"].([]any)
		_, hasInput := e["input"]
		if !validationTypes[typ] || msg == "" || !hasInput || len(loc) == 0 || loc[0] != "body" {
			t.Fatalf("body %q: 422 entry %v", body, e)
		}
		if doc == nil || typ == "json_invalid" || len(loc) == 1 {
			continue
		}
		loc = loc[1:]
		if typ == "missing" {
			parent, ok := docAt(doc, loc[:len(loc)-1])
			m, isObj := parent.(map[string]any)
			key, _ := loc[len(loc)-1].(string)
			if _, present := m[key]; !ok || !isObj || present {
				t.Fatalf("body %q: %v reported missing", body, e["loc"])
			}
		} else if _, ok := docAt(doc, loc); !ok {
			t.Fatalf("body %q: 422 entry %v names no place in the body", body, e)
		}
	}
	return shape.Detail
}

// checkText fails t unless s is text a decoder may accept: valid UTF-8
// without NUL, equal to what encoding/json reads at the same place.
func checkText(t *testing.T, what, s string, doc any, ok bool) {
	t.Helper()
	want, isString := doc.(string)
	if !ok || !isString || s != want || !utf8.ValidString(s) || strings.Contains(s, "\x00") {
		t.Fatalf("%s: %q, encoding/json reads %#v", what, s, doc)
	}
}

// FuzzJSONBody: jsonBytes (jsonBody's reader of every JSON body) gives
// fields or a 422, never both or neither; fields only for a JSON object
// whose text is valid UTF-8 without NUL, with exactly its keys; a
// malformed text is json_invalid.
func FuzzJSONBody(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fl, err := jsonBytes(body)
		if (fl == nil) == (err == nil) {
			t.Fatalf("jsonBytes(%q) = %v, %v", body, fl, err)
		}
		if err != nil {
			checkValidation(t, err, body)
			var ve *validationError
			errors.As(err, &ve)
			if typ := ve.errs[0].Type; len(bytes.TrimSpace(body)) > 0 && !escapedNUL(body) && (typ == "json_invalid") == json.Valid(body) {
				t.Fatalf("jsonBytes(%q): %s, but json.Valid says %v", body, typ, json.Valid(body))
			}
			return
		}
		doc := decodeDoc(t, body)
		if !utf8.Valid(body) || hasNUL(doc) {
			t.Fatalf("jsonBytes(%q) accepted invalid UTF-8 or NUL", body)
		}
		if len(fl.raw) != len(doc) {
			t.Fatalf("jsonBytes(%q): %d members, encoding/json %d", body, len(fl.raw), len(doc))
		}
		for k, raw := range fl.raw {
			var v any
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				t.Fatalf("member %q = %q: %v", k, raw, err)
			}
			if want, ok := doc[k]; !ok || !jsonEqual(v, want) {
				t.Fatalf("member %q = %#v, encoding/json %#v", k, v, want)
			}
		}
	})
}

// hasNUL reports whether a key or string in v holds NUL.
func hasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, "\x00")
	case []any:
		for _, e := range v {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.Contains(k, "\x00") || hasNUL(e) {
				return true
			}
		}
	}
	return false
}

// jsonEqual compares two values encoding/json decoded.
func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
