package server

import (
	"strings"
	"testing"

	"github.com/code4me/code4me/engine"
)

// formatInput is one next-edit request's material: a Python file whose
// function was renamed, the cursor on the call still to rename.
func formatInput() *nextEditInput {
	return &nextEditInput{
		path:        "src/calc.py",
		before:      "import math\n\n",
		region:      "def area(r):\n    return math.pi * r * r\n\nprint(circle_area(2))\n",
		cursor:      len("def area(r):\n    return math.pi * r * r\n\nprint(circle_"),
		after:       "\n# end\n",
		startOfFile: true,
		original:    "def circle_area(r):\n    return math.pi * r * r\n\nprint(circle_area(2))\n",
		edits: []editEvent{{path: "src/calc.py",
			diff: "--- a/src/calc.py\n+++ b/src/calc.py\n@@ -3,2 +3,2 @@\n-def circle_area(r):\n+def area(r):\n     return math.pi * r * r\n"}},
		snippets: []engine.Chunk{{Path: "src/geo.py", Text: "from calc import circle_area\n"}},
	}
}

// TestNextEditPrompts: each format writes the same material byte for byte
// as its model was trained to read it.
func TestNextEditPrompts(t *testing.T) {
	want := map[string]string{
		"zeta": "### Instruction:\nYou are a code completion assistant and your task is to analyze user edits and then rewrite an " +
			"excerpt that the user provides, suggesting the appropriate edits within the excerpt, taking into account the cursor " +
			"location.\n\n### User Edits:\n\n" +
			"User edited src/calc.py:\n```diff\n@@ -3,2 +3,2 @@\n-def circle_area(r):\n+def area(r):\n     return math.pi * r * r\n\n```" +
			"\n\n### User Excerpt:\n\n" +
			"```src/calc.py\n<|start_of_file|>\nimport math\n\n<|editable_region_start|>\n" +
			"def area(r):\n    return math.pi * r * r\n\nprint(circle_<|user_cursor_is_here|>area(2))\n" +
			"<|editable_region_end|>\n\n# end\n```\n\n### Response:\n",
		"sweep": "<|file_sep|>src/geo.py\nfrom calc import circle_area\n" +
			"<|file_sep|>src/calc.py\nimport math\n\ndef area(r):\n    return math.pi * r * r\n\nprint(circle_area(2))\n\n# end\n" +
			"<|file_sep|>src/calc.py.diff\noriginal:\ndef circle_area(r):\n    return math.pi * r * r\nupdated:\ndef area(r):\n    return math.pi * r * r\n" +
			"<|file_sep|>original/src/calc.py\ndef circle_area(r):\n    return math.pi * r * r\n\nprint(circle_area(2))\n" +
			"<|file_sep|>current/src/calc.py\ndef area(r):\n    return math.pi * r * r\n\nprint(circle_area(2))\n" +
			"<|file_sep|>updated/src/calc.py\n",
		"tabby": "<|original_code|>\ndef circle_area(r):\n    return math.pi * r * r\n\nprint(circle_area(2))\n\n" +
			"<|edits_diff|>\n--- a/src/calc.py\n+++ b/src/calc.py\n@@ -3,2 +3,2 @@\n-def circle_area(r):\n+def area(r):\n     return math.pi * r * r\n" +
			"<|current_version|>\ndef area(r):\n    return math.pi * r * r\n\nprint(circle_area(2))\n\n<|next_version|>\n",
	}
	for format, w := range want {
		if got := nextEditPrompt(format, formatInput()); got != w {
			t.Errorf("%s prompt:\n%q\nwant\n%q", format, got, w)
		}
	}
	// Tabby's edits_diff, when its client sent one, is written as sent.
	in := formatInput()
	d := "@@ raw @@"
	in.tabbyDiff = &d
	if got := nextEditPrompt("tabby", in); got != "<|original_code|>\n"+in.original+"\n<|edits_diff|>\n@@ raw @@\n<|current_version|>\n"+
		in.region+"\n<|next_version|>\n" {
		t.Errorf("tabby prompt with the client's diff: %q", got)
	}
	// Tabby's diffs name the file without a space ("---src/main.rs"): the
	// header is still a header, and an edit that only adds has an empty
	// original.
	tabbyStyle := &nextEditInput{path: "src/main.rs", region: "x\n",
		edits: []editEvent{{"src/main.rs", "---src/main.rs\n+++src/main.rs\n@@ -1,1 +1,2 @@\n+    let x = 5;\n"}}}
	if got := nextEditPrompt("sweep", tabbyStyle); !strings.HasPrefix(got, "<|file_sep|>src/main.rs.diff\noriginal:\nupdated:\n    let x = 5;\n<|file_sep|>original/") {
		t.Errorf("sweep prompt of a Tabby diff: %q", got)
	}
	if got := nextEditPrompt("zeta", tabbyStyle); !strings.Contains(got, "User edited src/main.rs:\n```diff\n@@ -1,1 +1,2 @@\n+    let x = 5;\n\n```") {
		t.Errorf("zeta prompt of a Tabby diff: %q", got)
	}
	if !isZetaPrompt(want["zeta"]) || isZetaPrompt(want["sweep"]) || isZetaPrompt(want["tabby"]) {
		t.Error("isZetaPrompt tells the formats apart wrongly")
	}
}

