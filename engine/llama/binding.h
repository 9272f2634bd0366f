// Declarations of the C helpers in binding.c. Every Go file of engine/llama
// that calls C includes this header and nothing else.
#ifndef C4M_BINDING_H
#define C4M_BINDING_H

#include <stdint.h>
#include <stdlib.h>
#include "llama.h"
#include "ggml-cpu.h"

// Implemented in Go (callback.go).
extern void c4mGoLog(int level, char *text, void *user);
extern _Bool c4mGoProgress(float progress, void *user);

void c4m_log_install(int min_level);
void c4m_log_set_min(int min_level);
struct llama_model *c4m_model_load(const char *path, int32_t n_gpu_layers, _Bool use_mmap, _Bool extra_bufts, uintptr_t progress);
struct llama_context *c4m_context_new(struct llama_model *model,
		uint32_t n_ctx, uint32_t n_batch, uint32_t n_ubatch, uint32_t n_seq_max,
		int32_t n_threads, _Bool embeddings, int pooling, _Bool flash_attn, _Bool kv_unified);
struct ggml_threadpool *c4m_threadpool_attach(struct llama_context *ctx, int32_t n_threads);
_Bool c4m_batch_new(struct llama_batch *out, int32_t n);
int32_t c4m_decode(struct llama_context *ctx, struct llama_batch *b,
		const int32_t *tok, const int32_t *pos, const int32_t *seq, const _Bool *logits, int32_t n);
struct llama_sampler *c4m_chain_new(void);
uint32_t c4m_quantize(const char *in, const char *out, int ftype, int32_t nthread);

#endif
