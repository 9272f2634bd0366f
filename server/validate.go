package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/jsonscan"
)

// fieldError is one entry of a 422 answer, in FastAPI's shape:
// {"type","loc","msg","input"[,"ctx"]}.
type fieldError struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// validationError answers 422 {"detail":[fieldError...]}.
type validationError struct{ errs []fieldError }

func (e *validationError) Error() string {
	parts := make([]string, len(e.errs))
	for i, fe := range e.errs {
		parts[i] = fmt.Sprint(fe.Loc) + ": " + fe.Type
	}
	return "validation failed: " + strings.Join(parts, "; ")
}

// invalid returns a validationError with one entry.
func invalid(typ string, loc []any, msg string, input any) error {
	return &validationError{errs: []fieldError{{Type: typ, Loc: loc, Msg: msg, Input: input}}}
}

// fields validates one object (a JSON body, a nested object, a query
// string or a form) field by field and collects every error, like
// pydantic. Values are JSON; query and form values are JSON strings, and
// the typed getters parse them leniently as pydantic does for such inputs.
type fields struct {
	loc   []any
	raw   map[string]json.RawMessage
	input any // the whole object, for "missing" errors; see in
	// inputRaw is the object's JSON, decoded into input only when an
	// error needs it: most requests are valid, and decoding a large body
	// twice is a measurable part of a keystroke's cost.
	inputRaw json.RawMessage
	// inputFloats: numbers in inputRaw decode as float64 (nested objects),
	// else as json.Number (bodies).
	inputFloats bool
	errs        *[]fieldError
	fromKV      bool // query or form: values are strings to parse
}

// jsonBody decodes the request body as a JSON object. A missing, malformed
// or non-object body is a 422 at once.
func jsonBody(c *fiber.Ctx) (*fields, error) { return jsonBytes(c.Body()) }

// jsonBytes is jsonBody of body, which must stay unchanged while the
// fields are used.
func jsonBytes(body []byte) (*fields, error) {
	errs := []fieldError{}
	f := &fields{loc: []any{"body"}, errs: &errs}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid("missing", []any{"body"}, "Field required", nil)
	}
	if escapedNUL(body) {
		return nil, errNUL
	}
	// Fast path: valid JSON holding an object is checked once and split
	// (internal/jsonscan). Anything else takes the slow path, which tells
	// malformed JSON from a non-object.
	if m, ok := jsonscan.Object(body); ok {
		if err := unicodeErr(body); err != nil {
			return nil, err
		}
		f.raw, f.inputRaw = m, body
		return f, nil
	}
	var input any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	// Anything but space after the value is invalid, a closing bracket too
	// (which d.More does not count as more).
	if err := d.Decode(&input); err != nil || jsonscan.SkipSpace(body, int(d.InputOffset())) < len(body) {
		return nil, &validationError{errs: []fieldError{{Type: "json_invalid", Loc: []any{"body", jsonErrorPos(body, d, err)},
			Msg: "JSON decode error", Input: map[string]any{}, Ctx: map[string]any{"error": "invalid JSON"}}}}
	}
	if err := json.Unmarshal(body, &f.raw); err != nil || f.raw == nil { // null too
		return nil, invalid("model_attributes_type", []any{"body"},
			"Input should be a valid dictionary or object to extract fields from", input)
	}
	f.input = input
	return f, nil
}

// jsonErrorPos is where decoding body failed with err (nil: data after
// the value), counted in characters as FastAPI's json_invalid location is:
// the offending character, the end for a truncated text, the start of
// what follows the value.
func jsonErrorPos(body []byte, d *json.Decoder, err error) int {
	off := len(body)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		off = int(se.Offset) - 1 // Offset counts the offending byte
	case err == nil:
		off = jsonscan.SkipSpace(body, int(d.InputOffset()))
	}
	return utf8.RuneCount(body[:min(max(off, 0), len(body))])
}

// queryFields reads the query string.
func queryFields(c *fiber.Ctx) *fields { return kvFields(c, "query", c.Context().QueryArgs().VisitAll) }

// formFields reads an application/x-www-form-urlencoded body.
func formFields(c *fiber.Ctx) *fields { return kvFields(c, "body", c.Context().PostArgs().VisitAll) }

