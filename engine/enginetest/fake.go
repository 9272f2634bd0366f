// Package enginetest provides a deterministic fake engine.Backend for tests
// of the scheduler and of code built on the engine. Its "model" is a
// byte-level tokenizer with Qwen2.5-Coder's FIM special tokens and a toy
// network whose next-token logits are a hash of the whole KV content of the
// sequence (every cell's position and token), so a wrong KV trim, shift or
// mirror changes the output, while the same KV content always gives the same
// logits. It enforces llama.cpp's batch rules (a sequence continues at its
// last position + 1), a finite KV, and single-goroutine use of a context.
package enginetest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/code4me/code4me/engine"
)

// Special token ids of the fake vocabulary; ids 0–255 are bytes.
const (
	BOS    engine.Token = 256
	EOS    engine.Token = 257
	FIMPre engine.Token = 258
	FIMSuf engine.Token = 259
	FIMMid engine.Token = 260
	FIMPad engine.Token = 261
	FIMRep engine.Token = 262
	FIMSep engine.Token = 263
	NVocab              = 264
)

var specialText = map[engine.Token]string{
	BOS: "<|bos|>", EOS: "<|endoftext|>", FIMPre: "<|fim_prefix|>", FIMSuf: "<|fim_suffix|>",
	FIMMid: "<|fim_middle|>", FIMPad: "<|fim_pad|>", FIMRep: "<|repo_name|>", FIMSep: "<|file_sep|>",
}

// Options configure a fake backend. The zero value is a shiftable,
// unified-KV qwen2-like model.
type Options struct {
	Name        string // general.name; default "fake qwen2.5-coder"
	Arch        string // default "qwen2"
	AddBOS      bool
	NoShift     bool // CanShift reports false
	NoPartialRm bool // SeqRm refuses partial ranges (recurrent/SWA memory)
	// KVCells, when positive, is the KV capacity instead of NCtx, to
	// provoke ErrKVFull.
	KVCells int
	// Streams makes the context report one KV stream per sequence
	// (engine.StreamedContext) and count the micro-batches llama.cpp
	// would split each batch into (MicroBatches).
	Streams bool
	// DecodeDelay and TokenDelay simulate compute: each Decode sleeps
	// DecodeDelay + TokenDelay × batch tokens.
	DecodeDelay, TokenDelay time.Duration
	// Logits, when set, replaces the hash network: seq is the sequence's
	// tokens at positions 0..p for the row being computed.
	Logits func(seq []engine.Token, out []float32)
	// BeforeDecode runs at the start of every Decode (from the scheduler
	// goroutine); a non-nil error fails that Decode.
	BeforeDecode func(b *engine.Batch) error
	// Embeds makes Embeddings answer: a sequence's embedding is the mean
	// of its tokens as one-hot vectors of EmbedDims coordinates (token t
	// at t mod EmbedDims). Otherwise Embeddings fails.
	Embeds bool
	// FailSave and FailLoad make SeqSave and SeqLoad fail
	// (engine.StateContext).
	FailSave, FailLoad bool
}

// EmbedDims is the width of the fake's embeddings (Options.Embeds).
const EmbedDims = 64

// Backend is the fake backend.
type Backend struct {
	Opts Options

	mu     sync.Mutex
	models []*Model
}

// New returns a fake backend.
func New(o Options) *Backend { return &Backend{Opts: o} }

// Load returns a fake model; the path is recorded but not read. A path
// containing "missing" fails, for error-path tests.
func (b *Backend) Load(path string, _ engine.LoadOptions, progress func(float32)) (engine.Model, error) {
	if strings.Contains(path, "missing") {
		return nil, fmt.Errorf("open %s: no such file", path)
	}
	if progress != nil {
		progress(0)
		progress(1)
	}
	m := &Model{opts: b.Opts, path: path}
	b.mu.Lock()
	b.models = append(b.models, m)
	b.mu.Unlock()
	return m, nil
}

// Models returns the models loaded so far.
func (b *Backend) Models() []*Model {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Model(nil), b.models...)
}

