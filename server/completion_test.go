package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
)

// TestCompletionRequestAndFeedback: a completion answers with its items in
// model_ids order, the query is committed before the response (feedback
// right after it works, T6), and GET returns it to its owner.
func TestCompletionRequestAndFeedback(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("dev@example.com")
	coder := e.ids["tiny-coder"]

	r := c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"), 200)
	if r.msg() != MsgCompletion {
		t.Fatalf("message = %q", r.msg())
	}
	data := r.body["data"].(map[string]any)
	mq := data["meta_query_id"].(string)
	items := data["completions"].([]any)
	if len(items) != 1 {
		t.Fatalf("completions = %s", r.raw)
	}
	it := items[0].(map[string]any)
	if it["model_id"] != float64(coder) || it["model_name"] != "tiny-coder" || it["completion"] == nil || it["generation_time"] == nil {
		t.Fatalf("item = %v", it)
	}
	if conf, ok := it["confidence"].(float64); !ok || conf < 0 || conf > 1 {
		t.Fatalf("confidence = %v", it["confidence"])
	}

	// Rows: meta query, completion query, generation, both telemetries
	// (stored by default), no context (not asked for).
	if n := e.count(`SELECT count(*) FROM meta_query m JOIN completion_query USING (meta_query_id) JOIN generation g USING (meta_query_id)
		JOIN contextual_telemetry USING (meta_query_id) JOIN behavioral_telemetry USING (meta_query_id)
		WHERE m.meta_query_id = $1 AND m.query_type = 'completion' AND g.model_id = $2`, mq, coder); n != 1 {
		t.Fatalf("joined rows = %d", n)
	}
	if n := e.count(`SELECT count(*) FROM context WHERE meta_query_id = $1`, mq); n != 0 {
		t.Fatal("context stored without store_context")
	}

	// Feedback immediately after the response, twice: acceptance is
	// overwritten, shown_at appended, ground truths accumulate.
	fb := map[string]any{"meta_query_id": mq, "model_id": coder, "was_accepted": true, "ground_truth": "a + b",
		"shown_at": []string{"2026-01-02T03:04:05Z"}}
	r = c.expect("POST", "/api/completion/feedback", fb, 200)
	if r.msg() != MsgCompletionFeedback {
		t.Fatal(r.msg())
	}
	fb["was_accepted"] = false
	c.expect("POST", "/api/completion/feedback", fb, 200)
	if n := e.count(`SELECT count(*) FROM generation WHERE meta_query_id = $1 AND NOT was_accepted AND cardinality(shown_at) = 3 AND feedback_at IS NOT NULL`, mq); n != 1 {
		t.Fatal("feedback not recorded")
	}
	if n := e.count(`SELECT count(*) FROM ground_truth WHERE meta_query_id = $1 AND ground_truth = 'a + b' AND model_id = $2`, mq, coder); n != 2 {
		t.Fatalf("ground truths = %d", n)
	}
	// The trailing-slash variant redirects.
	c.expect("POST", "/api/completion/feedback/", fb, 307)

	r = c.expect("GET", "/api/completion/"+mq, nil, 200)
	got := r.body["data"].(map[string]any)["completions"].([]any)
	if len(got) != 1 || got[0].(map[string]any)["completion"] != it["completion"] {
		t.Fatalf("get = %s", r.raw)
	}
}

