package server

import (
	"testing"
)

// TestNextEditRewrite: a suggestion that changes the region (the slow test
// model writes "a" after "a") is answered with the rewritten region, the
// unified diff from the region to it, and the replacement that turns the
// region as sent into it; the stored completion is what the model wrote.
func TestNextEditRewrite(t *testing.T) {
	e := newPluginEnv(t, nil)
	c, _ := e.keyClient("nes-rewrite@example.com", "completions")
	body := nextEditBody("sweep")
	body["model"], body["max_tokens"] = "slow-coder", 3
	r := c.expect("POST", "/v1/next-edit", body, 200)
	s := e.storedQuery(r.body["id"].(string))
	in := formatInput()
	region := nextEditRegion("sweep", s.completion, in.region)
	if s.completion != "aaa" || region == in.region {
		t.Fatalf("stored completion %q gives the region %q: the test needs a changed region", s.completion, region)
	}
	if r.body["region"] != region || r.body["diff"] != unifiedDiff(in.path, in.region, region) || r.body["diff"] == "" ||
		r.body["finish_reason"] != "length" {
		t.Errorf("answer %s, want the region %q and its diff", r.raw, region)
	}
	rep, ok := r.body["replace"].(map[string]any)
	if !ok {
		t.Fatalf("no replacement for a changed region: %s", r.raw)
	}
	rs := []rune(in.region)
	start, end := int(rep["start"].(float64)), int(rep["end"].(float64))
	if start < 0 || start > end || end > len(rs) {
		t.Fatalf("replacement span [%d, %d) of a region of %d characters", start, end, len(rs))
	}
	if got := string(rs[:start]) + rep["text"].(string) + string(rs[end:]); got != region {
		t.Errorf("replacement gives %q, want %q", got, region)
	}
}
