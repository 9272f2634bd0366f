package engine

import "slices"

// Batch layout for contexts with one KV stream per sequence
// (StreamedContext). llama.cpp splits such a batch into micro-batches: it
// walks the batch in order and takes sequences whose ids follow each other
// (3, 4, 5, …), and from each the same number of tokens; whatever is left
// goes into further micro-batches. Every micro-batch is a full pass over
// the weights, so a batch of eight generating sequences costs one pass
// only when their tokens come in slot order, with no slot missing in
// between, one token each. Left alone, the scheduler's batches (in arrival
// order, with idle slots between busy ones while a typist's next request
// is on its way, and two or three prompt tokens when a keystroke starts a
// request) took two to four passes: 8 typists got 1.5× the tokens/s of
// one typist instead of the 3× llama.cpp gives the same sequences in one
// pass (docs/benchmarks.md).
//
// So, when several sequences share a step:
//   - parts are ordered by slot;
//   - a slot between the lowest and highest busy slot that has nothing in
//     this step gets a placeholder token, decoded without logits at the
//     position after its cache and removed right after the decode: its
//     cost is one more row in the pass, far less than a second pass;
//   - a prompt with at most shortTail tokens left is fed one token per step
//     while others generate (step): a short tail in one pass per token
//     costs its own sequence a step or two and nobody else anything, where
//     fed whole it would cost every generating sequence a pass per token.

// shortTail is the longest prompt remainder fed one token per step while
// other sequences generate. Longer remainders (a cold prompt, a moved
// window) go in chunks: their pass is a prefill, which a batch cannot share.
const shortTail = 4

// layout orders parts by slot and pads the holes between them with
// placeholders.
func (s *Scheduler) layout(parts []part) []part {
	slices.SortStableFunc(parts, func(a, b part) int { return int(a.slot.id) - int(b.slot.id) })
	if s.noPad {
		return parts
	}
	lo, hi := parts[0].slot.id, parts[len(parts)-1].slot.id
	if int(hi-lo)+1 == len(parts) {
		return parts // no hole (a slot appears once per step)
	}
	room := s.cfg.NBatch
	for _, p := range parts {
		room -= len(p.toks)
	}
	out := make([]part, 0, int(hi-lo)+1)
	i := 0
	for id := lo; id <= hi; id++ {
		if i < len(parts) && parts[i].slot.id == id {
			for i < len(parts) && parts[i].slot.id == id {
				out = append(out, parts[i])
				i++
			}
			continue
		}
		sl := s.slots[id]
		if room == 0 || len(sl.cached) >= s.nCtxSlot {
			return parts // cannot fill this hole: leave the batch as it was
		}
		tok := Token(0)
		if n := len(sl.cached); n > 0 {
			tok = sl.cached[n-1]
		}
		sl.pad[0] = tok
		out = append(out, part{slot: sl, toks: sl.pad[:], pos0: len(sl.cached)})
		room--
	}
	return out
}

func hasPlaceholders(parts []part) bool {
	return slices.ContainsFunc(parts, func(p part) bool { return p.seq == nil })
}

func withoutPlaceholders(parts []part) []part {
	return slices.DeleteFunc(parts, func(p part) bool { return p.seq == nil })
}

// dropPlaceholders removes the placeholders' cells after a decode and
// returns the real parts. A memory that cannot remove a partial range
// loses that slot's cache instead, and padding is turned off.
func (s *Scheduler) dropPlaceholders(parts []part) []part {
	if !hasPlaceholders(parts) {
		return parts
	}
	for _, p := range parts {
		if p.seq != nil {
			continue
		}
		if !s.ctx.SeqRm(p.slot.id, int32(p.pos0), -1) {
			s.ctx.SeqRm(p.slot.id, 0, -1)
			p.slot.cached = p.slot.cached[:0]
			s.noPad = true
		}
	}
	return withoutPlaceholders(parts)
}