// TestCompletionMultiModel: several models run; an unknown id, a failing
// model and a chat model give error items while the others answer (
// T7); duplicates are answered once; only answers are stored.
func TestCompletionMultiModel(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("multi@example.com")
	coder, broken, instruct := e.ids["tiny-coder"], e.ids["broken-coder"], e.ids["tiny-instruct"]
	ids := []int64{coder, broken, 9999, instruct, coder}
	r := c.expect("POST", "/api/completion/request", completionBody(ids, "for i in range(", "):\n    pass\n"), 200)
	data := r.body["data"].(map[string]any)
	items := data["completions"].([]any)
	if len(items) != 4 {
		t.Fatalf("items = %s", r.raw)
	}
	want := []struct {
		id   int64
		name string
		ok   bool
	}{{coder, "tiny-coder", true}, {broken, "broken-coder", false}, {9999, "Model ID: 9999", false}, {instruct, "tiny-instruct", false}}
	for i, w := range want {
		it := items[i].(map[string]any)
		if it["model_id"] != float64(w.id) || it["model_name"] != w.name {
			t.Fatalf("item %d = %v, want %v", i, it, w)
		}
		if w.ok != (it["message"] == nil) {
			t.Fatalf("item %d = %v", i, it)
		}
		if !w.ok && it["message"] != MsgCompletionErrorItem {
			t.Fatalf("item %d message = %v", i, it["message"])
		}
	}
	if n := e.count(`SELECT count(*) FROM generation WHERE meta_query_id = $1`, data["meta_query_id"]); n != 1 {
		t.Fatalf("generations = %d", n)
	}
	// No models at all is still a recorded query.
	r = c.expect("POST", "/api/completion/request", completionBody([]int64{}, "x", ""), 200)
	if len(r.body["data"].(map[string]any)["completions"].([]any)) != 0 {
		t.Fatal(string(r.raw))
	}
}

// TestCompletionValidation covers the 4xx answers of the completion
// endpoints.
func TestCompletionValidation(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("val@example.com")
	coder := e.ids["tiny-coder"]
	loc := func(r resp) string {
		d, _ := r.body["detail"].([]any)
		var out []string
		for _, x := range d {
			out = append(out, fmt.Sprint(x.(map[string]any)["loc"]))
		}
		return strings.Join(out, ";")
	}
	body := func(mut func(b map[string]any)) map[string]any {
		b := completionBody([]int64{coder}, "a", "b")
		mut(b)
		return b
	}
	tel := func(b map[string]any) map[string]any { return b["contextual_telemetry"].(map[string]any) }
	cases := []struct {
		name string
		body any
		loc  string
	}{
		{"empty body", "", "[body]"},
		{"not json", "{", "[body 1]"}, // truncated: the end, as FastAPI reports it
		{"no model_ids", body(func(b map[string]any) { delete(b, "model_ids") }), "[body model_ids]"},
		{"model_ids not ints", body(func(b map[string]any) { b["model_ids"] = []any{"x"} }), "[body model_ids 0]"},
		{"no prefix", body(func(b map[string]any) { delete(b["context"].(map[string]any), "prefix") }), "[body context prefix]"},
		{"no telemetry", body(func(b map[string]any) { delete(b, "contextual_telemetry") }), "[body contextual_telemetry]"},
		{"unknown language", body(func(b map[string]any) { tel(b)["language_id"] = 100000 }), "[body contextual_telemetry language_id]"},
		{"unknown trigger and version", body(func(b map[string]any) { tel(b)["trigger_type_id"] = 99; tel(b)["version_id"] = 99 }),
			"[body contextual_telemetry version_id];[body contextual_telemetry trigger_type_id]"},
		{"language 0", body(func(b map[string]any) { tel(b)["language_id"] = 0 }), "[body contextual_telemetry language_id]"},
		{"negative caret", body(func(b map[string]any) { tel(b)["caret_line"] = -1 }), "[body contextual_telemetry caret_line]"},
		{"position > 1", body(func(b map[string]any) { tel(b)["relative_document_position"] = 1.5 }), "[body contextual_telemetry relative_document_position]"},
		{"negative typing speed", body(func(b map[string]any) { b["behavioral_telemetry"].(map[string]any)["typing_speed"] = -1 }), "[body behavioral_telemetry typing_speed]"},
	}
	for _, tc := range cases {
		r := c.expect("POST", "/api/completion/request", tc.body, 422)
		if got := loc(r); got != tc.loc {
			t.Errorf("%s: loc = %s, want %s (%s)", tc.name, got, tc.loc, r.raw)
		}
	}
	if n := e.count(`SELECT count(*) FROM meta_query m JOIN users u USING (user_id) WHERE u.email = 'val@example.com'`); n != 0 {
		t.Fatalf("%d queries stored by invalid requests", n)
	}
	// Feedback and multi-file context validation.
	c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": "nope", "model_id": 1, "was_accepted": true}, 422)
	c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": "00000000-0000-4000-8000-000000000000", "model_id": -1, "was_accepted": true}, 422)
	c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": "00000000-0000-4000-8000-000000000000", "model_id": 1, "was_accepted": true, "shown_at": []any{"yesterday"}}, 422)
	c.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{"a.py": []any{map[string]any{"change_type": "move", "start_line": 0, "end_line": 0}}}}, 422)
	c.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": []any{}}, 422)
	c.expect("GET", "/api/completion/not-a-uuid", nil, 422)
	c.expect("GET", "/api/completion/request", nil, 422)
	if r := c.expect("GET", "/api/completion/00000000-0000-4000-8000-000000000000", nil, 404); r.msg() != MsgQueryNotFound {
		t.Fatal(r.msg())
	}
	if r := c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": "00000000-0000-4000-8000-000000000000", "model_id": 1, "was_accepted": true}, 404); r.msg() != MsgGenerationNotFound {
		t.Fatal(r.msg())
	}

	// 401s: no session; a session without a project.
	if r := e.client().expect("POST", "/api/completion/request", completionBody([]int64{coder}, "a", "b"), 401); r.msg() != MsgInvalidOrExpiredSession {
		t.Fatal(r.msg())
	}
	e.signup("noproject@example.com")
	np := e.loggedIn("noproject@example.com")
	if r := np.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "a", "b"), 401); r.msg() != MsgInvalidOrExpiredProject {
		t.Fatal(r.msg())
	}
	np.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": "00000000-0000-4000-8000-000000000000", "model_id": 1, "was_accepted": true}, 401)
	np.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{}}, 401)
}

