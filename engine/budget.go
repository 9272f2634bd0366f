package engine

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// Time budgets. Before a request's prompt is evaluated the scheduler
// estimates, from the speeds it measures, how long its own prompt will
// take and when the request will end, and acts on the estimate instead of
// finding out after the fact:
//
//   - The prefill speed is an exponentially weighted mean of the tokens per
//     second of recent batches that carried prompt tokens (all of the
//     batch's tokens over its Decode time, since generated tokens share the
//     pass); a step carrying only generated tokens feeds the mean time of
//     such a step. SetPrefillSpeed replaces the measured speed (tests,
//     benchmarks).
//   - A request's own work is its prompt tokens not already in its slot's
//     cache (prefix reuse and shifted chunks, as prepare will find them).
//     Its prompt time is that work at the prefill speed.
//   - It ends after the prompt tokens the requests before it in deadline
//     order have left and its own, at that speed, plus the generation
//     steps that outlast the prompts (at most MaxTokens each, so the
//     estimate errs long): without a cap on mixed steps, the most tokens
//     it or one of those requests has left to generate, since generated
//     tokens ride along with prompt batches until the prompts are done
//     (those steps are shared by every request ahead and q: pace.stepFor
//     scales the measured step to that many sequences);
//     with a cap, its own and each of those requests' (those generating
//     now share theirs). While later prompts are
//     waiting, its own steps also carry their chunks (a whole batch, or
//     at most Config.MixedPrefill tokens a step), which adds their time.
//   - The sum is stretched by planMargin.
//
// A request with a time budget (Request.TMaxPrompt, or the scheduler's
// Config.TMaxPrompt) accepts a shorter prompt: when its prompt time would
// exceed the budget, or it would end after its deadline, the extra
// context chunks go first, least relevant (first) first, then lines from
// the top of the prefix (whole lines, at least budgetMinPrefix tokens
// kept), until both fit; Result.Trimmed says what went. A request that
// ends after its deadline even so, or one without a budget that would, is
// refused at once with a *DeadlineError (StopDeadline), before it costs
// any CPU. When only the prompt budget cannot be met, the most trimmed
// prompt runs; if the request set the budget itself (a client's
// t_max_prompt_ms), it is stopped (ErrPromptBudget) once its share of the
// batches that carried its prompt took longer than the budget, and what
// it evaluated stays cached for its next try. The scheduler's default
// budget only trims: the deadline bounds the rest, and stopping a prompt
// the plan expected to fit, because the machine turned out slower than
// measured, would throw away work that could still answer in time. The
// time a request waits behind other prompts never counts against its
// prompt budget: the deadline bounds that.
//
// When the speed is not known yet (nothing measured since the model was
// loaded), a request is planned at the first step after it is.

// planMargin stretches every estimated end: the prefill speed is measured
// mostly on batches early in a prompt, and later positions cost more, so
// unstretched plans ended a few percent late (bench engine -cold4: all
// three admitted prompts of one run ended 0.7 s past 30 s).
const planMargin = 1.1

// budgetMinPrefix is the fewest prefix tokens a time budget leaves (whole
// lines: the cut may leave a little more).
const budgetMinPrefix = 64

// ewmaWeight is the weight of a new sample in the speed means.
const ewmaWeight = 0.25

// minSpeedSample is the fewest prompt tokens a batch must carry to be a
// prefill speed sample: a batch of generated tokens with a short prompt
// tail measures a decode step, not a prefill.
const minSpeedSample = 32

// ErrDeadline is what a *DeadlineError matches with errors.Is.
var ErrDeadline = errors.New("engine: cannot finish before the deadline")

// DeadlineError is the error of a request refused because its estimated
// end is past its deadline. It matches ErrDeadline.
type DeadlineError struct {
	Estimate time.Duration // estimated time from the refusal to the request's end
	Left     time.Duration // time left before the deadline at the refusal
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("engine: cannot finish before the deadline: estimated %.1f s, %.1f s left",
		e.Estimate.Seconds(), e.Left.Seconds())
}

// Is makes errors.Is(err, ErrDeadline) true.
func (e *DeadlineError) Is(target error) bool { return target == ErrDeadline }

// Trimmed says what a time budget dropped from a request's prompt.
type Trimmed struct {
	ExtraChunks  int // extra context chunks dropped, least relevant first
	PrefixTokens int // tokens cut from the top of the prefix, in whole lines
}

