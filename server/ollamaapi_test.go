package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ndjsonLines splits lines of JSON.
func ndjsonLines(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		out = append(out, decode(t, l))
	}
	return out
}

// continueParam is how Continue's ollama provider reads each line of
// /api/show's parameters; a line it cannot read makes it give up before it
// looks for .Suffix in the template.
var continueParam = regexp.MustCompile(`^(\S+)\s+((?:".*")|\S+)$`)

// TestOllamaContinueAutocomplete replays Continue's ollama provider:
// /api/show {name} (its template must say .Suffix, and every parameters
// line must parse as Continue parses it), then /api/generate with prefix
// and suffix, streamed by default. The lines add up to the stored
// completion; the last has done, the done_reason of the stored stop
// reason and the stored token counts and engine times in nanoseconds.
// Zed's raw, unstreamed request with a tagged model name works too.
func TestOllamaContinueAutocomplete(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.keyClient("ollama-continue@example.com", "completions")
	show := c.expect("POST", "/api/show", `{"name":"tiny-coder"}`, 200)
	if !strings.Contains(show.body["template"].(string), ".Suffix") || !strings.Contains(fmt.Sprint(show.body["capabilities"]), "insert") {
		t.Fatalf("show = %s", show.raw)
	}
	params := strings.Split(show.body["parameters"].(string), "\n")
	for _, line := range params {
		if !continueParam.MatchString(line) {
			t.Fatalf("Continue cannot read the parameters line %q", line)
		}
	}
	if d := show.body["details"].(map[string]any); d["format"] != "gguf" || !strings.Contains(strings.Join(params, "\n"), "num_ctx ") {
		t.Fatalf("show = %s", show.raw)
	}
	chat := c.expect("POST", "/api/show", `{"model":"tiny-instruct:latest"}`, 200)
	if strings.Contains(chat.body["template"].(string), ".Suffix") || strings.Contains(fmt.Sprint(chat.body["capabilities"]), "insert") {
		t.Fatalf("chat model shown as filling in the middle: %s", chat.raw)
	}

	aws, _, _, _ := plantedSecrets()
	prefix := "SECRET = \"" + aws + "\"\n\ndef main():\n    "
	body := fmt.Sprintf(`{"model":"tiny-coder","prompt":%q,"suffix":"\n\nif __name__ == \"__main__\":\n    main()\n",`+
		`"options":{"temperature":0.01,"top_p":0.9,"top_k":40,"num_predict":12,"stop":["\n\n","<|endoftext|>"],"num_ctx":4096},"keep_alive":1800}`, prefix)
	start := time.Now()
	r := c.expect("POST", "/api/generate", body, 200)
	wall := time.Since(start)
	if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type = %q", ct)
	}
	lines := ndjsonLines(t, r.raw)
	var text string
	for _, l := range lines[:len(lines)-1] {
		if l["done"] != false || l["model"] != "tiny-coder" || l["response"] == nil {
			t.Fatalf("line = %v", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, l["created_at"].(string)); err != nil {
			t.Fatal(err)
		}
		text += l["response"].(string)
	}
	last := lines[len(lines)-1]
	gens := e.stored(uid)
	if len(gens) != 1 || gens[0].completion != text || gens[0].client != "ollama" || last["done"] != true || last["response"] != "" {
		t.Fatalf("streamed %q, last %v, stored %+v", text, last, gens)
	}
	g := gens[0]
	if want := map[bool]string{true: "length", false: "stop"}[g.stopReason == "max_tokens"]; last["done_reason"] != want {
		t.Fatalf("done_reason = %v, stored %q", last["done_reason"], g.stopReason)
	}
	total := last["total_duration"].(float64)
	if last["eval_count"] != float64(g.generated) || last["prompt_eval_count"] != float64(g.cached+g.evaluated) ||
		!closeTo(last["eval_duration"].(float64), g.decodeMS*1e6, 1e3) || !closeTo(last["prompt_eval_duration"].(float64), g.prefillMS*1e6, 1e3) ||
		last["load_duration"] != 0.0 || total < (g.decodeMS+g.prefillMS)*1e6 || total > float64(wall.Nanoseconds()) {
		t.Fatalf("last line %v, stored %+v, wall %v", last, g, wall)
	}
	if g.sampler["top_k"] != 40.0 || g.sampler["max_tokens"] != 12.0 || *g.prefix != strings.Replace(prefix, aws, "<redacted:aws-access-token>", 1) {
		t.Fatalf("stored %+v", g)
	}
	noSecret(t, aws, map[string]string{"the engine": e.rec.all(), "the stream": string(r.raw)})

	// Zed's edit prediction: a raw prompt it formats itself, unstreamed.
	zed := `{"model":"tiny-coder:latest","prompt":"<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>","raw":true,"stream":false,` +
		`"options":{"num_predict":64,"temperature":0.2,"stop":["<|endoftext|>","<|file_separator|>","<|fim_pad|>","<|fim_prefix|>",` +
		`"<|fim_middle|>","<|fim_suffix|>","<fim_prefix>","<fim_middle>","<fim_suffix>","<PRE>","<SUF>","<MID>","[PREFIX]","[SUFFIX]"]}}`
	r = c.expect("POST", "/api/generate", zed, 200)
	gens = e.stored(uid)
	if len(gens) != 2 || r.body["response"] != gens[1].completion || r.body["done"] != true || r.body["model"] != "tiny-coder:latest" ||
		r.body["eval_count"] != float64(gens[1].generated) || *gens[1].prefix != "<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>" {
		t.Fatalf("answer %s, stored %+v", r.raw, gens)
	}
	// A request without a prompt loads the model: answered at once.
	r = c.expect("POST", "/api/generate", `{"model":"tiny-coder"}`, 200)
	if r.body["done"] != true || r.body["done_reason"] != "load" || r.body["response"] != "" || len(e.stored(uid)) != 2 {
		t.Fatalf("load = %s", r.raw)
	}
}

