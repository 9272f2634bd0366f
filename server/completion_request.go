package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
)

// This file parses and validates the request bodies of the completion and
// chat endpoints into typed values. Telemetry ids are checked
// against the lookup tables later, in one round trip (checkTelemetry).

// contextData is ContextData.
type contextData struct {
	Prefix, Suffix string
	FileName       string
	SelectedText   string
	ContextFiles   []string
}

// contextualTelemetry is ContextualTelemetryData.
type contextualTelemetry struct {
	VersionID, TriggerTypeID, LanguageID int64
	FilePath                             *string
	CaretLine, DocumentCharLength        *int32
	RelativeDocumentPosition             *float64
}

// behavioralTelemetry is BehavioralTelemetryData.
type behavioralTelemetry struct {
	TimeSinceLastShown, TimeSinceLastAccepted *int64
	TypingSpeed                               *float64
}

// completionRequest is RequestCompletion.
type completionRequest struct {
	ModelIDs                 []int64
	Context                  contextData
	StoreContext             bool
	Contextual               *contextualTelemetry
	StoreContextualTelemetry bool
	Behavioral               *behavioralTelemetry
	StoreBehavioralTelemetry bool
	StopSequences            []string

	// Set by the editor-client APIs (llama.cpp, OpenAI, ollama, Tabby),
	// never by the plugin API's parser:
	//
	// Client names the caller in meta_query.client ("" : the plugin, or
	// "api-key" for a key).
	Client string
	// Extra is context the client sent with the request (llama.cpp's
	// input_extra, Tabby's snippets), used in place of the project's
	// files; redacted by the pipeline like everything else.
	Extra []engine.Chunk
	// Tune adjusts each model's engine request (the client's token limit,
	// samplers and stop rules).
	Tune func(*engine.Request)
	// Trigger is generation.trigger when the request itself says it
	// ("warm-up" for a cache-warming request), stored whatever the
	// telemetry consent: it describes the request, not the user.
	Trigger string
	// Concurrent requests are never superseded by a newer request of the
	// same session and file, neither on arrival nor in the engine: the
	// editor-client APIs have no such rule (their clients cancel a request
	// by closing its connection), and an API key's requests share a session.
	Concurrent bool
	// Kind, when set, is stored as the generation's mode in
	// generation.sampler in place of the stop mode: "next-edit" for a
	// next-edit suggestion, whose prompt asks the model to rewrite a region.
	Kind string
}

// parseCompletionRequest reads RequestCompletion; telemetry objects are
// required, as in the original.
func parseCompletionRequest(f *fields) *completionRequest {
	r := &completionRequest{}
	r.ModelIDs = f.intList("model_ids", true, 0)
	r.parseQuery(f, true)
	r.StopSequences = f.strList("stop_sequences", false)
	return r
}

// parseQuery reads the fields completion and chat requests share: the
// context, the telemetry (required when telemetryRequired) and the storage
// flags.
func (r *completionRequest) parseQuery(f *fields, telemetryRequired bool) {
	if cf := f.object("context", true); cf != nil {
		r.Context = parseContextData(cf)
	}
	r.StoreContext = f.optBool("store_context", false)
	if tf := f.object("contextual_telemetry", telemetryRequired); tf != nil {
		r.Contextual = parseContextual(tf)
	}
	r.StoreContextualTelemetry = f.optBool("store_contextual_telemetry", true)
	if bf := f.object("behavioral_telemetry", telemetryRequired); bf != nil {
		r.Behavioral = parseBehavioral(bf)
	}
	r.StoreBehavioralTelemetry = f.optBool("store_behavioral_telemetry", true)
}

func parseContextData(f *fields) contextData {
	var c contextData
	c.Prefix, _ = f.str("prefix", true, 0, 0)
	c.Suffix, _ = f.str("suffix", true, 0, 0)
	c.FileName = "unknown_file"
	if f.has("file_name") {
		if s, ok := f.str("file_name", false, 0, 0); ok {
			c.FileName = s
		}
	}
	if f.has("selected_text") {
		c.SelectedText, _ = f.str("selected_text", false, 0, 0)
	}
	c.ContextFiles = f.strList("context_files", false)
	return c
}

