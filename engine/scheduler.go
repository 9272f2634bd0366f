package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrEmptyPrompt means the prompt has no tokens.
var ErrEmptyPrompt = errors.New("engine: empty prompt")

// Config sizes one model's scheduler. Zero values take the defaults noted.
type Config struct {
	NParallel int  // slots (sequences); default 4
	NCtx      int  // KV cells shared by all slots; default 4096 × NParallel
	NBatch    int  // tokens per decode; default 512
	NThreads  int  // 0: backend default
	FlashAttn bool // passed to the backend
	// QueueSize bounds requests waiting for a slot; default 64. A request
	// beyond it fails with ErrOverloaded.
	QueueSize int
	// CacheReuse is the minimum chunk, in tokens, that is shifted into place
	// when it moved in the prompt (llama.cpp --cache-reuse); default 64,
	// negative disables it.
	CacheReuse int
	// SlotSimilarity is the share of the prompt a slot's cached prefix must
	// cover for that slot to be chosen over the least recently used one;
	// default 0.1, negative: always the longest prefix.
	SlotSimilarity float64
	// Family overrides the prompt layout detected from the model.
	Family Family
	// Split caps the tokens of a FIM prompt's extra context, prefix and
	// suffix (BuildPrompt), before the slot's token budget applies;
	// default none.
	Split PromptSplit
	// TokenCacheBytes bounds the texts and tokens of prompt parts kept so
	// that an unchanged part (an extra file, the suffix, the prefix lines
	// before the cursor line) is not tokenized again; default
	// DefaultTokenCacheBytes (16 MiB), negative disables it.
	TokenCacheBytes int
	// CompactAfter is how long a slot must have been idle before another
	// request's cache may be moved into it to keep the slots in use next to
	// each other (compact.go); default 10 s, negative disables it.
	CompactAfter time.Duration
	// PromptCacheBytes bounds the slots' prompts kept in host memory after
	// another typist's request took their slot, to be copied back when
	// their typist's next request comes (promptcache.go); default
	// DefaultPromptCacheBytes (2 GiB), negative disables it.
	PromptCacheBytes int
	// TMaxPrompt is the prompt time budget of requests that set none
	// (Request.TMaxPrompt); 0: none. It trims prompts ahead of time
	// (budget.go) and, unlike a request's own budget, never stops one.
	TMaxPrompt time.Duration
	// MixedPrefill caps the prompt tokens of a step that also carries
	// generated tokens; 0: none, the whole batch (as llama.cpp's server
	// fills it). Without a cap a generating request waits for a batch of
	// other prompts' tokens per token (on a 2-vCPU host with a 0.5B
	// model, about 3.5 s), so it ends when the prompts in flight are
	// done; a small cap lets it end first but, on a CPU, evaluates the
	// prompts less efficiently in small chunks (docs/context.md has the
	// measurements). Round-robin prefill (below) takes no cap.
	MixedPrefill int
	// RoundRobinPrefill shares each batch's prompt tokens among the
	// prefills round-robin and plans nothing ahead: no request is trimmed
	// or refused on an estimate. The default orders prefills earliest
	// deadline first and plans each request (budget.go); this switch
	// keeps the old behaviour for comparison.
	RoundRobinPrefill bool
	Logger            *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.NParallel <= 0 {
		c.NParallel = 4
	}
	if c.NCtx <= 0 {
		c.NCtx = 4096 * c.NParallel
	}
	if c.NBatch <= 0 {
		c.NBatch = 512
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 64
	}
	if c.CacheReuse == 0 {
		c.CacheReuse = 64
	}
	if c.SlotSimilarity == 0 {
		c.SlotSimilarity = 0.1
	}
	if c.TokenCacheBytes == 0 {
		c.TokenCacheBytes = DefaultTokenCacheBytes
	}
	if c.CompactAfter == 0 {
		c.CompactAfter = DefaultCompactAfter
	}
	if c.PromptCacheBytes == 0 {
		c.PromptCacheBytes = DefaultPromptCacheBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats describe a scheduler for health and ping endpoints.
type Stats struct {
	Model       string
	Family      Family
	Info        ModelInfo
	Slots       int // effective number of parallel sequences
	SlotsBusy   int
	NCtx        int // KV cells in all
	NCtxPerSlot int
	Split       PromptSplit // token caps of its FIM prompts (Config.Split)
	NBatch      int
	CanShift    bool
	QueueLen    int // requests waiting for a slot
	QueueCap    int

	Requests        uint64 // requests finished
	PromptTokens    uint64
	CachedTokens    uint64
	EvaluatedTokens uint64
	GeneratedTokens uint64
	// Decodes counts backend Decode calls that succeeded and DecodeTokens
	// the tokens they carried: their ratio is the mean batch occupancy.
	Decodes      uint64
	DecodeTokens uint64
	DecodeMS     float64 // time spent in Decode calls
	// Moves counts requests that compaction ran in a lower slot than
	// pickSlot chose (compact.go); MovedTokens the cached tokens that
	// changed slot.
	Moves, MovedTokens uint64

	TokenCache  TokenCacheStats  // prompt parts whose tokens were reused
	PromptCache PromptCacheStats // prompts kept in host memory (promptcache.go)
}

// sequence is one request inside the scheduler. Fields below "scheduler
// state" belong to the scheduler goroutine.
type sequence struct {
	ctx       context.Context
	cancel    context.CancelCauseFunc
	req       Request
	prompt    []Token
	full      []Token // the prompt before a time budget trimmed it
	truncated bool
	sampler   Sampler
	stream    *Stream
	tSubmit   time.Time
	tokenize  time.Duration
	// layout is the prompt's parts a time budget may drop; nil when it
	// has none to drop. due orders prefills (budget.go).
	layout *Prompt
	due    time.Time

	// scheduler state
	slot       *slot
	nPast      int // prompt tokens in the KV
	generating bool
	next       [1]Token // sampled token to decode next
	filter     *textFilter
	tokens     []Token
	logprobs   []float32
	cached     int
	shifted    int
	restored   int // part of cached copied back from the prompt cache
	evaluated  int
	// promptSpent is this request's share (by tokens) of the decode time
	// of the batches that carried its prompt tokens: its own prompt time,
	// which the prompt budget bounds (the wait behind other prompts is the
	// deadline's).
	promptSpent time.Duration
	budgetStops bool // the request set its own TMaxPrompt
	tAdmit      time.Time
	tGen        time.Time // prompt done, generation began
	tFirst      time.Time
	finished    bool
	planned     bool    // plan ran with a known speed
	trimmed     Trimmed // what plan dropped
}

// part is one sequence's share of a batch.
type part struct {
	seq    *sequence // nil for a placeholder (batchlayout.go)
	slot   *slot
	toks   []Token
	pos0   int
	logits bool
	row    int // batch row of the last token, set by fill
}

// Scheduler runs one loaded model: a single goroutine owns its Context, its
// slots, the samplers in use and the KV mirror; other goroutines reach it
// only through Stream/Complete (which tokenize in the caller's goroutine and
// send the request over a channel) and Stats.
type Scheduler struct {
	name     string
	model    Model
	special  SpecialTokens
	info     ModelInfo
	family   Family
	tokens   *TokenCache // the model's tokenizer with memory; used by callers' goroutines
	cfg      Config
	nCtxSlot int
	canShift bool
	// streams: the context keeps a KV stream per sequence, so batches are
	// laid out for llama.cpp's micro-batches (batchlayout.go); noPad when
	// a placeholder could not be removed and padding is off.
	streams, noPad bool
	// spare is the sequence compaction swaps caches through, never a
	// slot's; -1 when there is none (compact.go).
	spare int32
	log   *slog.Logger

	submit chan *sequence
	quit   chan struct{}
	done   chan struct{}

	mu     sync.RWMutex // closed; held for reading while submitting
	closed bool

	supMu sync.Mutex
	sup   map[string]*sequence

	queued                              atomic.Int64
	busy                                atomic.Int64
	nReq, nPrompt, nCached, nEval, nGen atomic.Uint64
	nDecodes, nDecodeTokens, nDecodeUS  atomic.Uint64
	nMoves, nMovedTokens                atomic.Uint64
	nSaves, nRestores, nRestored        atomic.Uint64
	pcPrompts, pcBytes                  atomic.Int64             // the prompt cache's size, for Stats
	observer                            atomic.Pointer[Observer] // Engine.Observe's

	// owned by the run goroutine
	ctx     Context
	slots   []*slot
	waiting []*sequence
	active  []*sequence
	batch   Batch
	parts   []part
	rr      int
	tick    uint64
	pace    pace // measured speeds (budget.go)
	// pc is the prompt cache in host memory, nil when off or when the
	// context cannot copy a sequence's cells (promptcache.go).
	pc *promptCache
	// copyPending: llama.cpp makes a whole-sequence copy between KV
	// streams (compact.go) at the next decode; until then no sequence's
	// cells are saved or loaded.
	copyPending bool
}

// NewScheduler creates a context on m and starts the goroutine that owns
// it. The caller keeps ownership of m and closes it after Close.
func NewScheduler(name string, m Model, cfg Config) (*Scheduler, error) {
	cfg = cfg.withDefaults()
	// Compaction swaps caches through one more sequence than there are
	// slots (compact.go), with as many cells as a slot.
	nSeqWant, nCtxWant := cfg.NParallel, cfg.NCtx
	if cfg.CompactAfter >= 0 && cfg.NParallel > 1 {
		nSeqWant, nCtxWant = cfg.NParallel+1, cfg.NCtx/cfg.NParallel*(cfg.NParallel+1)
	}
	c, err := m.NewContext(ContextParams{
		NCtx: nCtxWant, NBatch: cfg.NBatch, NSeqMax: nSeqWant,
		NThreads: cfg.NThreads, FlashAttn: cfg.FlashAttn,
	})
	if err != nil {
		return nil, fmt.Errorf("new context for %q: %w", name, err)
	}
	s := &Scheduler{
		name: name, model: m, special: m.Special(), info: m.Info(), cfg: cfg, log: cfg.Logger,
		submit: make(chan *sequence, cfg.QueueSize),
		quit:   make(chan struct{}), done: make(chan struct{}),
		sup: map[string]*sequence{}, ctx: c,
		tokens: NewTokenCache(m, cfg.TokenCacheBytes),
	}
	s.family = cfg.Family
	if s.family == FamilyNone {
		s.family = DetectFamily(s.info, s.special)
	}
	// The backend may give fewer cells or sequences than asked for; size
	// slots from what it reports.
	nSeq := max(c.NSeqMax(), 1)
	s.nCtxSlot = c.NCtx() / nSeq
	s.spare = -1
	if nSeqWant > cfg.NParallel && nSeq > cfg.NParallel {
		nSeq--
		s.spare = int32(nSeq)
	}
	s.canShift = c.CanShift()
	if sc, ok := c.(StreamedContext); ok {
		s.streams = sc.SeqStreams()
	}
	if cfg.NBatch > c.NBatch() && c.NBatch() > 0 {
		s.cfg.NBatch = c.NBatch()
	}
	for i := range nSeq {
		s.slots = append(s.slots, &slot{id: int32(i)})
	}
	if _, ok := c.(StateContext); ok && cfg.PromptCacheBytes > 0 {
		s.pc = &promptCache{limit: cfg.PromptCacheBytes}
	}
	s.log.Info("scheduler started", slog.String("model", name), slog.String("family", string(s.family)),
		slog.Int("slots", nSeq), slog.Int("n_ctx", s.nCtxSlot*nSeq), slog.Int("n_ctx_slot", s.nCtxSlot),
		slog.Int("n_batch", s.cfg.NBatch), slog.Bool("can_shift", s.canShift))
	go s.run()
	return s, nil
}

// observe sets the Observer told of each request's end (nil: none).
func (s *Scheduler) observe(f Observer) {
	if f == nil {
		s.observer.Store(nil)
		return
	}
	s.observer.Store(&f)
}

// Name is the model name the scheduler was started with.
func (s *Scheduler) Name() string { return s.name }

// Model returns the model the scheduler runs.
func (s *Scheduler) Model() Model { return s.model }

// Family is the prompt layout in use.
func (s *Scheduler) Family() Family { return s.family }

// Stats reports the scheduler's shape and counters. Safe from any goroutine.
func (s *Scheduler) Stats() Stats {
	return Stats{
		Model: s.name, Family: s.family, Info: s.info,
		Slots: len(s.slots), SlotsBusy: int(s.busy.Load()),
		NCtx: s.nCtxSlot * len(s.slots), NCtxPerSlot: s.nCtxSlot, Split: s.cfg.Split, NBatch: s.cfg.NBatch, CanShift: s.canShift,
		QueueLen: int(s.queued.Load()), QueueCap: s.cfg.QueueSize,
		Requests: s.nReq.Load(), PromptTokens: s.nPrompt.Load(), CachedTokens: s.nCached.Load(),
		EvaluatedTokens: s.nEval.Load(), GeneratedTokens: s.nGen.Load(),
		Decodes: s.nDecodes.Load(), DecodeTokens: s.nDecodeTokens.Load(), DecodeMS: float64(s.nDecodeUS.Load()) / 1000,
		Moves: s.nMoves.Load(), MovedTokens: s.nMovedTokens.Load(),
		TokenCache: s.tokens.Stats(),
		PromptCache: PromptCacheStats{Prompts: int(s.pcPrompts.Load()), Bytes: int(s.pcBytes.Load()),
			Saves: s.nSaves.Load(), Restores: s.nRestores.Load(), RestoredTokens: s.nRestored.Load()},
	}
}

// Complete runs req to its end. It returns an error without a result when
// the request could not be queued (ErrOverloaded, ErrClosed, ErrNoFIM,
// ErrPromptTooLong), and the result together with Result.Err for StopError.
// Cancellation and deadlines give a result with StopCancelled/StopDeadline
// and a nil error.
func (s *Scheduler) Complete(ctx context.Context, req Request) (*Result, error) {
	st, err := s.Stream(ctx, req)
	if err != nil {
		return nil, err
	}
	return st.Wait()
}

// Stream lays out and tokenizes req in the caller's goroutine and queues it.
// Cancelling ctx (or Stream.Cancel) stops the request within one batch step.
func (s *Scheduler) Stream(ctx context.Context, req Request) (*Stream, error) {
	t0 := time.Now()
	budget := s.nCtxSlot - min(max(req.MaxTokens, 1), s.nCtxSlot/2)
	p, err := BuildPrompt(s.tokens, s.special, s.family, &req, budget, s.cfg.Split)
	if err != nil {
		return nil, err
	}
	if len(p.Tokens) == 0 {
		return nil, ErrEmptyPrompt
	}
	sampler, err := s.model.NewSampler(req.Sampling)
	if err != nil {
		return nil, fmt.Errorf("new sampler: %w", err)
	}
	req.Stop = append([]string(nil), req.Stop...)
	req.Extra = nil // laid out already; do not keep the text alive
	// A budget the request set stops its prompt after the fact too; the
	// scheduler's default only trims (budget.go).
	budgetStops := req.TMaxPrompt > 0
	if !budgetStops {
		req.TMaxPrompt = s.cfg.TMaxPrompt
	}
	sctx, cancel := context.WithCancelCause(ctx)
	seq := &sequence{
		ctx: sctx, cancel: cancel, req: req, prompt: p.Tokens, full: p.Tokens, truncated: p.Truncated, budgetStops: budgetStops,
		sampler: sampler, stream: newStream(), filter: newTextFilter(req.Stop, req.Mode, req.NIndent),
	}
	if len(p.extras) > 0 || p.prefix.end > p.prefix.start {
		seq.layout = p
	}
	seq.stream.seq = seq

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		sampler.Close()
		cancel(ErrClosed)
		return nil, ErrClosed
	}
	if s.queued.Add(1) > int64(s.cfg.QueueSize) {
		s.queued.Add(-1)
		sampler.Close()
		cancel(ErrOverloaded)
		return nil, ErrOverloaded
	}
	if key := req.SupersedeKey; key != "" {
		s.supMu.Lock()
		old := s.sup[key]
		s.sup[key] = seq
		s.supMu.Unlock()
		if old != nil {
			old.cancel(ErrSuperseded)
		}
	}
	seq.tSubmit = time.Now()
	seq.tokenize = seq.tSubmit.Sub(t0)
	seq.due = seq.dueAt()
	s.submit <- seq // never blocks: queued ≤ QueueSize = cap(submit)
	return seq.stream, nil
}

// Close stops the scheduler: requests in flight end with ErrClosed, the
// context is closed. The model stays open. Close waits for the goroutine.
func (s *Scheduler) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	<-s.done
	return nil
}

