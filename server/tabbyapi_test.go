package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// The Tabby tests replay the requests of Tabby's plugins against the real
// server and engine.

// TestTabbyCompletion: Tabby's completion body as its plugin sends it: the
// answer is {id: "cmpl-<meta_query_id>", choices: [{index 0, text}], mode},
// the text the stored completion; the declarations, snippets and
// clipboard are the query's context files and reach the engine redacted.
func TestTabbyCompletion(t *testing.T) {
	e := newLlamaEnv(t)
	c, uid := e.keyClient("tabby@example.com", "completions")
	aws, _, _, _ := plantedSecrets()
	body := fmt.Sprintf(`{"language":"python","segments":{"prefix":"def fib(n):\n    ","suffix":"\n        return fib(n - 1) + fib(n - 2)",`+
		`"filepath":"src/fib.py","git_url":"https://github.com/org/repo",`+
		`"declarations":[{"filepath":"src/util.py","body":"def memo(f): ..."}],`+
		`"relevant_snippets_from_changed_files":[{"filepath":"src/conf.py","body":"KEY = \"%s\"\n","score":0.8}],`+
		`"relevant_snippets_from_recently_opened_files":[{"filepath":"src/b.py","body":"import fib\n","score":0.5}],`+
		`"clipboard":"fib(10)"},"user":"dev","temperature":0.8,"seed":0,"mode":"standard",`+
		`"debug_options":{"raw_prompt":null,"return_snippets":false,"return_prompt":false,"disable_retrieval_augmented_code_completion":false}}`, aws)
	r := c.expect("POST", "/v1/completions", body, 200)
	gens := e.stored(uid)
	if len(gens) != 1 {
		t.Fatalf("stored %+v", gens)
	}
	id, _ := r.body["id"].(string)
	choices, _ := r.body["choices"].([]any)
	if !strings.HasPrefix(id, "cmpl-") || len(choices) != 1 || r.body["mode"] != "standard" {
		t.Fatalf("answer %s", r.raw)
	}
	if ch := choices[0].(map[string]any); ch["index"] != 0.0 || ch["text"] != gens[0].completion || len(ch) != 2 {
		t.Fatalf("choice %v, stored %q", ch, gens[0].completion)
	}
	s := e.storedQuery(strings.TrimPrefix(id, "cmpl-"))
	if s.client != "tabby" || s.fileName != "src/fib.py" || s.prefix != "def fib(n):\n    " || s.mode != "multi-line" ||
		!slices.Equal(s.files, []string{"src/util.py", "src/conf.py", "src/b.py", "clipboard"}) || gens[0].sampler["temperature"] != 0.8 {
		t.Fatalf("stored %+v %v", s, gens[0].sampler)
	}
	seen := e.rec.all()
	if !strings.Contains(seen, "def memo(f): ...") || !strings.Contains(seen, "<redacted:aws-access-token>") {
		t.Fatal("the declarations and snippets did not reach the engine, redacted")
	}
	noSecret(t, aws, map[string]string{"the engine": seen, "the answer": string(r.raw)})

	// A body without segments' prefix is refused in OpenAI's shape.
	if r := c.do("POST", "/v1/completions", `{"segments":{"suffix":"x"}}`); r.status != 422 ||
		r.body["error"].(map[string]any)["param"] != "segments.prefix" {
		t.Fatalf("no prefix: %d %s", r.status, r.raw)
	}
}

// generationFeedback reads a query's acceptance and how often it was
// shown.
func (e *pluginEnv) generationFeedback(id string) (accepted bool, shown int) {
	e.t.Helper()
	if err := e.srv.db.QueryRow(context.Background(), `SELECT was_accepted, cardinality(shown_at) FROM generation WHERE meta_query_id = $1`, id).
		Scan(&accepted, &shown); err != nil {
		e.t.Fatal(err)
	}
	return
}

// TestTabbyEvents: the plugin's view, select and dismiss events become the
// completion's feedback; a view after a select keeps the acceptance;
// unknown events, foreign or malformed ids are answered 200 and change
// nothing.
func TestTabbyEvents(t *testing.T) {
	e := newLlamaEnv(t)
	c, _ := e.keyClient("tabby-events@example.com", "completions")
	r := c.expect("POST", "/v1/completions", `{"language":"go","segments":{"prefix":"func main() {\n\t","suffix":"\n}"}}`, 200)
	cid := r.body["id"].(string)
	id := strings.TrimPrefix(cid, "cmpl-")
	event := func(c *client, typ, query string) {
		t.Helper()
		r := c.do("POST", "/v1/events"+query, fmt.Sprintf(`{"type":%q,"completion_id":%q,"choice_index":0,"view_id":"v1","elapsed":1234}`, typ, cid))
		if r.status != 200 {
			t.Fatalf("%s: %d %s", typ, r.status, r.raw)
		}
	}
	steps := []struct {
		c          *client
		typ, query string
		accepted   bool
		shown      int
	}{
		{c, "view", "", false, 2},
		{c, "select", "?select_kind=line", true, 2},
		{c, "view", "", true, 3},
		{c, "dismiss", "", false, 3},
		{c, "select", "", true, 3},
		{c, "unknown_event", "", true, 3},
	}
	for i, st := range steps {
		event(st.c, st.typ, st.query)
		if acc, shown := e.generationFeedback(id); acc != st.accepted || shown != st.shown {
			t.Fatalf("step %d (%s): accepted %v, shown %d", i, st.typ, acc, shown)
		}
	}
	other, _ := e.keyClient("tabby-events-other@example.com", "completions")
	event(other, "dismiss", "")
	for _, body := range []string{`{"type":"select","completion_id":"cmpl-nope","choice_index":0}`, `{"type":"select"}`,
		fmt.Sprintf(`{"type":"select","completion_id":%q,"choice_index":3}`, cid), `{"type":"dismiss","completion_id":"cmpl-00000000-0000-4000-8000-000000000000"}`} {
		if r := c.do("POST", "/v1/events", body); r.status != 200 {
			t.Fatalf("%s: %d %s", body, r.status, r.raw)
		}
	}
	if acc, shown := e.generationFeedback(id); !acc || shown != 3 {
		t.Fatalf("after ignored events: accepted %v, shown %d", acc, shown)
	}
	if r := e.client().do("POST", "/v1/events", `{"type":"view"}`); r.status != 401 {
		t.Fatalf("unauthenticated: %d", r.status)
	}
}

