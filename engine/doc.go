// Package engine is the in-process inference engine: per-model schedulers
// that own llama contexts, slots with prefix caches, FIM prompt layout, stop
// rules and sampling parameters. It imports nothing of this repository and
// nothing networked; the cgo binding lives in engine/llama behind the Backend
// seam defined in backend.go.
package engine
