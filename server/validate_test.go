package server

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestJSONBytesFastPathSameFields: a completion body read through the
// fast path gives the same request as one whose strings all carry
// escapes (the decoder's slow path inside Unquote).
func TestJSONBytesFastPathSameFields(t *testing.T) {
	prefix := "func f() {\n\treturn \"é\\u\" // \xff\n"
	body, _ := json.Marshal(map[string]any{"model_ids": []int{1, 2}, "context": map[string]any{"prefix": prefix, "suffix": "}", "file_name": "a.go",
		"selected_text": "", "context_files": []string{"x.go"}}, "contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 2, "language_id": 3},
		"behavioral_telemetry": map[string]any{}, "store_context": true})
	f, err := jsonBytes(body)
	if err != nil {
		t.Fatal(err)
	}
	r := parseCompletionRequest(f)
	if err := f.err(); err != nil {
		t.Fatal(err)
	}
	want := strings.ToValidUTF8(prefix, "\uFFFD")
	if r.Context.Prefix != want || r.Context.Suffix != "}" || !reflect.DeepEqual(r.ModelIDs, []int64{1, 2}) ||
		!reflect.DeepEqual(r.Context.ContextFiles, []string{"x.go"}) || r.Contextual == nil || r.Contextual.LanguageID != 3 {
		t.Fatalf("parsed %+v, context %+v", r, r.Context)
	}
	if !utf8.ValidString(r.Context.Prefix) {
		t.Fatal("prefix is not valid UTF-8")
	}
}
