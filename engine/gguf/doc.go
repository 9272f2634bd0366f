// Package gguf reads and writes GGUF v3 files, the container format llama.cpp
// loads models from.
//
// The writer streams: key/values and tensor infos are laid out first with
// every tensor's offset computed up front, then each tensor's bytes are
// produced by its Source and written in order, so a multi-gigabyte model is
// never held in memory. Tensors may be stored as F32, F16 or Q8_0; the
// encoders for those types live here too.
//
// The reader parses the header, the key/values and the tensor infos (not the
// tensor data), which is what tests and `code4me model list` need.
//
// The package is pure Go: no cgo, nothing networked.
package gguf