// msgNUL and errNUL refuse text holding the NUL character: no PostgreSQL
// text column can store it, and no source file or name needs it.
const msgNUL = "Text cannot contain the NUL character (\\u0000)"

var errNUL = invalid("string_nul", []any{"body"}, msgNUL, nil)

// msgUnicode refuses a string that is not valid UTF-8. encoding/json would
// replace each invalid byte with U+FFFD and store text the client never
// sent; no conforming JSON encoder produces such bytes, so they are
// refused instead. An escaped unpaired surrogate ("\ud800") is valid
// JSON that JavaScript's JSON.stringify writes for a lone surrogate in a
// document; it is read as U+FFFD.
const msgUnicode = "Input should be a valid string, unable to parse raw data as a unicode string"

// unicodeErr is nil when body, a valid JSON text, is valid UTF-8, else the
// 422 string_unicode naming the first string (a value or a key) that is
// not. It runs before any handler can mark its secrets (fields.secret), so
// it masks a string under one of secretFields itself: a password with one
// bad byte must not come back nearly verbatim.
func unicodeErr(body []byte) error {
	if utf8.Valid(body) {
		return nil
	}
	loc, text, _ := jsonscan.BadUTF8(body)
	var input any = text
	for _, k := range loc {
		if s, ok := k.(string); ok && slices.Contains(secretFields, s) {
			input = "**********"
		}
	}
	return invalid("string_unicode", append([]any{"body"}, loc...), msgUnicode, input)
}

// secretFields are the names of the body fields that hold passwords and
// tokens.
var secretFields = []string{"password", "previous_password", "new_password", "confirm_password", "token"}

// escapedNUL reports whether JSON text holds the escape \u0000 (a raw NUL
// byte is not valid JSON to begin with).
func escapedNUL(b []byte) bool {
	for off := 0; ; {
		k := bytes.Index(b[off:], []byte(`\u0000`))
		if k < 0 {
			return false
		}
		k += off
		n := 0 // backslashes ending at k: an odd count makes k an escape
		for i := k; i >= 0 && b[i] == '\\'; i-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		off = k + 1
	}
}

func kvFields(_ *fiber.Ctx, where string, visit func(func(k, v []byte))) *fields {
	errs := []fieldError{}
	f := &fields{loc: []any{where}, raw: map[string]json.RawMessage{}, errs: &errs, fromKV: true}
	input := map[string]any{}
	visit(func(k, v []byte) {
		if _, dup := f.raw[string(k)]; dup {
			return // first value wins
		}
		if bytes.IndexByte(v, 0) >= 0 {
			f.add("string_nul", string(k), msgNUL, nil, nil)
			return
		}
		if !utf8.Valid(v) || !utf8.Valid(k) {
			// Kept as read (a run of bad bytes as U+FFFD), so the field is
			// not also reported missing; the error refuses the request.
			k, v = []byte(strings.ToValidUTF8(string(k), "\uFFFD")), []byte(strings.ToValidUTF8(string(v), "\uFFFD"))
			f.add("string_unicode", string(k), msgUnicode, string(v), nil)
		}
		b, _ := json.Marshal(string(v))
		f.raw[string(k)] = b
		input[string(k)] = string(v)
	})
	f.input = input
	return f
}

// object returns the nested object name (nil when absent and optional).
func (f *fields) object(name string, required bool) *fields {
	raw, ok := f.get(name, required)
	if !ok {
		return nil
	}
	sub := &fields{loc: f.at(name), errs: f.errs}
	// raw is part of a valid document, checked when it was read.
	if m, ok := jsonscan.Split(raw); ok {
		sub.raw = m
	} else if err := json.Unmarshal(raw, &sub.raw); err != nil || sub.raw == nil {
		var input any
		json.Unmarshal(raw, &input)
		f.add("model_type", name, "Input should be a valid dictionary or instance of the model", input, nil)
		return nil
	}
	sub.inputRaw, sub.inputFloats = raw, true
	return sub
}

// err returns the collected errors, or nil.
func (f *fields) err() error {
	if len(*f.errs) == 0 {
		return nil
	}
	return &validationError{errs: *f.errs}
}

