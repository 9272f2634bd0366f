package engine

import (
	"errors"
)

// Token is a vocabulary id.
type Token int32

// NoToken marks a special token the model does not have.
const NoToken Token = -1

// ErrKVFull is returned by Context.Decode when the KV cache has no room for
// the batch (llama_decode returned 1). The scheduler may retry with a smaller
// batch or evict an idle slot; it never panics.
var ErrKVFull = errors.New("engine: kv cache full")

// ModelInfo describes a loaded model. It is filled once at load time.
type ModelInfo struct {
	Path         string // file the model was loaded from
	SHA256       string // hex sha256 of the GGUF file
	Arch         string // general.architecture, e.g. "qwen2", "llama"
	Name         string // general.name, may be empty
	Description  string // llama_model_desc
	NCtxTrain    int    // training context length
	NParams      uint64 // parameter count
	SizeBytes    uint64 // tensor bytes
	NVocab       int
	NEmbd        int
	ChatTemplate string // tokenizer.chat_template, may be empty
	Synthetic    bool   // true for models written by the synth package (general.synthetic=true)
}

// SpecialTokens holds the ids the FIM layout and stop rules need. A token the
// vocabulary lacks is NoToken.
type SpecialTokens struct {
	BOS, EOS, EOT          Token
	FIMPre, FIMSuf, FIMMid Token
	FIMPad, FIMRep, FIMSep Token
	AddBOS                 bool // the model wants BOS prepended
}

// ContextParams sizes a context.
type ContextParams struct {
	NCtx       int  // total KV cells of all sequences
	NBatch     int  // max tokens per Decode call
	NSeqMax    int  // number of sequences (slots)
	NThreads   int  // 0 = backend default
	Embeddings bool // pooled embeddings instead of logits
	FlashAttn  bool
	// NUbatch is the physical batch size (tokens computed at once inside
	// one Decode); 0 = NBatch. Embeddings contexts always use NBatch.
	NUbatch int
	// Pooling selects how an Embeddings context pools a sequence's token
	// embeddings; PoolingDefault = the model's own, or mean if it has none.
	Pooling Pooling
	// UnifiedKV puts all sequences in one KV buffer, so one sequence may use
	// the cells others leave free. The default (false) gives each sequence
	// its own NCtx/NSeqMax cells, as llama.cpp's server does: attention then
	// runs over a sequence's own cells only, which keeps batched decoding of
	// many sequences as cheap per token as one (with a unified buffer every
	// token attends over every sequence's cells, masked).
	UnifiedKV bool
}

// Pooling is the pooling of an embeddings context.
type Pooling int

const (
	PoolingDefault Pooling = iota // the model's pooling, mean if it has none
	PoolingMean                   // mean of the sequence's token embeddings
	PoolingCLS                    // the first token's embedding
	PoolingLast                   // the last token's embedding
)

// SamplingParams configures a sampler chain. Zero values mean "off"; a
// Temperature <= 0 means greedy.
type SamplingParams struct {
	Temperature   float32
	TopK          int
	TopP          float32
	MinP          float32
	RepeatPenalty float32 // 1 or 0 = off
	RepeatLastN   int
	Seed          uint32
}

// Batch is a set of tokens to decode in one call. All slices have the same
// length. The scheduler builds it; the backend copies it into its own buffers.
type Batch struct {
	Tokens []Token
	Pos    []int32
	Seq    []int32
	Logits []bool
}

// Reset empties the batch, keeping capacity.
func (b *Batch) Reset() {
	b.Tokens, b.Pos, b.Seq, b.Logits = b.Tokens[:0], b.Pos[:0], b.Seq[:0], b.Logits[:0]
}

// Add appends one token.
func (b *Batch) Add(t Token, pos int32, seq int32, logits bool) {
	b.Tokens = append(b.Tokens, t)
	b.Pos = append(b.Pos, pos)
	b.Seq = append(b.Seq, seq)
	b.Logits = append(b.Logits, logits)
}

// Len is the number of tokens in the batch.
func (b *Batch) Len() int { return len(b.Tokens) }

// Backend loads models. Implementations: engine/llama (cgo) and the fake
// backend used by scheduler tests.
type Backend interface {
	// Load opens a model file. progress, when non-nil, is called with values
	// in [0,1] from the loading goroutine.
	Load(path string, opts LoadOptions, progress func(float32)) (Model, error)
}

