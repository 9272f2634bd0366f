package server

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/code4me/code4me/internal/jsonscan"
)

// FuzzWSFrame reads client frames as the WebSocket reader does (dispatch),
// on each kind of socket, and each request payload as the request does
// (rawFields, then the request's parser). Properties:
//   - a frame is taken apart exactly when encoding/json reads it as an
//     object;
//   - a request id that is a JSON string is that string;
//   - a frame refused for invalid UTF-8 outside its payloads is not valid
//     UTF-8, and one that is valid UTF-8 is never refused for it;
//   - each payload gives fields or a 422, never both or neither; a payload
//     that is an object holding invalid UTF-8 or NUL is a 422; the
//     request's parser then gives a value or a 422 in the house shape.
func FuzzWSFrame(f *testing.F) {
	for _, b := range []string{
		`{"request_id":"r1","completion_request":` + completionBodies[0] + `}`,
		`{"request_id":7,"completion_feedback":{"meta_query_id":"0b5e3c4e-8d3c-4c59-9d3e-2f1c2a3b4c5d","model_id":1,"was_accepted":true}}`,
		`{"request_id":"r3","multi_file_context_update":{"context_updates":{"a":[{"change_type":"update","start_line":0,"end_line":1,"new_lines":["x"]}]}}}`,
		`{"request_id":"r4","chat_request":` + completionBodies[5] + `}`,
		`{"chat_get":{"page_number":2}}`, `{"chat_delete":{"chat_id":"0b5e3c4e-8d3c-4c59-9d3e-2f1c2a3b4c5d"}}`,
		`{"cancel":"r1"}`, `{"cancel":{"request_id":"r1"}}`, `{"request_id":"r1","cancel":true}`,
		"{\"request_id\":\"\xff\",\"completion_request\":{}}", "{\"completion_request\":{\"context\":{\"prefix\":\"\xff\"}}}",
		`{"completion_request":{"context":{"prefix":"\u0000"}}}`, `{"completion_request":[]}`, `{"completion_request":0}`, `[]`, `{`,
	} {
		f.Add([]byte(b), uint8(0))
		f.Add([]byte(b), uint8(1))
		f.Add([]byte(b), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		w := &wsConn{kind: wsKind(kind % 3)}
		frame, ok := jsonscan.Object(data)
		var want map[string]json.RawMessage
		if isObj := json.Unmarshal(data, &want) == nil && want != nil; ok != isObj {
			t.Fatalf("frame %q taken apart: %v, encoding/json reads an object: %v", data, ok, isObj)
		}
		if !ok {
			return
		}
		var s string
		if raw := frame["request_id"]; raw != nil && json.Unmarshal(raw, &s) == nil && string(raw) != "null" && requestID(raw) != s {
			t.Fatalf("request id %q read as %q", raw, requestID(raw))
		}
		if !w.payloadUTF8(data) {
			if utf8.Valid(data) {
				t.Fatalf("frame %q refused as invalid UTF-8", data)
			}
			return
		}
		for _, key := range wsKeys[w.kind] {
			raw, ok := frame[key]
			if !ok || !truthy(raw) {
				continue
			}
			fl, err := rawFields(raw)
			if (fl == nil) == (err == nil) {
				t.Fatalf("rawFields(%q) = %v, %v", raw, fl, err)
			}
			if err != nil {
				checkValidation(t, err, raw)
				continue
			}
			var obj map[string]any
			if json.Unmarshal(raw, &obj) != nil || obj == nil || !utf8.Valid(raw) || hasNUL(obj) {
				t.Fatalf("payload %q accepted", raw)
			}
			switch key {
			case "completion_request":
				parseCompletionRequest(fl)
			case "completion_feedback":
				parseFeedback(fl)
			case "multi_file_context_update":
				parseContextUpdates(fl)
			case "chat_request":
				parseChatRequest(fl)
			case "chat_get":
				if fl.has("page_number") {
					fl.integerIn("page_number", false, 1, maxChatPage)
				}
			case "chat_delete":
				fl.uuidField("chat_id", true)
			}
			if err := fl.err(); err != nil {
				checkValidation(t, err, raw)
			}
		}
	})
}