// TestTabbyNextEdit: Tabby's next_edit_suggestion mode runs the next-edit
// pipeline: the engine gets the model's format's prompt of the edit
// history (the region found in the segments gives the text around it and
// the cursor); the one choice, when the model changed the region, is the
// replacement of the changed span with its replaceRange in UTF-16 units,
// which applied to current_version gives the rewritten region.
func TestTabbyNextEdit(t *testing.T) {
	e := newLlamaEnv(t)
	c, _ := e.keyClient("tabby-nes@example.com", "completions")
	current := "fn main() {\n    let x = 5;\n    println!(\"é {}\", x);\n}\n"
	history := map[string]any{"original_code": "fn main() {\n    println!(\"é {}\", x);\n}\n",
		"edits_diff": "---src/main.rs\n+++src/main.rs\n@@ -1,1 +1,2 @@\n+    let x = 5;\n", "current_version": current}
	prefix := "// top\n" + current[:20]
	body := map[string]any{"language": "rust", "mode": "next_edit_suggestion", "segments": map[string]any{"prefix": prefix,
		"suffix": current[20:] + "// end\n", "filepath": "src/main.rs", "edit_history": history}}
	r := c.expect("POST", "/v1/completions", body, 200)
	id := strings.TrimPrefix(r.body["id"].(string), "cmpl-")
	s := e.storedQuery(id)
	in := &nextEditInput{path: "src/main.rs", before: "// top\n", region: current, after: "// end\n", cursor: 20,
		original: history["original_code"].(string), edits: []editEvent{{"src/main.rs", history["edits_diff"].(string)}}}
	d := history["edits_diff"].(string)
	in.tabbyDiff = &d
	prompt := nextEditPrompt("sweep", in)
	if s.client != "tabby" || s.mode != "next-edit" || s.prefix != prompt || !e.sentToEngine(prompt) {
		t.Fatalf("stored %+v, want the prompt %q", s, prompt)
	}
	region := current
	if s.completion != "" {
		region = nextEditRegion("sweep", s.completion, current)
	}
	choices := r.body["choices"].([]any)
	if r.body["mode"] != "next_edit_suggestion" || (region == current) != (len(choices) == 0) {
		t.Fatalf("answer %s, rewritten %q", r.raw, region)
	}
	if len(choices) == 1 {
		ch := choices[0].(map[string]any)
		rr := ch["replaceRange"].(map[string]any)
		u := utf16.Encode([]rune(current))
		start, end := int(rr["start"].(float64)), int(rr["end"].(float64))
		got := string(utf16.Decode(u[:start])) + ch["text"].(string) + string(utf16.Decode(u[end:]))
		if got != region || ch["index"] != 0.0 {
			t.Fatalf("replacement gives %q, want %q (%v)", got, region, ch)
		}
	}
	// Without edit_history the mode is refused.
	delete(body["segments"].(map[string]any), "edit_history")
	if r := c.do("POST", "/v1/completions", body); r.status != 422 || r.body["error"].(map[string]any)["param"] != "segments.edit_history" {
		t.Fatalf("no edit history: %d %s", r.status, r.raw)
	}
}

// TestTabbyHealth: GET and POST /v1/health answer Tabby's shape with the
// served models; /v1beta/server_setting turns the plugin's own telemetry
// off and /v1beta/models lists the models.
func TestTabbyHealth(t *testing.T) {
	e := newLlamaEnv(t)
	c, _ := e.keyClient("tabby-health@example.com", "completions")
	for _, method := range []string{"GET", "POST"} {
		r := c.expect(method, "/v1/health", nil, 200)
		for _, k := range []string{"model", "chat_model", "device", "arch", "cpu_info", "cpu_count", "cuda_devices", "version", "webserver"} {
			if _, ok := r.body[k]; !ok {
				t.Errorf("%s: no %s in %s", method, k, r.raw)
			}
		}
		if r.body["chat_model"] != "tiny-instruct" || r.body["model"] == nil || r.body["model"] == "tiny-instruct" ||
			r.body["cpu_count"].(float64) < 1 || r.body["version"].(map[string]any)["git_describe"] == "" {
			t.Errorf("%s: %s", method, r.raw)
		}
	}
	if r := c.expect("GET", "/v1beta/server_setting", nil, 200); r.body["disable_client_side_telemetry"] != true {
		t.Errorf("server setting %s", r.raw)
	}
	if r := c.expect("GET", "/v1beta/models", nil, 200); fmt.Sprint(r.body["completion"]) != "[tiny-coder]" ||
		fmt.Sprint(r.body["chat"]) != "[tiny-instruct]" {
		t.Errorf("models %s", r.raw)
	}
	if r := e.client().do("GET", "/v1/health", nil); r.status != 401 {
		t.Fatalf("unauthenticated: %d", r.status)
	}
}
