package server

import (
	"fmt"
	"strings"
	"testing"
)

// throttle makes the test engine's model plan with tokensPerSecond until
// the test ends.
func throttle(t *testing.T, e *pluginEnv, model string, tokensPerSecond float64) {
	t.Helper()
	s, err := e.srv.plugin.engine.Get(model)
	if err != nil {
		t.Fatal(err)
	}
	s.SetPrefillSpeed(tokensPerSecond)
	t.Cleanup(func() { s.SetPrefillSpeed(0) })
}

// budgetSource is n lines of Python unique to tag.
func budgetSource(tag string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "value_%s_%d = compute_%d(%d, 'text %d')\n", tag, i, i, i*7, i)
	}
	return b.String()
}

// TestBudgetInfillTrimsToPromptBudget: through /infill, a throttled prefill
// speed makes t_max_prompt_ms drop the extra files and then prefix lines;
// the answer says truncated and what went (code4me_trimmed).
func TestBudgetInfillTrimsToPromptBudget(t *testing.T) {
	e := newLlamaEnv(t)
	c, _ := e.llamaClientOf("trim@example.com", "llama.vim")
	throttle(t, e, "tiny-coder", 1000) // 1 token per ms

	var extra []any
	for i := range 3 {
		extra = append(extra, map[string]any{"filename": fmt.Sprintf("lib%d.py", i), "text": budgetSource(fmt.Sprint("lib", i), 15)})
	}
	body := map[string]any{
		"input_prefix": budgetSource("main", 40), "input_suffix": "\nprint(total)\n", "input_extra": extra,
		"prompt": "total = ", "n_predict": 4, "cache_prompt": true, "t_max_prompt_ms": 150,
	}
	r := c.expect("POST", "/infill", body, 200)
	tr, ok := r.body["code4me_trimmed"].(map[string]any)
	if !ok || r.body["truncated"] != true {
		t.Fatalf("answer without code4me_trimmed or truncated: %s", r.raw)
	}
	if tr["extra_chunks"].(float64) < 1 || tr["prefix_tokens"].(float64) < 1 {
		t.Errorf("code4me_trimmed = %v; want extra chunks and prefix tokens dropped", tr)
	}

	// The same request without a budget is not trimmed.
	delete(body, "t_max_prompt_ms")
	body["input_prefix"] = budgetSource("other", 40) // not cached
	r = c.expect("POST", "/infill", body, 200)
	if _, ok := r.body["code4me_trimmed"]; ok {
		t.Errorf("trimmed without a budget: %s", r.raw)
	}
}

// TestBudgetDeadlineRefusal: when the engine estimates that a request
// would end after its 30 s deadline (a prefill speed throttled to 10
// tokens/s), /infill answers 503 unavailable_error at once with the
// estimate, so does OpenAI's /v1/completions, and the plugin API's item says "deadline" with the estimate
// and the time that was left.
func TestBudgetDeadlineRefusal(t *testing.T) {
	e := newLlamaEnv(t)
	c, _ := e.llamaClientOf("late@example.com", "llama.vim")
	throttle(t, e, "tiny-coder", 10)
	before := e.modelStats("tiny-coder").EvaluatedTokens

	body := map[string]any{"input_prefix": budgetSource("late", 40), "input_suffix": "\n", "prompt": "x = ", "n_predict": 4}
	r := c.expect("POST", "/infill", body, 503)
	em, _ := r.body["error"].(map[string]any)
	if em == nil || em["type"] != "unavailable_error" || em["code"] != float64(503) ||
		!strings.Contains(em["message"].(string), "deadline (estimated ") {
		t.Fatalf("503 body = %s", r.raw)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}

	// The other editor-client APIs answer the refusal the same way: 503
	// with Retry-After and the estimate, in their own error shape.
	r = c.expect("POST", "/v1/completions", map[string]any{"model": "tiny-coder", "prompt": budgetSource("openai", 40),
		"suffix": "\n", "max_tokens": 4}, 503)
	if em, _ := r.body["error"].(map[string]any); em == nil || !strings.Contains(fmt.Sprint(em["message"]), "deadline (estimated ") ||
		r.header.Get("Retry-After") == "" {
		t.Errorf("OpenAI 503 = %s (Retry-After %q)", r.raw, r.header.Get("Retry-After"))
	}

	p := e.member("late-plugin@example.com")
	coder := e.ids["tiny-coder"]
	r = p.expect("POST", "/api/completion/request", completionBody([]int64{coder}, budgetSource("plugin", 40), "\n"), 200)
	it := r.body["data"].(map[string]any)["completions"].([]any)[0].(map[string]any)
	est, _ := it["estimated_ms"].(float64)
	left, _ := it["left_ms"].(float64)
	if it["error"] != "deadline" || est <= left || left > 30000 || left < 20000 {
		t.Errorf("item = %v; want error deadline with estimated_ms > left_ms (about 30 s)", it)
	}
	if after := e.modelStats("tiny-coder").EvaluatedTokens; after != before {
		t.Errorf("%d prompt tokens evaluated for refused requests", after-before)
	}
}