// run is the only goroutine that touches s.ctx, the slots and the samplers
// of admitted requests.
//
// It keeps one OS thread for its whole life. Each step is a cgo call into
// llama.cpp of a few milliseconds on a CPU; without the lock the Go
// runtime may hand the thread's P to other goroutines during the call and
// continue the loop on another thread afterwards, so the model's next
// step starts on a thread (and often a CPU) whose caches hold the
// request handlers' and database driver's data instead of the model's.
// On a 2-vCPU host, make bench-server runs alternated with and without the
// lock put the server's time over the bare engine lower with it six times
// of six (docs/benchmarks.md, "What the figures mean").
func (s *Scheduler) run() {
	runtime.LockOSThread() // never unlocked: the thread ends with the loop
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			s.shutdown()
			return
		default:
		}
		s.drain()
		now := time.Now()
		s.reap()
		s.admit(now)
		if len(s.active) == 0 {
			if len(s.waiting) > 0 {
				continue
			}
			if ic, ok := s.ctx.(IdleContext); ok {
				ic.Idle()
			}
			select {
			case q := <-s.submit:
				s.waiting = append(s.waiting, q)
			case <-s.quit:
				s.shutdown()
				return
			}
			continue
		}
		s.step()
		s.compact()
	}
}

func (s *Scheduler) drain() {
	for {
		select {
		case q := <-s.submit:
			s.waiting = append(s.waiting, q)
		default:
			return
		}
	}
}

