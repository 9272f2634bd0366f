package engine

import (
	"errors"
	"time"
)

// Errors returned by the engine. Callers map them to user-facing statuses.
var (
	// ErrOverloaded means the model's submit queue is full; the request was
	// not accepted (HTTP 429).
	ErrOverloaded = errors.New("engine: overloaded")
	// ErrSuperseded is the cancellation cause of a request replaced by a
	// newer one with the same SupersedeKey.
	ErrSuperseded = errors.New("engine: superseded by a newer request")
	// ErrClosed means the scheduler (or its model) was closed.
	ErrClosed = errors.New("engine: closed")
	// ErrUnknownModel means no model of that name is loaded.
	ErrUnknownModel = errors.New("engine: unknown model")
	// ErrNoFIM means the model has no fill-in-the-middle layout (HTTP 501).
	ErrNoFIM = errors.New("engine: infill is not supported by this model")
	// ErrPromptBudget is the cause of a request stopped because its prompt
	// took longer than Request.TMaxPrompt.
	ErrPromptBudget = errors.New("engine: prompt time budget exceeded")
	// ErrPromptTooLong means even the trimmed prompt does not fit a slot.
	ErrPromptTooLong = errors.New("engine: prompt does not fit the context")
)

// Chunk is one piece of extra context: another file of the project, or a
// snippet of it.
type Chunk struct {
	Path string // file name shown to the model; may be empty
	Text string
}

// Mode is a line rule applied to the generated text.
type Mode uint8

const (
	// ModeMultiLine generates until another rule stops it.
	ModeMultiLine Mode = iota
	// ModeSingleLine stops at the first newline; the newline is not returned.
	ModeSingleLine
	// ModeBlankLine stops at the first blank line after some content; the
	// blank line and the newline before it are not returned.
	ModeBlankLine
)

// Request is one completion. The zero value of every limit means "off" or
// the documented default. The scheduler never mutates a Request.
type Request struct {
	// Prefix is the text before the cursor, Suffix the text after it.
	Prefix, Suffix string
	// Middle is text placed after the FIM middle token, like llama.cpp's
	// /infill "prompt". When it is empty the engine moves the prefix's last
	// lines there (the cursor line and the lines since the last block start,
	// SplitCursorBlock), so that typing only appends to the prompt and
	// everything before it stays in the KV cache.
	Middle string
	// KeepCursorLine disables that move: the whole prefix goes before the
	// suffix token.
	KeepCursorLine bool
	// FilePath is the current file's path within the repository.
	FilePath string
	// RepoName names the repository for repo-level layouts.
	RepoName string
	// Extra context, most relevant last: when the token budget is short the
	// first chunks are dropped first.
	Extra []Chunk
	// Raw makes Prefix the whole prompt, tokenized with special-token parsing
	// (a client-formatted prompt, llama.cpp /completion). Suffix, Middle and
	// Extra are ignored.
	Raw bool

	Sampling SamplingParams
	// MaxTokens caps generated tokens. 0 only evaluates the prompt (a
	// cache-warming request).
	MaxTokens int
	// Stop strings end generation at their earliest occurrence; the stop
	// string itself is not returned.
	Stop []string
	// TMaxPrompt is the prompt's time budget: the time its own prompt's
	// evaluation may take, not counting the wait behind other prompts
	// (which the deadline bounds). When the scheduler estimates that the
	// prompt would take longer, it drops extra chunks and then prefix
	// lines until it fits (budget.go); a request whose share of its
	// prompt's batches took longer than this is stopped with
	// ErrPromptBudget. 0: the scheduler's Config.TMaxPrompt, which only
	// trims. It does not apply to
	// MaxTokens == 0, so a cache-warming request always completes its
	// prompt.
	TMaxPrompt time.Duration
	// TMaxPredict stops generation once a newline has been generated and this
	// long has passed since generation began (llama.cpp t_max_predict_ms).
	TMaxPredict time.Duration
	// NIndent stops when a line after the first starts with less indentation
	// (spaces and tabs) than this; that line is not returned.
	NIndent int
	Mode    Mode
	// CachePrompt reuses KV cache cells from earlier requests (llama.cpp's
	// cache_prompt, whose default is true: callers should set it). When false
	// the slot's cache is cleared and the whole prompt is evaluated.
	CachePrompt bool
	// SupersedeKey, when non-empty, cancels the in-flight request of the same
	// model with the same key (for example user+document) when this one is
	// submitted.
	SupersedeKey string
}

// StopReason says why generation ended.
type StopReason string

// Stop reasons.
const (
	StopEOS       StopReason = "eos"       // the model produced an end-of-generation token
	StopWord      StopReason = "stop"      // a stop string or a line/indent rule matched
	StopLength    StopReason = "length"    // max tokens, context end or the generation time budget
	StopCancelled StopReason = "cancelled" // the request's context was cancelled or superseded
	StopDeadline  StopReason = "deadline"  // the request's deadline or prompt budget passed, or would (ErrDeadline)
	StopError     StopReason = "error"     // decode or KV failure; Result.Err says which
)

// Timings decompose a request's latency and its use of the KV cache.
type Timings struct {
	TokenizeMS float64 // prompt layout and tokenization, in the caller's goroutine
	QueueMS    float64 // submit until a slot was assigned
	PrefillMS  float64 // slot assigned until the prompt was evaluated
	DecodeMS   float64 // prompt evaluated until the end
	FirstMS    float64 // submit until the first generated token (0 if none)
	TotalMS    float64 // submit until the end

	PromptTokens    int // tokens in the prompt after trimming
	CachedTokens    int // prompt tokens reused from the KV cache (prefix plus shifted)
	ShiftedTokens   int // part of CachedTokens reused by shifting chunks
	RestoredTokens  int // part of CachedTokens copied back from the prompt cache in host memory
	EvaluatedTokens int // prompt tokens evaluated by this request
	GeneratedTokens int // tokens sampled
}

// Result is the outcome of a request.
type Result struct {
	Text string // the completion: valid UTF-8, stop string and cut lines removed
	Stop StopReason
	// StoppingWord is the stop string that ended generation, if one did.
	StoppingWord string
	// Err is the failure for StopError, and the context cause for
	// StopCancelled (e.g. ErrSuperseded) and StopDeadline.
	Err error
	// Tokens are the sampled tokens, Logprobs their log-probabilities under
	// the raw logits (before temperature, top-k, penalties).
	Tokens   []Token
	Logprobs []float32
	// Confidence is the mean probability of the sampled tokens under the raw
	// logits; 0 when no token was generated.
	Confidence float64
	Truncated  bool // the prompt was trimmed to fit the token or time budget
	// Trimmed says what the time budget dropped (budget.go).
	Trimmed Trimmed
	Slot    int // the slot (sequence id) that served the request
	Timings Timings
}
