package engine

import "log/slog"

// Prompt cache in host memory.
//
// A slot's KV holds the prompt of the last request that ran in it. With
// more typists than slots, another typist's request takes the slot and
// overwrites it, and the first typist's next request evaluates its whole
// prompt again (thousands of tokens of context files, prefix and suffix)
// although only the characters typed since changed. On a CPU that
// evaluation is most of an answer's time.
//
// So before a request throws away at least minSaveTokens of a slot's cache
// that another typist left there, the scheduler copies the slot's KV cells
// to host memory (StateContext.SeqSave, a memory copy of the sequence's
// cells); and when a saved prompt shares at least minRestoreGain tokens
// more with a request's prompt than the slot it got, the saved cells are
// copied back into that slot (SeqLoad) and only the rest of the prompt is
// evaluated. llama.cpp's server does the same with --cache-ram.
//
// The cache keeps one prompt per typist (the requests' SupersedeKey): a
// typist's newer prompt replaces its older one, unless the older starts
// with all of the newer's tokens (as a request superseded early in its
// prompt leaves them). Prompts of requests without a key (other editor
// clients, chat) are kept side by side. Over Config.PromptCacheBytes the
// least recently saved prompt goes first. A prompt
// copied back into a slot leaves the cache: the slot holds it now, and it
// is saved again, as it has grown by then, when another typist's request
// overwrites it.
const (
	minSaveTokens  = 128 // the least a request must throw away of another typist's cache to save it
	minRestoreGain = 64  // the least a saved prompt must add to a slot's reusable prefix to be copied back
)

// DefaultPromptCacheBytes is Config.PromptCacheBytes's default.
const DefaultPromptCacheBytes = 2 << 30

// savedPrompt is one slot's KV cells in host memory.
type savedPrompt struct {
	key    string  // the SupersedeKey of the request that last ran in the slot
	tokens []Token // exactly the tokens of the cells, by position
	state  SeqState
}

// promptCache is the saved prompts, least recently saved first. Only the
// scheduler goroutine uses it.
type promptCache struct {
	limit   int
	bytes   int
	entries []*savedPrompt
}

// best is the saved prompt of which prompt can reuse the most tokens, and
// that number; on a tie, the one saved for key. The reusable tokens are the
// common prefix and, with chunk reuse on (minChunk > 0), the chunks after it
// that moved: an edit of a context file, which sits before the prefix in
// the prompt, leaves the rest of the prompt in the saved state, shifted.
func (c *promptCache) best(prompt []Token, key string, minChunk int) (*savedPrompt, int) {
	var best *savedPrompt
	n := 0
	for _, e := range c.entries {
		l := reusable(e.tokens, prompt, minChunk)
		if l > n || (l == n && l > 0 && key != "" && e.key == key) {
			best, n = e, l
		}
	}
	return best, n
}

// covered says whether a saved prompt of typist key starts with all of
// tokens, which then add nothing to the cache (say, a request superseded
// early in its prompt left them).
func (c *promptCache) covered(key string, tokens []Token) bool {
	for _, o := range c.entries {
		if key != "" && o.key == key && commonPrefix(o.tokens, tokens) == len(tokens) {
			return true
		}
	}
	return false
}

// add keeps e, dropping the older prompt of the same typist, then the
// least recently saved prompts until the cache fits its limit. A prompt
// larger than the limit is not kept. Dropped prompts' states are freed.
func (c *promptCache) add(e *savedPrompt) {
	if e.key != "" {
		for _, o := range c.entries {
			if o.key == e.key {
				c.drop(o)
				break
			}
		}
	}
	if e.state.Len() > c.limit {
		e.state.Free()
		return
	}
	c.entries = append(c.entries, e)
	c.bytes += e.state.Len()
	for c.bytes > c.limit {
		c.drop(c.entries[0])
	}
}

// take removes e from the cache; its state is the caller's to free.
func (c *promptCache) take(e *savedPrompt) {
	for i, o := range c.entries {
		if o == e {
			c.entries = append(c.entries[:i], c.entries[i+1:]...)
			c.bytes -= e.state.Len()
			return
		}
	}
}

// drop removes e and frees its state.
func (c *promptCache) drop(e *savedPrompt) {
	c.take(e)
	e.state.Free()
}

// clear frees every saved prompt.
func (c *promptCache) clear() {
	for len(c.entries) > 0 {
		c.drop(c.entries[0])
	}
}

// PromptCacheStats describe the prompt cache in host memory.
type PromptCacheStats struct {
	Prompts  int    // prompts held
	Bytes    int    // their KV cells' bytes
	Saves    uint64 // prompts saved from a slot
	Restores uint64 // prompts copied back into a slot
	// RestoredTokens are the prompt tokens requests reused from restored
	// prompts, which they would otherwise have evaluated.
	RestoredTokens uint64
}

// swapPrompt runs when q has been given slot sl, before its KV is trimmed
// to what q reuses: it saves the slot's cache when q would throw away
// enough of another typist's cache, and copies a saved prompt into the
// slot when that gives q a longer prefix (see above). It returns how many
// tokens of q's prompt the restored cells give beyond what the slot held
// (0 when nothing was restored).
func (s *Scheduler) swapPrompt(sl *slot, q *sequence) int {
	st, ok := s.ctx.(StateContext)
	if s.pc == nil || !ok || s.copyPending {
		return 0
	}
	have := 0
	if q.req.CachePrompt {
		have = reusable(sl.cached, q.prompt, s.reuseChunk())
	}
	defer func() { s.pcPrompts.Store(int64(len(s.pc.entries))); s.pcBytes.Store(int64(s.pc.bytes)) }()
	key := q.req.SupersedeKey
	if len(sl.cached)-have >= minSaveTokens && (sl.key != key || key == "") && !s.pc.covered(sl.key, sl.cached) {
		data, err := st.SeqSave(sl.id)
		if err != nil {
			s.log.Warn("prompt cache: save failed", slog.String("model", s.name), slog.Any("err", err))
		} else {
			s.pc.add(&savedPrompt{key: sl.key, tokens: append([]Token(nil), sl.cached...), state: data})
			s.nSaves.Add(1)
		}
	}
	var saved *savedPrompt
	gain := 0
	if q.req.CachePrompt {
		var n int
		if saved, n = s.pc.best(q.prompt, q.req.SupersedeKey, s.reuseChunk()); n >= have+minRestoreGain {
			gain = n - have
		} else {
			saved = nil
		}
	}
	if saved == nil {
		return 0
	}
	s.pc.take(saved)
	defer saved.state.Free()
	if err := st.SeqLoad(sl.id, saved.state); err != nil {
		// The slot is empty now; q evaluates its prompt from the start.
		s.log.Warn("prompt cache: load failed", slog.String("model", s.name), slog.Any("err", err))
		sl.cached = sl.cached[:0]
		return 0
	}
	sl.cached, sl.key, sl.cut = append(sl.cached[:0], saved.tokens...), saved.key, Trimmed{}
	s.nRestores.Add(1)
	return gain
}
