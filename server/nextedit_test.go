package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/code4me/code4me/internal/catalog"
)

// The next-edit tests run the real server and engine. The synthetic model
// writes no meaningful edit, so they check what can be checked exactly:
// the prompt the engine was given, byte for byte; the answer computed from
// the stored completion; the stored query; feedback; and that planted
// secrets reach neither the engine nor an answer.

// sentToEngine reports whether the engine was asked to tokenize exactly
// text.
func (e *pluginEnv) sentToEngine(text string) bool {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	return slices.Contains(e.rec.texts, text)
}

// storedNextEdit is a stored query with its one generation.
type storedNextEdit struct {
	client, completion, prefix, fileName string
	mode, maxTokens                      any
	stops, files                         []string
	accepted                             bool
	truths                               []string
}

// storedQuery reads query id's rows.
func (e *pluginEnv) storedQuery(id string) storedNextEdit {
	e.t.Helper()
	var s storedNextEdit
	var sampler []byte
	err := e.srv.db.QueryRow(context.Background(), `
		SELECT m.client, g.completion, g.sampler, c.prefix, coalesce(c.file_name, ''), q.stop_sequences, g.was_accepted,
		       coalesce((SELECT array_agg(file_name ORDER BY ordinal) FROM query_context_file f WHERE f.meta_query_id = m.meta_query_id), '{}'),
		       coalesce((SELECT array_agg(ground_truth) FROM ground_truth t WHERE t.meta_query_id = m.meta_query_id), '{}')
		FROM meta_query m JOIN generation g USING (meta_query_id) JOIN context c USING (meta_query_id)
		JOIN completion_query q USING (meta_query_id) WHERE m.meta_query_id = $1`, id).
		Scan(&s.client, &s.completion, &sampler, &s.prefix, &s.fileName, &s.stops, &s.accepted, &s.files, &s.truths)
	if err != nil {
		e.t.Fatalf("query %s: %v", id, err)
	}
	var m map[string]any
	json.Unmarshal(sampler, &m)
	s.mode, s.maxTokens = m["mode"], m["max_tokens"]
	return s
}

// nextEditBody is a POST /v1/next-edit body for formatInput's material.
func nextEditBody(format string) map[string]any {
	in := formatInput()
	body := map[string]any{
		"model": "tiny-coder", "path": in.path,
		"excerpt": map[string]any{"before": in.before, "region": in.region, "after": in.after,
			"cursor": len([]rune(in.region[:in.cursor])), "start_of_file": true},
		"original_region": in.original,
		"edits":           []map[string]any{{"path": in.edits[0].path, "diff": in.edits[0].diff}},
		"snippets":        []map[string]any{{"path": in.snippets[0].Path, "text": in.snippets[0].Text}},
		"max_tokens":      24, "temperature": 0.5, "seed": 7,
	}
	if format != "" {
		body["prompt_format"] = format
	}
	return body
}