// Any reports whether something was dropped.
func (t Trimmed) Any() bool { return t.ExtraChunks > 0 || t.PrefixTokens > 0 }

// pace holds a scheduler's measured speeds as float64 bits. Only the
// scheduler goroutine records; anyone may read.
type pace struct {
	prefill  atomic.Uint64 // tokens/s of batches with prompt tokens; 0: not measured
	step     atomic.Uint64 // seconds per batch of generated tokens only
	stepSeqs atomic.Uint64 // sequences in those batches
	override atomic.Uint64 // SetPrefillSpeed's tokens/s; 0: measured
}

func loadF(a *atomic.Uint64) float64     { return math.Float64frombits(a.Load()) }
func storeF(a *atomic.Uint64, v float64) { a.Store(math.Float64bits(v)) }

func ewma(a *atomic.Uint64, v float64) {
	old := loadF(a)
	if old == 0 {
		storeF(a, v)
		return
	}
	storeF(a, old+ewmaWeight*(v-old))
}

// record notes a successful Decode of n tokens, prompt of them prompt
// tokens, that took d.
func (p *pace) record(n, prompt int, d time.Duration) {
	if d <= 0 || n <= 0 {
		return
	}
	switch {
	case prompt >= minSpeedSample:
		ewma(&p.prefill, float64(n)/d.Seconds())
	case prompt == 0:
		ewma(&p.step, d.Seconds())
		ewma(&p.stepSeqs, float64(n))
	}
}

// stepFor is the estimated time of a batch of generated tokens of n
// sequences: the measured step, scaled up in proportion when n is above
// the sequences the measured steps had (on a CPU a step of 4 took 125 ms
// against 43 ms for 1; a GPU's measured steps already hold many).
func (p *pace) stepFor(n int) float64 {
	step, seqs := loadF(&p.step), loadF(&p.stepSeqs)
	if seqs <= 0 {
		return step
	}
	return step * max(1, float64(n)/seqs)
}

// speed is the prefill speed in tokens/s, 0 when unknown.
func (p *pace) speed() float64 {
	if v := loadF(&p.override); v > 0 {
		return v
	}
	return loadF(&p.prefill)
}

// SetPrefillSpeed makes the scheduler plan with tokensPerSecond instead of
// the speed it measures; 0 goes back to the measured speed. Tests and
// benchmarks use it to make plans deterministic or to throttle them. Safe
// from any goroutine.
func (s *Scheduler) SetPrefillSpeed(tokensPerSecond float64) {
	storeF(&s.pace.override, max(tokensPerSecond, 0))
}

// PrefillSpeed is the prefill speed plans use, in tokens/s (0: not
// measured yet), and the measured time of a step of generated tokens
// alone. Safe from any goroutine.
func (s *Scheduler) PrefillSpeed() (tokensPerSecond float64, step time.Duration) {
	return s.pace.speed(), time.Duration(loadF(&s.pace.step) * float64(time.Second))
}

// dueAt is q's deadline for ordering prefills (earliest first): its
// context's deadline; without one, with a prompt budget, the time it was
// submitted plus that budget; else the zero time (none), which sorts last.
func (q *sequence) dueAt() time.Time {
	if due, ok := q.ctx.Deadline(); ok {
		return due
	}
	if q.req.TMaxPrompt > 0 && q.req.MaxTokens > 0 {
		return q.tSubmit.Add(q.req.TMaxPrompt)
	}
	return time.Time{}
}

// byDue orders sequences earliest deadline first, those without one last,
// and by submission among equals.
func byDue(a, b *sequence) int {
	switch {
	case a.due.IsZero() != b.due.IsZero():
		if a.due.IsZero() {
			return 1
		}
		return -1
	case !a.due.Equal(b.due):
		return a.due.Compare(b.due)
	}
	return a.tSubmit.Compare(b.tSubmit)
}

// orderPrefills sorts the prefills of a step. Earliest deadline first: a
// prompt gets whole batches until it is done, so with four cold prompts
// the first is done after a quarter of the time round-robin needs for all
// four, and the one that cannot make its deadline is last, where refusing
// it (plan) costs the others nothing. Round-robin (Config.RoundRobinPrefill)
// finished four 1,300-token prompts together past a 30 s deadline on a
// 2-vCPU host with a 0.5B model, none answered (docs/benchmarks.md).
func (s *Scheduler) orderPrefills(pre []*sequence) {
	slices.SortStableFunc(pre, byDue)
}

