// Package remote is the worker tier: API nodes without models send each
// engine request as a River job to worker processes that run the models
// (`code4me serve --engine=remote`, `code4me worker`).
//
// The path of one request:
//
//  1. The API node (Client) picks a queue. A request with a supersede key
//     (a session's keystrokes in one file) goes to the queue of the worker
//     that served the key's previous request, while that worker is alive,
//     not draining and has a free slot, so its KV cache is reused as in one
//     process; otherwise to the model's queue, which every worker serving
//     the model takes from. With no live worker for the model it fails at
//     once (ErrNoWorker).
//  2. It inserts the job (River; one attempt: the API node retries, not
//     River). River's insert notification (Postgres NOTIFY) wakes the
//     workers listening on that queue, whose fetch cooldown is 1 ms, so an
//     interactive job never waits for a poll.
//  3. The worker (Worker) runs it on its engine and publishes its start,
//     its text as it is generated (for streaming requests) and its result
//     to the API node's Redis channel. Redis pub/sub rather than Postgres
//     NOTIFY: a token is a few bytes published a few hundred times a
//     second per request, which Redis absorbs without touching the
//     database's WAL or its notification queue.
//  4. Cancellation (a superseded or abandoned request) is River's JobCancel:
//     the worker's job context ends, the engine stops the request within
//     one batch step, mid-prefill too, and the job ends cancelled. A job
//     whose deadline passed before a worker took it is not started.
//  5. A worker that dies (no heartbeat for AliveFor) with the request
//     queued on it or running is replaced: the API node sends the request
//     once more, to the model's queue, and listens only to that attempt,
//     so the client gets exactly one answer. The worker running it is the
//     one whose start reply came or, when none came for AliveFor, the one
//     River's job row names. The dead worker's job stays 'running' with
//     River's cancel mark until River's rescuer ends it cancelled, an hour
//     later; it never runs again.
//  6. An embedding request (Client.Embed: retrieval's chunks and queries)
//     takes the same path as a completion without a supersede key, in the
//     model's embedding queue (EmbedQueue) rather than its completion
//     queue: a worker embeds on a context of its own, not a completion
//     slot, so an embedding never waits in River behind the completions
//     that fill the slots. Its result carries the vectors.
//  7. A worker stopped with SIGTERM drains (its running requests finish)
//     and stays in the registry as a dead one, so a request for a model no
//     other worker serves answers 503, as after a crash; so does a request
//     still waiting in the model's queue when the last such worker goes.
package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
)

// Timing of the registry: workers beat every HeartbeatEvery and count as
// alive while their last beat is younger than AliveFor.
const (
	HeartbeatEvery = time.Second
	AliveFor       = 3 * time.Second
)

// ErrNoWorker means no live worker serves the model.
var ErrNoWorker = errors.New("remote: no live worker serves the model")

// JobKind is the River kind of an engine request.
const JobKind = "engine_request"

// JobArgs is an engine request as a River job.
type JobArgs struct {
	// RequestID names this attempt; replies carry it.
	RequestID uuid.UUID `json:"request_id"`
	// ReplyTo is the Redis channel of the API node waiting for it.
	ReplyTo string         `json:"reply_to"`
	Model   string         `json:"model"`
	Request engine.Request `json:"request"`
	// Stream asks for the text as it is generated; otherwise only the
	// start and the result are published.
	Stream bool `json:"stream,omitempty"`
	// Deadline, when set, is when the API node stops waiting: a job taken
	// later is not started, and a running one is stopped then.
	Deadline time.Time `json:"deadline,omitzero"`
	// Embed, when set, asks for the embedding of each text by Model (the
	// engine's Embed) instead of running Request.
	Embed []string `json:"embed,omitempty"`
}

// Kind implements river.JobArgs.
func (JobArgs) Kind() string { return JobKind }

// Reply types.
const (
	replyStart = "start" // a worker took the job
	replyText  = "text"  // generated text (streaming requests)
	replyEnd   = "end"   // the result
	replyError = "error" // the engine refused the request
)

// wireErrors are the errors a reply carries by their text and that the
// API node gets back as the same values, so errors.Is works across the
// tier as it does with an in-process engine.
var wireErrors = []error{engine.ErrOverloaded, engine.ErrSuperseded, engine.ErrClosed, engine.ErrUnknownModel,
	engine.ErrNoFIM, engine.ErrPromptBudget, engine.ErrPromptTooLong, engine.ErrEmptyPrompt, engine.ErrDeadline,
	context.DeadlineExceeded, context.Canceled}

