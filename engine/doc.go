// Package engine is the in-process inference engine: per-model schedulers
// that own llama contexts, slots with prefix caches, FIM prompt layout, stop
// rules and confidence from raw logits. It imports nothing of this
// repository and nothing networked; the cgo binding lives in engine/llama
// behind the Backend seam defined in backend.go.
//
// # Ownership
//
// Exactly one goroutine per loaded model, the Scheduler's run loop, touches
// that model's Context, its slots, the samplers of admitted requests and the
// KV mirror (each slot's cached tokens). No mutex guards them and none is
// held across a Decode. Other goroutines reach the scheduler only by message:
// Stream and Complete lay out and tokenize the prompt in the caller's
// goroutine (Model methods other than Close are safe for concurrent use;
// the scheduler's TokenCache, which remembers the tokens of unchanged prompt
// parts, has its own lock, never held while tokenizing) and send the request
// over a bounded channel; a full queue is ErrOverloaded.
// Output flows back through a Stream that the scheduler never blocks on.
//
// # One scheduler iteration
//
// Drain submissions; end requests whose context is done (checked every
// iteration, during prefill too, so a cancelled request frees its slot within
// one batch step); give waiting requests idle slots, earliest deadline first,
// choosing the slot whose cache shares the longest prefix with the prompt
// (else the least recently used one); plan each from the measured prefill
// speed, trimming its prompt to its time budget or refusing it when it would
// end after its deadline (budget.go); trim the slot's KV and shift reusable
// chunks into place; build a batch with one token for every generating
// request first, then prompt chunks earliest deadline first (round-robin with
// Config.RoundRobinPrefill); decode; mirror the KV only after Decode
// succeeded; sample, apply stop rules with UTF-8 and stop-string holdback,
// and publish the safe text. ErrKVFull evicts idle caches and halves the
// batch; an error that remains ends only the requests of that batch.
package engine
