package llama

import (
	"errors"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/code4me/code4me/engine"
)

const prompt = "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Println(i)\n\t}\n}\n"

func tokens(t *testing.T, m *Model, text string) []engine.Token {
	t.Helper()
	toks, err := m.Tokenize(text, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// decodePrompt decodes toks into seq starting at pos0 in batches of at most
// c.NBatch(), asking for logits on the last token, and returns a copy of them.
func decodePrompt(t *testing.T, c *Context, seq int32, pos0 int32, toks []engine.Token) []float32 {
	t.Helper()
	var b engine.Batch
	for start := 0; start < len(toks); start += c.NBatch() {
		b.Reset()
		end := min(start+c.NBatch(), len(toks))
		for i := start; i < end; i++ {
			b.Add(toks[i], pos0+int32(i), seq, i == len(toks)-1)
		}
		if err := c.Decode(&b); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return append([]float32(nil), c.Logits(b.Len()-1)...)
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestDecodeLogitsFinite(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 64, NSeqMax: 2})
	if c.NCtx() < 512 || c.NBatch() != 64 || c.NSeqMax() != 2 {
		t.Errorf("sizes: NCtx %d NBatch %d NSeqMax %d", c.NCtx(), c.NBatch(), c.NSeqMax())
	}
	toks := tokens(t, m, prompt)
	logits := decodePrompt(t, c, 0, 0, toks) // more than one batch
	if len(logits) != m.Info().NVocab {
		t.Fatalf("len(logits) = %d, want %d", len(logits), m.Info().NVocab)
	}
	var spread float64
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %d = %v", i, v)
		}
		spread = max(spread, math.Abs(float64(v-logits[0])))
	}
	if spread == 0 {
		t.Error("all logits equal")
	}
	if got := c.SeqPosMax(0); got != int32(len(toks)-1) {
		t.Errorf("SeqPosMax(0) = %d, want %d", got, len(toks)-1)
	}
	if got := c.SeqPosMax(1); got != -1 {
		t.Errorf("SeqPosMax(1) = %d, want -1", got)
	}
	if c.Logits(0) != nil {
		t.Error("Logits of a row without logits is not nil")
	}
	if c.Logits(-1) != nil || c.Logits(1000) != nil {
		t.Error("Logits out of range is not nil")
	}
}

func TestDecodeRejectsBadBatch(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 256, NBatch: 8, NSeqMax: 2})
	n := engine.Token(m.Info().NVocab)
	cases := map[string]engine.Batch{
		"empty":     {},
		"ragged":    {Tokens: []engine.Token{1, 2}, Pos: []int32{0}, Seq: []int32{0, 0}, Logits: []bool{false, true}},
		"too long":  {Tokens: make([]engine.Token, 9), Pos: make([]int32, 9), Seq: make([]int32, 9), Logits: make([]bool, 9)},
		"token":     {Tokens: []engine.Token{n}, Pos: []int32{0}, Seq: []int32{0}, Logits: []bool{true}},
		"neg token": {Tokens: []engine.Token{-1}, Pos: []int32{0}, Seq: []int32{0}, Logits: []bool{true}},
		"seq":       {Tokens: []engine.Token{1}, Pos: []int32{0}, Seq: []int32{2}, Logits: []bool{true}},
		"pos":       {Tokens: []engine.Token{1}, Pos: []int32{-3}, Seq: []int32{0}, Logits: []bool{true}},
	}
	for name, b := range cases {
		if err := c.Decode(&b); err == nil {
			t.Errorf("%s: Decode accepted a bad batch", name)
		}
	}
	// The context still works after the rejections.
	decodePrompt(t, c, 0, 0, tokens(t, m, "ok"))
}