// Model is a fake model.
type Model struct {
	opts Options
	path string

	closed   atomic.Bool
	samplers atomic.Int64 // open samplers
	contexts atomic.Int64 // open contexts
	states   atomic.Int64 // saved states not freed

	mu   sync.Mutex
	last *Context
}

// NewModel returns a fake model without a backend.
func NewModel(o Options) *Model { return &Model{opts: o, path: "fake.gguf"} }

// Info describes the fake model.
func (m *Model) Info() engine.ModelInfo {
	name, arch := m.opts.Name, m.opts.Arch
	if name == "" {
		name = "fake qwen2.5-coder"
	}
	if arch == "" {
		arch = "qwen2"
	}
	return engine.ModelInfo{Path: m.path, Arch: arch, Name: name, NCtxTrain: 32768, NVocab: NVocab, Synthetic: true}
}

// Special returns the FIM token ids.
func (m *Model) Special() engine.SpecialTokens {
	return engine.SpecialTokens{BOS: BOS, EOS: EOS, EOT: engine.NoToken, FIMPre: FIMPre, FIMSuf: FIMSuf,
		FIMMid: FIMMid, FIMPad: FIMPad, FIMRep: FIMRep, FIMSep: FIMSep, AddBOS: m.opts.AddBOS}
}

// Tokenize maps each byte to its own token; with parseSpecial the special
// tokens' text maps to their ids.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]engine.Token, error) {
	var out []engine.Token
	if addSpecial && m.opts.AddBOS {
		out = append(out, BOS)
	}
next:
	for i := 0; i < len(text); {
		if parseSpecial && text[i] == '<' {
			for id, s := range specialText {
				if strings.HasPrefix(text[i:], s) {
					out = append(out, id)
					i += len(s)
					continue next
				}
			}
		}
		out = append(out, engine.Token(text[i]))
		i++
	}
	return out, nil
}

// Piece returns a token's byte, or a special token's text when special.
func (m *Model) Piece(t engine.Token, special bool) []byte {
	if t >= 0 && t < 256 {
		return []byte{byte(t)}
	}
	if s, ok := specialText[t]; ok && special {
		return []byte(s)
	}
	return nil
}

// Detokenize renders tokens with special tokens as text (for assertions).
func (m *Model) Detokenize(ts []engine.Token) string {
	var b strings.Builder
	for _, t := range ts {
		b.Write(m.Piece(t, true))
	}
	return b.String()
}

// IsEOG reports the end-of-text token.
func (m *Model) IsEOG(t engine.Token) bool { return t == EOS }

// NewContext creates a fake context.
func (m *Model) NewContext(p engine.ContextParams) (engine.Context, error) {
	if p.NCtx <= 0 || p.NSeqMax <= 0 || p.NBatch <= 0 {
		return nil, fmt.Errorf("fake: bad context params %+v", p)
	}
	c := &Context{m: m, p: p, seqs: make([][]cell, p.NSeqMax)}
	m.contexts.Add(1)
	m.mu.Lock()
	m.last = c
	m.mu.Unlock()
	return c, nil
}

// LastContext returns the most recently created context.
func (m *Model) LastContext() *Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// OpenSamplers is the number of samplers not yet closed.
func (m *Model) OpenSamplers() int { return int(m.samplers.Load()) }

// LiveStates is the number of saved sequence states not yet freed.
func (m *Model) LiveStates() int { return int(m.states.Load()) }

// OpenContexts is the number of contexts not yet closed.
func (m *Model) OpenContexts() int { return int(m.contexts.Load()) }

// NewSampler returns a greedy or seeded sampler.
func (m *Model) NewSampler(p engine.SamplingParams) (engine.Sampler, error) {
	m.samplers.Add(1)
	return &sampler{m: m, p: p, rng: rand.New(rand.NewPCG(uint64(p.Seed), 0x9e3779b97f4a7c15))}, nil
}

// Close marks the model closed.
func (m *Model) Close() error {
	if m.closed.Swap(true) {
		return errors.New("fake: model closed twice")
	}
	return nil
}

// Closed reports whether Close was called.
func (m *Model) Closed() bool { return m.closed.Load() }

type cell struct {
	tok engine.Token
	ok  bool
}