// reap ends cancelled requests and those past a prompt budget they set.
func (s *Scheduler) reap() {
	for _, q := range s.active {
		if q.finished {
			continue
		}
		if q.ctx.Err() != nil {
			s.finishCtx(q)
			continue
		}
		if !q.generating && q.req.MaxTokens > 0 && q.budgetStops && q.promptSpent > q.req.TMaxPrompt {
			s.finish(q, StopDeadline, ErrPromptBudget)
		}
	}
	keep := s.waiting[:0]
	for _, q := range s.waiting {
		if q.ctx.Err() != nil {
			s.finishCtx(q)
			continue
		}
		keep = append(keep, q)
	}
	clear(s.waiting[len(keep):])
	s.waiting = keep
	s.compact()
}

func (s *Scheduler) finishCtx(q *sequence) {
	if errors.Is(q.ctx.Err(), context.DeadlineExceeded) {
		s.finish(q, StopDeadline, context.Cause(q.ctx))
		return
	}
	s.finish(q, StopCancelled, context.Cause(q.ctx))
}

func (s *Scheduler) compact() {
	keep := s.active[:0]
	for _, q := range s.active {
		if !q.finished {
			keep = append(keep, q)
		}
	}
	clear(s.active[len(keep):])
	s.active = keep
}

// admit gives waiting requests idle slots, earliest deadline first (FIFO
// with RoundRobinPrefill), plans each (budget.go) and prepares its slot's
// KV.
func (s *Scheduler) admit(now time.Time) {
	if !s.cfg.RoundRobinPrefill && len(s.waiting) > 1 {
		slices.SortStableFunc(s.waiting, byDue)
	}
	for len(s.waiting) > 0 {
		q := s.waiting[0]
		sl := pickSlot(s.slots, q.prompt, q.req.SupersedeKey, s.cfg.SlotSimilarity, s.reuseChunk())
		if sl == nil {
			return
		}
		sl = s.compactTo(sl, q.prompt, now)
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		s.queued.Add(-1)
		s.busy.Add(1)
		q.slot, sl.seq = sl, q
		q.tAdmit = now
		s.active = append(s.active, q)
		if len(q.prompt) >= s.nCtxSlot {
			sl.key = q.req.SupersedeKey
			s.finish(q, StopError, ErrPromptTooLong)
			continue
		}
		gain := s.swapPrompt(sl, q) // before the plan, which counts the tokens to evaluate
		sl.key = q.req.SupersedeKey
		if s.plannable(q) && !s.plan(q, now) {
			continue
		}
		s.prepare(q)
		q.restored = min(gain, q.cached)
		s.nRestored.Add(uint64(q.restored))
		if rp := q.req.Sampling.RepeatPenalty; rp != 0 && rp != 1 {
			n := q.req.Sampling.RepeatLastN
			if n <= 0 || n > len(q.prompt) {
				n = len(q.prompt)
			}
			for _, t := range q.prompt[len(q.prompt)-n:] {
				q.sampler.Accept(t)
			}
		}
	}
}

