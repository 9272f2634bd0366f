package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// The editor-client API tests replay requests as the clients send them
// (Continue's OpenAI, Mistral and ollama providers, Zed, OpenAI's legacy
// completions) against the real server and engine, and check each answer
// field by field against what the server stored.

// keyClient signs up email, gives the user consent to store context, and
// returns a client authenticating with a new API key of scopes (as the
// editor clients do) and the user's id.
func (e *pluginEnv) keyClient(email string, scopes ...string) (*client, string) {
	e.t.Helper()
	uid := e.signup(email)
	e.exec(`UPDATE users SET preference = '{"store_context": true}' WHERE user_id = $1`, uid)
	r := e.loggedIn(email).expect("POST", "/api/user/api-keys", map[string]any{"name": "editor", "scopes": scopes}, 201)
	c := e.client()
	c.header["Authorization"] = "Bearer " + r.body["api_key"].(string)
	return c, uid
}

// storedGen is a stored query of a user and its generation.
type storedGen struct {
	client, completion, stopReason string
	generated, cached, evaluated   int
	prefillMS, decodeMS            float64
	seed                           int64
	sampler                        map[string]any
	prefix, suffix                 *string // the stored context, when stored
	noProject                      bool
}

// stored returns the user's completion queries with their generations,
// oldest first.
func (e *pluginEnv) stored(uid string) []storedGen {
	e.t.Helper()
	rows, err := e.srv.db.Query(context.Background(), `
		SELECT m.client, g.completion, g.stop_reason, g.tokens_generated, g.tokens_cached, g.tokens_evaluated,
		       g.prefill_ms, g.decode_ms, g.seed, g.sampler, c.prefix, c.suffix, m.project_id IS NULL
		FROM meta_query m JOIN generation g USING (meta_query_id) LEFT JOIN context c USING (meta_query_id)
		WHERE m.user_id = $1 AND m.query_type = 'completion' ORDER BY m.requested_at`, uid)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []storedGen
	for rows.Next() {
		var g storedGen
		var sampler []byte
		if err := rows.Scan(&g.client, &g.completion, &g.stopReason, &g.generated, &g.cached, &g.evaluated,
			&g.prefillMS, &g.decodeMS, &g.seed, &sampler, &g.prefix, &g.suffix, &g.noProject); err != nil {
			e.t.Fatal(err)
		}
		json.Unmarshal(sampler, &g.sampler)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// sseEvents splits a server-sent event stream into its data payloads.
func sseEvents(t *testing.T, raw []byte) []string {
	t.Helper()
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("not one data line: %q in %s", ev, raw)
		}
		out = append(out, data)
	}
	return out
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return m
}

// noSecret fails when any text holds secret.
func noSecret(t *testing.T, secret string, texts map[string]string) {
	t.Helper()
	for where, text := range texts {
		if strings.Contains(text, secret) {
			t.Errorf("the secret reached %s", where)
		}
	}
}