// TestNextEditRegion: the rewritten region is read back from each
// format's model output, markers and cursor taken out, ending as the
// region ends.
func TestNextEditRegion(t *testing.T) {
	region := "def area(r):\n    return r\n"
	for _, tc := range []struct{ format, text, want string }{
		{"zeta", "```src/calc.py\n<|editable_region_start|>\ndef area(r):\n    return math.pi * r<|user_cursor_is_here|> * r\n",
			"def area(r):\n    return math.pi * r * r\n"},
		{"zeta", "def area(r):\n    return 2 * r\n<|editable_region_end|>\n```", "def area(r):\n    return 2 * r\n"},
		{"zeta", "<|editable_region_start|>\nx = 1", "x = 1\n"},
		{"sweep", "def area(r):\n    return 3 * r\n<|file_sep|>junk", "def area(r):\n    return 3 * r\n"},
		{"tabby", "def area(r):\n    return 4 * r<|endoftext|>", "def area(r):\n    return 4 * r\n"},
	} {
		if got := nextEditRegion(tc.format, tc.text, region); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.format, tc.text, got, tc.want)
		}
	}
	if got := nextEditRegion("sweep", "a\nb\n", "a\nc"); got != "a\nb" {
		t.Errorf("a region without its final newline: %q", got)
	}
}

// TestNextEditReplacement: the suggestion narrows to the changed span,
// mapped onto the region as the client sent it across a redaction before
// or after it, and withheld when it touches redacted text.
func TestNextEditReplacement(t *testing.T) {
	for _, tc := range []struct {
		name, client, region, rewritten string
		ok                              bool
		start, end                      int
		text                            string
	}{
		{"plain", "a = 1\nb = 2\n", "a = 1\nb = 2\n", "a = 1\nb = 3\n", true, 10, 11, "3"},
		{"unchanged", "a\n", "a\n", "a\n", false, 0, 0, ""},
		{"secret before", "k = 'SECRET'\nb = 2\n", "k = '<r>'\nb = 2\n", "k = '<r>'\nb = 3\n", true, 17, 18, "3"},
		{"secret after", "b = 2\nk = 'SECRET'\n", "b = 2\nk = '<r>'\n", "b = 3\nk = '<r>'\n", true, 4, 5, "3"},
		{"change touches it", "k = 'SECRET'\n", "k = '<r>'\n", "k = '<q>'\n", false, 0, 0, ""},
		{"insertion right after it", "k = 'SECRET'\n", "k = '<r>'\n", "k = '<r>x'\n", true, 11, 11, "x"},
	} {
		out := &nextEditResult{region: tc.region, rewritten: tc.rewritten}
		out.replacement(tc.client)
		if out.ok != tc.ok || tc.ok && (out.start != tc.start || out.end != tc.end || out.text != tc.text) {
			t.Errorf("%s: ok %v [%d, %d) %q", tc.name, out.ok, out.start, out.end, out.text)
			continue
		}
		if tc.ok {
			if got := tc.client[:out.start] + out.text + tc.client[out.end:]; got != strings.ReplaceAll(tc.rewritten, "<r>", "SECRET") {
				t.Errorf("%s: applied = %q", tc.name, got)
			}
		}
	}
}
