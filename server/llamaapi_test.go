package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
)

// The llama.cpp server API, driven by the requests llama.vim and
// llama.vscode send, field for field, against the real server and engine.

// newLlamaEnv is a server whose models are tiny-coder, its first
// completion model (the default of requests that name none), and the chat
// model tiny-instruct.
func newLlamaEnv(t *testing.T) *pluginEnv {
	e := newPluginEnv(t, nil)
	var keep []RegisteredModel
	for _, m := range e.srv.plugin.models.List() {
		if m.Name == "tiny-coder" || m.Name == "tiny-instruct" {
			keep = append(keep, m)
		}
	}
	e.srv.plugin.models.Replace(keep)
	return e
}

// llamaClientOf returns a client of a new user that authenticates with an
// API key of the completions scope and sends userAgent; the user stores
// its context.
func (e *pluginEnv) llamaClientOf(email, userAgent string) (*client, string) {
	e.t.Helper()
	uid := e.signup(email)
	owner := e.loggedIn(email)
	r := owner.expect("POST", "/api/user/api-keys", map[string]any{"name": "editor", "scopes": []string{"completions"}}, 201)
	e.exec(`UPDATE users SET preference = '{"store_context": true}' WHERE user_id = $1`, uid)
	c := e.client()
	c.header["Authorization"] = "Bearer " + r.body["api_key"].(string)
	c.header["User-Agent"] = userAgent
	return c, uid
}

// llamaGen is a stored generation of a llama client's query.
type llamaGen struct {
	client, completion, sampler  string
	trigger                      *string
	cached, evaluated, generated int32
	seed                         int64
	prefillMS, decodeMS          float64
	prefix, suffix, files        string
	modelName                    string
	projectNull                  bool
}