// Context is a fake context. Its methods panic when called from two
// goroutines at once.
type Context struct {
	m     *Model
	p     engine.ContextParams
	inUse atomic.Int32

	seqs   [][]cell // per sequence, indexed by position
	used   int
	rows   map[int][]float32
	closed bool

	// Counters, read with Counters after the scheduler is idle or closed.
	decodes, tokens, maxSeqs atomic.Int64
	idles                    atomic.Int64 // calls of Idle
	// microBatches[i] is the micro-batch count of decode i (Streams).
	mbMu         sync.Mutex
	microBatches []int
}

// SeqStreams reports Options.Streams (engine.StreamedContext).
func (c *Context) SeqStreams() bool { return c.m.opts.Streams && c.p.NSeqMax > 1 }

// MicroBatches returns the micro-batch count of every successful decode so
// far, in order (Options.Streams; nil otherwise).
func (c *Context) MicroBatches() []int {
	c.mbMu.Lock()
	defer c.mbMu.Unlock()
	return slices.Clone(c.microBatches)
}

// countMicroBatches splits b the way llama.cpp splits a batch for a KV
// cache with a stream per sequence (llama_batch_allocr::split_equal,
// sequential): each micro-batch takes, walking the batch in order,
// sequences whose ids follow each other, and the same number of tokens
// from each, as many as every one of them has left.
func countMicroBatches(b *engine.Batch) int {
	used := make([]bool, b.Len())
	left := b.Len()
	count := 0
	for left > 0 {
		var seqs []int32
		for i, s := range b.Seq {
			if used[i] || slices.Contains(seqs, s) {
				continue
			}
			if len(seqs) == 0 || s == seqs[len(seqs)-1]+1 {
				seqs = append(seqs, s)
			}
		}
		take := b.Len()
		for _, s := range seqs {
			n := 0
			for i, t := range b.Seq {
				if t == s && !used[i] {
					n++
				}
			}
			take = min(take, n)
		}
		for _, s := range seqs {
			n := 0
			for i, t := range b.Seq {
				if t == s && !used[i] && n < take {
					used[i] = true
					n++
					left--
				}
			}
		}
		count++
	}
	return count
}

// Counters reports decode calls, decoded tokens and the most distinct
// sequences seen in one batch.
func (c *Context) Counters() (decodes, tokens, maxSeqsInBatch int) {
	return int(c.decodes.Load()), int(c.tokens.Load()), int(c.maxSeqs.Load())
}

// Idle counts the scheduler's calls (engine.IdleContext).
func (c *Context) Idle() {
	c.enter()
	defer c.leave()
	c.idles.Add(1)
}

// Idles is how many times Idle was called.
func (c *Context) Idles() int { return int(c.idles.Load()) }

func (c *Context) enter() {
	if !c.inUse.CompareAndSwap(0, 1) {
		panic("enginetest: context used from two goroutines at once")
	}
}

func (c *Context) leave() { c.inUse.Store(0) }

// capacity is the KV cells the context has (Options.KVCells or NCtx).
func (c *Context) capacity() int {
	if c.m.opts.KVCells > 0 {
		return c.m.opts.KVCells
	}
	return c.p.NCtx
}

func (c *Context) maxPos(seq int) int {
	s := c.seqs[seq]
	for p := len(s) - 1; p >= 0; p-- {
		if s[p].ok {
			return p
		}
	}
	return -1
}