// TestNextEditEndpoint: POST /v1/next-edit in each prompt format (and the
// model's own): the engine gets exactly the format's prompt; the answer's
// region, diff and replacement follow from the stored completion; the
// query is stored as a next-edit with its prompt, snippets and stop
// strings; feedback with ground truth is accepted and recorded.
func TestNextEditEndpoint(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, _ := e.keyClient("nes@example.com", "completions")
	m, _ := e.srv.plugin.models.ByName("tiny-coder")
	if got := nextEditFormatOf(m); got != catalog.DefaultNextEdit(string(m.Family)) || m.Family != "qwen2.5-coder" || got != "sweep" {
		t.Fatalf("tiny-coder (%s) gets format %q", m.Family, got)
	}
	for _, format := range []string{"zeta", "sweep", "tabby", ""} {
		r := c.expect("POST", "/v1/next-edit", nextEditBody(format), 200)
		want := format
		if want == "" {
			want = "sweep"
		}
		prompt := nextEditPrompt(want, formatInput())
		if !e.sentToEngine(prompt) {
			t.Errorf("%s: the engine did not get the prompt %q", want, prompt)
		}
		id, _ := r.body["id"].(string)
		s := e.storedQuery(id)
		if s.client != "next-edit" || s.mode != "next-edit" || s.prefix != prompt || s.fileName != "src/calc.py" ||
			!slices.Equal(s.files, []string{"src/geo.py"}) || !slices.Equal(s.stops, nextEditStops(want)) || s.maxTokens != 24.0 {
			t.Errorf("%s: stored %+v", want, s)
		}
		in := formatInput()
		region := nextEditRegion(want, s.completion, in.region)
		if s.completion == "" {
			region = in.region
		}
		if r.body["object"] != "next_edit" || r.body["model"] != "tiny-coder" || r.body["prompt_format"] != want ||
			r.body["region"] != region || r.body["diff"] != unifiedDiff(in.path, in.region, region) {
			t.Errorf("%s: answer %s, stored completion %q", want, r.raw, s.completion)
		}
		if f := r.body["finish_reason"]; f != "stop" && f != "length" {
			t.Errorf("%s: finish_reason %v", want, f)
		}
		// The replacement, applied to the region, gives the rewritten region.
		if rep, ok := r.body["replace"].(map[string]any); ok {
			rs := []rune(in.region)
			start, end := int(rep["start"].(float64)), int(rep["end"].(float64))
			if got := string(rs[:start]) + rep["text"].(string) + string(rs[end:]); got != region {
				t.Errorf("%s: replacement gives %q, want %q", want, got, region)
			}
		} else if region != in.region || r.body["replace"] != nil {
			t.Errorf("%s: no replacement for a changed region: %s", want, r.raw)
		}
		if u := r.body["usage"].(map[string]any); u["prompt_tokens"].(float64) <= 0 {
			t.Errorf("%s: usage %v", want, u)
		}
	}

	// Without max_tokens a suggestion may be as long as a chat answer: the
	// region is written back whole.
	long := nextEditBody("")
	delete(long, "max_tokens")
	r := c.expect("POST", "/v1/next-edit", long, 200)
	if s := e.storedQuery(r.body["id"].(string)); s.maxTokens != float64(e.srv.plugin.limits.ChatTokens) ||
		e.srv.plugin.limits.ChatTokens <= e.srv.plugin.limits.CompletionTokens {
		t.Errorf("max_tokens %v, limits %+v", s.maxTokens, e.srv.plugin.limits)
	}

	// Feedback on a suggestion: accepted, with what the user wrote.
	r = c.expect("POST", "/v1/next-edit", nextEditBody("zeta"), 200)
	id := r.body["id"].(string)
	fb := c.expect("POST", "/v1/next-edit/feedback", map[string]any{"id": id, "accepted": true, "ground_truth": "def area(r):\n"}, 200)
	if fb.body["id"] != id || fb.body["accepted"] != true {
		t.Fatalf("feedback answer %s", fb.raw)
	}
	if s := e.storedQuery(id); !s.accepted || !slices.Equal(s.truths, []string{"def area(r):\n"}) {
		t.Fatalf("after feedback: %+v", s)
	}
	// Another user's suggestion is not theirs to rate; an unknown one is a 404.
	other, _ := e.keyClient("nes-other@example.com", "completions")
	if r := other.do("POST", "/v1/next-edit/feedback", map[string]any{"id": id, "accepted": false}); r.status != 403 {
		t.Fatalf("another user's feedback: %d %s", r.status, r.raw)
	}
	if r := c.do("POST", "/v1/next-edit/feedback", map[string]any{"id": "00000000-0000-4000-8000-000000000000", "accepted": true}); r.status != 404 ||
		r.body["error"] == nil {
		t.Fatalf("unknown suggestion: %d %s", r.status, r.raw)
	}
	// Refusals, in OpenAI's shape.
	bad := nextEditBody("nope")
	if r := c.do("POST", "/v1/next-edit", bad); r.status != 422 || r.body["error"].(map[string]any)["param"] != "prompt_format" {
		t.Fatalf("unknown format: %d %s", r.status, r.raw)
	}
	bad = nextEditBody("")
	bad["excerpt"].(map[string]any)["cursor"] = 1000
	if r := c.do("POST", "/v1/next-edit", bad); r.status != 422 || r.body["error"].(map[string]any)["param"] != "excerpt.cursor" {
		t.Fatalf("cursor past the region: %d %s", r.status, r.raw)
	}
	bad = nextEditBody("")
	bad["model"] = "tiny-instruct"
	if r := c.do("POST", "/v1/next-edit", bad); r.status != 400 {
		t.Fatalf("a chat model: %d %s", r.status, r.raw)
	}
	if r := e.client().do("POST", "/v1/next-edit", nextEditBody("")); r.status != 401 {
		t.Fatalf("unauthenticated: %d %s", r.status, r.raw)
	}
}