// prepare trims the slot's KV to what the prompt can reuse.
func (s *Scheduler) prepare(q *sequence) {
	sl := q.slot
	n := 0
	shifted := 0
	if q.req.CachePrompt {
		n = commonPrefix(sl.cached, q.prompt)
		n, shifted = reuseChunks(s.ctx, sl.id, sl.cached, q.prompt, n, s.reuseChunk())
	}
	if n >= len(q.prompt) {
		// One token must be evaluated to get logits.
		n = len(q.prompt) - 1
		shifted = min(shifted, n)
	}
	if n < len(sl.cached) {
		if !s.ctx.SeqRm(sl.id, int32(n), -1) {
			s.ctx.SeqRm(sl.id, 0, -1)
			n, shifted = 0, 0
		}
		sl.cached = sl.cached[:n]
	}
	q.nPast, q.cached, q.shifted = n, n, shifted
	sl.cut = q.trimmed
}

// step builds one batch (decode first, then chunked prefill earliest
// deadline first, or round-robin with Config.RoundRobinPrefill), decodes it
// and samples.
func (s *Scheduler) step() {
	parts := s.parts[:0]
	for _, q := range s.active {
		if q.finished || !q.generating || len(parts) >= s.cfg.NBatch {
			continue
		}
		parts = append(parts, part{seq: q, slot: q.slot, toks: q.next[:], pos0: len(q.slot.cached), logits: true})
	}
	generating := len(parts)
	budget := s.cfg.NBatch - len(parts)
	if generating > 0 && !s.cfg.RoundRobinPrefill {
		budget = min(budget, s.mixedCap())
	}
	var pre []*sequence
	for _, q := range s.active {
		if !q.finished && !q.generating {
			pre = append(pre, q)
		}
	}
	if !s.cfg.RoundRobinPrefill {
		pre = s.planLate(pre)
		s.orderPrefills(pre)
	}
	if n := len(pre); n > 0 && budget > 0 {
		start := 0
		if s.cfg.RoundRobinPrefill {
			start = s.rr % n
			s.rr++
		}
		for i := 0; i < n && budget > 0; i++ {
			q := pre[(start+i)%n]
			take := min(budget, len(q.prompt)-q.nPast)
			if s.streams && generating > 0 && take <= shortTail {
				take = 1 // see shortTail
			}
			last := q.nPast+take == len(q.prompt)
			parts = append(parts, part{seq: q, slot: q.slot, toks: q.prompt[q.nPast : q.nPast+take], pos0: q.nPast,
				logits: last && q.req.MaxTokens > 0})
			budget -= take
		}
	}
	if s.streams && len(parts) > 1 {
		parts = s.layout(parts)
	}
	s.parts = parts
	if len(parts) > 0 {
		s.decode(parts)
	}
	clear(s.parts[:cap(s.parts)])
}

