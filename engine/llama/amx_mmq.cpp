// AMX matrix kernels for amx.cpp: ggml-cpu/amx/mmq.cpp from the module.

#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)
// The defines ggml-cpu's cpu.go compiles these sources with.
#ifndef NDEBUG
#define NDEBUG
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../../third_party/ollama/ml/backend/ggml/ggml/src/ggml-cpu/amx/mmq.cpp"
#endif