// TestOpenAICompletionsFillInTheMiddle: OpenAI's legacy completions with
// a suffix (as OpenAI's SDK and Tabby's openai backend send it), two
// choices: each answer is the stored generation's text, with the stored
// stop reason as finish_reason and the stored token counts as usage; the
// sampler, seed (seed+i) and client are stored; the second choice reuses
// the first's KV cache; a secret in the prompt reaches neither the engine
// nor the answer.
func TestOpenAICompletionsFillInTheMiddle(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.keyClient("oai-fim@example.com", "completions")
	aws, _, _, _ := plantedSecrets()
	prefix := "import boto3\n\nKEY = \"" + aws + "\"\n\ndef add(a, b):\n    return "
	body := fmt.Sprintf(`{"model":"tiny-coder","prompt":%q,"suffix":"\n\nprint(add(1, 2))\n","max_tokens":6,"temperature":0.7,`+
		`"top_p":0.9,"n":2,"stream":false,"stop":["\n\n"],"seed":42,"user":"dev-1","presence_penalty":0}`, prefix)
	before := time.Now().Unix()
	r := c.expect("POST", "/v1/completions", body, 200)
	if r.body["object"] != "text_completion" || !strings.HasPrefix(r.body["id"].(string), "cmpl-") || r.body["model"] != "tiny-coder" {
		t.Fatalf("answer = %s", r.raw)
	}
	if cr := int64(r.body["created"].(float64)); cr < before || cr > time.Now().Unix() {
		t.Fatalf("created = %d", cr)
	}
	gens := e.stored(uid)
	choices := r.body["choices"].([]any)
	if len(gens) != 2 || len(choices) != 2 {
		t.Fatalf("%d stored, %d choices: %s", len(gens), len(choices), r.raw)
	}
	wantUsage := map[string]float64{"prompt_tokens": float64(gens[0].cached + gens[0].evaluated)}
	for i, ch := range choices {
		ch := ch.(map[string]any)
		g := gens[i]
		finish := "stop"
		if g.stopReason == "max_tokens" {
			finish = "length"
		}
		if ch["index"] != float64(i) || ch["text"] != g.completion || ch["finish_reason"] != finish || ch["logprobs"] != nil {
			t.Errorf("choice %d = %v, stored %+v", i, ch, g)
		}
		if strings.Contains(g.completion, "\n\n") {
			t.Errorf("choice %d runs past its stop string: %q", i, g.completion)
		}
		if g.client != "openai" || g.seed != int64(42+i) || !g.noProject {
			t.Errorf("choice %d stored as %+v", i, g)
		}
		if g.sampler["temperature"] != 0.7 || g.sampler["top_p"] != 0.9 || g.sampler["max_tokens"] != 6.0 || g.sampler["mode"] != "multi-line" {
			t.Errorf("choice %d sampler = %v", i, g.sampler)
		}
		if g.prefix == nil || *g.prefix != strings.Replace(prefix, aws, "<redacted:aws-access-token>", 1) || *g.suffix != "\n\nprint(add(1, 2))\n" {
			t.Errorf("choice %d context = %v %v", i, g.prefix, g.suffix)
		}
		wantUsage["completion_tokens"] += float64(g.generated)
	}
	wantUsage["total_tokens"] = wantUsage["prompt_tokens"] + wantUsage["completion_tokens"]
	for k, v := range wantUsage {
		if r.body["usage"].(map[string]any)[k] != v {
			t.Errorf("usage %s = %v, want %v", k, r.body["usage"].(map[string]any)[k], v)
		}
	}
	// Run one after another, the second choice found the prompt in the KV
	// cache the first left.
	if gens[1].cached == 0 || gens[1].cached < gens[0].cached {
		t.Errorf("second choice cached %d tokens, first %d", gens[1].cached, gens[0].cached)
	}
	// Choice 1 samples with seed 43: the same request for one choice with
	// seed 43 gives its text.
	one := c.expect("POST", "/v1/completions", strings.Replace(strings.Replace(body, `"seed":42`, `"seed":43`, 1), `"n":2`, `"n":1`, 1), 200)
	if got := one.body["choices"].([]any)[0].(map[string]any)["text"]; got != gens[1].completion {
		t.Errorf("seed 43 alone = %q, choice 1 = %q", got, gens[1].completion)
	}
	noSecret(t, aws, map[string]string{"the engine": e.rec.all(), "the answer": string(r.raw)})
}