// TestOllamaChat replays Continue's ollama chat (streamed) and an
// unstreamed one attributed to Continue: the messages reach the chat
// model redacted, the lines carry the assistant's message, and nothing is
// stored.
func TestOllamaChat(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.keyClient("ollama-chat@example.com", "completions")
	aws, _, _, _ := plantedSecrets()
	body := fmt.Sprintf(`{"model":"tiny-instruct","messages":[{"role":"system","content":"Be brief."},`+
		`{"role":"user","content":"What is %s?"}],"options":{"num_predict":6,"temperature":0.3},"keep_alive":1800,"stream":true}`, aws)
	r := c.expect("POST", "/api/chat", body, 200)
	lines := ndjsonLines(t, r.raw)
	for i, l := range lines {
		m := l["message"].(map[string]any)
		if m["role"] != "assistant" || l["done"] != (i == len(lines)-1) {
			t.Fatalf("line %d = %v", i, l)
		}
	}
	if last := lines[len(lines)-1]; last["done_reason"] == nil || last["eval_count"].(float64) > 6 || last["total_duration"].(float64) <= 0 {
		t.Fatalf("last line = %v", last)
	}
	if !strings.Contains(e.rec.all(), "What is <redacted:aws-access-token>?") {
		t.Fatal("the message did not reach the model redacted")
	}
	noSecret(t, aws, map[string]string{"the engine": e.rec.all(), "the stream": string(r.raw)})

	c.header["User-Agent"] = "Continue/1.2"
	r = c.expect("POST", "/api/chat", `{"model":"tiny-instruct","messages":[{"role":"user","content":"hi"}],"stream":false}`, 200)
	if r.body["done"] != true || r.body["message"].(map[string]any)["content"] == nil || r.body["eval_count"] == nil {
		t.Fatalf("answer = %s", r.raw)
	}
	r = c.expect("POST", "/api/chat", `{"model":"tiny-instruct","messages":[]}`, 200)
	if r.body["done_reason"] != "load" {
		t.Fatalf("load = %s", r.raw)
	}
	if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1`, uid); n != 0 {
		t.Fatalf("%d queries stored for chat turns", n)
	}
}

// TestOllamaTagsVersionAndErrors: /api/tags lists the models with the
// model table's file size and sha256; /api/version needs no key; every
// refusal is ollama's {"error": "..."} with the status ollama gives.
func TestOllamaTagsVersionAndErrors(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, _ := e.keyClient("ollama-tags@example.com", "completions")
	r := c.expect("GET", "/api/tags", nil, 200)
	found := 0
	for _, m := range r.body["models"].([]any) {
		m := m.(map[string]any)
		if m["name"] != "tiny-coder:latest" && m["name"] != "tiny-instruct:latest" {
			continue
		}
		found++
		var sha string
		var size int64
		name := strings.TrimSuffix(m["name"].(string), ":latest")
		if err := e.srv.db.QueryRow(t.Context(), `SELECT file_sha256, file_size FROM model WHERE model_id = $1`, e.ids[name]).Scan(&sha, &size); err != nil {
			t.Fatal(err)
		}
		d := m["details"].(map[string]any)
		if m["model"] != m["name"] || m["digest"] != sha || m["size"] != float64(size) || d["format"] != "gguf" || d["family"] == "" ||
			d["parameter_size"] == "" || d["quantization_level"] == "" {
			t.Errorf("tag = %v", m)
		}
		if _, err := time.Parse(time.RFC3339Nano, m["modified_at"].(string)); err != nil {
			t.Error(err)
		}
	}
	if found != 2 {
		t.Fatalf("tags = %s", r.raw)
	}
	if r := e.client().expect("GET", "/api/version", nil, 200); r.body["version"] != ollamaAPIVersion {
		t.Fatalf("version = %s", r.raw)
	}

	account, _ := e.keyClient("ollama-account@example.com", "account")
	cases := []struct {
		name, path string
		c          *client
		body       string
		status     int
		message    string
	}{
		{"no key", "/api/generate", e.client(), `{"model":"tiny-coder","prompt":"x"}`, 401, "Session not found"},
		{"account key", "/api/tags", account, "", 403, "'completions' scope"},
		{"unknown model", "/api/generate", c, `{"model":"llama3:8b","prompt":"x"}`, 404, `model "llama3:8b" not found`},
		{"insert on a chat model", "/api/generate", c, `{"model":"tiny-instruct","prompt":"a","suffix":"b"}`, 400, "tiny-instruct does not support insert"},
		{"chat on a completion model", "/api/chat", c, `{"model":"tiny-coder","messages":[{"role":"user","content":"x"}]}`, 400, "does not support chat"},
		{"tools", "/api/chat", c, `{"model":"tiny-instruct","messages":[],"tools":[{"type":"function"}]}`, 400, "does not support tools"},
		{"format", "/api/generate", c, `{"model":"tiny-coder","prompt":"x","format":"json"}`, 400, "format"},
		{"bad option", "/api/generate", c, `{"model":"tiny-coder","prompt":"x","options":{"temperature":"hot"}}`, 422, "Invalid 'options.temperature'"},
		{"no model", "/api/show", c, `{}`, 422, "Invalid 'model': Field required"},
	}
	for _, tc := range cases {
		method := "POST"
		if tc.body == "" {
			method = "GET"
		}
		r := tc.c.do(method, tc.path, map[bool]any{true: nil, false: tc.body}[tc.body == ""])
		msg, _ := r.body["error"].(string)
		if r.status != tc.status || !strings.Contains(msg, tc.message) || r.body["message"] != nil || (tc.status == 422) != (r.body["detail"] != nil) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.raw)
		}
	}
}

// TestOllamaOpenAccessZed: Zed's ollama edit prediction sends no key;
// under serve --open its request from this machine is served as the local
// user's and stored, while without open access it is refused with 401 in
// ollama's shape.
func TestOllamaOpenAccessZed(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	body := `{"model":"tiny-coder","prompt":"<fim_prefix>x = <fim_suffix>\n<fim_middle>","raw":true,"stream":false,` +
		`"options":{"num_predict":4,"temperature":0.2,"stop":["<fim_prefix>","<fim_middle>","<fim_suffix>"]}}`
	post := func() (int, map[string]any) {
		res, err := http.Post("http://"+addr+"/api/generate", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}
	if status, out := post(); status != 401 || out["error"] == nil {
		t.Fatalf("without open access: %d %v", status, out)
	}
	email := "open-zed@code4me.localhost"
	if err := e.srv.OpenLocal(t.Context(), email); err != nil {
		t.Fatal(err)
	}
	status, out := post()
	var completion, client string
	if err := e.srv.db.QueryRow(t.Context(), `SELECT g.completion, m.client FROM meta_query m JOIN generation g USING (meta_query_id)
		JOIN users u USING (user_id) WHERE u.email = $1`, email).Scan(&completion, &client); err != nil {
		t.Fatal(err)
	}
	if status != 200 || out["response"] != completion || client != "ollama" {
		t.Fatalf("open access: %d %v; stored %q by %s", status, out, completion, client)
	}
}