func TestDecodeKVFull(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 256, NBatch: 256, NSeqMax: 1})
	toks := tokens(t, m, prompt+prompt+prompt+prompt)
	for len(toks) < 2*c.NCtx() {
		toks = append(toks, toks...)
	}
	var b engine.Batch
	var err error
	pos := int32(0)
	for i := 0; i < 4 && err == nil; i++ {
		b.Reset()
		for j := range c.NBatch() {
			b.Add(toks[int(pos)+j], pos+int32(j), 0, j == c.NBatch()-1)
		}
		err = c.Decode(&b)
		pos += int32(c.NBatch())
	}
	if !errors.Is(err, engine.ErrKVFull) {
		t.Fatalf("decoding past NCtx: err = %v, want ErrKVFull", err)
	}
	if got := c.SeqPosMax(0); got != int32(c.NCtx()-1) {
		t.Errorf("after KV full, SeqPosMax = %d, want %d (nothing of the failed batch kept)", got, c.NCtx()-1)
	}
	c.Clear()
	if got := c.SeqPosMax(0); got != -1 {
		t.Errorf("after Clear, SeqPosMax = %d", got)
	}
	decodePrompt(t, c, 0, 0, toks[:10])
}

func TestKVSharedBySequences(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 512, NSeqMax: 4, UnifiedKV: true})
	toks := tokens(t, m, prompt)
	for len(toks) < 400 {
		toks = append(toks, toks...)
	}
	// One sequence may take most of the cells when the others are empty.
	decodePrompt(t, c, 3, 0, toks[:400])
	if got := c.SeqPosMax(3); got != 399 {
		t.Errorf("SeqPosMax(3) = %d, want 399", got)
	}
}

// TestKVSplitPerSequence checks the default layout: each sequence owns
// NCtx/NSeqMax cells, so one sequence cannot take the others' share.
func TestKVSplitPerSequence(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 512, NSeqMax: 4})
	toks := tokens(t, m, prompt)
	for len(toks) < 400 {
		toks = append(toks, toks...)
	}
	// llama.cpp pads a sequence's share to a multiple of 256 cells, so the
	// share here is 256: 400 tokens do not fit, where the unified layout
	// (TestKVSharedBySequences) takes them.
	var b engine.Batch
	for i, tok := range toks[:400] {
		b.Add(tok, int32(i), 2, i == 399)
	}
	if err := c.Decode(&b); err == nil {
		t.Fatal("400 tokens fit a sequence whose share is 256 cells")
	}
	decodePrompt(t, c, 2, 0, toks[:100])
	if got := c.SeqPosMax(2); got != 99 {
		t.Errorf("SeqPosMax(2) = %d, want 99", got)
	}
}

func TestBatchedSequencesMatchAlone(t *testing.T) {
	m := loadTiny(t)
	a := tokens(t, m, prompt)
	bt := tokens(t, m, "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)\n")

	alone := newContext(t, m, engine.ContextParams{NCtx: 1024, NBatch: 256, NSeqMax: 2})
	wantA := decodePrompt(t, alone, 0, 0, a)
	wantB := decodePrompt(t, alone, 1, 0, bt)

	both := newContext(t, m, engine.ContextParams{NCtx: 1024, NBatch: 256, NSeqMax: 2})
	var b engine.Batch
	for i, tok := range a {
		b.Add(tok, int32(i), 0, i == len(a)-1)
	}
	rowA := b.Len() - 1
	for i, tok := range bt {
		b.Add(tok, int32(i), 1, i == len(bt)-1)
	}
	rowB := b.Len() - 1
	if err := both.Decode(&b); err != nil {
		t.Fatal(err)
	}
	const tol = 1e-3
	if d := maxAbsDiff(both.Logits(rowA), wantA); d > tol {
		t.Errorf("sequence 0 batched vs alone: max diff %g", d)
	}
	if d := maxAbsDiff(both.Logits(rowB), wantB); d > tol {
		t.Errorf("sequence 1 batched vs alone: max diff %g", d)
	}
}

