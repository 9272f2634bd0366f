package engine

import "time"

// slot is one sequence id of a context with a mirror of what that sequence
// holds in the KV cache. Only the scheduler goroutine touches slots.
type slot struct {
	id       int32
	cached   []Token // exactly the tokens of this sequence in the KV, by position
	lastUsed uint64  // scheduler tick of the last release, for LRU
	// idleSince is when the slot was last released (zero: never used, or
	// its cache moved away); see compact.go.
	idleSince time.Time
	seq       *sequence // nil when idle
	pad       [1]Token  // a placeholder's token (batchlayout.go)
	// key is the SupersedeKey (session and file) of the last request the
	// slot ran: whose typing its cache holds.
	key string
	// cut is what a time budget trimmed from the prompt of the last
	// request the slot ran (zero: nothing, or not known), for plan.
	cut Trimmed
}

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b []Token) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// reusable is how many of prompt's tokens cached can give: the common
// prefix and, with chunk reuse on (minChunk > 0), the chunks after it that
// reuseChunks would shift into place.
func reusable(cached, prompt []Token, minChunk int) int {
	_, n := planReuse(cached, prompt, commonPrefix(cached, prompt), minChunk)
	return n
}

// pickSlot chooses among idle slots the one whose cache shares the longest
// prefix with prompt, if that prefix is at least threshold × len(prompt)
// (llama.cpp's --slot-prompt-similarity); on a tie, the slot that last ran
// a request of key (the typist's own). When none is similar enough, it
// takes the typist's own slot all the same: a request superseded by the
// next keystroke before its prefill ended leaves the part it evaluated
// there, often far less than the threshold, and the next request must go
// on from it, or under load no prefill of a long prompt ever ends. Else,
// when chunk reuse is on (minChunk > 0), it takes the slot whose cache
// would give the most tokens with chunks shifted into place (reuseChunks),
// under the same threshold: when the editor window's start moves, every
// token after the first line changes position. Otherwise it takes the
// least recently used idle slot. It returns nil when no slot is idle.
func pickSlot(slots []*slot, prompt []Token, key string, threshold float64, minChunk int) *slot {
	var best, lru, own *slot
	bestLCP := -1
	for _, sl := range slots {
		if sl.seq != nil {
			continue
		}
		mine := key != "" && sl.key == key
		if mine {
			own = sl
		}
		if l := commonPrefix(sl.cached, prompt); l > bestLCP || (l == bestLCP && mine) {
			best, bestLCP = sl, l
		}
		if lru == nil || sl.lastUsed < lru.lastUsed {
			lru = sl
		}
	}
	if best == nil {
		return nil
	}
	enough := func(n int) bool { return n > 0 && (threshold <= 0 || float64(n) >= threshold*float64(len(prompt))) }
	if enough(bestLCP) {
		return best
	}
	if own != nil {
		return own
	}
	if minChunk > 0 {
		bestN := 0
		var reuse *slot
		for _, sl := range slots {
			if sl.seq != nil {
				continue
			}
			if n := reusable(sl.cached, prompt, minChunk); n > bestN {
				reuse, bestN = sl, n
			}
		}
		if reuse != nil && enough(bestN) {
			return reuse
		}
	}
	return lru
}

// kvShifter is the part of Context that chunk reuse needs.
type kvShifter interface {
	SeqRm(seq int32, p0, p1 int32) bool
	SeqAdd(seq int32, p0, p1, delta int32)
}

// reuseChunks extends a cached prefix of nPast tokens by shifting chunks of
// at least minChunk tokens that sit later in the cache than in the prompt
// into place (llama.cpp --cache-reuse): the cells between are removed and the
// chunk's positions moved down. cached is updated in place to mirror the KV;
// cells past the returned nPast are stale and must be removed by the caller.
// It returns the new nPast and how many tokens were shifted.
//
// Only moves towards lower positions are possible: a decode must continue a
// sequence at its last position + 1, so no gap can be filled in later.
func reuseChunks(kv kvShifter, seq int32, cached, prompt []Token, nPast, minChunk int) (int, int) {
	moves, n := planReuse(cached, prompt, nPast, minChunk)
	shifted := 0
	for _, m := range moves {
		if m.from != m.to {
			kv.SeqRm(seq, int32(m.to), int32(m.from))
			kv.SeqAdd(seq, int32(m.from), int32(m.from+m.n), int32(m.to-m.from))
			shifted += m.n
		}
		copy(cached[m.to:m.to+m.n], cached[m.from:m.from+m.n])
	}
	return n, shifted
}

// chunkMove moves n cached tokens from position from to position to.
type chunkMove struct{ from, to, n int }

// planReuse finds the chunks reuseChunks moves, in order, and the prefix
// they extend nPast to, without touching anything.
func planReuse(cached, prompt []Token, nPast, minChunk int) ([]chunkMove, int) {
	if minChunk <= 0 {
		return nil, nPast
	}
	var moves []chunkMove
	headC, headP := nPast, nPast
	for headC < len(cached) && headP < len(prompt) {
		n := 0
		for headC+n < len(cached) && headP+n < len(prompt) && cached[headC+n] == prompt[headP+n] {
			n++
		}
		if n < minChunk {
			headC++
			continue
		}
		moves = append(moves, chunkMove{from: headC, to: headP, n: n})
		nPast += n
		headC += n
		headP += n
	}
	return moves, nPast
}
