// Package bpe trains and applies byte-level BPE vocabularies of the kind
// llama.cpp calls "gpt2": every byte is a token (written through the GPT-2
// byte-to-unicode map), merges are learned on text split by the Qwen2
// pre-tokenizer (llama.cpp's tokenizer.ggml.pre = "qwen2"), and special
// tokens such as <|fim_prefix|> are appended as CONTROL tokens.
//
// Training is deterministic: the same corpus and size give the same merges.
// The encoder here follows llama.cpp's algorithm (pre-tokenize, then merge
// the lowest-ranked pair first) and exists for tests and offline tooling;
// the server tokenizes through llama.cpp.
//
// The package is pure Go: no cgo, nothing networked.
package bpe
