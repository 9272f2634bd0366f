package hocon

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateAccepts(t *testing.T) {
	for name, doc := range map[string]string{
		"json":           `{"a": 1, "b": [1, 2.5, -3], "c": {"d": null, "e": true}, "f": "x\"y\u00e9"}`,
		"unbraced":       "a = 1\nb : two words\nc { d = [x, y] }\n",
		"comments":       "# top\na = 1 // trailing\n// whole line\nb = \"http://host\" # more\n",
		"paths":          `a.b."c.d" = 1`,
		"newline lists":  "a = [\n  1\n  2,\n  3\n]\n",
		"triple":         "a = \"\"\"line one\nline \"two\" \"\"\"\n",
		"substitution":   "a = 1\nb = ${a}\nc = ${?HOME}/x\n",
		"append":         "a += 1\n",
		"include":        "include \"other.conf\"\na = 1\n",
		"empty object":   "{}",
		"trailing comma": "{a = 1, b = 2,}",
	} {
		if err := Validate(doc); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"", "line 1, column 1: the document is empty"},
		{"  # only a comment\n", "the document is empty"},
		{"config { a = 1 ", "line 1, column 16: missing '}': the object is not closed"},
		{"a = [1, 2", "missing ']': the array is not closed"},
		{"a = \"abc\nb = 1", "line 1, column 9: the string is not closed"},
		{"a = = 3", "line 1, column 5: unexpected '=' in a value"},
		{"a\n", "line 1, column 2: expected '=', ':' or '{' after the key, found end of line"},
		{"a = \n", "expected a value, found end of line"},
		{"}}}", "line 1, column 1: expected a key, found '}'"},
		{"{a = 1} b", "unexpected 'b' after the root object"},
		{"a = 1 b = 2", "line 1, column 9: unexpected '=' in a value"},
		{"a = ${b", "expected '}' to close the substitution"},
		{`a = "\q"`, `invalid escape \'q'`},
		{"a = \"\"\"open", "the triple-quoted string is not closed"},
		{"a = [1 2] ]", "expected a comma or a new line after a field, found ']'"},
		{"{a = 1,, b = 2}", "line 1, column 8: expected a key, found ','"},
		{"a = 1\n\n  b { c = }\n", "line 3, column 11: expected a value, found '}'"},
	} {
		err := Validate(tc.doc)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Validate(%q) = %v, want a SyntaxError", tc.doc, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q) = %q, want it to contain %q", tc.doc, err, tc.want)
		}
	}
}