// planLate plans the prefills that got their slot before any speed was
// measured, preparing a trimmed one's slot again, and leaves out those it
// refuses.
func (s *Scheduler) planLate(pre []*sequence) []*sequence {
	if s.pace.speed() <= 0 {
		return pre
	}
	now := time.Now()
	keep := pre[:0]
	for _, q := range pre {
		if s.plannable(q) {
			n := len(q.prompt)
			if !s.plan(q, now) {
				continue
			}
			if len(q.prompt) != n {
				s.prepare(q)
			}
		}
		keep = append(keep, q)
	}
	return keep
}

// fill builds the batch from parts and records logits rows.
func (s *Scheduler) fill(parts []part) int {
	s.batch.Reset()
	for i := range parts {
		p := &parts[i]
		for j, t := range p.toks {
			s.batch.Add(t, int32(p.pos0+j), p.slot.id, p.logits && j == len(p.toks)-1)
		}
		p.row = s.batch.Len() - 1
	}
	return s.batch.Len()
}

// decode evaluates parts. On ErrKVFull it evicts idle slots' caches and
// retries, then splits the batch in halves; what still fails ends the
// sequences involved with StopError, never the process.
func (s *Scheduler) decode(parts []part) {
	for {
		n := s.fill(parts)
		prompt := 0
		for _, p := range parts {
			if p.seq != nil && !p.seq.generating {
				prompt += len(p.toks)
			}
		}
		t0 := time.Now()
		err := s.ctx.Decode(&s.batch)
		d := time.Since(t0)
		s.nDecodeUS.Add(uint64(d.Microseconds()))
		if err == nil {
			s.copyPending = false
			s.pace.record(n, prompt, d)
			s.nDecodes.Add(1)
			s.nDecodeTokens.Add(uint64(n))
			parts = s.dropPlaceholders(parts)
			for _, p := range parts {
				if !p.seq.generating { // its share of the batch's time
					p.seq.promptSpent += d * time.Duration(len(p.toks)) / time.Duration(n)
				}
			}
			s.commit(parts)
			return
		}
		if hasPlaceholders(parts) {
			// Nothing of the batch is kept on failure: retry without them.
			parts = withoutPlaceholders(parts)
			continue
		}
		if errors.Is(err, ErrKVFull) {
			if s.evictIdle() {
				continue
			}
			if n > 1 {
				a, b := splitParts(parts, n/2)
				s.decode(a)
				live := b[:0]
				for _, p := range b {
					if !p.seq.finished {
						p.pos0 = len(p.seq.slot.cached)
						live = append(live, p)
					}
				}
				if len(live) > 0 {
					s.decode(live)
				}
				return
			}
		}
		s.log.Warn("decode failed", slog.String("model", s.name), slog.Int("tokens", n), slog.Any("err", err))
		for _, p := range parts {
			if !p.seq.finished {
				// The backend keeps nothing of a failed batch; make sure.
				s.ctx.SeqRm(p.seq.slot.id, int32(len(p.seq.slot.cached)), -1)
				s.finish(p.seq, StopError, fmt.Errorf("decode: %w", err))
			}
		}
		return
	}
}