// LoadOptions control model loading.
type LoadOptions struct {
	NGPULayers int  // layers to offload; -1 = all
	UseMmap    bool // default true in callers
}

// Model is a loaded model. Its methods are safe for concurrent use, except
// Close, which the owner calls once after every Context is closed.
type Model interface {
	Info() ModelInfo
	Special() SpecialTokens
	// Tokenize converts text to tokens. addSpecial adds BOS/EOS as the model
	// wants; parseSpecial turns special-token text (e.g. "<|fim_prefix|>")
	// into its id instead of plain text.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error)
	// Piece returns the bytes of one token. The bytes may be an incomplete
	// UTF-8 sequence; callers hold them back. special renders control tokens.
	Piece(t Token, special bool) []byte
	IsEOG(t Token) bool
	NewContext(p ContextParams) (Context, error)
	NewSampler(p SamplingParams) (Sampler, error)
	Close() error
}

// Context is one inference context with NSeqMax sequences sharing NCtx KV
// cells. Exactly one goroutine may use a Context and the samplers used with
// it; see the scheduler's package doc.
type Context interface {
	// Decode evaluates a batch. It returns ErrKVFull when the KV cache has no
	// room, another error on failure. On error the KV holds nothing of b.
	Decode(b *Batch) error
	// Logits returns the raw (pre-sampling) logits of batch row i, which must
	// have had Logits[i] set in the last Decode. The slice aliases backend
	// memory and is valid until the next Decode.
	Logits(i int) []float32
	// Embeddings returns the pooled embedding of sequence seq after a Decode
	// of a context created with Embeddings=true.
	Embeddings(seq int32) ([]float32, error)
	// SeqRm removes positions [p0,p1) of seq; p1<0 means to the end. It
	// reports false when the memory cannot remove a partial range.
	SeqRm(seq int32, p0, p1 int32) bool
	// SeqCp copies positions [p0,p1) of src into dst.
	SeqCp(src, dst int32, p0, p1 int32)
	// SeqAdd adds delta to the positions [p0,p1) of seq (a shift).
	SeqAdd(seq int32, p0, p1, delta int32)
	// CanShift reports whether SeqAdd is supported by this model's memory.
	CanShift() bool
	// Clear empties the whole KV cache.
	Clear()
	NCtx() int
	NBatch() int
	NSeqMax() int
	Close() error
}

// StreamedContext is implemented by contexts whose KV cache keeps one
// stream per sequence. llama.cpp splits such a context's batch into
// micro-batches, each covering a range of consecutive sequence ids (in
// batch order) with the same number of tokens from each, and every
// micro-batch is a full pass over the weights. The scheduler lays batches
// out so that the tokens of generating sequences fit in one (batchlayout.go).
type StreamedContext interface {
	// SeqStreams reports whether each sequence has its own KV stream.
	SeqStreams() bool
}

// StateContext is implemented by contexts that can copy one sequence's KV
// cells to host memory and back; the prompt cache (promptcache.go) keeps
// prompts there that no slot holds any more.
type StateContext interface {
	// SeqSave returns a copy of seq's KV cells.
	SeqSave(seq int32) (SeqState, error)
	// SeqLoad replaces seq's KV cells with a copy SeqSave made on this
	// context. On error the sequence is empty.
	SeqLoad(seq int32, st SeqState) error
}

// SeqState is a copy of a sequence's KV cells in host memory. The llama
// backend keeps it outside the Go heap: the prompt cache holds up to
// gigabytes of them and replaces them all the time, and on the Go heap
// the garbage collector would let the heap grow to about twice what the
// cache holds before collecting. Free releases the memory; the owner calls
// it exactly once.
type SeqState interface {
	Len() int // bytes
	Free()
}

// IdleContext is implemented by contexts that keep something busy between
// decodes: llama.cpp's CPU worker threads poll for the next graph. The
// scheduler calls Idle when it has nothing left to decode.
type IdleContext interface {
	Idle()
}

// Sampler picks the next token. It is used from the goroutine that owns the
// Context it samples from.
type Sampler interface {
	// Sample chooses a token from batch row i of c's last Decode and accepts it
	// into the sampler's history.
	Sample(c Context, i int) Token
	// Accept records a token (e.g. prompt tokens for repetition penalty).
	Accept(t Token)
	Reset()
	Close()
}