func parseContextual(f *fields) *contextualTelemetry {
	t := &contextualTelemetry{}
	t.VersionID, _ = f.integer("version_id", true, 1)
	t.TriggerTypeID, _ = f.integer("trigger_type_id", true, 1)
	t.LanguageID, _ = f.integer("language_id", true, 1)
	if f.has("file_path") {
		if s, ok := f.str("file_path", false, 0, 0); ok {
			t.FilePath = &s
		}
	}
	t.CaretLine = f.optInt32("caret_line")
	t.DocumentCharLength = f.optInt32("document_char_length")
	t.RelativeDocumentPosition = f.optFloat("relative_document_position", 0, 1)
	return t
}

func parseBehavioral(f *fields) *behavioralTelemetry {
	b := &behavioralTelemetry{}
	if f.has("time_since_last_shown") {
		if n, ok := f.integer("time_since_last_shown", false, 0); ok {
			b.TimeSinceLastShown = &n
		}
	}
	if f.has("time_since_last_accepted") {
		if n, ok := f.integer("time_since_last_accepted", false, 0); ok {
			b.TimeSinceLastAccepted = &n
		}
	}
	b.TypingSpeed = f.optFloat("typing_speed", 0, math.Inf(1))
	return b
}

// optBool reads an optional boolean; absent or null gives def.
func (f *fields) optBool(name string, def bool) bool {
	if !f.has(name) {
		return def
	}
	v, ok := f.boolean(name, false)
	if !ok {
		return def
	}
	return v
}

// optInt32 reads an optional integer in [0, MaxInt32].
func (f *fields) optInt32(name string) *int32 {
	if !f.has(name) {
		return nil
	}
	n, ok := f.integer(name, false, 0)
	if !ok {
		return nil
	}
	if n > math.MaxInt32 {
		f.add("less_than_equal", name, fmt.Sprintf("Input should be less than or equal to %d", math.MaxInt32), n, map[string]any{"le": math.MaxInt32})
		return nil
	}
	v := int32(n)
	return &v
}