// splitParts splits parts after n tokens, cutting a prefill chunk if needed.
func splitParts(parts []part, n int) (a, b []part) {
	for i, p := range parts {
		if n <= 0 {
			return parts[:i:i], append([]part(nil), parts[i:]...)
		}
		if len(p.toks) > n {
			first, second := p, p
			first.toks, first.logits = p.toks[:n], false
			second.toks, second.pos0 = p.toks[n:], p.pos0+n
			a = append(append([]part(nil), parts[:i]...), first)
			b = append([]part{second}, parts[i+1:]...)
			return a, b
		}
		n -= len(p.toks)
	}
	return parts, nil
}

// evictIdle drops the KV of idle slots; it reports whether any was dropped.
func (s *Scheduler) evictIdle() bool {
	any := false
	for _, sl := range s.slots {
		if sl.seq == nil && len(sl.cached) > 0 {
			s.ctx.SeqRm(sl.id, 0, -1)
			sl.cached = sl.cached[:0]
			any = true
		}
	}
	return any
}

// commit mirrors a successful decode into the slots, then samples.
func (s *Scheduler) commit(parts []part) {
	now := time.Now()
	for _, p := range parts {
		q := p.seq
		q.slot.cached = append(q.slot.cached, p.toks...)
		if !q.generating {
			q.nPast += len(p.toks)
			q.evaluated += len(p.toks)
		}
	}
	for _, p := range parts {
		q := p.seq
		if q.finished {
			continue
		}
		if !p.logits {
			if !q.generating && q.nPast == len(q.prompt) && q.req.MaxTokens <= 0 {
				q.tGen = now
				s.finish(q, StopLength, nil)
			}
			continue
		}
		if !q.generating {
			q.generating, q.tGen = true, now
		}
		t := q.sampler.Sample(s.ctx, p.row)
		s.accept(q, t, LogProb(s.ctx.Logits(p.row), t), now)
	}
}

