package server

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/google/uuid"
)

// completionBodies are completion and chat request bodies near the valid
// ones, each a seed of FuzzCompletionRequest and FuzzChatRequest.
var completionBodies = []string{
	`{"model_ids":[1,2],"context":{"prefix":"def f(","suffix":")\n","file_name":"a.py","selected_text":"","context_files":["b.py"]},` +
		`"contextual_telemetry":{"version_id":1,"trigger_type_id":2,"language_id":3,"file_path":"a.py","caret_line":4,` +
		`"document_char_length":100,"relative_document_position":0.5},"behavioral_telemetry":{"time_since_last_shown":10,` +
		`"time_since_last_accepted":20,"typing_speed":3.5},"store_context":true,"stop_sequences":["\n\n"]}`,
	`{"model_ids":[1],"context":{"prefix":"x","suffix":""},"contextual_telemetry":{"version_id":1,"trigger_type_id":1,"language_id":1},"behavioral_telemetry":{}}`,
	`{"model_ids":[1.0],"context":{"prefix":null,"suffix":1},"contextual_telemetry":{"version_id":1e0,"trigger_type_id":"1","language_id":0},"behavioral_telemetry":null}`,
	`{"model_ids":"1","context":[],"contextual_telemetry":{"caret_line":2147483648,"relative_document_position":2},"behavioral_telemetry":{"typing_speed":-1}}`,
	`{"model_ids":[1],"context":{"prefix":"\ud83d\ude00\ud800","suffix":"\u00e9","context_files":[null,1]},"store_context":"yes"}`,
	`{"model_ids":[1],"chat_id":"0b5e3c4e-8d3c-4c59-9d3e-2f1c2a3b4c5d","messages":[["user","hi"],["assistant","hello"],["system","be brief"]],` +
		`"context":{"prefix":"a","suffix":"b"},"web_enabled":true}`,
	`{"model_ids":[1],"chat_id":"nope","messages":[["robot","x"],["user"],"user",["user",null]],"context":{"prefix":"","suffix":""}}`,
}

// checkInt fails t unless got is the integer encoding/json reads in v (a
// JSON number that is an integer, possibly written as 1.0 or 1e2) and at
// least min.
func checkInt(t *testing.T, what string, got int64, v any, min int64) {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok || got < min {
		t.Fatalf("%s = %d, encoding/json reads %#v", what, got, v)
	}
	if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		if i != got {
			t.Fatalf("%s = %d, encoding/json reads %s", what, got, n)
		}
		return
	}
	if fl, err := n.Float64(); err != nil || fl != float64(got) {
		t.Fatalf("%s = %d, encoding/json reads %s", what, got, n)
	}
}

// checkStrings fails t unless got is the list of strings in v (nil and
// absent when v is).
func checkStrings(t *testing.T, what string, got []string, v any, present bool) {
	t.Helper()
	if !present || v == nil {
		if got != nil {
			t.Fatalf("%s = %q, absent in the body", what, got)
		}
		return
	}
	list, ok := v.([]any)
	if !ok || len(list) != len(got) {
		t.Fatalf("%s = %q, encoding/json reads %#v", what, got, v)
	}
	for i, s := range got {
		checkText(t, what+"["+strconv.Itoa(i)+"]", s, list[i], true)
	}
}

