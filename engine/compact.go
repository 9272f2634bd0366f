package engine

import "time"

// Compaction. With one KV stream per sequence, a step pays one placeholder
// row for every idle slot between the lowest and the highest busy slot
// (batchlayout.go). Left alone, the slots in use drift apart: a new user's
// request takes the least recently used slot, wherever it is, and comes
// back to it for its cache from then on. Four typists in eight slots made
// steps of 5.6-7.5 rows for 4 sequences (docs/benchmarks.md).
//
// So a request that pickSlot places above a slot nobody has used for
// Config.CompactAfter runs in the lowest such slot instead, and no cache is
// lost on the way:
//   - when the request can use what its own slot holds, the two slots swap
//     caches, through a spare sequence the context has beyond the slots;
//   - when it cannot (its slot is merely the least recently used one, whose
//     cache it would overwrite anyway), the cold slot's cache moves up into
//     that slot and the request starts afresh in the cold slot.
//
// llama.cpp copies between streams only whole, before the next decode: a
// memory copy of a slot's cells per move, far less than evaluating a prompt
// again on a CPU, where the placeholder rows cost the most. The spare
// sequence adds one slot's cells to the context.

// DefaultCompactAfter is Config.CompactAfter's default: far longer than the
// pauses between the keystrokes of someone typing, so the caches of typists
// at work are not moved about.
const DefaultCompactAfter = 10 * time.Second

// minMoveTokens is the least reusable tokens worth a swap; with fewer, the
// request starts afresh.
const minMoveTokens = 16

// compactTo returns the slot a request with prompt runs in: sl, as pickSlot
// chose it, or the lowest idle slot below sl unused for CompactAfter, after
// moving the caches as described above.
func (s *Scheduler) compactTo(sl *slot, prompt []Token, now time.Time) *slot {
	if !s.streams || s.noPad || s.spare < 0 || s.cfg.CompactAfter < 0 {
		return sl
	}
	var to *slot
	for _, t := range s.slots[:sl.id] {
		if t.seq == nil && now.Sub(t.idleSince) >= s.cfg.CompactAfter {
			to = t
			break
		}
	}
	if to == nil {
		return sl
	}
	if reusable(sl.cached, prompt, s.reuseChunk()) >= minMoveTokens {
		s.copySeq(sl.id, s.spare)
		s.copySeq(to.id, sl.id)
		s.copySeq(s.spare, to.id)
		s.ctx.SeqRm(s.spare, 0, -1)
		sl.cached, to.cached = to.cached, sl.cached
		sl.key, to.key = to.key, sl.key
		sl.cut, to.cut = to.cut, sl.cut
		s.nMovedTokens.Add(uint64(len(to.cached) + len(sl.cached)))
	} else {
		s.copySeq(to.id, sl.id)
		s.ctx.SeqRm(to.id, 0, -1)
		sl.cached, to.cached = append(sl.cached[:0], to.cached...), to.cached[:0]
		sl.key, to.key = to.key, ""
		sl.cut, to.cut = to.cut, Trimmed{}
		s.nMovedTokens.Add(uint64(len(sl.cached)))
	}
	// sl now holds what to held, and its history.
	sl.lastUsed, sl.idleSince = to.lastUsed, to.idleSince
	s.nMoves.Add(1)
	return to
}

// copySeq makes dst's KV a copy of src's, whole.
func (s *Scheduler) copySeq(src, dst int32) {
	s.ctx.SeqRm(dst, 0, -1)
	s.ctx.SeqCp(src, dst, -1, -1)
	s.copyPending = true
}