// TestOpenAIStreamContinue: Continue's OpenAI provider completes with a
// prompt it formats itself (no suffix: the prompt is the model's whole
// input) and stream: true, as its autocomplete sends it. The events are
// text_completion chunks whose text adds up to the stored completion, a
// finish chunk, and [DONE]; the query is attributed to Continue by its
// User-Agent; with include_usage, a last chunk has the usage.
func TestOpenAIStreamContinue(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.keyClient("oai-stream@example.com", "completions")
	c.header["User-Agent"] = "Continue/1.0.20 (vscode)"
	aws, _, _, _ := plantedSecrets()
	prompt := "<|fim_prefix|># key " + aws + "\nfor i in range(<|fim_suffix|>):\n    print(i)\n<|fim_middle|>"
	body := fmt.Sprintf(`{"model":"tiny-coder","max_tokens":10,"temperature":0.01,"stream":true,"stop":["<|endoftext|>","\n\n"],"prompt":%q}`, prompt)
	r := c.expect("POST", "/v1/completions", body, 200)
	if ct := r.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	events := sseEvents(t, r.raw)
	if events[len(events)-1] != "[DONE]" || len(events) < 2 {
		t.Fatalf("events = %q", events)
	}
	var text, finish string
	var id any
	for i, ev := range events[:len(events)-1] {
		ch := decode(t, ev)
		if id == nil {
			id = ch["id"]
		}
		choice := ch["choices"].([]any)[0].(map[string]any)
		if ch["object"] != "text_completion" || ch["id"] != id || ch["model"] != "tiny-coder" || choice["index"] != 0.0 || ch["usage"] != nil {
			t.Fatalf("chunk %d = %s", i, ev)
		}
		if finish != "" {
			t.Fatalf("a chunk after the finish: %s", ev)
		}
		text += choice["text"].(string)
		if f, ok := choice["finish_reason"].(string); ok {
			finish = f
		}
	}
	gens := e.stored(uid)
	if len(gens) != 1 || gens[0].completion != text || gens[0].client != "continue" {
		t.Fatalf("streamed %q, stored %+v", text, gens)
	}
	if want := map[bool]string{true: "length", false: "stop"}[gens[0].stopReason == "max_tokens"]; finish != want {
		t.Fatalf("finish_reason = %q, stored stop reason %q", finish, gens[0].stopReason)
	}
	if gens[0].prefix == nil || strings.Contains(*gens[0].prefix, aws) || !strings.Contains(*gens[0].prefix, "<|fim_middle|>") {
		t.Fatalf("stored prompt = %v", gens[0].prefix)
	}
	noSecret(t, aws, map[string]string{"the engine": e.rec.all(), "the stream": string(r.raw)})

	// Two choices with the usage: every chunk says usage null, the last
	// one has no choice and the usage.
	body = strings.Replace(body, `"stream":true`, `"stream":true,"n":2,"stream_options":{"include_usage":true}`, 1)
	events = sseEvents(t, c.expect("POST", "/v1/completions", body, 200).raw)
	texts := map[float64]string{}
	for _, ev := range events[:len(events)-2] {
		ch := decode(t, ev)
		if u, ok := ch["usage"]; !ok || u != nil {
			t.Fatalf("chunk without usage null: %s", ev)
		}
		choice := ch["choices"].([]any)[0].(map[string]any)
		texts[choice["index"].(float64)] += choice["text"].(string)
	}
	last := decode(t, events[len(events)-2])
	gens = e.stored(uid)[1:]
	usage := last["usage"].(map[string]any)
	if len(last["choices"].([]any)) != 0 || len(gens) != 2 || texts[0] != gens[0].completion || texts[1] != gens[1].completion ||
		usage["completion_tokens"] != float64(gens[0].generated+gens[1].generated) ||
		usage["prompt_tokens"] != float64(gens[0].cached+gens[0].evaluated) {
		t.Fatalf("choices %v, last chunk %s, stored %+v", texts, events[len(events)-2], gens)
	}
}