// checkQuery fails t unless the fields completion and chat share agree
// with doc.
func checkQuery(t *testing.T, r *completionRequest, doc map[string]any, telemetryRequired bool) {
	t.Helper()
	ids, ok := doc["model_ids"].([]any)
	if !ok || len(ids) != len(r.ModelIDs) {
		t.Fatalf("model_ids = %v, encoding/json reads %#v", r.ModelIDs, doc["model_ids"])
	}
	for i, id := range r.ModelIDs {
		if n, err := strconv.ParseInt(string(ids[i].(json.Number)), 10, 64); err != nil || n != id || id < 0 {
			t.Fatalf("model_ids[%d] = %d, encoding/json reads %v", i, id, ids[i])
		}
	}
	ctx, ok := doc["context"].(map[string]any)
	if !ok {
		t.Fatalf("context accepted as %#v", doc["context"])
	}
	p, okP := ctx["prefix"]
	checkText(t, "prefix", r.Context.Prefix, p, okP)
	s, okS := ctx["suffix"]
	checkText(t, "suffix", r.Context.Suffix, s, okS)
	if v := ctx["file_name"]; v != nil {
		checkText(t, "file_name", r.Context.FileName, v, true)
	} else if r.Context.FileName != "unknown_file" {
		t.Fatalf("file_name = %q without one in the body", r.Context.FileName)
	}
	files, okF := ctx["context_files"]
	checkStrings(t, "context_files", r.Context.ContextFiles, files, okF)
	for name, got := range map[string]bool{"contextual_telemetry": r.Contextual != nil, "behavioral_telemetry": r.Behavioral != nil} {
		obj, isObj := doc[name].(map[string]any)
		if got != isObj || (telemetryRequired && !isObj) {
			t.Fatalf("%s parsed %v, encoding/json reads %#v", name, got, doc[name])
		}
		if name == "contextual_telemetry" && got {
			checkInt(t, "version_id", r.Contextual.VersionID, obj["version_id"], 1)
			checkInt(t, "trigger_type_id", r.Contextual.TriggerTypeID, obj["trigger_type_id"], 1)
			checkInt(t, "language_id", r.Contextual.LanguageID, obj["language_id"], 1)
		}
	}
	for name, got := range map[string]bool{"store_context": r.StoreContext, "store_contextual_telemetry": r.StoreContextualTelemetry,
		"store_behavioral_telemetry": r.StoreBehavioralTelemetry} {
		if b, isBool := doc[name].(bool); isBool && b != got {
			t.Fatalf("%s = %v, body says %v", name, got, b)
		}
	}
}

// FuzzCompletionRequest: the body of POST /api/completion/request and of
// the completion_request frame gives a request or a 422, never both or
// neither; an accepted request is the body as encoding/json reads it.
func FuzzCompletionRequest(f *testing.F) {
	for _, b := range append(append([]string{}, completionBodies...), fuzzBodies...) {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fl, err := jsonBytes(body)
		if err != nil {
			checkValidation(t, err, body)
			return
		}
		r := parseCompletionRequest(fl)
		if err := fl.err(); err != nil {
			checkValidation(t, err, body)
			return
		}
		if r == nil {
			t.Fatalf("body %q: neither a request nor an error", body)
		}
		doc := decodeDoc(t, body)
		checkQuery(t, r, doc, true)
		stops, ok := doc["stop_sequences"]
		checkStrings(t, "stop_sequences", r.StopSequences, stops, ok)
	})
}

// FuzzChatRequest: the same for POST /api/chat/request and the
// chat_request frame.
func FuzzChatRequest(f *testing.F) {
	for _, b := range append(append([]string{}, completionBodies...), fuzzBodies...) {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fl, err := jsonBytes(body)
		if err != nil {
			checkValidation(t, err, body)
			return
		}
		r := parseChatRequest(fl)
		if err := fl.err(); err != nil {
			checkValidation(t, err, body)
			return
		}
		doc := decodeDoc(t, body)
		checkQuery(t, &r.completionRequest, doc, false)
		if s, _ := doc["chat_id"].(string); uuidOf(s) != r.ChatID || r.ChatID == uuid.Nil && s != uuid.Nil.String() {
			t.Fatalf("chat_id = %v, body says %#v", r.ChatID, doc["chat_id"])
		}
		msgs, ok := doc["messages"].([]any)
		if !ok || len(msgs) != len(r.Messages) {
			t.Fatalf("messages = %q, encoding/json reads %#v", r.Messages, doc["messages"])
		}
		for i, m := range r.Messages {
			pair := msgs[i].([]any)
			checkText(t, "role", m.Role, pair[0], true)
			checkText(t, "content", m.Content, pair[1], true)
			if m.Role != "user" && m.Role != "assistant" && m.Role != "system" {
				t.Fatalf("role %q accepted", m.Role)
			}
		}
	})
}

// uuidOf is s parsed as a UUID, or the nil UUID.
func uuidOf(s string) uuid.UUID {
	id, _ := uuid.Parse(s)
	return id
}
