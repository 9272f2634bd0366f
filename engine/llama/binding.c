// C helpers for engine/llama: struct-by-value parameter setup, the log and
// progress trampolines, and the batch copy, so each Go call is one cgo call.

#include "binding.h"

// c4m_log_min is the lowest ggml log level forwarded to Go; lower levels are
// dropped here so that chatty debug output costs no cgo callback.
static _Atomic int c4m_log_min = GGML_LOG_LEVEL_DEBUG;
static _Atomic int c4m_log_last = GGML_LOG_LEVEL_INFO;

static void c4m_log_cb(enum ggml_log_level level, const char *text, void *user) {
	int l = (int)level;
	if (l == GGML_LOG_LEVEL_CONT) {
		l = c4m_log_last;
	} else {
		c4m_log_last = l;
	}
	if (l < c4m_log_min && l != GGML_LOG_LEVEL_NONE) {
		return;
	}
	c4mGoLog(l, (char *)text, user);
}

void c4m_log_install(int min_level) {
	c4m_log_min = min_level;
	llama_log_set(c4m_log_cb, NULL);
}

void c4m_log_set_min(int min_level) { c4m_log_min = min_level; }

static _Bool c4m_progress_cb(float progress, void *user) {
	return c4mGoProgress(progress, user);
}

struct llama_model *c4m_model_load(const char *path, int32_t n_gpu_layers, _Bool use_mmap, _Bool extra_bufts, uintptr_t progress) {
	struct llama_model_params p = llama_model_default_params();
	p.n_gpu_layers = n_gpu_layers;
	p.use_mmap = use_mmap;
	p.use_extra_bufts = extra_bufts;
	if (progress != 0) {
		p.progress_callback = c4m_progress_cb;
		p.progress_callback_user_data = (void *)progress;
	}
	return llama_model_load_from_file(path, p);
}

struct llama_context *c4m_context_new(struct llama_model *model,
		uint32_t n_ctx, uint32_t n_batch, uint32_t n_ubatch, uint32_t n_seq_max,
		int32_t n_threads, _Bool embeddings, int pooling, _Bool flash_attn, _Bool kv_unified) {
	struct llama_context_params p = llama_context_default_params();
	p.n_ctx = n_ctx;
	p.n_batch = n_batch;
	p.n_ubatch = n_ubatch;
	p.n_seq_max = n_seq_max;
	p.n_threads = n_threads;
	p.n_threads_batch = n_threads;
	p.embeddings = embeddings;
	p.pooling_type = (enum llama_pooling_type)pooling;
	p.flash_attn_type = flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
	// kv_unified: one KV buffer for all sequences (any sequence may use what
	// the others leave free). Otherwise each sequence gets n_ctx/n_seq_max
	// cells of its own and attends over those only.
	p.kv_unified = kv_unified;
	p.no_perf = 1;
	return llama_init_from_model(model, p);
}

// c4m_threadpool_attach gives ctx n_threads - 1 worker threads that live
// as long as it: without a pool of its own, ggml (built without OpenMP, as
// here) starts and joins its workers on every graph. The pool starts
// paused; a decode wakes it, and between decodes its workers poll for the
// next graph until c4m_threadpool_pause puts them to sleep.
struct ggml_threadpool *c4m_threadpool_attach(struct llama_context *ctx, int32_t n_threads) {
	struct ggml_threadpool_params p = ggml_threadpool_params_default(n_threads);
	p.paused = 1;
	struct ggml_threadpool *tp = ggml_threadpool_new(&p);
	if (tp != NULL) {
		llama_attach_threadpool(ctx, tp, tp);
	}
	return tp;
}

// c4m_batch_new allocates a batch of n tokens, one sequence id per token.
_Bool c4m_batch_new(struct llama_batch *out, int32_t n) {
	*out = llama_batch_init(n, 0, 1);
	return out->token != NULL && out->pos != NULL && out->seq_id != NULL &&
		out->n_seq_id != NULL && out->logits != NULL;
}

// c4m_decode copies the caller's rows into b and decodes them: one cgo call
// per batch.
int32_t c4m_decode(struct llama_context *ctx, struct llama_batch *b,
		const int32_t *tok, const int32_t *pos, const int32_t *seq, const _Bool *logits, int32_t n) {
	for (int32_t i = 0; i < n; i++) {
		b->token[i] = tok[i];
		b->pos[i] = pos[i];
		b->n_seq_id[i] = 1;
		b->seq_id[i][0] = seq[i];
		b->logits[i] = logits[i] ? 1 : 0;
	}
	b->n_tokens = n;
	return llama_decode(ctx, *b);
}

struct llama_sampler *c4m_chain_new(void) {
	struct llama_sampler_chain_params p = llama_sampler_chain_default_params();
	p.no_perf = 1;
	return llama_sampler_chain_init(p);
}

uint32_t c4m_quantize(const char *in, const char *out, int ftype, int32_t nthread) {
	llama_model_quantize_params p = llama_model_quantize_default_params();
	p.ftype = (enum llama_ftype)ftype;
	p.nthread = nthread;
	return llama_model_quantize(in, out, &p);
}