// has reports whether name is present and not null.
func (f *fields) has(name string) bool {
	raw, ok := f.raw[name]
	return ok && string(raw) != "null"
}

func (f *fields) at(name string) []any {
	loc := make([]any, len(f.loc), len(f.loc)+1)
	copy(loc, f.loc)
	return append(loc, name)
}

func (f *fields) add(typ, name, msg string, input any, ctx map[string]any) {
	*f.errs = append(*f.errs, fieldError{Type: typ, Loc: f.at(name), Msg: msg, Input: input, Ctx: ctx})
}

// in returns the whole object as the input of an error.
func (f *fields) in() any {
	if f.input == nil && f.inputRaw != nil {
		if f.inputFloats {
			json.Unmarshal(f.inputRaw, &f.input)
		} else {
			f.input = rawInput(f.inputRaw)
		}
	}
	return f.input
}

// get returns the raw value; a missing required field is recorded. A null
// optional field counts as absent.
func (f *fields) get(name string, required bool) (json.RawMessage, bool) {
	raw, ok := f.raw[name]
	if !ok || (string(raw) == "null" && !required) {
		if required && !ok {
			f.add("missing", name, "Field required", f.in(), nil)
		}
		return nil, false
	}
	return raw, true
}

func rawInput(raw json.RawMessage) any {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	d.Decode(&v)
	return v
}

// str reads a string with length bounds (max 0: unbounded).
func (f *fields) str(name string, required bool, min, max int) (string, bool) {
	raw, ok := f.get(name, required)
	if !ok {
		return "", false
	}
	s, ok := jsonscan.Unquote(raw)
	if !ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			f.add("string_type", name, "Input should be a valid string", rawInput(raw), nil)
			return "", false
		}
	}
	n := utf8.RuneCountInString(s)
	if n < min {
		f.add("string_too_short", name, fmt.Sprintf("String should have at least %d character%s", min, plural(min)), s, map[string]any{"min_length": min})
		return "", false
	}
	if max > 0 && n > max {
		f.add("string_too_long", name, fmt.Sprintf("String should have at most %d character%s", max, plural(max)), s, map[string]any{"max_length": max})
		return "", false
	}
	return s, true
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// integer reads an integer >= min (and, being an int64, <= MaxInt64:
// bigint columns and ids).
func (f *fields) integer(name string, required bool, min int64) (int64, bool) {
	return f.integerIn(name, required, min, math.MaxInt64)
}

// integerIn reads an integer in [min, max].
func (f *fields) integerIn(name string, required bool, min, max int64) (int64, bool) {
	raw, ok := f.get(name, required)
	if !ok {
		return 0, false
	}
	in := rawInput(raw)
	var n int64
	var err error
	switch v := in.(type) {
	case json.Number:
		n, err = strconv.ParseInt(v.String(), 10, 64)
		if err != nil {
			if fl, ferr := v.Float64(); ferr == nil && fl == float64(int64(fl)) {
				n, err = int64(fl), nil
			}
		}
	case string:
		if !f.fromKV {
			f.add("int_type", name, "Input should be a valid integer", in, nil)
			return 0, false
		}
		n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			f.add("int_parsing", name, "Input should be a valid integer, unable to parse string as an integer", in, nil)
			return 0, false
		}
	default:
		err = fmt.Errorf("not a number")
	}
	if err != nil {
		f.add("int_type", name, "Input should be a valid integer", in, nil)
		return 0, false
	}
	if n < min {
		f.add("greater_than_equal", name, fmt.Sprintf("Input should be greater than or equal to %d", min), in, map[string]any{"ge": min})
		return 0, false
	}
	if n > max {
		f.add("less_than_equal", name, fmt.Sprintf("Input should be less than or equal to %d", max), in, map[string]any{"le": max})
		return 0, false
	}
	return n, true
}

