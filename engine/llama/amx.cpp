// ggml's CPU backend, compiled by the Go package
// github.com/ollama/ollama/ml/backend/ggml/ggml/src/ggml-cpu, refers to the
// AMX buffer type ggml_backend_amx_buffer_type whenever the compiler targets
// AMX (-march=native on an AMX-capable Xeon defines __AMX_INT8__ and
// __AVX512VNNI__), but that package does not compile ggml-cpu/amx. This file
// and amx_mmq.cpp compile ggml's own AMX sources from the module (through the
// third_party/ollama symlink; nothing is copied) in that case; without those
// macros the function is neither declared nor referenced and both files are
// empty.
//
// The AMX buffer type is one of the CPU backend's "extra" buffer types, which
// llama.cpp's loader tries first for each weight (llama_model_params
// use_extra_bufts, on by default). ggml_amx_init asks the kernel for the AMX
// tile state (arch_prctl ARCH_REQ_XCOMP_PERM); if it refuses, the buffer type
// is null and ggml keeps the weights in ordinary CPU buffers. A weight goes to
// the AMX buffer only if its matmul qualifies (see supports_op in amx.cpp):
// Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_XS or F16, 2-D, output rows a
// multiple of 32 and input columns a multiple of 2048.

#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)
// The defines ggml-cpu's cpu.go compiles these sources with.
#ifndef NDEBUG
#define NDEBUG
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../../third_party/ollama/ml/backend/ggml/ggml/src/ggml-cpu/amx/amx.cpp"
#endif