// isEnd reports tokens that end a completion: end-of-generation tokens and
// FIM control tokens (a model that starts another file is done).
func (s *Scheduler) isEnd(t Token) bool {
	if s.model.IsEOG(t) {
		return true
	}
	sp := &s.special
	switch t {
	case sp.EOS, sp.EOT, sp.FIMPad, sp.FIMRep, sp.FIMSep, sp.FIMPre, sp.FIMSuf, sp.FIMMid:
		return t != NoToken
	}
	return false
}

// accept handles one sampled token: end checks, text rules, streaming.
func (s *Scheduler) accept(q *sequence, t Token, lp float32, now time.Time) {
	q.tokens = append(q.tokens, t)
	q.logprobs = append(q.logprobs, lp)
	if q.tFirst.IsZero() {
		q.tFirst = now
	}
	if s.isEnd(t) {
		s.finish(q, StopEOS, nil)
		return
	}
	if q.filter.push(s.model.Piece(t, false)) {
		s.finish(q, StopWord, nil)
		return
	}
	switch {
	case len(q.tokens) >= q.req.MaxTokens,
		q.req.TMaxPredict > 0 && q.filter.hasNewline && now.Sub(q.tGen) > q.req.TMaxPredict,
		len(q.slot.cached)+1 > s.nCtxSlot:
		s.finish(q, StopLength, nil)
		return
	}
	q.next[0] = t
	if d := q.filter.take(); d != "" {
		q.stream.push(d)
	}
}

