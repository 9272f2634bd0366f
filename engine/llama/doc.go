// Package llama binds llama.cpp through cgo and implements engine.Backend,
// engine.Model, engine.Context and engine.Sampler. It is the only package of
// the repository with import "C"; no C type appears in its API, so the
// llama.cpp source underneath can be swapped without touching its callers.
//
// # Threading contract
//
// Exactly one goroutine uses a Context at a time, together with the
// Samplers that sample from it: the scheduler goroutine that owns it.
// Nothing in a Context is locked, and no lock is held across Decode. Model
// methods (Tokenize, Piece, Detokenize, IsEOG, NewContext, NewSampler) are
// safe for concurrent use; Model.Close is called once, after every Context
// made from it is closed (it refuses otherwise). Logits returns memory owned
// by llama.cpp that the next Decode overwrites.
//
// # Build
//
// The llama.cpp and ggml sources come from the Go module
// github.com/ollama/ollama (version pinned in go.mod), whose cgo packages
// llama/llama.cpp/src and ml/backend/ggml/ggml/src this package blank-imports
// to link them. Their #cgo include directories are not exported to
// importers, so this package names the headers through third_party/ollama, a
// git-ignored symlink to the module directory that third_party/link-ollama.sh
// creates (run by `go generate ./engine/llama` and by make). Putting the
// include flags in CGO_CPPFLAGS instead would work too, but the go command
// keys the build cache of every cgo package on the CGO_* environment, so it
// would rebuild all of llama.cpp. CPU speed needs compiler flags for the
// machine: build with CGO_CFLAGS and CGO_CXXFLAGS set to "-O3 -march=native"
// locally (or a documented portable level for releases). The build cache is
// keyed on the text of those flags, not on what "native" means on the
// machine, so the Makefile adds a define naming this CPU's target options
// (CODE4ME_CPU_ID): objects compiled on another CPU are never reused.
//
// On a CPU with AMX (Xeon 4th generation and later), -march=native makes
// ggml's CPU backend use its AMX buffer type, which ollama's ggml-cpu package
// references but does not compile; amx.cpp and amx_mmq.cpp compile ggml's
// ggml-cpu/amx sources from the module for it. llama.cpp's loader then puts
// each weight whose matmul the AMX kernels support (Q4_0, Q4_1, Q8_0, Q4_K,
// Q5_K, Q6_K, IQ4_XS; input width a multiple of 2048) in that buffer,
// repacked for the AMX tiles; other weights stay in ordinary CPU buffers.
// Qwen2.5-Coder's widths (896, 1536, 4864, 8960) do not qualify.
//
// GPU support is a ggml backend loaded at run time: Config.BackendDir names a
// directory with libggml-cuda.so built by third_party/ggml-cuda.
//
// # Logging and errors
//
// llama.cpp's and ggml's log output goes to slog (SetLogger) with the
// constant message "llama.cpp". Load validates the GGUF header in Go before
// llama.cpp sees the file, because some malformed files make llama.cpp abort
// the process; such errors wrap ErrInvalidModel.
package llama
