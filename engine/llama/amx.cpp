// ggml's CPU backend, compiled by the Go package
// github.com/ollama/ollama/ml/backend/ggml/ggml/src/ggml-cpu, refers to the
// AMX buffer type whenever the compiler targets AMX (-march=native on an
// AMX-capable Xeon defines __AMX_INT8__ and __AVX512VNNI__), but that
// package does not compile ggml-cpu/amx, so the link fails. This definition
// reports "no AMX buffer type"; ggml then keeps the weights in ordinary CPU
// buffers and still uses the AVX-512 kernels. Without those macros the
// function is neither declared nor referenced, and nothing is defined.

#include "ggml-backend.h"

#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)
ggml_backend_buffer_type_t ggml_backend_amx_buffer_type(void);

ggml_backend_buffer_type_t ggml_backend_amx_buffer_type(void) {
	return nullptr;
}
#endif