// remaining is the prompt tokens q has left to evaluate.
func (q *sequence) remaining() int { return len(q.prompt) - q.nPast }

// work is what the active requests other than q have left to do before
// q ends (budget.go's estimate).
type work struct {
	prompt  int // prompt tokens of the requests before q in deadline order
	steps   int // steps of generated tokens of those requests, with a cap (below)
	longest int // the most generated tokens one of those requests may still need
	n       int // those requests
	later   int // prompt tokens of the requests after q
}

// ahead sums the work of the active requests other than q. How their
// generation adds to q's end depends on Config.MixedPrefill: without a
// cap a step carrying generated tokens fills the batch with prompt
// tokens, so the generation of the requests ahead rides along with the
// prompts after them and only the longest one left can outlast q's
// prompt; with a cap each prompt ahead generates after it is evaluated,
// beside the next prompt, and adds its steps, while the requests
// generating now share theirs.
func (s *Scheduler) ahead(q *sequence) work {
	var w work
	gen := 0
	for _, r := range s.active {
		if r == q || r.finished || r.slot == nil {
			continue
		}
		if byDue(r, q) > 0 {
			if !r.generating {
				w.later += r.remaining()
			}
			continue
		}
		left := r.req.MaxTokens - len(r.tokens)
		w.longest = max(w.longest, left)
		w.n++
		if r.generating {
			gen = max(gen, left)
			continue
		}
		w.prompt += r.remaining()
		w.steps += r.req.MaxTokens
	}
	w.steps += gen
	return w
}

// mixedCap is the most prompt tokens a step that carries generated tokens
// takes (Config.MixedPrefill; 0: the whole batch).
func (s *Scheduler) mixedCap() int {
	if c := s.cfg.MixedPrefill; c > 0 {
		return min(c, s.cfg.NBatch)
	}
	return s.cfg.NBatch
}

// plannable reports whether q's prompt may still be planned: budgets are
// on, it generates, and nothing of it has been evaluated.
func (s *Scheduler) plannable(q *sequence) bool {
	return !s.cfg.RoundRobinPrefill && !q.planned && !q.finished && !q.generating &&
		q.evaluated == 0 && q.req.MaxTokens > 0
}

// plan estimates q's prompt and end in its slot and trims or refuses it as
// the package comment on time budgets says. It reports false when q was
// refused (finished). Without a measured speed it leaves q unplanned.
// It runs in the scheduler goroutine, after q got its slot and before
// prepare.
func (s *Scheduler) plan(q *sequence, now time.Time) bool {
	speed := s.pace.speed()
	if speed <= 0 {
		return true
	}
	q.planned = true
	deadline, hasDeadline := q.ctx.Deadline()
	budget := q.req.TMaxPrompt
	if !hasDeadline && budget <= 0 {
		return true
	}
	w := s.ahead(q)
	left := deadline.Sub(now)
	secs := func(tokens int) time.Duration { return time.Duration(float64(tokens) / speed * float64(time.Second)) }
	// steps is the time of n steps of generated tokens of seqs sequences.
	steps := func(n, seqs int) time.Duration {
		return time.Duration(float64(n) * s.pace.stepFor(seqs) * float64(time.Second))
	}
	// Its own steps carry chunks of the later prompts too.
	genTime := secs(min(w.later, q.req.MaxTokens*s.mixedCap()))
	if s.cfg.MixedPrefill > 0 {
		genTime += steps(w.steps+q.req.MaxTokens, 1)
	} else {
		// They all generate together once the prompts are done.
		genTime += steps(max(w.longest, q.req.MaxTokens), w.n+1)
	}
	// fits says whether own uncached tokens meet the deadline (end) and
	// the prompt budget (own prompt time); endWith and fitsWith take the
	// change (ahead) of the prompt tokens before q too.
	endWith := func(ahead, own int) time.Duration {
		return time.Duration(float64(secs(w.prompt+ahead+own)+genTime) * planMargin)
	}
	fitsWith := func(ahead, own int) bool { return !hasDeadline || endWith(ahead, own) <= left }
	endAt := func(own int) time.Duration { return endWith(0, own) }
	fitsEnd := func(own int) bool { return fitsWith(0, own) }
	fitsPrompt := func(own int) bool { return budget <= 0 || secs(own) <= budget }

	own := s.uncached(q, q.prompt)
	// A keystroke keeps the cut its slot's cache holds while that saves at
	// least half of the prompt's work. The whole prompt shares only its
	// head with a trimmed cache, so taking it back because its estimate
	// now fits the budget would evaluate all of it (up to the budget's
	// time for one keystroke), and the next keystroke's estimate, close
	// to the budget, could trim it again. A change that costs a large
	// evaluation anyway (an edited context file, a new file) plans anew.
	if cut := q.slot.cut; budget > 0 && q.layout.holds(cut) {
		toks := q.layout.without(q.full, cut)
		if n := s.uncached(q, toks); 2*n <= own && fitsEnd(n) && fitsPrompt(n) {
			q.prompt, q.trimmed, q.truncated = toks, cut, true
			return true
		}
	}
	if fitsEnd(own) && fitsPrompt(own) {
		return true
	}
	if budget > 0 && q.layout != nil { // a raw prompt has no parts to drop
		t, toks, own2 := s.trim(q, func(own int) bool { return fitsEnd(own) && fitsPrompt(own) }, fitsEnd)
		if t.Any() {
			q.prompt, q.trimmed, q.truncated, own = toks, t, true, own2
			s.log.Debug("prompt trimmed to its time budget", slog.String("model", s.name),
				slog.Int("extra_chunks", t.ExtraChunks), slog.Int("prefix_tokens", t.PrefixTokens), slog.Duration("budget", budget))
		}
		if fitsEnd(own) || s.makeRoom(q, fitsWith, fitsPrompt) {
			return true
		}
	}
	s.log.Debug("request refused: it would end after its deadline", slog.String("model", s.name),
		slog.Duration("estimate", endAt(own)), slog.Duration("left", left), slog.Float64("prefill_tokens_per_s", speed))
	s.finish(q, StopDeadline, &DeadlineError{Estimate: endAt(own), Left: left})
	return false
}