// TestOpenAIFIMMistral: Continue's Mistral provider fills in the middle
// through /v1/fim/completions, streamed, with its headers. Every chunk has
// a string delta.content (Continue appends it unchecked); the last before
// [DONE] has the finish and the usage; the text is the stored completion.
// Unstreamed, the middle is the assistant's message.
func TestOpenAIFIMMistral(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.keyClient("oai-mistral@example.com", "completions")
	key := strings.TrimPrefix(c.header["Authorization"], "Bearer ")
	c.header["Accept"], c.header["x-api-key"] = "application/json", key
	body := `{"model":"tiny-coder","prompt":"def fib(n):\n    ","suffix":"\n    return fib(n - 1) + fib(n - 2)\n","max_tokens":12,` +
		`"temperature":0.01,"stop":["\n\n"],"stream":true}`
	r := c.expect("POST", "/v1/fim/completions", body, 200)
	events := sseEvents(t, r.raw)
	if events[len(events)-1] != "[DONE]" {
		t.Fatalf("events = %q", events)
	}
	var text string
	for i, ev := range events[:len(events)-1] {
		ch := decode(t, ev)
		choice := ch["choices"].([]any)[0].(map[string]any)
		delta := choice["delta"].(map[string]any)
		content, ok := delta["content"].(string)
		if ch["object"] != "chat.completion.chunk" || !ok || (i == 0) != (delta["role"] == "assistant") {
			t.Fatalf("chunk %d = %s", i, ev)
		}
		text += content
		if i == len(events)-2 {
			gens := e.stored(uid)
			u := ch["usage"].(map[string]any)
			if len(gens) != 1 || choice["finish_reason"] == nil || u["completion_tokens"] != float64(gens[0].generated) ||
				u["total_tokens"] != float64(gens[0].generated+gens[0].cached+gens[0].evaluated) {
				t.Fatalf("last chunk %s, stored %+v", ev, gens)
			}
		} else if choice["finish_reason"] != nil || ch["usage"] != nil {
			t.Fatalf("chunk %d = %s", i, ev)
		}
	}
	gens := e.stored(uid)
	if gens[0].completion != text || *gens[0].prefix != "def fib(n):\n    " || gens[0].sampler["max_tokens"] != 12.0 {
		t.Fatalf("streamed %q, stored %+v", text, gens[0])
	}
	r = c.expect("POST", "/v1/fim/completions", strings.Replace(body, `"stream":true`, `"stream":false`, 1), 200)
	msg := r.body["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	if gens = e.stored(uid); r.body["object"] != "chat.completion" || msg["role"] != "assistant" || msg["content"] != gens[1].completion {
		t.Fatalf("answer %s, stored %+v", r.raw, gens[1])
	}
}