// TestCompletionOwnerOnly: another user can neither read a query nor give
// feedback on it; feedback for a model that did not answer is a 404.
func TestCompletionOwnerOnly(t *testing.T) {
	e := newPluginEnv(t, nil)
	owner := e.member("cmp-owner@example.com")
	other := e.member("cmp-other@example.com")
	coder := e.ids["tiny-coder"]
	r := owner.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "x = ", "\n"), 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
	if r := other.expect("GET", "/api/completion/"+mq, nil, 403); r.msg() != MsgNoAccessToQuery {
		t.Fatal(r.msg())
	}
	fb := map[string]any{"meta_query_id": mq, "model_id": coder, "was_accepted": true, "ground_truth": "stolen"}
	if r := other.expect("POST", "/api/completion/feedback", fb, 403); r.msg() != MsgNoAccessToFeedback {
		t.Fatal(r.msg())
	}
	fb["model_id"] = e.ids["broken-coder"]
	if r := owner.expect("POST", "/api/completion/feedback", fb, 404); r.msg() != MsgGenerationNotFound {
		t.Fatal(r.msg())
	}
	if n := e.count(`SELECT count(*) FROM ground_truth WHERE meta_query_id = $1`, mq); n != 0 {
		t.Fatal("ground truth stored by a refused feedback")
	}
}