func TestSeqRmThenRedecodeMatchesFresh(t *testing.T) {
	m := loadTiny(t)
	toks := tokens(t, m, prompt)
	other := tokens(t, m, "// a different ending that replaces the tail\n")
	keep := len(toks) / 2

	fresh := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 512})
	want := decodePrompt(t, fresh, 0, 0, append(append([]engine.Token(nil), toks[:keep]...), other...))

	c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 512})
	decodePrompt(t, c, 0, 0, toks)
	if !c.SeqRm(0, int32(keep), -1) {
		t.Fatal("SeqRm refused a partial removal")
	}
	if got := c.SeqPosMax(0); got != int32(keep-1) {
		t.Fatalf("after SeqRm, SeqPosMax = %d, want %d", got, keep-1)
	}
	got := decodePrompt(t, c, 0, int32(keep), other)
	if d := maxAbsDiff(got, want); d > 1e-3 {
		t.Errorf("re-decode after SeqRm vs fresh: max diff %g", d)
	}
}

// TestSeqSaveLoad: a sequence's cells saved to host memory and loaded into
// another sequence (its own KV stream) go on exactly as the original: the
// next token's logits match, and a sequence refuses a state that is not one.
func TestSeqSaveLoad(t *testing.T) {
	m := loadTiny(t)
	toks := tokens(t, m, prompt)
	next := tokens(t, m, "// and then\n")
	c := newContext(t, m, engine.ContextParams{NCtx: 1024, NBatch: 512, NSeqMax: 2})
	decodePrompt(t, c, 0, 0, toks)
	data, err := c.SeqSave(0)
	if err != nil {
		t.Fatal(err)
	}
	want := decodePrompt(t, c, 0, int32(len(toks)), next)
	if err := c.SeqLoad(1, data); err != nil {
		t.Fatal(err)
	}
	if got := c.SeqPosMax(1); got != int32(len(toks)-1) {
		t.Fatalf("after SeqLoad, SeqPosMax(1) = %d, want %d", got, len(toks)-1)
	}
	got := decodePrompt(t, c, 1, int32(len(toks)), next)
	if d := maxAbsDiff(got, want); d > 1e-3 {
		t.Errorf("loaded sequence vs original: max diff %g", d)
	}
	if data.Len() <= 0 {
		t.Errorf("state of %d bytes", data.Len())
	}
	data.Free()
	data.Free() // idempotent
	if err := c.SeqLoad(1, data); err == nil {
		t.Error("SeqLoad took a freed state")
	}
	if got := c.SeqPosMax(1); got != -1 {
		t.Errorf("after a refused state, SeqPosMax(1) = %d, want -1 (empty)", got)
	}
	if err := c.SeqLoad(1, otherState{}); err == nil {
		t.Error("SeqLoad took a state of another backend")
	}
}

// otherState is a state no llama context saved.
type otherState struct{}

func (otherState) Len() int { return 8 }
func (otherState) Free()    {}

func TestSeqCpSharesPrefix(t *testing.T) {
	m := loadTiny(t)
	toks := tokens(t, m, prompt)
	tail := tokens(t, m, "\n// done\n")
	all := append(append([]engine.Token(nil), toks...), tail...)

	fresh := newContext(t, m, engine.ContextParams{NCtx: 1024, NBatch: 512, NSeqMax: 2})
	want := decodePrompt(t, fresh, 1, 0, all)

	c := newContext(t, m, engine.ContextParams{NCtx: 1024, NBatch: 512, NSeqMax: 2})
	decodePrompt(t, c, 0, 0, toks)
	c.SeqCp(0, 1, 0, -1)
	if got := c.SeqPosMax(1); got != int32(len(toks)-1) {
		t.Fatalf("after SeqCp, SeqPosMax(1) = %d", got)
	}
	got := decodePrompt(t, c, 1, int32(len(toks)), tail)
	if d := maxAbsDiff(got, want); d > 1e-3 {
		t.Errorf("decode after SeqCp vs fresh: max diff %g", d)
	}
}

