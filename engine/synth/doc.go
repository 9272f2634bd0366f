// Package synth writes synthetic GGUF code models: the exact shapes of real
// models (Qwen2.5-Coder 0.5B and 1.5B, plus tiny test shapes) with seeded
// random weights and a byte-level BPE vocabulary trained on local Go source,
// carrying the real FIM and chat special tokens. llama.cpp loads and runs
// them; their speed is the speed of the real model, their text is noise.
//
// Every file is marked general.synthetic = true so the rest of the system
// can label it. Files are deterministic for a given shape, type, seed,
// generator version and training corpus, and Ensure caches them by name.
//
// The package is pure Go: no cgo, nothing networked.
package synth
