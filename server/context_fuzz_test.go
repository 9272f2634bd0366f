package server

import (
	"strconv"
	"testing"
)

// FuzzContextUpdate: the body of POST
// /api/completion/multi-file-context/update and of the
// multi_file_context_update frame gives updates or a 422, never both or
// neither; accepted updates are the body's files, each
// change as encoding/json reads it, with line numbers in [0, maxLine].
func FuzzContextUpdate(f *testing.F) {
	for _, b := range append([]string{
		`{"context_updates":{"a.py":[{"change_type":"update","start_line":0,"end_line":1,"new_lines":["x = 1"]}],"b.py":[]}}`,
		`{"context_updates":{"a.py":[{"change_type":"insert","start_line":3,"end_line":3,"new_lines":["1","null"]},{"change_type":"remove","start_line":0,"end_line":2}]}}`,
		`{"context_updates":{"a.py":[{"change_type":"move","start_line":-1,"end_line":1048577,"new_lines":[1]}],"b":{},"c":[1,null]}}`,
		`{"context_updates":{"a":[{"change_type":"update","start_line":1.0,"end_line":"2"}],"a":[]}}`,
		`{"context_updates":[]}`, `{"context_updates":null}`,
	}, fuzzBodies...) {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fl, err := jsonBytes(body)
		if err != nil {
			checkValidation(t, err, body)
			return
		}
		ups := parseContextUpdates(fl)
		if err := fl.err(); err != nil {
			checkValidation(t, err, body)
			return
		}
		doc := decodeDoc(t, body)
		files, ok := doc["context_updates"].(map[string]any)
		if !ok {
			t.Fatalf("context_updates accepted as %#v", doc["context_updates"])
		}
		if len(ups) < len(files) || len(ups) > len(files) && !hasDuplicateKeys(body) {
			t.Fatalf("%d file updates, the body names %d files", len(ups), len(files))
		}
		if hasDuplicateKeys(body) {
			return // encoding/json keeps only the last of a repeated file
		}
		for _, u := range ups {
			list, ok := files[u.file].([]any)
			if !ok || len(list) != len(u.changes) {
				t.Fatalf("file %q: %d changes, encoding/json reads %#v", u.file, len(u.changes), files[u.file])
			}
			for i, ch := range u.changes {
				want := list[i].(map[string]any)
				what := u.file + "[" + strconv.Itoa(i) + "]"
				checkText(t, what+".change_type", ch.ChangeType, want["change_type"], true)
				checkInt(t, what+".start_line", int64(ch.StartLine), want["start_line"], 0)
				checkInt(t, what+".end_line", int64(ch.EndLine), want["end_line"], 0)
				if ch.StartLine > maxLine || ch.EndLine > maxLine {
					t.Fatalf("%s: lines %d-%d accepted", what, ch.StartLine, ch.EndLine)
				}
				lines, present := want["new_lines"]
				checkStrings(t, what+".new_lines", ch.NewLines, lines, present)
			}
		}
	})
}