// finish ends q: releases its slot (keeping the KV for reuse), frees its
// sampler and publishes the result. Idempotent.
func (s *Scheduler) finish(q *sequence, reason StopReason, err error) {
	if q.finished {
		return
	}
	q.finished = true
	now := time.Now()
	tail := q.filter.flush()
	res := &Result{
		Text: q.filter.text(), Stop: reason, Err: err,
		Tokens: q.tokens, Logprobs: q.logprobs, Confidence: Confidence(q.logprobs),
		Truncated: q.truncated, Trimmed: q.trimmed, Slot: -1,
	}
	if reason == StopWord {
		res.StoppingWord = q.filter.stopWord
	}
	tm := &res.Timings
	tm.TokenizeMS = ms(q.tokenize)
	tm.TotalMS = ms(now.Sub(q.tSubmit))
	tm.PromptTokens = len(q.prompt)
	tm.GeneratedTokens = len(q.tokens)
	if q.slot != nil {
		res.Slot = int(q.slot.id)
		tm.QueueMS = ms(q.tAdmit.Sub(q.tSubmit))
		tm.CachedTokens, tm.ShiftedTokens, tm.EvaluatedTokens = q.cached, q.shifted, q.evaluated
		tm.RestoredTokens = q.restored
		if q.tGen.IsZero() {
			tm.PrefillMS = ms(now.Sub(q.tAdmit))
		} else {
			tm.PrefillMS = ms(q.tGen.Sub(q.tAdmit))
			tm.DecodeMS = ms(now.Sub(q.tGen))
		}
		if !q.tFirst.IsZero() {
			tm.FirstMS = ms(q.tFirst.Sub(q.tSubmit))
		}
		s.tick++
		q.slot.seq, q.slot.lastUsed, q.slot.idleSince = nil, s.tick, now
		s.busy.Add(-1)
	} else {
		tm.QueueMS = tm.TotalMS
		s.queued.Add(-1)
	}
	q.sampler.Close()
	if key := q.req.SupersedeKey; key != "" {
		s.supMu.Lock()
		if s.sup[key] == q {
			delete(s.sup, key)
		}
		s.supMu.Unlock()
	}
	s.nReq.Add(1)
	s.nPrompt.Add(uint64(tm.PromptTokens))
	s.nCached.Add(uint64(tm.CachedTokens))
	s.nEval.Add(uint64(tm.EvaluatedTokens))
	s.nGen.Add(uint64(tm.GeneratedTokens))
	if f := s.observer.Load(); f != nil {
		(*f)(s.name, res)
	}
	q.cancel(nil)
	q.stream.end(tail, res)
}

// shutdown ends every request with ErrClosed and closes the context.
func (s *Scheduler) shutdown() {
	s.drain()
	for _, q := range s.active {
		s.finish(q, StopError, ErrClosed)
	}
	for _, q := range s.waiting {
		s.finish(q, StopError, ErrClosed)
	}
	s.active, s.waiting = nil, nil
	if s.pc != nil {
		s.pc.clear()
	}
	if err := s.ctx.Close(); err != nil {
		s.log.Warn("close context", slog.String("model", s.name), slog.Any("err", err))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reuseChunk is the minimum chunk shifted into place, 0 when chunk reuse
// is off or the model cannot shift.
func (s *Scheduler) reuseChunk() int {
	if s.cfg.CacheReuse > 0 && s.canShift {
		return s.cfg.CacheReuse
	}
	return 0
}