// TestOpenAIChat: chat completions as Continue's OpenAI provider streams
// them and as Zed sends them (text parts, unstreamed, two choices): the
// messages reach the chat model redacted, the answer is in OpenAI's chat
// shape, and nothing is stored (a stored chat needs a project).
func TestOpenAIChat(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.keyClient("oai-chat@example.com", "completions")
	aws, _, _, _ := plantedSecrets()
	system := "You are terse. " + randomFrom("abcdefghijklmnopqrstuvwxyz", 12)
	body := fmt.Sprintf(`{"messages":[{"role":"system","content":%q},{"role":"user","content":"Why does %s fail?"}],`+
		`"model":"tiny-instruct","max_tokens":8,"temperature":0.5,"stream":true}`, system, aws)
	events := sseEvents(t, c.expect("POST", "/v1/chat/completions", body, 200).raw)
	if events[len(events)-1] != "[DONE]" || len(events) < 3 {
		t.Fatalf("events = %q", events)
	}
	first := decode(t, events[0])["choices"].([]any)[0].(map[string]any)
	last := decode(t, events[len(events)-2])["choices"].([]any)[0].(map[string]any)
	if first["delta"].(map[string]any)["role"] != "assistant" || last["finish_reason"] == nil {
		t.Fatalf("events = %q", events)
	}
	seen := e.rec.all()
	if !strings.Contains(seen, system) || !strings.Contains(seen, "Why does <redacted:aws-access-token> fail?") {
		t.Fatal("the messages did not reach the model as redacted")
	}
	noSecret(t, aws, map[string]string{"the engine": seen, "the stream": strings.Join(events, "\n")})

	// With include_usage every chunk says usage null and the last one
	// before [DONE] has no choice and the usage of the chat's tokens.
	usageBody := strings.Replace(body, `"stream":true`, `"stream":true,"stream_options":{"include_usage":true}`, 1)
	events = sseEvents(t, c.expect("POST", "/v1/chat/completions", usageBody, 200).raw)
	if len(events) < 3 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events with include_usage = %q", events)
	}
	generated := 0
	for _, ev := range events[:len(events)-2] {
		ch := decode(t, ev)
		if u, ok := ch["usage"]; !ok || u != nil || ch["object"] != "chat.completion.chunk" {
			t.Fatalf("chunk without usage null: %s", ev)
		}
		if d, _ := ch["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)["content"].(string); d != "" {
			generated++
		}
	}
	lastChunk := decode(t, events[len(events)-2])
	su, _ := lastChunk["usage"].(map[string]any)
	if su == nil || len(lastChunk["choices"].([]any)) != 0 || su["prompt_tokens"].(float64) < 1 ||
		su["total_tokens"] != su["prompt_tokens"].(float64)+su["completion_tokens"].(float64) ||
		su["completion_tokens"].(float64) > 8 || (generated > 0 && su["completion_tokens"].(float64) < 1) {
		t.Fatalf("last chunk %s", events[len(events)-2])
	}

	zed := `{"model":"tiny-instruct","messages":[{"role":"user","content":[{"type":"text","text":"Explain "},{"type":"text","text":"maps."}]}],` +
		`"stream":false,"n":2,"seed":7,"max_completion_tokens":5,"stop":[],"temperature":1}`
	r := c.expect("POST", "/v1/chat/completions", zed, 200)
	choices := r.body["choices"].([]any)
	u := r.body["usage"].(map[string]any)
	if r.body["object"] != "chat.completion" || !strings.HasPrefix(r.body["id"].(string), "chatcmpl-") || len(choices) != 2 ||
		u["total_tokens"] != u["prompt_tokens"].(float64)+u["completion_tokens"].(float64) || u["completion_tokens"].(float64) > 10 {
		t.Fatalf("answer = %s", r.raw)
	}
	for i, ch := range choices {
		m := ch.(map[string]any)["message"].(map[string]any)
		if ch.(map[string]any)["index"] != float64(i) || m["role"] != "assistant" || m["content"] == nil {
			t.Fatalf("choice %d = %v", i, ch)
		}
	}
	if !strings.Contains(e.rec.all(), "Explain maps.") {
		t.Fatal("the text parts did not reach the model joined")
	}
	if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1`, uid); n != 0 {
		t.Fatalf("%d queries stored for chat turns", n)
	}
}

// TestOpenAIModelsAndErrors: the model list, and every refusal in OpenAI's
// error shape with the status, type, param and code clients read; a
// refused body never echoes its secret.
func TestOpenAIModelsAndErrors(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, _ := e.keyClient("oai-err@example.com", "completions")
	r := c.expect("GET", "/v1/models", nil, 200)
	ids := map[string]bool{}
	for _, m := range r.body["data"].([]any) {
		m := m.(map[string]any)
		if m["object"] != "model" || m["owned_by"] != "code4me" {
			t.Fatalf("model = %v", m)
		}
		ids[m["id"].(string)] = true
	}
	if r.body["object"] != "list" || !ids["tiny-coder"] || !ids["tiny-instruct"] {
		t.Fatalf("models = %s", r.raw)
	}

	aws, _, _, _ := plantedSecrets()
	account, _ := e.keyClient("oai-account@example.com", "account")
	cases := []struct {
		name, path    string
		c             *client
		body          string
		status        int
		typ, param    string
		code, message string
	}{
		{"no key", "/v1/completions", e.client(), `{"prompt":"x"}`, 401, "authentication_error", "", "invalid_api_key", ""},
		{"account key", "/v1/chat/completions", account, `{"messages":[]}`, 403, "permission_error", "", "", "completions' scope"},
		{"unknown model", "/v1/completions", c, `{"model":"gpt-4","prompt":"x"}`, 404, "invalid_request_error", "model", "model_not_found", "'gpt-4'"},
		{"bad max_tokens", "/v1/completions", c, `{"prompt":"x","max_tokens":"many"}`, 422, "invalid_request_error", "max_tokens", "", "valid integer"},
		{"missing prompt", "/v1/completions", c, fmt.Sprintf(`{"model":"tiny-coder","suffix":"k = '%s'"}`, aws), 422, "invalid_request_error", "prompt", "", "Field required"},
		{"bad JSON", "/v1/completions", c, `{"prompt":`, 422, "invalid_request_error", "", "", "Invalid request body: JSON decode error"},
		{"bad role", "/v1/chat/completions", c, `{"messages":[{"role":"tool","content":"x"}]}`, 422, "invalid_request_error", "messages[0].role", "", ""},
		{"echo", "/v1/completions", c, `{"prompt":"x","echo":true}`, 400, "invalid_request_error", "echo", "", ""},
		{"logprobs", "/v1/completions", c, `{"prompt":"x","logprobs":2}`, 400, "invalid_request_error", "logprobs", "", "redacted"},
		{"tools", "/v1/chat/completions", c, `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}`, 400, "invalid_request_error", "tools", "", ""},
		{"chat model fills", "/v1/completions", c, `{"model":"tiny-instruct","prompt":"x","suffix":"y"}`, 400, "invalid_request_error", "model", "", "chat model"},
		{"completion model chats", "/v1/chat/completions", c, `{"model":"tiny-coder","messages":[{"role":"user","content":"x"}]}`, 400, "invalid_request_error", "model", "", "not a chat model"},
		{"too many choices", "/v1/completions", c, `{"prompt":["a","b"],"n":9}`, 400, "invalid_request_error", "n", "", ""},
		{"embeddings of an unknown model", "/v1/embeddings", c, `{"model":"x","input":"y"}`, 404, "invalid_request_error", "model", "model_not_found", "'x'"},
		{"embeddings' dimensions", "/v1/embeddings", c, `{"input":"y","dimensions":8}`, 400, "invalid_request_error", "dimensions", "", ""},
		{"embeddings of no text", "/v1/embeddings", c, `{"input":["a",""]}`, 400, "invalid_request_error", "input", "", "input[1]"},
		{"embeddings of tokens", "/v1/embeddings", c, `{"input":[[1,2]]}`, 422, "invalid_request_error", "input[0]", "", "valid string"},
	}
	for _, tc := range cases {
		r := tc.c.do("POST", tc.path, tc.body)
		er, _ := r.body["error"].(map[string]any)
		param, _ := er["param"].(string)
		code, _ := er["code"].(string)
		msg, _ := er["message"].(string)
		if r.status != tc.status || er["type"] != tc.typ || param != tc.param || code != tc.code || msg == "" ||
			!strings.Contains(msg, tc.message) || r.body["message"] != nil {
			t.Errorf("%s: %d %s", tc.name, r.status, r.raw)
		}
		if (tc.status == 422) != (r.body["detail"] != nil) {
			t.Errorf("%s: detail in %s", tc.name, r.raw)
		}
		if strings.Contains(string(r.raw), aws) {
			t.Errorf("%s: the answer echoes the secret", tc.name)
		}
	}
}

// TestOpenAITabbyDispatch: a /v1/completions body with "segments" goes to
// the Tabby handler when one is set, after the same guard; without one it
// is read as OpenAI's and refused for its missing prompt.
func TestOpenAITabbyDispatch(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, _ := e.keyClient("oai-tabby@example.com", "completions")
	body := `{"language":"python","segments":{"prefix":"def f(","suffix":")"}}`
	built := tabbyCompletion
	defer func() { tabbyCompletion = built }()
	tabbyCompletion = nil
	if r := c.do("POST", "/v1/completions", body); r.status != 422 || r.body["error"].(map[string]any)["param"] != "prompt" {
		t.Fatalf("without a Tabby handler: %d %s", r.status, r.raw)
	}
	tabbyCompletion = func(s *Server, c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"tabby": principal(c) != nil})
	}
	if r := c.expect("POST", "/v1/completions", body, 200); r.body["tabby"] != true {
		t.Fatalf("with one: %s", r.raw)
	}
	c.expect("POST", "/v1/completions", `{"model":"tiny-coder","prompt":"x","max_tokens":1}`, 200)
	if r := e.client().do("POST", "/v1/completions", body); r.status != 401 {
		t.Fatalf("unauthenticated: %d %s", r.status, r.raw)
	}
}

// closeTo reports whether a and b differ by at most tol.
func closeTo(a, b, tol float64) bool { return math.Abs(a-b) <= tol }