// TestNextEditSecrets: a secret in the region and another in an edit's
// diff reach neither the engine nor the answer nor the stored prompt; the
// cursor keeps its place after the redacted secret.
func TestNextEditSecrets(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, _ := e.keyClient("nes-secret@example.com", "completions")
	aws, gh, _, _ := plantedSecrets()
	for _, format := range []string{"zeta", "sweep", "tabby"} {
		body := nextEditBody(format)
		region := "KEY = \"" + aws + "\"\ndef area(r):\n    return r\n"
		body["excerpt"].(map[string]any)["region"] = region
		body["excerpt"].(map[string]any)["cursor"] = len([]rune(region)) - 2
		body["edits"] = []map[string]any{{"diff": "@@ -1 +1 @@\n-token = None\n+token = \"" + gh + "\"\n"}}
		r := c.expect("POST", "/v1/next-edit", body, 200)
		s := e.storedQuery(r.body["id"].(string))
		noSecret(t, aws, map[string]string{"the engine": e.rec.all(), "the answer": string(r.raw), "the stored prompt": s.prefix})
		noSecret(t, gh, map[string]string{"the engine": e.rec.all(), "the answer": string(r.raw), "the stored prompt": s.prefix})
		redRegion := "KEY = \"<redacted:aws-access-token>\"\ndef area(r):\n    return r\n"
		if !strings.Contains(s.prefix, "<redacted:github-pat>") || !strings.Contains(s.prefix, "KEY = \"<redacted:aws-access-token>\"\ndef area(r):\n") {
			t.Errorf("%s: stored prompt %q", format, s.prefix)
		}
		if format == "zeta" && !strings.Contains(s.prefix, "    return <|user_cursor_is_here|>r\n") {
			t.Errorf("zeta: the cursor moved: %q", s.prefix)
		}
		// The diff is against the redacted region: unchanged lines are not
		// shown as changed, and the secret is never in it.
		rewritten := nextEditRegion(format, s.completion, redRegion)
		if s.completion == "" {
			rewritten = redRegion
		}
		if r.body["diff"] != unifiedDiff("src/calc.py", redRegion, rewritten) {
			t.Errorf("%s: diff %q", format, r.body["diff"])
		}
	}
}

// TestZedZetaCompletions: Zed's edit predictions with the zeta prompt
// format send a plain OpenAI completions body whose prompt is in Zeta's
// format: it is answered in OpenAI's shape and stored as a next-edit of
// client "zed"; the prompt reaches the engine as sent.
func TestZedZetaCompletions(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.keyClient("zed-zeta@example.com", "completions")
	prompt := nextEditPrompt("zeta", formatInput())
	body := fmt.Sprintf(`{"model":"tiny-coder","prompt":%q,"max_tokens":256,"temperature":null,"stop":["<|editable_region_end|>",`+
		`"<|editable_region_end|>\n","<|editable_region_end|>\n\n","<|editable_region_end|>\n\n\n"],"environment":null}`, prompt)
	r := c.expect("POST", "/v1/completions", body, 200)
	gens := e.stored(uid)
	choices := r.body["choices"].([]any)
	if len(gens) != 1 || len(choices) != 1 || r.body["object"] != "text_completion" {
		t.Fatalf("answer %s, stored %+v", r.raw, gens)
	}
	if ch := choices[0].(map[string]any); ch["text"] != gens[0].completion || gens[0].client != "zed" || gens[0].sampler["mode"] != "next-edit" ||
		*gens[0].prefix != prompt || gens[0].sampler["max_tokens"] == nil {
		t.Fatalf("choice %v, stored %+v", ch, gens[0])
	}
	if !e.sentToEngine(prompt) {
		t.Fatal("the engine did not get Zed's prompt as sent")
	}
	// A prompt without Zeta's markers is an ordinary raw completion.
	c.expect("POST", "/v1/completions", `{"model":"tiny-coder","prompt":"def f(","max_tokens":2}`, 200)
	if gens = e.stored(uid); len(gens) != 2 || gens[1].client != "openai" || gens[1].sampler["mode"] != "multi-line" {
		t.Fatalf("plain prompt stored as %+v", gens[1])
	}
}