// TestCompletionStorageFlags: with every store flag false the request
// succeeds (Code4me V2 answered 500) and stores only the query and
// generations; the user's consent overrides a request's yes.
func TestCompletionStorageFlags(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("flags@example.com")
	coder := e.ids["tiny-coder"]
	b := completionBody([]int64{coder}, "y = ", "\n")
	b["store_context"], b["store_contextual_telemetry"], b["store_behavioral_telemetry"] = false, false, false
	r := c.expect("POST", "/api/completion/request", b, 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"]
	const stored = `SELECT count(*) FROM meta_query m JOIN users u USING (user_id)
		LEFT JOIN contextual_telemetry ct USING (meta_query_id) LEFT JOIN behavioral_telemetry bt USING (meta_query_id) LEFT JOIN context cx USING (meta_query_id)
		WHERE u.email = 'flags@example.com' AND (ct.meta_query_id IS NOT NULL OR bt.meta_query_id IS NOT NULL OR cx.meta_query_id IS NOT NULL)`
	if n := e.count(stored); n != 0 {
		t.Fatalf("%d telemetry/context rows stored", n)
	}
	if n := e.count(`SELECT count(*) FROM generation WHERE meta_query_id = $1`, mq); n != 1 {
		t.Fatal("generation not stored")
	}
	// The user withdraws consent: nothing is stored even when asked.
	if _, err := e.srv.db.Exec(t.Context(), `UPDATE users SET preference = '{"store_context": false, "store_contextual_telemetry": false, "store_behavioral_telemetry": false}' WHERE email = 'flags@example.com'`); err != nil {
		t.Fatal(err)
	}
	b["store_context"], b["store_contextual_telemetry"], b["store_behavioral_telemetry"] = true, true, true
	c.expect("POST", "/api/completion/request", b, 200)
	if n := e.count(stored); n != 0 {
		t.Fatalf("%d rows stored without consent", n)
	}
}

// randomFrom draws n characters of alphabet.
func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

// plantedSecrets returns an AWS access key id (random, not the AWS
// example key), a GitHub token and a private-key block, each made up now.
func plantedSecrets() (aws, gh, pemBody string, code string) {
	aws = "AKIA" + randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
	gh = "ghp_" + randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 36)
	pemBody = randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 64)
	pem := "-----BEGIN RSA PRIVATE KEY-----\n" + pemBody + "\n" + randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 64) +
		"\n" + randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40) + "==\n-----END RSA PRIVATE KEY-----"
	code = "import boto3\n\naws_access_key_id = \"" + aws + "\"\ntoken = \"" + gh + "\"\nKEY = \"\"\"\n" + pem + "\n\"\"\"\n\ndef connect():\n    return "
	return
}

// TestCompletionSecretsNeverLeave: secrets planted in the prefix, suffix,
// selected text and ground truth reach neither the engine, nor any text
// column written, nor a response.
func TestCompletionSecretsNeverLeave(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("leak@example.com")
	if _, err := e.srv.db.Exec(t.Context(), `UPDATE users SET preference = '{"store_context": true}' WHERE email = 'leak@example.com'`); err != nil {
		t.Fatal(err)
	}
	aws, gh, pemBody, code := plantedSecrets()
	secrets := []string{aws, gh, pemBody}
	b := completionBody([]int64{e.ids["tiny-coder"]}, code, "\n# token "+gh+"\n")
	b["store_context"] = true
	b["context"].(map[string]any)["selected_text"] = "key = '" + aws + "'"
	b["contextual_telemetry"].(map[string]any)["file_path"] = "secrets/" + gh + ".py"
	r := c.expect("POST", "/api/completion/request", b, 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
	fb := c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": e.ids["tiny-coder"],
		"was_accepted": true, "ground_truth": "connect(" + aws + ")"}, 200)

	var rows string
	if err := e.srv.db.QueryRow(t.Context(), `SELECT concat_ws('|', cx.prefix, cx.suffix, cx.file_name, cx.selected_text,
		(SELECT string_agg(completion, '|') FROM generation WHERE meta_query_id = $1),
		(SELECT string_agg(ground_truth, '|') FROM ground_truth WHERE meta_query_id = $1),
		(SELECT file_path FROM contextual_telemetry WHERE meta_query_id = $1))
		FROM context cx WHERE cx.meta_query_id = $1`, mq).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rows, "<redacted:aws-access-token>") || !strings.Contains(rows, "<redacted:private-key>") {
		t.Fatalf("no placeholders stored: %q", rows)
	}
	for _, s := range secrets {
		if strings.Contains(e.rec.all(), s) {
			t.Errorf("secret %.8s… reached the engine", s)
		}
		if strings.Contains(rows, s) {
			t.Errorf("secret %.8s… stored", s)
		}
		if strings.Contains(string(r.raw), s) || strings.Contains(string(fb.raw), s) {
			t.Errorf("secret %.8s… in a response", s)
		}
	}
}