// optFloat reads an optional number in [lo, hi].
func (f *fields) optFloat(name string, lo, hi float64) *float64 {
	if !f.has(name) {
		return nil
	}
	raw, _ := f.get(name, false)
	in := rawInput(raw)
	num, ok := in.(json.Number)
	if !ok {
		f.add("float_type", name, "Input should be a valid number", in, nil)
		return nil
	}
	v, err := num.Float64()
	if err != nil || math.IsNaN(v) {
		f.add("float_type", name, "Input should be a valid number", in, nil)
		return nil
	}
	if v < lo {
		f.add("greater_than_equal", name, "Input should be greater than or equal to "+fmtNum(lo), in, map[string]any{"ge": lo})
		return nil
	}
	if v > hi {
		f.add("less_than_equal", name, "Input should be less than or equal to "+fmtNum(hi), in, map[string]any{"le": hi})
		return nil
	}
	return &v
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// intList reads a list of integers >= min.
func (f *fields) intList(name string, required bool, min int64) []int64 {
	raw, ok := f.get(name, required)
	if !ok {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		f.add("list_type", name, "Input should be a valid list", rawInput(raw), nil)
		return nil
	}
	out := make([]int64, 0, len(list))
	for i, el := range list {
		if n, ok := f.integerAt(f.at(name), i, el, min); ok {
			out = append(out, n)
		}
	}
	return out
}

// integerAt validates list element i as an integer >= min.
func (f *fields) integerAt(at []any, i int, el json.RawMessage, min int64) (int64, bool) {
	in := rawInput(el)
	loc := append(at, i)
	num, ok := in.(json.Number)
	var n int64
	var err error
	if ok {
		n, err = strconv.ParseInt(num.String(), 10, 64)
	}
	if !ok || err != nil {
		*f.errs = append(*f.errs, fieldError{Type: "int_type", Loc: loc, Msg: "Input should be a valid integer", Input: in})
		return 0, false
	}
	if n < min {
		*f.errs = append(*f.errs, fieldError{Type: "greater_than_equal", Loc: loc,
			Msg: fmt.Sprintf("Input should be greater than or equal to %d", min), Input: in, Ctx: map[string]any{"ge": min}})
		return 0, false
	}
	return n, true
}

// minUnixMilli and maxUnixMilli bound an instant to the years 1 to 9999 in
// UTC, those JSON can write back: an RFC 3339 string names years 1 to 9999
// in its own offset, and "9999-12-31T23:59:59-01:00" is in the year 10000,
// which encoding/json refuses to write (every later read of the row would
// fail).
const (
	minUnixMilli = -62135596800000
	maxUnixMilli = 253402300799999
)

// timeList reads a list of instants: RFC 3339 strings or Unix milliseconds
// (years 1 to 9999 in UTC).
func (f *fields) timeList(name string) []time.Time {
	raw, ok := f.get(name, false)
	if !ok {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		f.add("list_type", name, "Input should be a valid list", rawInput(raw), nil)
		return nil
	}
	out := make([]time.Time, 0, len(list))
	for i, el := range list {
		in := rawInput(el)
		switch v := in.(type) {
		case string:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.UnixMilli() >= minUnixMilli && t.UnixMilli() <= maxUnixMilli {
				out = append(out, t)
				continue
			}
		case json.Number:
			if ms, err := v.Int64(); err == nil && ms >= minUnixMilli && ms <= maxUnixMilli {
				out = append(out, time.UnixMilli(ms))
				continue
			}
		}
		*f.errs = append(*f.errs, fieldError{Type: "datetime_from_date_parsing", Loc: append(f.at(name), i),
			Msg: "Input should be a valid datetime", Input: in})
	}
	return out
}

// chatRequest is RequestChatCompletion.
type chatRequest struct {
	completionRequest
	ChatID     uuid.UUID
	Messages   []chatMessage
	WebEnabled bool
}

type chatMessage struct{ Role, Content string }

// parseChatRequest reads RequestChatCompletion. Telemetry is optional for
// chat: absent objects are simply not stored.
func parseChatRequest(f *fields) *chatRequest {
	r := &chatRequest{}
	r.ModelIDs = f.intList("model_ids", true, 0)
	if id, ok := f.uuidField("chat_id", true); ok {
		r.ChatID = id
	}
	r.Messages = parseMessages(f)
	r.parseQuery(f, false)
	r.WebEnabled = f.optBool("web_enabled", false)
	return r
}

// parseMessages reads messages: a list of [role, content] pairs.
func parseMessages(f *fields) []chatMessage {
	raw, ok := f.get("messages", true)
	if !ok {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		f.add("list_type", "messages", "Input should be a valid list", rawInput(raw), nil)
		return nil
	}
	var out []chatMessage
	for i, el := range list {
		loc := append(f.at("messages"), i)
		var pair []json.RawMessage
		if err := json.Unmarshal(el, &pair); err != nil || len(pair) != 2 {
			*f.errs = append(*f.errs, fieldError{Type: "tuple_type", Loc: loc, Msg: "Input should be a valid tuple of 2 items", Input: rawInput(el)})
			continue
		}
		var role, content string
		if err := json.Unmarshal(pair[0], &role); err != nil || (role != "user" && role != "assistant" && role != "system") {
			*f.errs = append(*f.errs, fieldError{Type: "literal_error", Loc: append(loc, 0),
				Msg: "Input should be 'user', 'assistant' or 'system'", Input: rawInput(pair[0]),
				Ctx: map[string]any{"expected": "'user', 'assistant' or 'system'"}})
			continue
		}
		if err := json.Unmarshal(pair[1], &content); err != nil || string(pair[1]) == "null" {
			*f.errs = append(*f.errs, fieldError{Type: "string_type", Loc: append(loc, 1), Msg: "Input should be a valid string", Input: rawInput(pair[1])})
			continue
		}
		out = append(out, chatMessage{role, content})
	}
	return out
}