// Decode checks the batch like llama.cpp, stores it in the KV and computes
// the requested logits.
func (c *Context) Decode(b *engine.Batch) error {
	c.enter()
	defer c.leave()
	if c.closed {
		return errors.New("fake: decode on closed context")
	}
	n := b.Len()
	if n == 0 || n > c.p.NBatch {
		return fmt.Errorf("fake: batch of %d tokens (n_batch %d)", n, c.p.NBatch)
	}
	if h := c.m.opts.BeforeDecode; h != nil {
		if err := h(b); err != nil {
			return err
		}
	}
	next := map[int32]int{}
	for i := range n {
		s := b.Seq[i]
		if s < 0 || int(s) >= len(c.seqs) {
			return fmt.Errorf("fake: seq %d out of range", s)
		}
		want, seen := next[s]
		if !seen {
			want = c.maxPos(int(s)) + 1
		}
		if int(b.Pos[i]) != want {
			return fmt.Errorf("fake: inconsistent positions for seq %d: got %d, want %d", s, b.Pos[i], want)
		}
		next[s] = want + 1
	}
	if c.used+n > c.capacity() {
		return engine.ErrKVFull
	}
	c.decodes.Add(1)
	c.tokens.Add(int64(n))
	if c.SeqStreams() {
		c.mbMu.Lock()
		c.microBatches = append(c.microBatches, countMicroBatches(b))
		c.mbMu.Unlock()
	}
	if int64(len(next)) > c.maxSeqs.Load() {
		c.maxSeqs.Store(int64(len(next)))
	}
	for i := range n {
		s, p := int(b.Seq[i]), int(b.Pos[i])
		for len(c.seqs[s]) <= p {
			c.seqs[s] = append(c.seqs[s], cell{})
		}
		c.seqs[s][p] = cell{tok: b.Tokens[i], ok: true}
		c.used++
	}
	c.rows = map[int][]float32{}
	for i := range n {
		if b.Logits[i] {
			c.rows[i] = c.logits(int(b.Seq[i]), int(b.Pos[i]))
		}
	}
	if d := c.m.opts.DecodeDelay + time.Duration(n)*c.m.opts.TokenDelay; d > 0 {
		time.Sleep(d)
	}
	return nil
}