// TestMaxTokensFromConfig: COMPLETION_MAX_TOKENS and CHAT_MAX_TOKENS bound
// what a completion and a chat answer generate, and the stored sampler
// says so.
func TestMaxTokensFromConfig(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) { c.CompletionMaxTokens, c.ChatMaxTokens = 3, 5 })
	c := e.member("limits@example.com")
	c.expect("POST", "/api/completion/request", completionBody([]int64{e.ids["tiny-coder"]}, "def add(a, b):\n    return ", ""), 200)
	c.expect("POST", "/api/chat/request", chatBody([]int64{e.ids["tiny-instruct"]}, uuid.NewString(), [2]string{"user", "Write a long story."}), 200)
	rows, err := e.srv.db.Query(context.Background(),
		`SELECT m.name, g.tokens_generated, g.sampler->>'max_tokens' FROM generation g
		 JOIN model m ON m.model_id = g.model_id JOIN meta_query q ON q.meta_query_id = g.meta_query_id
		 JOIN users u ON u.user_id = q.user_id WHERE u.email = 'limits@example.com'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string]int32{"tiny-coder": 3, "tiny-instruct": 5}
	seen := 0
	for rows.Next() {
		var name, limit string
		var n int32
		if err := rows.Scan(&name, &n, &limit); err != nil {
			t.Fatal(err)
		}
		seen++
		if n > want[name] || limit != strconv.Itoa(int(want[name])) {
			t.Errorf("%s: %d tokens generated, sampler max_tokens %s; want at most %d", name, n, limit, want[name])
		}
	}
	if seen != 2 {
		t.Fatalf("%d generations stored; want 2", seen)
	}
}

// TestValidationErrorRedactsEchoedInput: a 422 echoes what it rejected (as
// FastAPI does), redacted like the model's input: a body missing a field
// does not return the secrets of its prefix verbatim, over HTTP or the
// WebSocket.
func TestValidationErrorRedactsEchoedInput(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("echo@example.com")
	aws, gh, pemBody, code := plantedSecrets()
	b := completionBody([]int64{e.ids["tiny-coder"]}, code, "\n# token "+gh+"\n")
	delete(b, "contextual_telemetry")
	r := c.expect("POST", "/api/completion/request", b, 422)

	addr := e.listen()
	conn := e.wsDial(addr, "/api/ws/completion", c)
	send(t, conn, map[string]any{"request_id": "bad", "completion_request": b})
	f := readUntil(t, conn, func(map[string]any) bool { return true })[0]
	if f["status_code"] != float64(422) {
		t.Fatalf("WebSocket result = %v; want a 422", f)
	}
	frame, _ := json.Marshal(f)
	for name, raw := range map[string]string{"HTTP": string(r.raw), "WebSocket": string(frame)} {
		if !strings.Contains(raw, `"missing"`) || !strings.Contains(raw, "redacted:aws-access-token") {
			t.Errorf("%s 422 does not echo the redacted body: %.300s", name, raw)
		}
		for _, s := range []string{aws, gh, pemBody} {
			if strings.Contains(raw, s) {
				t.Errorf("secret %.8s… in the %s 422", s, name)
			}
		}
	}
	conn.Close()
	waitWSGoroutines(t)
}