// makeRoom is the last try before q is refused for its deadline: the
// requests ahead of q whose prompts are planned and not started yet, and
// q, share the time left. It looks for the largest X such that with each
// of those prompts trimmed to at most X uncached tokens (least trimmed
// first, as plan trims; a prompt already under X stays), q ends before
// its deadline (fits, given the change of the tokens ahead and q's own).
// When there is one it applies it and reports true; else it changes
// nothing. So four cold prompts that fit three at a third of the time
// each answer three, instead of two at full length and two refusals.
// A request without a prompt budget is never trimmed (its client sent
// the prompt it wants).
func (s *Scheduler) makeRoom(q *sequence, fits func(ahead, own int) bool, promptOK func(own int) bool) bool {
	var others []*sequence
	for _, r := range s.active {
		if r != q && !r.finished && !r.generating && r.slot != nil && r.evaluated == 0 && r.planned &&
			r.layout != nil && r.req.TMaxPrompt > 0 && r.req.MaxTokens > 0 && byDue(r, q) < 0 {
			others = append(others, r)
		}
	}
	if len(others) == 0 {
		return false
	}
	type cut struct {
		t    Trimmed
		toks []Token
		own  int
	}
	never := func(int) bool { return false }
	// at trims each of others and q to at most x uncached tokens; q
	// starts again from its whole prompt and keeps within its prompt
	// budget (promptOK).
	at := func(x int) (cuts []cut, ahead, own int, ok bool) {
		for _, r := range append(others, q) {
			c := cut{t: r.trimmed, toks: r.prompt, own: s.uncached(r, r.prompt)}
			fits := func(own int) bool { return own <= x }
			if r == q {
				c = cut{toks: q.full, own: s.uncached(q, q.full)}
				fits = func(own int) bool { return own <= x && promptOK(own) }
			}
			if !fits(c.own) {
				c.t, c.toks, c.own = s.trim(r, fits, never)
			}
			cuts = append(cuts, c)
			if r != q {
				ahead += c.own - r.remaining()
			}
		}
		own = cuts[len(cuts)-1].own
		return cuts, ahead, own, fits(ahead, own)
	}
	hi := s.uncached(q, q.full)
	for _, r := range others {
		hi = max(hi, r.remaining())
	}
	if _, _, _, ok := at(0); !ok {
		return false
	}
	lo := 0 // the largest x known to fit
	for lo < hi {
		if mid := (lo + hi + 1) / 2; func() bool { _, _, _, ok := at(mid); return ok }() {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	cuts, _, _, _ := at(lo)
	for i, r := range append(others, q) {
		c := cuts[i]
		if len(c.toks) == len(r.prompt) {
			continue
		}
		r.prompt, r.trimmed = c.toks, c.t
		r.truncated = r.truncated || c.t.Any()
		if r != q {
			s.prepare(r)
		}
	}
	s.log.Debug("prompts trimmed to make room before the deadline", slog.String("model", s.name),
		slog.Int("requests", len(others)+1), slog.Int("max_uncached_tokens", lo))
	return true
}

// uncached is how many tokens of prompt q would evaluate in its slot.
func (s *Scheduler) uncached(q *sequence, prompt []Token) int {
	if !q.req.CachePrompt {
		return len(prompt)
	}
	n := reusable(q.slot.cached, prompt, s.reuseChunk())
	return len(prompt) - min(n, len(prompt)-1)
}

// trim looks for the least trimmed prompt whose uncached tokens pass ok:
// first dropping extra chunks one by one from the front, then cutting
// prefix lines from the top. When none passes, it takes the least trimmed
// one that passes fallback, else the most trimmed. It returns what was
// dropped, the prompt and its uncached tokens.
func (s *Scheduler) trim(q *sequence, ok, fallback func(own int) bool) (Trimmed, []Token, int) {
	l := q.layout
	full := q.full
	var best, fb *trimCandidate
	try := func(t Trimmed) bool {
		toks := l.without(full, t)
		c := &trimCandidate{t: t, toks: toks, own: s.uncached(q, toks)}
		if fb == nil && fallback(c.own) {
			fb = c
		}
		if ok(c.own) {
			best = c
			return true
		}
		best = c // the most trimmed so far
		return false
	}
	for k := 1; k <= len(l.extras); k++ {
		if try(Trimmed{ExtraChunks: k}) {
			return best.t, best.toks, best.own
		}
	}
	for _, c := range l.prefixCuts(s.model, full) {
		if try(Trimmed{ExtraChunks: len(l.extras), PrefixTokens: c}) {
			return best.t, best.toks, best.own
		}
	}
	if fb != nil {
		best = fb
	}
	if best == nil {
		return Trimmed{}, full, s.uncached(q, full)
	}
	return best.t, best.toks, best.own
}

type trimCandidate struct {
	t    Trimmed
	toks []Token
	own  int
}

// holds reports whether l (nil: a raw prompt) has the parts t trims:
// t.ExtraChunks extra chunks, and a prefix that keeps budgetMinPrefix
// tokens after t.PrefixTokens are cut; false for a t that trims nothing.
func (l *Prompt) holds(t Trimmed) bool {
	return l != nil && t.Any() && t.ExtraChunks <= len(l.extras) &&
		(t.PrefixTokens == 0 || t.PrefixTokens <= l.prefix.end-l.prefix.start-budgetMinPrefix)
}

// without is prompt (laid out as l) less the first t.ExtraChunks extra
// chunks and the first t.PrefixTokens prefix tokens.
func (l *Prompt) without(prompt []Token, t Trimmed) []Token {
	drop := make([]span, 0, 2)
	if k := min(t.ExtraChunks, len(l.extras)); k > 0 {
		drop = append(drop, span{l.extras[0].start, l.extras[k-1].end})
	}
	if t.PrefixTokens > 0 {
		drop = append(drop, span{l.prefix.start, l.prefix.start + min(t.PrefixTokens, l.prefix.end-l.prefix.start)})
	}
	slices.SortFunc(drop, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	n := len(prompt)
	for _, d := range drop {
		n -= d.end - d.start
	}
	out := make([]Token, 0, n)
	at := 0
	for _, d := range drop {
		out = append(out, prompt[at:d.start]...)
		at = d.end
	}
	return append(out, prompt[at:]...)
}

// prefixCuts lists, ascending, the numbers of tokens that may be cut from
// the top of the prefix: each leaves the prefix starting at a line start,
// with at least budgetMinPrefix tokens (or none cut, when it has fewer).
func (l *Prompt) prefixCuts(tk Tokenizer, prompt []Token) []int {
	pre := prompt[l.prefix.start:l.prefix.end]
	var cuts []int
	for c := 1; c <= len(pre)-budgetMinPrefix; c++ {
		if bytes.IndexByte(tk.Piece(pre[c-1], false), '\n') >= 0 {
			cuts = append(cuts, c)
		}
	}
	return cuts
}