func TestSeqAddShiftsPositions(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 512})
	if !c.CanShift() {
		t.Skip("memory cannot shift")
	}
	toks := tokens(t, m, prompt)
	decodePrompt(t, c, 0, 0, toks)
	// Drop the first 5 positions and shift the rest down, as a cache-reuse
	// shift does.
	if !c.SeqRm(0, 0, 5) {
		t.Fatal("SeqRm refused")
	}
	c.SeqAdd(0, 5, -1, -5)
	if got := c.SeqPosMax(0); got != int32(len(toks)-1-5) {
		t.Errorf("after shift, SeqPosMax = %d, want %d", got, len(toks)-1-5)
	}
	logits := decodePrompt(t, c, 0, int32(len(toks)-5), tokens(t, m, "x"))
	for _, v := range logits {
		if math.IsNaN(float64(v)) {
			t.Fatal("NaN logits after shift")
		}
	}
}

func TestGreedyDeterministicAcrossContexts(t *testing.T) {
	m := loadTiny(t)
	run := func() []engine.Token {
		c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 128})
		s, err := m.NewLlamaSampler(engine.SamplingParams{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		toks := tokens(t, m, prompt)
		decodePrompt(t, c, 0, 0, toks)
		// decodePrompt's last batch holds the final prompt token at its
		// last row.
		row := (len(toks) - 1) % c.NBatch()
		var out []engine.Token
		pos := int32(len(toks))
		for range 24 {
			tok := s.Sample(c, row)
			if tok == engine.NoToken {
				t.Fatal("Sample returned NoToken")
			}
			// Greedy picks the arg-max of the raw logits.
			l := c.Logits(row)
			best := 0
			for i := range l {
				if l[i] > l[best] {
					best = i
				}
			}
			if int(tok) != best {
				t.Fatalf("greedy sampled %d, arg-max is %d", tok, best)
			}
			out = append(out, tok)
			b := engine.Batch{}
			b.Add(tok, pos, 0, true)
			pos++
			if err := c.Decode(&b); err != nil {
				t.Fatal(err)
			}
			row = 0
		}
		return out
	}
	a, b := run(), run()
	if len(a) != len(b) {
		t.Fatal("different lengths")
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("greedy runs differ at %d: %v vs %v", i, a, b)
		}
	}
}