func (c *Context) logits(seq, pos int) []float32 {
	out := make([]float32, NVocab)
	cells := c.seqs[seq][:pos+1]
	if f := c.m.opts.Logits; f != nil {
		toks := make([]engine.Token, 0, len(cells))
		for _, cl := range cells {
			if cl.ok {
				toks = append(toks, cl.tok)
			} else {
				toks = append(toks, -2) // a hole
			}
		}
		f(toks, out)
		return out
	}
	h := fnv.New64a()
	var buf [8]byte
	for p, cl := range cells {
		v := uint64(p)<<32 | uint64(uint32(cl.tok))
		if !cl.ok {
			v = 0xdeadbeef_00000000 | uint64(p)
		}
		for i := range buf {
			buf[i] = byte(v >> (8 * i))
		}
		h.Write(buf[:])
	}
	seed := h.Sum64()
	for i := range out {
		x := splitmix(seed ^ uint64(i)*0x9e3779b97f4a7c15)
		out[i] = float32(x>>40) / float32(1<<24) * 10
		if i >= 256 && engine.Token(i) != EOS || i >= 128 && i < 256 || i < 32 && i != '\n' && i != '\t' {
			out[i] -= 30
		}
	}
	return out
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Logits returns the raw logits of batch row i of the last Decode.
func (c *Context) Logits(i int) []float32 {
	c.enter()
	defer c.leave()
	r, ok := c.rows[i]
	if !ok {
		panic(fmt.Sprintf("enginetest: logits of row %d were not requested", i))
	}
	return r
}

// Embeddings returns the sequence's embedding with Options.Embeds, else an
// error.
func (c *Context) Embeddings(seq int32) ([]float32, error) {
	c.enter()
	defer c.leave()
	if !c.m.opts.Embeds {
		return nil, errors.New("fake: no embeddings")
	}
	if seq < 0 || int(seq) >= len(c.seqs) {
		return nil, fmt.Errorf("fake: seq %d out of range", seq)
	}
	v := make([]float32, EmbedDims)
	n := 0
	for _, cl := range c.seqs[seq] {
		if cl.ok {
			v[int(cl.tok)%EmbedDims]++
			n++
		}
	}
	if n == 0 {
		return nil, errors.New("fake: embeddings of an empty sequence")
	}
	for i := range v {
		v[i] /= float32(n)
	}
	return v, nil
}

// SeqRm removes positions [p0,p1) of seq (all sequences when seq < 0).
func (c *Context) SeqRm(seq int32, p0, p1 int32) bool {
	c.enter()
	defer c.leave()
	if c.m.opts.NoPartialRm && (p0 > 0 || p1 >= 0) {
		return false
	}
	if p1 < 0 {
		p1 = math.MaxInt32
	}
	p0 = max(p0, 0)
	for s := range c.seqs {
		if seq >= 0 && int32(s) != seq {
			continue
		}
		cells := c.seqs[s]
		for p := int(p0); p < len(cells) && p < int(p1); p++ {
			if cells[p].ok {
				cells[p] = cell{}
				c.used--
			}
		}
		c.trim(s)
	}
	return true
}

func (c *Context) trim(s int) {
	c.seqs[s] = c.seqs[s][:c.maxPos(s)+1]
}

// SeqCp copies positions [p0,p1) of src into dst.
func (c *Context) SeqCp(src, dst int32, p0, p1 int32) {
	c.enter()
	defer c.leave()
	if p1 < 0 {
		p1 = math.MaxInt32
	}
	for p := int(max(p0, 0)); p < len(c.seqs[src]) && p < int(p1); p++ {
		if cl := c.seqs[src][p]; cl.ok {
			for len(c.seqs[dst]) <= p {
				c.seqs[dst] = append(c.seqs[dst], cell{})
			}
			if !c.seqs[dst][p].ok {
				c.used++
			}
			c.seqs[dst][p] = cl
		}
	}
}

// SeqAdd shifts positions [p0,p1) of seq by delta; cells that collide with
// existing ones or fall below 0 are dropped, as they would be lost in a real
// cache.
func (c *Context) SeqAdd(seq int32, p0, p1, delta int32) {
	c.enter()
	defer c.leave()
	if c.m.opts.NoShift {
		panic("enginetest: SeqAdd on a context that cannot shift")
	}
	if p1 < 0 {
		p1 = math.MaxInt32
	}
	old := c.seqs[seq]
	type moved struct {
		pos int
		tok engine.Token
	}
	var mv []moved
	for p := int(max(p0, 0)); p < len(old) && p < int(p1); p++ {
		if old[p].ok {
			mv = append(mv, moved{p + int(delta), old[p].tok})
			old[p] = cell{}
			c.used--
		}
	}
	sort.Slice(mv, func(i, j int) bool { return mv[i].pos < mv[j].pos })
	for _, m := range mv {
		if m.pos < 0 {
			continue
		}
		for len(c.seqs[seq]) <= m.pos {
			c.seqs[seq] = append(c.seqs[seq], cell{})
		}
		if c.seqs[seq][m.pos].ok {
			continue
		}
		c.seqs[seq][m.pos] = cell{tok: m.tok, ok: true}
		c.used++
	}
	c.trim(int(seq))
}

// State is the fake's engine.SeqState: a sequence's cells, 8 bytes each
// (position and token, little endian). Free marks it freed; a freed state
// cannot be loaded, and freeing one twice panics, so a test catches both.
type State struct {
	data  []byte
	freed bool
	m     *Model
}

func (s *State) Len() int { return len(s.data) }

func (s *State) Free() {
	if s.freed {
		panic("enginetest: state freed twice")
	}
	s.freed = true
	s.m.states.Add(-1)
}

// SeqSave copies seq's cells (engine.StateContext).
func (c *Context) SeqSave(seq int32) (engine.SeqState, error) {
	c.enter()
	defer c.leave()
	if c.m.opts.FailSave {
		return nil, errors.New("fake: saves fail")
	}
	if seq < 0 || int(seq) >= len(c.seqs) {
		return nil, fmt.Errorf("fake: seq %d out of range", seq)
	}
	var out []byte
	for p, cl := range c.seqs[seq] {
		if cl.ok {
			out = binary.LittleEndian.AppendUint32(out, uint32(p))
			out = binary.LittleEndian.AppendUint32(out, uint32(cl.tok))
		}
	}
	c.m.states.Add(1)
	return &State{data: out, m: c.m}, nil
}

// SeqLoad replaces seq's cells with those of a state SeqSave made; on
// error seq is left empty.
func (c *Context) SeqLoad(seq int32, st engine.SeqState) error {
	c.enter()
	defer c.leave()
	if seq < 0 || int(seq) >= len(c.seqs) {
		return fmt.Errorf("fake: seq %d out of range", seq)
	}
	for _, cl := range c.seqs[seq] {
		if cl.ok {
			c.used--
		}
	}
	c.seqs[seq] = nil
	if c.m.opts.FailLoad {
		return errors.New("fake: loads fail")
	}
	s, ok := st.(*State)
	if !ok || s.freed {
		return errors.New("fake: load of a state the fake did not save, or one freed")
	}
	data := s.data
	if len(data)%8 != 0 || c.used+len(data)/8 > c.capacity() {
		return fmt.Errorf("fake: state of %d bytes does not fit", len(data))
	}
	var cells []cell
	for i := 0; i < len(data); i += 8 {
		p := int(binary.LittleEndian.Uint32(data[i:]))
		for len(cells) <= p {
			cells = append(cells, cell{})
		}
		cells[p] = cell{tok: engine.Token(binary.LittleEndian.Uint32(data[i+4:])), ok: true}
	}
	c.seqs[seq] = cells
	c.used += len(data) / 8
	return nil
}

// CanShift reports !NoShift.
func (c *Context) CanShift() bool { return !c.m.opts.NoShift }

// Clear empties the KV.
func (c *Context) Clear() {
	c.enter()
	defer c.leave()
	for s := range c.seqs {
		c.seqs[s] = nil
	}
	c.used = 0
}

// SeqTokens returns the tokens of seq by position, -1 for holes. Call it
// only while no scheduler uses the context.
func (c *Context) SeqTokens(seq int32) []engine.Token {
	c.enter()
	defer c.leave()
	var out []engine.Token
	for _, cl := range c.seqs[seq] {
		if cl.ok {
			out = append(out, cl.tok)
		} else {
			out = append(out, -1)
		}
	}
	return out
}

// NCtx returns the KV size.
func (c *Context) NCtx() int { return c.p.NCtx }

// NBatch returns the batch size.
func (c *Context) NBatch() int { return c.p.NBatch }

// NSeqMax returns the number of sequences.
func (c *Context) NSeqMax() int { return c.p.NSeqMax }

// Close closes the context.
func (c *Context) Close() error {
	c.enter()
	defer c.leave()
	if c.closed {
		return errors.New("fake: context closed twice")
	}
	c.closed = true
	c.m.contexts.Add(-1)
	return nil
}

type sampler struct {
	m      *Model
	p      engine.SamplingParams
	rng    *rand.Rand
	hist   []engine.Token
	closed bool
}

func (s *sampler) Sample(c engine.Context, i int) engine.Token {
	raw := c.Logits(i)
	l := append([]float32(nil), raw...)
	if rp := s.p.RepeatPenalty; rp != 0 && rp != 1 {
		n := s.p.RepeatLastN
		if n <= 0 || n > len(s.hist) {
			n = len(s.hist)
		}
		for _, t := range s.hist[len(s.hist)-n:] {
			if t >= 0 && int(t) < len(l) {
				if l[t] > 0 {
					l[t] /= rp
				} else {
					l[t] *= rp
				}
			}
		}
	}
	var t engine.Token
	if s.p.Temperature <= 0 {
		best := 0
		for j := range l {
			if l[j] > l[best] {
				best = j
			}
		}
		t = engine.Token(best)
	} else {
		maxv := l[0]
		for _, v := range l {
			maxv = max(maxv, v)
		}
		w := make([]float64, len(l))
		var sum float64
		for j, v := range l {
			w[j] = math.Exp(float64(v-maxv) / float64(s.p.Temperature))
			sum += w[j]
		}
		r := s.rng.Float64() * sum
		t = engine.Token(len(w) - 1)
		for j := range w {
			r -= w[j]
			if r <= 0 {
				t = engine.Token(j)
				break
			}
		}
	}
	s.Accept(t)
	return t
}

func (s *sampler) Accept(t engine.Token) { s.hist = append(s.hist, t) }
func (s *sampler) Reset()                { s.hist = s.hist[:0] }
func (s *sampler) Close() {
	if s.closed {
		panic("enginetest: sampler closed twice")
	}
	s.closed = true
	s.m.samplers.Add(-1)
}
