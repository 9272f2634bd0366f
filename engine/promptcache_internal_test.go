package engine

import "testing"

// TestPromptCacheEntries: one prompt per typist, the newer replacing the
// older unless the older starts with all of it; least recently saved out
// first over the bound; the best match reuses the most tokens.
func TestPromptCacheEntries(t *testing.T) {
	toks := func(n int, base Token) []Token {
		out := make([]Token, n)
		for i := range out {
			out[i] = base + Token(i)
		}
		return out
	}
	c := &promptCache{limit: 300}
	a := &savedPrompt{key: "a", tokens: toks(100, 0), state: &testState{n: 100}}
	c.add(a)
	if !c.covered("a", toks(40, 0)) || c.covered("b", toks(40, 0)) || c.covered("a", toks(101, 0)) || c.covered("", toks(40, 0)) {
		t.Error("covered: only a prompt of the same typist that starts with all the tokens covers them")
	}
	b := &savedPrompt{key: "b", tokens: toks(100, 1000), state: &testState{n: 100}}
	c.add(b)
	if e, n := c.best(append(toks(60, 0), 7, 7), "x", 16); e != a || n != 60 {
		t.Errorf("best: %v, %d; want a's prompt, 60", e, n)
	}
	// Ten tokens removed after the first 20 of a's: the 70 after them
	// count with chunk reuse on, not with it off.
	edited := append(toks(20, 0), toks(70, 30)...)
	if e, n := c.best(edited, "x", 16); e != a || n != 90 {
		t.Errorf("best with chunk reuse: %v, %d; want a's prompt, 90", e, n)
	}
	if _, n := c.best(edited, "x", 0); n != 20 {
		t.Errorf("best without chunk reuse: %d; want 20", n)
	}
	if a.state.(*testState).freed || b.state.(*testState).freed {
		t.Error("a kept prompt's state was freed")
	}
	a2 := &savedPrompt{key: "a", tokens: append(toks(50, 0), 9), state: &testState{n: 100}}
	c.add(a2)
	if len(c.entries) != 2 || c.entries[1] != a2 || c.bytes != 200 {
		t.Errorf("a's newer prompt should replace its older: %d entries, %d bytes", len(c.entries), c.bytes)
	}
	if !a.state.(*testState).freed {
		t.Error("a's replaced prompt's state was not freed")
	}
	c.add(&savedPrompt{key: "", tokens: toks(10, 5000), state: &testState{n: 150}})
	if len(c.entries) != 2 || c.entries[0] != a2 || c.bytes != 250 {
		t.Errorf("over the bound the least recently saved (b's) goes: %d entries, %d bytes", len(c.entries), c.bytes)
	}
	big := &testState{n: 301}
	c.add(&savedPrompt{key: "big", tokens: toks(10, 6000), state: big})
	if len(c.entries) != 2 || c.bytes != 250 || !big.freed || !b.state.(*testState).freed {
		t.Errorf("a prompt over the bound is not kept (and freed, as the evicted one): %d entries, %d bytes", len(c.entries), c.bytes)
	}
	last := c.entries[1].state.(*testState)
	c.clear()
	if len(c.entries) != 0 || c.bytes != 0 || !last.freed {
		t.Errorf("clear: %d entries, %d bytes", len(c.entries), c.bytes)
	}
}

// testState is a SeqState of n bytes that records when it is freed.
type testState struct {
	n     int
	freed bool
}

func (s *testState) Len() int { return s.n }
func (s *testState) Free()    { s.freed = true }