// boolean reads a boolean; query and form values accept pydantic's words.
func (f *fields) boolean(name string, required bool) (bool, bool) {
	raw, ok := f.get(name, required)
	if !ok {
		return false, false
	}
	in := rawInput(raw)
	switch v := in.(type) {
	case bool:
		return v, true
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "true", "t", "yes", "y", "on":
			return true, true
		case "0", "false", "f", "no", "n", "off":
			return false, true
		}
		f.add("bool_parsing", name, "Input should be a valid boolean, unable to interpret input", in, nil)
		return false, false
	case json.Number:
		switch v.String() {
		case "1":
			return true, true
		case "0":
			return false, true
		}
	}
	f.add("bool_type", name, "Input should be a valid boolean", in, nil)
	return false, false
}

// uuidField reads a UUID.
func (f *fields) uuidField(name string, required bool) (uuid.UUID, bool) {
	s, ok := f.str(name, required, 0, 0)
	if !ok {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(s)
	if err != nil {
		f.add("uuid_parsing", name, "Input should be a valid UUID, invalid character or length", s, map[string]any{"error": "invalid UUID"})
		return uuid.Nil, false
	}
	return id, true
}

// datetime reads an RFC 3339 instant.
func (f *fields) datetime(name string, required bool) (time.Time, bool) {
	s, ok := f.str(name, required, 0, 0)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		f.add("datetime_parsing", name, "Input should be a valid RFC 3339 datetime", s, nil)
		return time.Time{}, false
	}
	return t, true
}

// email reads an email address, trimmed and lower-cased (EmailStr).
func (f *fields) email(name string, required bool) (string, bool) {
	s, ok := f.str(name, required, 0, 0)
	if !ok {
		return "", false
	}
	e, err := normalizeEmail(s)
	if err != nil {
		f.add("value_error", name, "value is not a valid email address: "+err.Error(), s, map[string]any{"reason": err.Error()})
		return "", false
	}
	return e, true
}

func normalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) < 3 || len(s) > 254 {
		return "", fmt.Errorf("The email address is not valid.")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return "", fmt.Errorf("The email address is not valid. It must have exactly one @-sign.")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || !strings.Contains(s[at+1:], ".") || strings.HasSuffix(s, ".") {
		return "", fmt.Errorf("The part after the @-sign is not valid. It should have a period.")
	}
	return s, nil
}

var passwordRule = regexp.MustCompile(`^\S{8,}$`)

// PasswordRuleMsg is the message of the password rule, worded as Code4me V2's.
const PasswordRuleMsg = "Password must be at least 8 characters long, contain at least one uppercase letter, one lowercase letter, and one digit."

// passwordOK applies the rule ^(?=.*[A-Z])(?=.*[a-z])(?=.*\d)\S{8,}$.
func passwordOK(p string) bool {
	return passwordRule.MatchString(p) && strings.ContainsAny(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") &&
		strings.ContainsAny(p, "abcdefghijklmnopqrstuvwxyz") && strings.ContainsAny(p, "0123456789")
}

// password reads a password and applies the rule. The input is never
// echoed in the error (Code4me V2's reset-password/change echoed it).
func (f *fields) password(name string, required bool, max int) (string, bool) {
	s, ok := f.str(name, required, 0, max)
	if !ok {
		return "", false
	}
	if s == "" {
		f.add("value_error", name, "Value error, Password cannot be empty", "**********", nil)
		return "", false
	}
	if !passwordOK(s) {
		f.add("value_error", name, "Value error, "+PasswordRuleMsg, "**********", nil)
		return "", false
	}
	return s, true
}

// secret redacts the input of errors about name (passwords, tokens), which
// are echoed otherwise.
func (f *fields) secret(names ...string) {
	for i := range *f.errs {
		e := &(*f.errs)[i]
		for _, n := range names {
			if len(e.Loc) > 0 && e.Loc[len(e.Loc)-1] == n {
				e.Input = "**********"
			}
		}
		if m, ok := e.Input.(map[string]any); ok {
			e.Input = redactMap(m, names)
		}
	}
}

func redactMap(m map[string]any, names []string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
		for _, n := range names {
			if k == n {
				out[k] = "**********"
			}
		}
	}
	return out
}

// pathUUID reads the UUID path parameter name (422 when malformed).
func pathUUID(c *fiber.Ctx, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Params(name))
	if err != nil {
		return uuid.Nil, invalid("uuid_parsing", []any{"path", name}, "Input should be a valid UUID, invalid character or length", c.Params(name))
	}
	return id, nil
}
