package server

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/db"
)

// TestReplayGeneration: a completion made through the server, with a
// multi-file context and the server's seeded sampler, is re-run from its
// stored rows alone and gives the same tokens; the row records the build,
// the context policy and the trigger; a query whose context was not stored
// is refused.
func TestReplayGeneration(t *testing.T) {
	// The context files are laid out whole (no retrieval), as replay
	// rebuilds them; TestReplayRefusesRetrievedChunks covers retrieval.
	e := newPluginEnv(t, func(c *config.Config) { c.RetrievalTopK = 0 })
	const build = "code4me test; llama.cpp test"
	e.srv.plugin.build = build
	email := "replay-" + uuid.NewString()[:8] + "@example.com"
	c := e.member(email)
	if _, err := e.srv.db.Exec(t.Context(), `UPDATE users SET preference = '{"store_context": true, "store_contextual_telemetry": true}' WHERE email = $1`, email); err != nil {
		t.Fatal(err)
	}
	coder := e.ids["tiny-coder"]
	insert := func(lines ...string) []any {
		return []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": lines}}
	}
	c.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{
		"util.py":   insert("def add(a, b):", "    return a + b"),
		"models.py": insert("class User:", "    name: str", "    age: int"),
	}}, 200)

	type stored struct {
		completion, sampler string
		build, policy       *string
		trigger             *string
		tokens              int
		seed                int64
	}
	row := func(mq any) stored {
		t.Helper()
		var s stored
		if err := e.srv.db.QueryRow(t.Context(), `SELECT completion, sampler::text, engine_build, context_policy, trigger,
			tokens_generated, seed FROM generation WHERE meta_query_id = $1 AND model_id = $2`, mq, coder).Scan(
			&s.completion, &s.sampler, &s.build, &s.policy, &s.trigger, &s.tokens, &s.seed); err != nil {
			t.Fatal(err)
		}
		return s
	}
	complete := func(files []string, triggerType int, storeCtx, storeTelemetry bool, prefix string) (uuid.UUID, string) {
		t.Helper()
		b := completionBody([]int64{coder}, prefix, "\n\nprint(total)\n")
		b["context"].(map[string]any)["context_files"] = files
		b["contextual_telemetry"].(map[string]any)["trigger_type_id"] = triggerType
		b["store_context"], b["store_contextual_telemetry"] = storeCtx, storeTelemetry
		r := c.expect("POST", "/api/completion/request", b, 200)
		data := r.body["data"].(map[string]any)
		item := data["completions"].([]any)[0].(map[string]any)
		text, ok := item["completion"].(string)
		if !ok {
			t.Fatalf("no completion: %v", item)
		}
		return uuid.MustParse(data["meta_query_id"].(string)), text
	}
	str := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return *p
	}

	// Named files, asked for explicitly, context stored: replayable.
	mq, answered := complete([]string{"models.py", "util.py"}, 1, true, true, "from models import User\n\ndef total(users):\n    ")
	got := row(mq)
	if str(got.build) != build || str(got.policy) != "files:named" || str(got.trigger) != "explicit" {
		t.Fatalf("engine_build %s, context_policy %s, trigger %s; want %q, files:named, explicit",
			str(got.build), str(got.policy), str(got.trigger), build)
	}
	if got.completion != answered {
		t.Fatalf("stored completion %q, answered %q", got.completion, answered)
	}
	if got.tokens == 0 {
		t.Fatal("the model generated nothing: the replay would prove nothing")
	}

	rp, err := e.srv.ReplayGeneration(t.Context(), mq, coder)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ch := range rp.Request.Extra {
		names = append(names, ch.Path)
	}
	if !slices.Equal(names, []string{"models.py", "util.py"}) || rp.Request.Sampling.Seed != uint32(got.seed) ||
		rp.Request.MaxTokens != e.srv.plugin.limits.CompletionTokens || rp.Request.Mode != completionModes[completionMode] {
		t.Fatalf("rebuilt request: files %v, seed %d (stored %d), max tokens %d, mode %d",
			names, rp.Request.Sampling.Seed, got.seed, rp.Request.MaxTokens, rp.Request.Mode)
	}
	if rp.Text != got.completion || len(rp.Result.Tokens) != got.tokens || str(rp.Stored.StopReason) != stopReason(rp.Result.Stop) {
		t.Fatalf("replay gave %q (%d tokens, %s); stored %q (%d tokens, %s)",
			rp.Text, len(rp.Result.Tokens), rp.Result.Stop, got.completion, got.tokens, str(rp.Stored.StopReason))
	}
	for i, lp := range rp.Result.Logprobs {
		if math.Abs(float64(lp)-rp.Stored.Logprobs[i]) > 1e-3 {
			t.Fatalf("token %d: log-probability %v on replay, %v stored", i, lp, rp.Stored.Logprobs[i])
		}
	}

	// Every file but the current one, typed, telemetry not stored: the
	// trigger is part of the telemetry, so it is not recorded.
	mq, _ = complete([]string{"*"}, 2, true, false, "x = ")
	if got := row(mq); str(got.policy) != "files:all-but-current" || got.trigger != nil {
		t.Fatalf("context_policy %s, trigger %s; want files:all-but-current, NULL", str(got.policy), str(got.trigger))
	}

	// No files, triggered while idle, context not stored: not replayable.
	mq, _ = complete([]string{}, 3, false, true, "y = ")
	if got := row(mq); str(got.policy) != "none" || str(got.trigger) != "typed" {
		t.Fatalf("context_policy %s, trigger %s; want none, typed", str(got.policy), str(got.trigger))
	}
	if _, err := e.srv.ReplayGeneration(t.Context(), mq, coder); !errors.Is(err, errReplayNoContext) {
		t.Fatalf("replay without a stored context: %v", err)
	}
	if _, err := e.srv.ReplayGeneration(t.Context(), uuid.New(), coder); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("replay of no generation: %v", err)
	}
}

// TestReplayRefusesRetrievedChunks: a query whose prompt held chunks
// retrieved from the project context is refused, not replayed with
// other text.
func TestReplayRefusesRetrievedChunks(t *testing.T) {
	e, c, _ := retrievalEnv(t, nil)
	wait := e.embedJobs()
	c.put("util.py", nil, codeLines("util", 40))
	wait()
	mq := e.complete(c, "import util\n\n", "\n")
	if refs, _ := e.chunkRefs(mq); len(refs) == 0 {
		t.Fatal("no chunk laid out")
	}
	id, err := uuid.Parse(mq.(string))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.ReplayGeneration(t.Context(), id, e.ids["tiny-coder"]); !errors.Is(err, errReplayRetrieved) {
		t.Fatalf("replay of a query with retrieved chunks: %v, want %v", err, errReplayRetrieved)
	}
}