// llamaGens returns the user's generations, oldest first.
func (e *pluginEnv) llamaGens(uid string) []llamaGen {
	e.t.Helper()
	rows, err := e.srv.db.Query(context.Background(), `
		SELECT q.client, g.completion, g.sampler::text, g.trigger, g.tokens_cached, g.tokens_evaluated, g.tokens_generated,
		       g.seed, g.prefill_ms, g.decode_ms, coalesce(cx.prefix, ''), coalesce(cx.suffix, ''),
		       coalesce((SELECT string_agg(f.file_name || ':' || coalesce(f.content, ''), '|' ORDER BY f.file_name)
		                 FROM query_context_file f WHERE f.meta_query_id = q.meta_query_id), ''),
		       m.name, q.project_id IS NULL
		FROM meta_query q JOIN generation g USING (meta_query_id) JOIN model m ON m.model_id = g.model_id
		LEFT JOIN context cx USING (meta_query_id)
		WHERE q.user_id = $1 ORDER BY q.requested_at, q.meta_query_id`, uid)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []llamaGen
	for rows.Next() {
		var g llamaGen
		if err := rows.Scan(&g.client, &g.completion, &g.sampler, &g.trigger, &g.cached, &g.evaluated, &g.generated,
			&g.seed, &g.prefillMS, &g.decodeMS, &g.prefix, &g.suffix, &g.files, &g.modelName, &g.projectNull); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// modelStats returns the engine's counters of model.
func (e *pluginEnv) modelStats(model string) engine.Stats {
	for _, st := range e.srv.plugin.engine.Stats() {
		if st.Model == model {
			return st
		}
	}
	e.t.Fatalf("no model %s", model)
	return engine.Stats{}
}

func llamaNum(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	v, ok := m[key].(float64)
	if !ok {
		t.Fatalf("%s = %#v, want a number (in %v)", key, m[key], m)
	}
	return v
}

func llamaNear(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// llamaVimFields are the response_fields of llama.vim's completion request.
var llamaVimFields = []string{"content", "timings/prompt_n", "timings/prompt_ms", "timings/prompt_per_token_ms",
	"timings/prompt_per_second", "timings/predicted_n", "timings/predicted_ms", "timings/predicted_per_token_ms",
	"timings/predicted_per_second", "truncated", "tokens_cached"}

// TestLlamaVim replays llama.vim: its cache-warming request with the ring
// buffer's chunks, then a completion request with the same chunks, whose
// answer carries exactly the response_fields it asks for, under their
// flattened names. Secrets planted in every text reach neither the engine,
// nor the answer, nor the stored rows.
func TestLlamaVim(t *testing.T) {
	e := newLlamaEnv(t)
	vim, uid := e.llamaClientOf("vim-"+uuid.NewString()[:8]+"@example.com", "curl/8.5.0")
	aws, gh, pemBody, code := plantedSecrets()
	tag := randomFrom("abcdefghijklmnopqrstuvwxyz", 12) // makes the texts new to the engine's token cache
	chunks := []any{
		map[string]any{"text": "def helper_" + tag + "():\n    return 42\n", "time": []int{1733, 512}, "filename": "lib/util_" + tag + ".py"},
		map[string]any{"text": code + "\n", "time": []int{1733, 600}, "filename": "conf/" + gh + ".py"},
	}
	warm := map[string]any{
		"input_prefix": "", "input_suffix": "", "input_extra": chunks, "prompt": "", "n_predict": 0, "temperature": 0.0,
		"stream": false, "samplers": []string{}, "cache_prompt": true, "t_max_prompt_ms": 1, "t_max_predict_ms": 1,
		"response_fields": []string{""},
	}
	r := vim.expect("POST", "/infill", warm, 200)
	if len(r.body) != 0 {
		t.Fatalf("warm-up answer = %s, want {} (response_fields [\"\"])", r.raw)
	}

	// Enough lines that the engine's own layout would move the last ones
	// after the middle token (engine.SplitCursorBlock): llama.cpp's keeps
	// them before the suffix, and so must this API.
	prompt := "    value = compute_" + tag + "("
	head, lines, prefix := "import os\n\nkey = \""+aws+"\"\n\n", "", ""
	for i := 0; ; i++ {
		prefix = head + lines + "def main_" + tag + "():\n"
		if before, _ := engine.SplitCursorBlock(prefix + prompt); before != prefix && len(before) >= len(head) {
			break
		}
		if i == 64 {
			t.Fatal("no block start in 64 lines")
		}
		lines += fmt.Sprintf("v_%s_%d = None\n", tag, i)
	}
	suffix := ")\n    token = \"" + gh + "\"\n"
	req := map[string]any{
		"input_prefix": prefix, "input_suffix": suffix, "input_extra": chunks, "prompt": prompt,
		"n_predict": 128, "n_indent": 4, "top_k": 40, "top_p": 0.99, "stream": false,
		"samplers": []string{"top_k", "top_p", "infill"}, "cache_prompt": true, "t_max_prompt_ms": 500,
		"t_max_predict_ms": 1500, "response_fields": llamaVimFields,
	}
	r = vim.expect("POST", "/infill", req, 200)
	var keys []string
	for k := range r.body {
		keys = append(keys, k)
	}
	want := slices.Clone(llamaVimFields)
	sort.Strings(keys)
	sort.Strings(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("answer keys = %v, want exactly %v", keys, want)
	}

	gens := e.llamaGens(uid)
	if len(gens) != 2 {
		t.Fatalf("%d generations stored, want 2 (warm-up and completion)", len(gens))
	}
	w, g := gens[0], gens[1]
	if w.client != "llama.vim" || w.trigger == nil || *w.trigger != "warm-up" || w.generated != 0 || w.completion != "" {
		t.Errorf("warm-up stored as client %q trigger %v, %d tokens %q", w.client, w.trigger, w.generated, w.completion)
	}
	if w.evaluated == 0 {
		t.Error("the warm-up evaluated no prompt tokens")
	}
	if g.client != "llama.vim" || g.trigger != nil || !g.projectNull {
		t.Errorf("completion stored as client %q trigger %v (project null %v)", g.client, g.trigger, g.projectNull)
	}
	// The warm-up put the chunks in the KV cache: the completion reuses all
	// it evaluated but its closing FIM tokens (suffix and middle markers,
	// after its empty prefix).
	if g.cached < w.evaluated-2 {
		t.Errorf("completion reused %d cached tokens, the warm-up evaluated %d", g.cached, w.evaluated)
	}
	if r.body["content"] != g.completion {
		t.Errorf("content %q, stored %q", r.body["content"], g.completion)
	}
	if n := llamaNum(t, r.body, "timings/prompt_n"); int32(n) != g.evaluated {
		t.Errorf("timings/prompt_n = %v, stored tokens_evaluated %d", n, g.evaluated)
	}
	if n := llamaNum(t, r.body, "timings/predicted_n"); int32(n) != g.generated {
		t.Errorf("timings/predicted_n = %v, stored tokens_generated %d", n, g.generated)
	}
	if n := llamaNum(t, r.body, "tokens_cached"); int32(n) != g.cached+g.evaluated+g.generated {
		t.Errorf("tokens_cached = %v, want the prompt and the generated tokens: %d", n, g.cached+g.evaluated+g.generated)
	}
	if ms := llamaNum(t, r.body, "timings/prompt_ms"); !llamaNear(ms, g.prefillMS) {
		t.Errorf("timings/prompt_ms = %v, stored prefill_ms %v", ms, g.prefillMS)
	}
	if ms := llamaNum(t, r.body, "timings/predicted_ms"); !llamaNear(ms, g.decodeMS) {
		t.Errorf("timings/predicted_ms = %v, stored decode_ms %v", ms, g.decodeMS)
	}
	if n, ms := float64(g.evaluated), g.prefillMS; n > 0 && !llamaNear(llamaNum(t, r.body, "timings/prompt_per_second"), 1000*n/ms) {
		t.Errorf("timings/prompt_per_second = %v, want %v", r.body["timings/prompt_per_second"], 1000*n/ms)
	}
	if n, ms := float64(g.generated), g.decodeMS; n > 0 && !llamaNear(llamaNum(t, r.body, "timings/predicted_per_token_ms"), ms/n) {
		t.Errorf("timings/predicted_per_token_ms = %v, want %v", r.body["timings/predicted_per_token_ms"], ms/n)
	}
	if r.body["truncated"] != false {
		t.Errorf("truncated = %v", r.body["truncated"])
	}
	// The samplers llama.vim names: top-k and top-p, and no temperature
	// sampler, so the draw is at temperature 1; the token limit is the
	// server's (64) below n_predict; no line rule but n_indent.
	var sampler map[string]any
	json.Unmarshal([]byte(g.sampler), &sampler)
	for k, v := range map[string]any{"temperature": 1.0, "top_k": 40.0, "top_p": 0.99, "min_p": 0.0, "repeat_penalty": 1.0,
		"max_tokens": 64.0, "mode": "multi-line"} {
		if got, ok := sampler[k].(float64); ok && !llamaNear(got, v.(float64)) || !ok && sampler[k] != v {
			t.Errorf("stored sampler %s = %v, want %v (%s)", k, sampler[k], v, g.sampler)
		}
	}

	// The cursor line went after the FIM middle token: the engine
	// tokenized it, and the prefix before it, as texts of their own.
	e.rec.mu.Lock()
	texts := slices.Clone(e.rec.texts)
	e.rec.mu.Unlock()
	if !slices.Contains(texts, prompt) {
		t.Errorf("the engine never tokenized the cursor line %q alone", prompt)
	}
	redPrefix := strings.TrimSuffix(g.prefix, prompt)
	if before, _ := engine.SplitCursorBlock(g.prefix); before == redPrefix {
		t.Fatal("the test's prefix has no block start: it cannot tell the layouts apart")
	}
	if !slices.Contains(texts, redPrefix) {
		t.Errorf("the engine never tokenized the whole prefix before the cursor line")
	}
	stored := g.prefix + g.suffix + g.files + w.files
	if !strings.Contains(g.prefix, "<redacted:aws-access-token>") || !strings.Contains(g.files, "<redacted:private-key>") ||
		!strings.HasSuffix(g.prefix, prompt) || !strings.Contains(g.files, "lib/util_"+tag+".py:def helper_"+tag) {
		t.Errorf("stored context: prefix %q, files %q", g.prefix, g.files)
	}
	for _, s := range []string{aws, gh, pemBody} {
		if strings.Contains(e.rec.all(), s) {
			t.Errorf("secret %.8s… reached the engine", s)
		}
		if strings.Contains(string(r.raw), s) {
			t.Errorf("secret %.8s… in the answer", s)
		}
		if strings.Contains(stored, s) {
			t.Errorf("secret %.8s… stored", s)
		}
	}
}

// TestLlamaVSCode replays llama.vscode: three candidates (n_cmpl) come back
// as an array of full answers. They are sequential requests of one prompt:
// the engine evaluates the prompt once, the later candidates find it in
// the KV cache; each has its own seed and is stored as a query of its own.
func TestLlamaVSCode(t *testing.T) {
	e := newLlamaEnv(t)
	vsc, uid := e.llamaClientOf("vscode-"+uuid.NewString()[:8]+"@example.com", "axios/1.7.9")
	tag := randomFrom("abcdefghijklmnopqrstuvwxyz", 12)
	req := map[string]any{
		"input_prefix": "class Stack_" + tag + ":\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n",
		"input_suffix": "\n\n    def pop(self):\n        return self.items.pop()\n",
		"input_extra":  []any{map[string]any{"text": "# helpers_" + tag + "\n", "time": 1733000000, "filename": "helpers.py"}},
		"prompt":       "        self.",
		"n_predict":    16, "top_k": 40, "top_p": 0.99, "stream": false, "samplers": []string{"top_k", "top_p", "infill"},
		"cache_prompt": true, "n_indent": 8, "t_max_prompt_ms": 500, "t_max_predict_ms": 2500, "n_cmpl": 3,
		"lora": []any{map[string]any{"id": 0, "scale": 0.5}}, "id_slot": 0,
	}
	before := e.modelStats("tiny-coder")
	r := vsc.expect("POST", "/infill", req, 200)
	after := e.modelStats("tiny-coder")
	var cands []map[string]any
	if err := json.Unmarshal(r.raw, &cands); err != nil || len(cands) != 3 {
		t.Fatalf("answer %s: want an array of 3 (%v)", r.raw, err)
	}
	gens := e.llamaGens(uid)
	if len(gens) != 3 {
		t.Fatalf("%d generations stored, want one per candidate", len(gens))
	}
	seeds := map[float64]bool{}
	evaluated := 0.0
	for i, c := range cands {
		g := gens[i]
		set, _ := c["generation_settings"].(map[string]any)
		tm, _ := c["timings"].(map[string]any)
		if set == nil || tm == nil {
			t.Fatalf("candidate %d without generation_settings or timings: %v", i, c)
		}
		if llamaNum(t, c, "index") != float64(i) || c["stop"] != true || c["model"] != "tiny-coder" || c["content"] != g.completion {
			t.Errorf("candidate %d: index %v stop %v model %v content %q (stored %q)", i, c["index"], c["stop"], c["model"], c["content"], g.completion)
		}
		if st := c["stop_type"]; st != "eos" && st != "limit" && st != "word" {
			t.Errorf("candidate %d: stop_type %v", i, st)
		}
		if c["stopping_word"] != "" || c["truncated"] != false {
			t.Errorf("candidate %d: stopping_word %q truncated %v", i, c["stopping_word"], c["truncated"])
		}
		if g.client != "llama.vscode" || g.modelName != "tiny-coder" {
			t.Errorf("candidate %d stored as client %q model %q", i, g.client, g.modelName)
		}
		if llamaNum(t, set, "seed") != float64(g.seed) || llamaNum(t, set, "n_predict") != 16 || llamaNum(t, set, "n_cmpl") != 3 {
			t.Errorf("candidate %d generation_settings %v, stored seed %d", i, set, g.seed)
		}
		seeds[llamaNum(t, set, "seed")] = true
		promptN, cacheN := llamaNum(t, tm, "prompt_n"), llamaNum(t, tm, "cache_n")
		if int32(promptN) != g.evaluated || int32(cacheN) != g.cached || int32(llamaNum(t, tm, "predicted_n")) != g.generated {
			t.Errorf("candidate %d timings %v, stored evaluated %d cached %d generated %d", i, tm, g.evaluated, g.cached, g.generated)
		}
		if llamaNum(t, c, "tokens_evaluated") != promptN+cacheN {
			t.Errorf("candidate %d: tokens_evaluated %v, want prompt_n + cache_n = %v", i, c["tokens_evaluated"], promptN+cacheN)
		}
		if llamaNum(t, c, "tokens_predicted") != llamaNum(t, tm, "predicted_n") || llamaNum(t, c, "tokens_cached") != promptN+cacheN+llamaNum(t, tm, "predicted_n") {
			t.Errorf("candidate %d: tokens_predicted %v, tokens_cached %v", i, c["tokens_predicted"], c["tokens_cached"])
		}
		if i > 0 {
			if llamaNum(t, c, "tokens_evaluated") != llamaNum(t, cands[0], "tokens_evaluated") {
				t.Errorf("candidate %d has a prompt of %v tokens, the first %v", i, c["tokens_evaluated"], cands[0]["tokens_evaluated"])
			}
			if promptN > 1 {
				t.Errorf("candidate %d evaluated %v prompt tokens: the first one's prompt was not reused from the KV cache", i, promptN)
			}
		}
		evaluated += promptN
	}
	if len(seeds) != 3 {
		t.Errorf("candidates' seeds %v, want 3 different", seeds)
	}
	if got := float64(after.EvaluatedTokens - before.EvaluatedTokens); got != evaluated {
		t.Errorf("the engine evaluated %v prompt tokens, the candidates report %v", got, evaluated)
	}
	if float64(after.EvaluatedTokens-before.EvaluatedTokens) > llamaNum(t, cands[0], "tokens_evaluated")+2 {
		t.Errorf("the engine evaluated %d prompt tokens for a prompt of %v: more than one prefill",
			after.EvaluatedTokens-before.EvaluatedTokens, cands[0]["tokens_evaluated"])
	}

	// A seed given: candidate i gets seed+i, the same on every request.
	req["seed"], req["n_cmpl"] = 1234, 2
	r = vsc.expect("POST", "/infill", req, 200)
	var seeded []map[string]any
	json.Unmarshal(r.raw, &seeded)
	for i, c := range seeded {
		if s := c["generation_settings"].(map[string]any)["seed"]; s != float64(1234+i) {
			t.Errorf("seeded candidate %d: seed %v, want %d", i, s, 1234+i)
		}
	}
}

// TestLlamaErrors: bad input is a 422 that reads as llama-server's error and
// names the field; a chat model gets llama-server's 501 for infill; a
// request without credentials a 401 in the same shape.
func TestLlamaErrors(t *testing.T) {
	e := newLlamaEnv(t)
	c, _ := e.llamaClientOf("llama-err-"+uuid.NewString()[:8]+"@example.com", "curl/8.5.0")
	for _, tc := range []struct {
		body any
		loc  string
	}{
		{map[string]any{"input_suffix": ""}, "body.input_prefix"},
		{map[string]any{"input_prefix": 5, "input_suffix": ""}, "body.input_prefix"},
		{map[string]any{"input_prefix": "", "input_suffix": "", "input_extra": []any{map[string]any{"filename": "a.py"}}}, "body.input_extra.0.text"},
		{map[string]any{"input_prefix": "", "input_suffix": "", "n_cmpl": 9}, "body.n_cmpl"},
		{map[string]any{"input_prefix": "", "input_suffix": "", "top_p": 2}, "body.top_p"},
		{map[string]any{"input_prefix": "", "input_suffix": "", "samplers": []any{1}}, "body.samplers.0"},
		{map[string]any{"input_prefix": "", "input_suffix": "", "model": "no-such-model"}, "body.model"},
		{`{"input_prefix": "", `, "body.21"},
	} {
		r := c.do("POST", "/infill", tc.body)
		errObj, _ := r.body["error"].(map[string]any)
		if r.status != 422 || errObj == nil || errObj["type"] != "invalid_request_error" || errObj["code"] != 422.0 {
			t.Errorf("%v: %d %s, want 422 invalid_request_error", tc.body, r.status, r.raw)
			continue
		}
		var locs []string
		for _, d := range asList(r.body["detail"]) {
			var parts []string
			for _, l := range d["loc"].([]any) {
				parts = append(parts, fmt.Sprint(l))
			}
			locs = append(locs, strings.Join(parts, "."))
		}
		if !slices.Contains(locs, tc.loc) || !strings.Contains(errObj["message"].(string), strings.TrimPrefix(tc.loc, "body.")) {
			t.Errorf("%v: detail at %v, message %q; want %s", tc.body, locs, errObj["message"], tc.loc)
		}
	}
	r := c.do("POST", "/infill", map[string]any{"input_prefix": "a", "input_suffix": "b", "model": "tiny-instruct"})
	if r.status != 501 || string(r.raw) != `{"error":{"code":501,"message":"Infill is not supported by this model","type":"not_supported_error"}}` {
		t.Errorf("infill on a chat model = %d %s", r.status, r.raw)
	}
	r = e.client().do("POST", "/infill", map[string]any{"input_prefix": "a", "input_suffix": "b"})
	if errObj, _ := r.body["error"].(map[string]any); r.status != 401 || errObj["type"] != "authentication_error" {
		t.Errorf("without credentials = %d %s", r.status, r.raw)
	}
	r = c.do("POST", "/completion", map[string]any{"prompt": "x", "model": "tiny-instruct"})
	if errObj, _ := r.body["error"].(map[string]any); r.status != 400 || errObj["type"] != "invalid_request_error" {
		t.Errorf("/completion on a chat model = %d %s", r.status, r.raw)
	}
}

// TestLlamaCompletionAndStream: /completion takes a client-formatted prompt
// (attributed to "llama.cpp-api"); stream true answers server-sent events
// whose text adds up to the stored completion, ending with the answer.
func TestLlamaCompletionAndStream(t *testing.T) {
	e := newLlamaEnv(t)
	c, uid := e.llamaClientOf("llama-stream-"+uuid.NewString()[:8]+"@example.com", "python-requests/2.31")
	r := c.expect("POST", "/completion", map[string]any{"prompt": "def add(a, b):\n    return", "n_predict": 6, "temperature": 0,
		"stop": []string{"\n\n"}}, 200)
	gens := e.llamaGens(uid)
	if len(gens) != 1 || gens[0].client != "llama.cpp-api" || r.body["content"] != gens[0].completion {
		t.Fatalf("/completion answered %s, stored %+v", r.raw, gens)
	}
	if n := llamaNum(t, r.body, "tokens_predicted"); n > 6 || int32(n) != gens[0].generated {
		t.Errorf("tokens_predicted %v, stored %d, n_predict 6", n, gens[0].generated)
	}
	if gs := r.body["generation_settings"].(map[string]any); gs["temperature"] != 0.0 || gs["stop"].([]any)[0] != "\n\n" {
		t.Errorf("generation_settings %v", gs)
	}

	addr := e.listen()
	body, _ := json.Marshal(map[string]any{"input_prefix": "def mul(a, b):\n", "input_suffix": "\n", "prompt": "    return ",
		"n_predict": 12, "stream": true})
	req, _ := http.NewRequest("POST", "http://"+addr+"/infill", strings.NewReader(string(body)))
	req.Header.Set("Authorization", c.header["Authorization"])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var text strings.Builder
	var events []map[string]any
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not a data event: %q", line)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		events = append(events, ev)
		if ev["stop"] == false {
			text.WriteString(ev["content"].(string))
		}
	}
	io.Copy(io.Discard, res.Body)
	if len(events) == 0 {
		t.Fatal("no events")
	}
	last := events[len(events)-1]
	gens = e.llamaGens(uid)
	if len(gens) != 2 {
		t.Fatalf("%d generations stored, want 2", len(gens))
	}
	if last["stop"] != true || last["content"] != "" || last["timings"] == nil || text.String() != gens[1].completion {
		t.Errorf("last event %v; streamed %q, stored %q", last, text.String(), gens[1].completion)
	}
	if gens[1].generated > 0 && len(events) < 2 {
		t.Errorf("%d tokens generated but no text event", gens[1].generated)
	}
}

// TestLlamaHealthPropsSlots: /health, /props and /slots describe the
// engine's models; a server without a completion model answers /health 503
// "Loading model".
func TestLlamaHealthPropsSlots(t *testing.T) {
	e := newLlamaEnv(t)
	c, _ := e.llamaClientOf("llama-props-"+uuid.NewString()[:8]+"@example.com", "curl/8.5.0")
	if r := e.client().expect("GET", "/health", nil, 200); string(r.raw) != `{"status":"ok"}` {
		t.Errorf("/health = %s", r.raw)
	}
	st := e.modelStats("tiny-coder")
	r := c.expect("GET", "/props", nil, 200)
	dgs, _ := r.body["default_generation_settings"].(map[string]any)
	if r.body["model_alias"] != "tiny-coder" || r.body["total_slots"] != float64(st.Slots) || dgs["n_ctx"] != float64(st.NCtxPerSlot) ||
		r.body["infill"] != true {
		t.Errorf("/props = %s (slots %d, n_ctx %d)", r.raw, st.Slots, st.NCtxPerSlot)
	}
	r = c.expect("GET", "/slots?model=tiny-instruct", nil, 200)
	var slots []map[string]any
	json.Unmarshal(r.raw, &slots)
	sti := e.modelStats("tiny-instruct")
	if len(slots) != sti.Slots {
		t.Fatalf("/slots = %s, want %d slots", r.raw, sti.Slots)
	}
	for i, s := range slots {
		if s["id"] != float64(i) || s["n_ctx"] != float64(sti.NCtxPerSlot) || s["is_processing"] != (i < sti.SlotsBusy) || s["model"] != "tiny-instruct" {
			t.Errorf("slot %d = %v", i, s)
		}
	}
	if r := c.do("GET", "/slots?model=nope", nil); r.status != 422 || r.body["error"] == nil {
		t.Errorf("/slots of an unknown model = %d %s", r.status, r.raw)
	}

	bare := newEnv(t, nil)
	r = bare.client().do("GET", "/health", nil)
	if r.status != 503 || string(r.raw) != `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}` {
		t.Errorf("/health without models = %d %s", r.status, r.raw)
	}
}

// TestLlamaOpenAccess: under open access a request from this machine
// without credentials acts as the local user, created on first start; a
// request that a proxy or a web page could have sent does not.
func TestLlamaOpenAccess(t *testing.T) {
	e := newLlamaEnv(t)
	addr := e.listen()
	body := `{"input_prefix": "x = ", "input_suffix": "\n", "n_predict": 2}`
	post := func(header map[string]string) int {
		req, _ := http.NewRequest("POST", "http://"+addr+"/infill", strings.NewReader(body))
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if got := post(nil); got != 401 {
		t.Fatalf("without open access = %d, want 401", got)
	}
	email := "open-" + uuid.NewString()[:8] + "@code4me.localhost"
	for range 2 { // a restart: the user stays, its key is replaced
		if err := e.srv.OpenLocal(context.Background(), email); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.count(`SELECT count(*) FROM api_key k JOIN users u USING (user_id) WHERE u.email = $1 AND k.revoked_at IS NULL`, email); n != 1 {
		t.Errorf("%d live keys for the local user, want 1", n)
	}
	if got := post(nil); got != 200 {
		t.Fatalf("open access from loopback = %d, want 200", got)
	}
	// llama.vim with an empty api_key sends an empty bearer token.
	if got := post(map[string]string{"Authorization": "Bearer "}); got != 200 {
		t.Fatalf("open access with an empty bearer token = %d, want 200", got)
	}
	if n := e.count(`SELECT count(*) FROM meta_query q JOIN users u USING (user_id) WHERE u.email = $1 AND q.client = 'llama.cpp-api'`, email); n != 2 {
		t.Errorf("%d queries of the local user, want 2", n)
	}
	for _, h := range []map[string]string{
		{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"},
		{"Origin": "https://evil.example"}, {"Host": "evil.example:8012"}, {"Authorization": "Bearer c4m_" + strings.Repeat("x", 43)},
	} {
		if got := post(h); got != 401 {
			t.Errorf("open access with %v = %d, want 401", h, got)
		}
	}
}

// TestLlamaRemote: on the worker tier, /infill runs on a worker and /slots
// lists the slots of the live workers serving the model.
func TestLlamaRemote(t *testing.T) {
	names := uniqueNames("llama-remote-coder")
	eng := workerEngine(t, names[0])
	startTestWorker(t, eng)
	e := newRemoteEnv(t)
	c, uid := e.llamaClientOf("llama-remote-"+uuid.NewString()[:8]+"@example.com", "curl/8.5.0")
	r := c.expect("POST", "/infill", map[string]any{"input_prefix": "def f():\n", "input_suffix": "\n", "prompt": "    return ",
		"n_predict": 4, "model": names[0]}, 200)
	gens := e.llamaGens(uid)
	if len(gens) != 1 || gens[0].modelName != names[0] || r.body["content"] != gens[0].completion || r.body["model"] != names[0] {
		t.Errorf("answer %s, stored %+v", r.raw, gens)
	}
	r = c.expect("GET", "/slots?model="+names[0], nil, 200)
	var slots []map[string]any
	json.Unmarshal(r.raw, &slots)
	st := eng.Stats()[0]
	if len(slots) != st.Slots {
		t.Fatalf("/slots = %s, want the worker's %d slots", r.raw, st.Slots)
	}
	for i, s := range slots {
		if s["id"] != float64(i) || s["n_ctx"] != nil || s["model"] != names[0] {
			t.Errorf("slot %d = %v", i, s)
		}
	}
}

// TestLlamaVSCodeWarmUp replays llama.vscode's cache-warming request (its
// updateExtraContext: n_predict 0, no samplers, t_max_predict_ms 1, from
// Node) and then its completion with the same chunks: the warm-up is
// answered with an empty completion and stored as a warm-up of
// llama.vscode, the completion finds the chunks in the KV cache, and both
// are queries of the key's user, of which the research analytics and the
// user's own usage count the completion alone: a warm-up shows nothing
// and times a prompt alone.
func TestLlamaVSCodeWarmUp(t *testing.T) {
	e := newLlamaEnv(t)
	email := "vscode-warm-" + uuid.NewString()[:8] + "@example.com"
	vsc, uid := e.llamaClientOf(email, "axios/1.7.9")
	tag := randomFrom("abcdefghijklmnopqrstuvwxyz", 12) // makes the texts new to the engine's token cache
	chunks := []any{
		map[string]any{"text": "def helper_" + tag + "():\n    return 42\n", "time": 1733000000, "filename": "lib/util_" + tag + ".py"},
		map[string]any{"text": "CONSTANT_" + tag + " = 7\n", "time": 1733000100, "filename": "lib/const.py"},
	}
	from := time.Now().Add(-time.Minute)
	warm := map[string]any{"input_prefix": "", "input_suffix": "", "input_extra": chunks, "prompt": "", "n_predict": 0,
		"samplers": []string{}, "cache_prompt": true, "t_max_prompt_ms": 500, "t_max_predict_ms": 1}
	r := vsc.expect("POST", "/infill", warm, 200)
	if r.body == nil || r.body["content"] != "" || r.body["stop"] != true || llamaNum(t, r.body, "tokens_predicted") != 0 {
		t.Fatalf("warm-up answer = %s, want one object with an empty completion", r.raw)
	}
	req := map[string]any{"input_prefix": "import os\n\ndef main_" + tag + "():\n", "input_suffix": "\n", "input_extra": chunks,
		"prompt": "    x = ", "n_predict": 8, "top_k": 40, "top_p": 0.99, "stream": false, "samplers": []string{"top_k", "top_p", "infill"},
		"cache_prompt": true, "n_indent": 4, "t_max_prompt_ms": 500, "t_max_predict_ms": 500}
	r = vsc.expect("POST", "/infill", req, 200)
	gens := e.llamaGens(uid)
	if len(gens) != 2 {
		t.Fatalf("%d generations stored, want 2 (warm-up and completion)", len(gens))
	}
	w, g := gens[0], gens[1]
	if w.client != "llama.vscode" || w.trigger == nil || *w.trigger != "warm-up" || w.generated != 0 || w.completion != "" || w.evaluated == 0 {
		t.Errorf("warm-up stored as client %q trigger %v, %d evaluated, %d generated %q", w.client, w.trigger, w.evaluated, w.generated, w.completion)
	}
	if g.client != "llama.vscode" || g.trigger != nil || r.body["content"] != g.completion {
		t.Errorf("completion stored as client %q trigger %v %q, answered %s", g.client, g.trigger, g.completion, r.raw)
	}
	// The warm-up's prompt was the chunks and the closing FIM tokens after
	// its empty prefix: the completion reuses all but those.
	if g.cached < w.evaluated-2 {
		t.Errorf("completion reused %d cached tokens, the warm-up evaluated %d", g.cached, w.evaluated)
	}

	admin, _ := e.newAdmin()
	v := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}, "user_id": {uid}}
	total := admin.expect("GET", "/api/analytics/usage?"+v.Encode(), nil, 200).body["total"].(map[string]any)
	if total["completions"] != 1.0 || total["users"] != 1.0 {
		t.Errorf("analytics of the key's user: %v, want 1 completion (the warm-up left out) of 1 user", total)
	}
	lat := admin.expect("GET", "/api/analytics/latency?"+v.Encode(), nil, 200)
	if !strings.Contains(string(lat.raw), `"generation_time_ms":{"n":1,`) {
		t.Errorf("latency analytics of the key's user: %s, want the completion's generation alone", lat.raw)
	}
	delete(v, "user_id")
	own := e.loggedIn(email).expect("GET", "/api/user/usage?"+v.Encode(), nil, 200).body["total"].(map[string]any)
	if own["completions"] != 1.0 {
		t.Errorf("the user's own usage: %v, want 1 completion", own)
	}
}

// TestLlamaStopString: a stop string of /infill ends the completion where
// it is met, leaving it out of the text, and the answer says so (stop_type
// word, stopping_word). The slow model writes "a" after "a", so the stop
// string "aa" is met at its second token of ten, and the text before it is
// empty.
func TestLlamaStopString(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.llamaClientOf("llama-stop-"+uuid.NewString()[:8]+"@example.com", "axios/1.7.9")
	r := c.expect("POST", "/infill", map[string]any{"input_prefix": "x = \"", "input_suffix": "\"\n", "n_predict": 10,
		"stop": []string{"aa"}, "model": "slow-coder", "t_max_prompt_ms": 5000}, 200)
	gens := e.llamaGens(uid)
	if len(gens) != 1 || gens[0].completion != "" || gens[0].generated != 2 {
		t.Fatalf("stored %+v, want an empty completion after 2 tokens", gens)
	}
	if r.body["content"] != "" || r.body["stop_type"] != "word" || r.body["stopping_word"] != "aa" ||
		llamaNum(t, r.body, "tokens_predicted") != 2 {
		t.Errorf("answer %s, want an empty content ended by the stop string", r.raw)
	}
	if st := r.body["generation_settings"].(map[string]any)["stop"].([]any); len(st) != 1 || st[0] != "aa" {
		t.Errorf("generation_settings.stop = %v", st)
	}
}
