package server

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestHTTPSupersedeOnArrival: over HTTP, a newer completion request of the
// same session and file stops the older one when it arrives, whatever
// model it asks for, and the older one is answered and stored as
// superseded. (The engine supersedes only among one model's requests, and
// only once the newer request reaches it.)
func TestHTTPSupersedeOnArrival(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("http-supersede@example.com")
	slow, coder := e.ids["slow-coder"], e.ids["tiny-coder"]
	var uid uuid.UUID
	if err := e.srv.db.QueryRow(context.Background(), `SELECT user_id FROM users WHERE email = $1`, "http-supersede@example.com").Scan(&uid); err != nil {
		t.Fatal(err)
	}
	old := make(chan resp, 1)
	go func() { old <- c.do("POST", "/api/completion/request", completionBody([]int64{slow}, "x = 1\n", "")) }()
	// The older request's first rows are committed while the slow model
	// runs (it takes 26 s unless stopped).
	waitCount(t, e, 1, `SELECT count(*) FROM meta_query WHERE user_id = $1 AND total_serving_ms IS NULL`, uid)
	newer := c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "x = 12\n", ""), 200)
	var r resp
	select {
	case r = <-old:
	case <-time.After(10 * time.Second):
		t.Fatal("the older request still runs 10 s after a newer one of its session and file arrived")
	}
	if r.status != 200 {
		t.Fatalf("older request: %d %s", r.status, r.raw)
	}
	items := r.body["data"].(map[string]any)["completions"].([]any)
	if got := items[0].(map[string]any)["error"]; got != "superseded" {
		t.Fatalf("older request's outcome %v, want superseded: %s", got, r.raw)
	}
	if items := newer.body["data"].(map[string]any)["completions"].([]any); items[0].(map[string]any)["error"] != nil {
		t.Fatalf("newer request: %s", newer.raw)
	}
	if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1 AND total_serving_ms IS NOT NULL`, uid); n != 2 {
		t.Fatalf("%d answered queries stored, want 2", n)
	}
}

// The editor-client APIs have no supersede rule: two requests of one API
// key (one session) for the same file both run to their end, as in
// llama-server, whose clients cancel by closing the connection.
func TestClientAPIsNeverSupersede(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, uid := e.llamaClientOf("client-concurrent@example.com", "llama.vim")
	body := func(model string, n int) map[string]any {
		return map[string]any{"model": model, "input_prefix": "x = 1\n", "input_suffix": "\n", "prompt": "", "n_predict": n}
	}
	old := make(chan resp, 1)
	go func() { old <- c.do("POST", "/infill", body("slow-coder", 5)) }()
	// The older request's first rows are committed while the slow model
	// runs (400 ms a decode).
	waitCount(t, e, 1, `SELECT count(*) FROM meta_query WHERE user_id = $1 AND total_serving_ms IS NULL`, uid)
	c.expect("POST", "/infill", body("tiny-coder", 4), 200)
	var r resp
	select {
	case r = <-old:
	case <-time.After(30 * time.Second):
		t.Fatal("the older request did not end")
	}
	if r.status != 200 {
		t.Fatalf("older request, run beside a newer one of the same key: %d %s", r.status, r.raw)
	}
	if got := r.body["tokens_predicted"]; got != float64(5) {
		t.Fatalf("older request predicted %v tokens, want all 5: %s", got, r.raw)
	}
	if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1 AND total_serving_ms IS NOT NULL`, uid); n != 2 {
		t.Fatalf("%d answered queries stored, want 2", n)
	}
}
