package server

import (
	"testing"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/enginetest"
)

// TestRetrievalTokenBudgetHonoursExtraCap: the retrieval layout's token
// budget is half a slot's prompt budget, and at most a model's extra
// context cap (MODEL_PROMPT_SPLIT), the least over the requested models;
// past the cap the engine would drop the layout's first chunks from every
// prompt.
func TestRetrievalTokenBudgetHonoursExtraCap(t *testing.T) {
	eng := engine.New(enginetest.New(enginetest.Options{}), nil)
	t.Cleanup(func() { eng.Close() })
	for name, split := range map[string]engine.PromptSplit{"plain": {}, "capped": {Extra: 300}, "prefix-only": {Prefix: 10}} {
		spec := engine.ModelSpec{Name: name, Path: "fake.gguf", Sched: engine.Config{NParallel: 1, NCtx: 4096, Split: split}}
		if _, err := eng.Load(spec, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{}
	s.retr.eng = eng
	// 4,096 cells less 64 generated tokens, halved.
	for _, tc := range []struct {
		names []string
		want  int
	}{
		{[]string{"plain"}, 2016},
		{[]string{"prefix-only"}, 2016},
		{[]string{"capped"}, 300},
		{[]string{"plain", "capped"}, 300},
	} {
		if got := s.tokenBudget(tc.names, 64); got != tc.want {
			t.Errorf("tokenBudget(%v) = %d, want %d", tc.names, got, tc.want)
		}
	}
}