func TestSeededSamplingReproducible(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 512})
	toks := tokens(t, m, prompt)
	decodePrompt(t, c, 0, 0, toks)
	row := len(toks) - 1
	params := engine.SamplingParams{Temperature: 1.5, TopK: 100, TopP: 0.95, MinP: 0.01, RepeatPenalty: 1.1, RepeatLastN: 32, Seed: 42}
	draw := func(p engine.SamplingParams) []engine.Token {
		s, err := m.NewLlamaSampler(p)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, tok := range toks {
			s.Accept(tok)
		}
		var out []engine.Token
		for range 16 {
			out = append(out, s.Sample(c, row))
		}
		return out
	}
	a, b := draw(params), draw(params)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed differs: %v vs %v", a, b)
		}
	}
	params.Seed = 43
	other := draw(params)
	same := true
	for i := range a {
		same = same && a[i] == other[i]
	}
	if same {
		t.Errorf("seeds 42 and 43 drew the same 16 tokens %v", a)
	}

	s, err := m.NewLlamaSampler(engine.SamplingParams{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sample(c, 0); got != engine.NoToken {
		t.Errorf("Sample on a row without logits = %d, want NoToken", got)
	}
	s.Close()
	s.Close() // idempotent
	if _, err := m.NewLlamaSampler(engine.SamplingParams{TopK: -1}); err == nil {
		t.Error("negative TopK accepted")
	}
}

func TestEmbeddings(t *testing.T) {
	m := loadTiny(t)
	c := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 256, NSeqMax: 2, Embeddings: true})
	a := tokens(t, m, "func add(a, b int) int { return a + b }")
	bt := tokens(t, m, "SELECT * FROM users WHERE id = 1")
	var b engine.Batch
	for i, tok := range a {
		b.Add(tok, int32(i), 0, true)
	}
	for i, tok := range bt {
		b.Add(tok, int32(i), 1, true)
	}
	if err := c.Decode(&b); err != nil {
		t.Fatal(err)
	}
	ea, err := c.Embeddings(0)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := c.Embeddings(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ea) != m.Info().NEmbd || len(eb) != m.Info().NEmbd {
		t.Fatalf("embedding sizes %d, %d; want %d", len(ea), len(eb), m.Info().NEmbd)
	}
	if maxAbsDiff(ea, eb) == 0 {
		t.Error("different texts gave identical embeddings")
	}
	for _, v := range ea {
		if math.IsNaN(float64(v)) {
			t.Fatal("NaN in embedding")
		}
	}
	// The same text alone gives the same embedding.
	c.Clear()
	b.Reset()
	for i, tok := range a {
		b.Add(tok, int32(i), 0, true)
	}
	if err := c.Decode(&b); err != nil {
		t.Fatal(err)
	}
	again, err := c.Embeddings(0)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(again, ea); d > 1e-4 {
		t.Errorf("embedding alone vs batched: max diff %g", d)
	}
	if _, err := c.Embeddings(5); err == nil {
		t.Error("Embeddings of an out-of-range sequence succeeded")
	}

	plain := newContext(t, m, engine.ContextParams{NCtx: 256})
	if _, err := plain.Embeddings(0); err == nil {
		t.Error("Embeddings on a non-embeddings context succeeded")
	}
}

func TestCloseOrderAndIdempotence(t *testing.T) {
	b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.LoadModel(tinyModelPath(t), engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.NewLlamaContext(engine.ContextParams{NCtx: 128})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err == nil {
		t.Fatal("model closed with an open context")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var bt engine.Batch
	bt.Add(1, 0, 0, true)
	if err := c.Decode(&bt); !errors.Is(err, ErrClosed) {
		t.Errorf("Decode after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Tokenize("x", false, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Tokenize after Close: %v", err)
	}
	if _, err := m.NewContext(engine.ContextParams{}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewContext after Close: %v", err)
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestWorkerThreadPool: a context with several threads has its own worker
// pool, computes what a one-thread context computes, sleeps after Idle
// (its workers use no CPU) and wakes for the next Decode.
func TestWorkerThreadPool(t *testing.T) {
	m := loadTiny(t)
	one := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 64, NThreads: 1})
	three := newContext(t, m, engine.ContextParams{NCtx: 512, NBatch: 64, NThreads: 3})
	if one.pool != nil || three.pool == nil {
		t.Fatalf("pools: one thread %v, three threads %v (want none and one)", one.pool, three.pool)
	}
	toks := tokens(t, m, prompt)
	want := decodePrompt(t, one, 0, 0, toks)
	if d := maxAbsDiff(decodePrompt(t, three, 0, 0, toks), want); d > 1e-4 {
		t.Fatalf("three threads' logits differ from one thread's by %g", d)
	}
	three.Idle()
	t0 := cpuTime(t)
	time.Sleep(300 * time.Millisecond)
	if used := cpuTime(t) - t0; used > 60*time.Millisecond {
		t.Fatalf("the idle pool's workers used %v of CPU in 300ms", used)
	}
	three.SeqRm(0, 0, -1)
	if d := maxAbsDiff(decodePrompt(t, three, 0, 0, toks), want); d > 1e-4 {
		t.Fatalf("after Idle, logits differ from one thread's by %g", d)
	}
	if err := three.Close(); err != nil || three.pool != nil {
		t.Fatalf("Close: %v, pool %v", err, three.pool)
	}
}