// errText is err as a reply carries it ("" for nil): the text of the
// first wireErrors value it wraps, else its own.
func errText(err error) string {
	if err == nil {
		return ""
	}
	for _, e := range wireErrors {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return err.Error()
}

// textErr is errText's inverse.
func textErr(s string) error {
	if s == "" {
		return nil
	}
	for _, e := range wireErrors {
		if e.Error() == s {
			return e
		}
	}
	return errors.New(s)
}

// reply is one message from a worker to an API node.
type reply struct {
	RequestID uuid.UUID   `json:"id"`
	Type      string      `json:"t"`
	Worker    uuid.UUID   `json:"w,omitzero"`
	Text      string      `json:"x,omitempty"`
	Result    *wireResult `json:"r,omitempty"`
	Err       string      `json:"e,omitempty"`
	// Vectors is an embedding request's result: each text's vector as its
	// little-endian float32s (JSON carries them as base64).
	Vectors [][]byte `json:"v,omitempty"`
}

// vectorBytes is v as reply.Vectors carries it.
func vectorBytes(vecs [][]float32) [][]byte {
	out := make([][]byte, len(vecs))
	for i, v := range vecs {
		b := make([]byte, 4*len(v))
		for j, x := range v {
			binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(x))
		}
		out[i] = b
	}
	return out
}

// bytesVectors is vectorBytes' inverse; n is the number of texts asked for.
func bytesVectors(bs [][]byte, n int) ([][]float32, error) {
	if len(bs) != n {
		return nil, fmt.Errorf("remote: %d vectors for %d texts", len(bs), n)
	}
	out := make([][]float32, n)
	for i, b := range bs {
		if len(b)%4 != 0 || len(b) == 0 {
			return nil, fmt.Errorf("remote: a vector of %d bytes", len(b))
		}
		v := make([]float32, len(b)/4)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		out[i] = v
	}
	return out, nil
}

// wireResult is engine.Result as JSON: the error becomes its kind.
type wireResult struct {
	Text         string            `json:"text"`
	Stop         engine.StopReason `json:"stop"`
	StoppingWord string            `json:"stopping_word,omitempty"`
	Err          string            `json:"err,omitempty"`
	Tokens       []engine.Token    `json:"tokens,omitempty"`
	Logprobs     []float32         `json:"logprobs,omitempty"`
	Confidence   float64           `json:"confidence"`
	Truncated    bool              `json:"truncated,omitempty"`
	Trimmed      engine.Trimmed    `json:"trimmed,omitzero"`
	Slot         int               `json:"slot"`
	Timings      engine.Timings    `json:"timings"`
}

func toWire(r *engine.Result) *wireResult {
	return &wireResult{Text: r.Text, Stop: r.Stop, StoppingWord: r.StoppingWord, Err: errText(r.Err), Tokens: r.Tokens,
		Logprobs: r.Logprobs, Confidence: r.Confidence, Truncated: r.Truncated, Trimmed: r.Trimmed, Slot: r.Slot, Timings: r.Timings}
}

func (w *wireResult) result() *engine.Result {
	return &engine.Result{Text: w.Text, Stop: w.Stop, StoppingWord: w.StoppingWord, Err: textErr(w.Err), Tokens: w.Tokens,
		Logprobs: w.Logprobs, Confidence: w.Confidence, Truncated: w.Truncated, Trimmed: w.Trimmed, Slot: w.Slot, Timings: w.Timings}
}

// queueName makes a River queue name (letters, digits, '_' and '-').
var queueUnsafe = regexp.MustCompile(`[^a-z0-9_-]+`)

// ModelQueue is the queue every worker serving model takes from.
func ModelQueue(model string) string {
	q := "engine_m_" + queueUnsafe.ReplaceAllString(strings.ToLower(model), "_")
	if len(q) > 120 {
		q = q[:120]
	}
	return q
}

// EmbedQueue is the queue of model's embedding requests, which every
// worker serving the model takes from.
func EmbedQueue(model string) string {
	q := "engine_e_" + queueUnsafe.ReplaceAllString(strings.ToLower(model), "_")
	if len(q) > 120 {
		q = q[:120]
	}
	return q
}

// WorkerQueue is the queue only worker id takes from.
func WorkerQueue(id uuid.UUID) string {
	return "engine_w_" + strings.ReplaceAll(id.String(), "-", "")
}

// replyChannel is the Redis channel of an API node.
func replyChannel(node uuid.UUID) string { return "code4me:engine-reply:" + node.String() }
