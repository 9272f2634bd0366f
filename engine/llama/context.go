package llama

/*
#include "binding.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/code4me/code4me/engine"
)

// Context is a llama.cpp inference context (engine.Context) with NSeqMax
// sequences sharing NCtx KV cells. Exactly one goroutine may use it, and the
// samplers that sample from it, at a time; nothing in it is locked.
type Context struct {
	model *Model
	ctx   *C.struct_llama_context
	mem   C.llama_memory_t
	batch C.struct_llama_batch

	nCtx, nBatch, nSeqMax int
	nVocab                int
	unified               bool
	embeddings            bool
	// outputs[i] is set when row i of the last successful Decode asked for
	// logits; Logits and Sample refuse other rows instead of letting
	// llama.cpp dereference a null pointer.
	outputs []bool
	// pool is the context's own CPU worker threads (nil with one thread).
	pool *C.struct_ggml_threadpool
}

var (
	_ engine.Context      = (*Context)(nil)
	_ engine.StateContext = (*Context)(nil)
)

// NewContext creates a context. Zero fields take these defaults: NCtx = the
// training context, NBatch = min(NCtx, 2048), NSeqMax = 1, NThreads = the
// number of CPUs, NUbatch = min(NBatch, 512). An Embeddings context computes
// each batch in one step (NUbatch = NBatch), so a sequence must be decoded in
// a single batch for its pooled embedding to cover all of it.
func (m *Model) NewContext(p engine.ContextParams) (engine.Context, error) {
	c, err := m.NewLlamaContext(p)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// NewLlamaContext is NewContext returning the concrete type.
func (m *Model) NewLlamaContext(p engine.ContextParams) (*Context, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.model == nil {
		return nil, ErrClosed
	}
	if p.NCtx < 0 || p.NBatch < 0 || p.NSeqMax < 0 || p.NThreads < 0 || p.NUbatch < 0 {
		return nil, fmt.Errorf("new context: negative size in %+v", p)
	}
	if p.NCtx == 0 {
		p.NCtx = m.info.NCtxTrain
	}
	if p.NBatch == 0 {
		p.NBatch = min(p.NCtx, 2048)
	}
	if p.NSeqMax == 0 {
		p.NSeqMax = 1
	}
	if maxSeq := int(C.llama_max_parallel_sequences()); p.NSeqMax > maxSeq {
		return nil, fmt.Errorf("new context: NSeqMax %d exceeds llama.cpp's limit %d", p.NSeqMax, maxSeq)
	}
	if p.NThreads == 0 {
		p.NThreads = runtime.NumCPU()
	}
	if p.NUbatch == 0 || p.NUbatch > p.NBatch {
		p.NUbatch = min(p.NBatch, 512)
	}
	pooling := C.LLAMA_POOLING_TYPE_UNSPECIFIED
	if p.Embeddings {
		p.NUbatch = p.NBatch
		switch p.Pooling {
		case engine.PoolingMean:
			pooling = C.LLAMA_POOLING_TYPE_MEAN
		case engine.PoolingCLS:
			pooling = C.LLAMA_POOLING_TYPE_CLS
		case engine.PoolingLast:
			pooling = C.LLAMA_POOLING_TYPE_LAST
		case engine.PoolingDefault:
			// The model's own pooling, or mean for decoder models that
			// declare none (the GGUF key is absent: "" here).
			if m.meta(m.info.Arch+".pooling_type") == "" {
				pooling = C.LLAMA_POOLING_TYPE_MEAN
			}
		default:
			return nil, fmt.Errorf("new context: unknown pooling %d", p.Pooling)
		}
	}
	for _, v := range []int{p.NCtx, p.NBatch, p.NUbatch, p.NSeqMax, p.NThreads} {
		if v > 1<<30 {
			return nil, fmt.Errorf("new context: size %d too large", v)
		}
	}

	cctx := C.c4m_context_new(m.model, C.uint32_t(p.NCtx), C.uint32_t(p.NBatch), C.uint32_t(p.NUbatch),
		C.uint32_t(p.NSeqMax), C.int32_t(p.NThreads), C.bool(p.Embeddings), C.int(pooling), C.bool(p.FlashAttn),
		C.bool(p.UnifiedKV))
	if cctx == nil {
		return nil, fmt.Errorf("new context: llama.cpp could not create it%s", lastErrorSuffix())
	}
	c := &Context{
		model:      m,
		unified:    p.UnifiedKV,
		ctx:        cctx,
		mem:        C.llama_get_memory(cctx),
		nCtx:       int(C.llama_n_ctx(cctx)),
		nBatch:     int(C.llama_n_batch(cctx)),
		nSeqMax:    int(C.llama_n_seq_max(cctx)),
		nVocab:     m.nVocab,
		embeddings: p.Embeddings,
	}
	if p.NThreads > 1 {
		if c.pool = C.c4m_threadpool_attach(cctx, C.int32_t(p.NThreads)); c.pool == nil {
			C.llama_free(cctx)
			return nil, fmt.Errorf("new context: start %d worker threads%s", p.NThreads-1, lastErrorSuffix())
		}
	}
	if !C.c4m_batch_new(&c.batch, C.int32_t(c.nBatch)) {
		C.llama_batch_free(c.batch)
		c.free()
		return nil, errors.New("new context: allocate batch")
	}
	c.outputs = make([]bool, 0, c.nBatch)
	m.contexts.Add(1)
	return c, nil
}

// Decode evaluates b. It validates b first (equal lengths, at most NBatch
// rows, token ids in the vocabulary, sequence ids below NSeqMax), so that a
// bad batch is an error rather than a llama.cpp abort. It returns
// engine.ErrKVFull when llama.cpp finds no KV slot; on any error the KV holds
// nothing of b (llama.cpp removes the rows of partially computed batches).
func (c *Context) Decode(b *engine.Batch) error {
	if c.ctx == nil {
		return ErrClosed
	}
	c.outputs = c.outputs[:0]
	n := len(b.Tokens)
	if n == 0 {
		return errors.New("decode: empty batch")
	}
	if len(b.Pos) != n || len(b.Seq) != n || len(b.Logits) != n {
		return fmt.Errorf("decode: batch slices differ in length (%d tokens, %d pos, %d seq, %d logits)",
			n, len(b.Pos), len(b.Seq), len(b.Logits))
	}
	if n > c.nBatch {
		return fmt.Errorf("decode: batch of %d tokens exceeds NBatch %d", n, c.nBatch)
	}
	for i := range n {
		if t := b.Tokens[i]; t < 0 || int(t) >= c.nVocab {
			return fmt.Errorf("decode: row %d: token %d out of range [0,%d)", i, t, c.nVocab)
		}
		if s := b.Seq[i]; s < 0 || int(s) >= c.nSeqMax {
			return fmt.Errorf("decode: row %d: sequence %d out of range [0,%d)", i, s, c.nSeqMax)
		}
		if b.Pos[i] < 0 {
			return fmt.Errorf("decode: row %d: negative position %d", i, b.Pos[i])
		}
	}
	rc := C.c4m_decode(c.ctx, &c.batch,
		(*C.int32_t)(unsafe.Pointer(&b.Tokens[0])),
		(*C.int32_t)(unsafe.Pointer(&b.Pos[0])),
		(*C.int32_t)(unsafe.Pointer(&b.Seq[0])),
		(*C.bool)(unsafe.Pointer(&b.Logits[0])),
		C.int32_t(n))
	switch {
	case rc == 0:
		c.outputs = append(c.outputs, b.Logits...)
		return nil
	case rc == 1:
		return engine.ErrKVFull
	case rc == 2:
		return errors.New("decode: aborted")
	default:
		return fmt.Errorf("decode: llama_decode returned %d%s", int(rc), lastErrorSuffix())
	}
}

// Logits returns the logits of batch row i of the last Decode as a slice of
// NVocab floats aliasing llama.cpp's buffer (no copy): valid until the next
// Decode or Close. It returns nil when row i did not ask for logits.
func (c *Context) Logits(i int) []float32 {
	if c.ctx == nil || i < 0 || i >= len(c.outputs) || !c.outputs[i] {
		return nil
	}
	p := C.llama_get_logits_ith(c.ctx, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.nVocab)
}

// Embeddings returns a copy of the pooled embedding of seq after a Decode in
// a context created with Embeddings set.
func (c *Context) Embeddings(seq int32) ([]float32, error) {
	if c.ctx == nil {
		return nil, ErrClosed
	}
	if !c.embeddings {
		return nil, errors.New("embeddings: context was created without Embeddings")
	}
	if seq < 0 || int(seq) >= c.nSeqMax {
		return nil, fmt.Errorf("embeddings: sequence %d out of range [0,%d)", seq, c.nSeqMax)
	}
	p := C.llama_get_embeddings_seq(c.ctx, C.llama_seq_id(seq))
	if p == nil {
		return nil, fmt.Errorf("embeddings: none for sequence %d (not in the last batch?)", seq)
	}
	n := c.model.info.NEmbd
	return append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(p)), n)...), nil
}

// SeqRm removes positions [p0,p1) of seq (p1 < 0: to the end); false when
// the memory cannot remove a partial range.
func (c *Context) SeqRm(seq int32, p0, p1 int32) bool {
	if c.ctx == nil || !c.validSeq(seq) {
		return false
	}
	return bool(C.llama_memory_seq_rm(c.mem, C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1)))
}

// SeqCp copies positions [p0,p1) of src into dst. With a KV stream per
// sequence (SeqStreams), only a whole sequence (p0, p1 < 0) can be copied;
// llama.cpp copies the stream's buffer before the next decode.
func (c *Context) SeqCp(src, dst int32, p0, p1 int32) {
	if c.ctx == nil || !c.validSeq(src) || !c.validSeq(dst) {
		return
	}
	if c.SeqStreams() && src != dst && (p0 > 0 || p1 > 0) {
		// llama.cpp copies between streams only whole (it asserts, which
		// would end the process); a partial copy there does nothing.
		return
	}
	C.llama_memory_seq_cp(c.mem, C.llama_seq_id(src), C.llama_seq_id(dst), C.llama_pos(p0), C.llama_pos(p1))
}

// SeqAdd shifts positions [p0,p1) of seq by delta. Check CanShift first:
// llama.cpp aborts on memories that cannot shift, so this does nothing there.
func (c *Context) SeqAdd(seq int32, p0, p1, delta int32) {
	if c.ctx == nil || !c.validSeq(seq) || !c.CanShift() {
		return
	}
	C.llama_memory_seq_add(c.mem, C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1), C.llama_pos(delta))
}

// SeqSave copies seq's KV cells (their positions, keys and values) to host
// memory (llama_state_seq_get_data); SeqLoad puts such a copy back into a
// sequence of a context of the same model and parameters.
func (c *Context) SeqSave(seq int32) (engine.SeqState, error) {
	if c.ctx == nil || !c.validSeq(seq) {
		return nil, fmt.Errorf("llama: save of sequence %d: no such sequence", seq)
	}
	n := C.llama_state_seq_get_size(c.ctx, C.llama_seq_id(seq))
	if n == 0 {
		return nil, fmt.Errorf("llama: save of sequence %d: size 0", seq)
	}
	// Outside the Go heap (engine.SeqState says why), and outside malloc's
	// arenas too, which keep freed blocks of this size for reuse rather
	// than give them back: an anonymous mapping per state, unmapped when
	// it is freed.
	buf, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("llama: save of sequence %d: map %d bytes: %w", seq, n, err)
	}
	if got := C.llama_state_seq_get_data(c.ctx, (*C.uint8_t)(unsafe.Pointer(&buf[0])), n, C.llama_seq_id(seq)); got != n {
		syscall.Munmap(buf)
		return nil, fmt.Errorf("llama: save of sequence %d: wrote %d of %d bytes", seq, got, n)
	}
	return &seqState{buf: buf}, nil
}

// seqState is a sequence's cells in an anonymous mapping.
type seqState struct{ buf []byte }

func (s *seqState) Len() int { return len(s.buf) }

func (s *seqState) Free() {
	if s.buf != nil {
		syscall.Munmap(s.buf)
		s.buf = nil
	}
}

// SeqLoad replaces seq's KV cells with a copy SeqSave made. On failure the
// sequence is left empty.
func (c *Context) SeqLoad(seq int32, st engine.SeqState) error {
	if c.ctx == nil || !c.validSeq(seq) {
		return fmt.Errorf("llama: load into sequence %d: no such sequence", seq)
	}
	C.llama_memory_seq_rm(c.mem, C.llama_seq_id(seq), -1, -1)
	s, ok := st.(*seqState)
	if !ok || s.buf == nil {
		return errors.New("llama: load of a state this backend did not save, or one freed")
	}
	if C.llama_state_seq_set_data(c.ctx, (*C.uint8_t)(unsafe.Pointer(&s.buf[0])), C.size_t(len(s.buf)), C.llama_seq_id(seq)) == 0 {
		C.llama_memory_seq_rm(c.mem, C.llama_seq_id(seq), -1, -1)
		return fmt.Errorf("llama: load into sequence %d failed (%d bytes)", seq, len(s.buf))
	}
	return nil
}

// SeqPosMax is the largest position seq holds in the KV, -1 when empty.
func (c *Context) SeqPosMax(seq int32) int32 {
	if c.ctx == nil || !c.validSeq(seq) {
		return -1
	}
	return int32(C.llama_memory_seq_pos_max(c.mem, C.llama_seq_id(seq)))
}

// CanShift reports whether the model's memory supports SeqAdd.
func (c *Context) CanShift() bool {
	if c.ctx == nil {
		return false
	}
	return bool(C.llama_memory_can_shift(c.mem))
}

// Clear empties the KV cache of every sequence.
func (c *Context) Clear() {
	if c.ctx == nil {
		return
	}
	C.llama_memory_clear(c.mem, true)
	c.outputs = c.outputs[:0]
}

func (c *Context) validSeq(s int32) bool { return s >= 0 && int(s) < c.nSeqMax }

// NCtx is the number of KV cells of all sequences together.
func (c *Context) NCtx() int { return c.nCtx }

// NBatch is the most tokens one Decode takes.
func (c *Context) NBatch() int { return c.nBatch }

// NSeqMax is the number of sequences.
func (c *Context) NSeqMax() int { return c.nSeqMax }

// free frees the llama.cpp context, then its worker threads.
func (c *Context) free() {
	C.llama_free(c.ctx)
	if c.pool != nil {
		C.ggml_threadpool_free(c.pool)
		c.pool = nil
	}
}

// Idle puts the context's worker threads to sleep until the next Decode
// (engine.IdleContext). Between decodes they poll for the next graph,
// which keeps a request's steps fast but would burn a core each for a
// while after the last one.
func (c *Context) Idle() {
	if c.pool != nil {
		C.ggml_threadpool_pause(c.pool)
	}
}

// SeqStreams reports whether each sequence has its own KV stream (the
// context was not created with UnifiedKV and holds several sequences).
func (c *Context) SeqStreams() bool { return !c.unified && c.nSeqMax > 1 }

// Close frees the context and its batch; later calls do nothing.
func (c *Context) Close() error {
	if c.ctx == nil {
		return nil
	}
	C.llama_batch_free(c.batch)
	c.free()
	c.ctx, c.mem = nil, nil
	c.outputs = nil
	c.model.contexts.Add(-1)
	return nil
}
