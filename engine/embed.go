package engine

import (
	"context"
	"errors"
	"fmt"
)

// Embeddings. Each model that is asked for embeddings gets an embedder: a
// second llama context of the same model, created with Embeddings set and
// mean pooling, owned by the embedder's own goroutine (the scheduler's
// context stays the scheduler's alone). Callers send it texts by message;
// it embeds them one after the other, so an embedding never waits on a
// completion's decode and never holds a lock across its own. The context
// has the scheduler's threads (ENGINE_THREADS), and its worker threads
// sleep whenever no job waits: llama.cpp's CPU workers otherwise poll for
// the next graph after every decode, and an embedder that serves a query
// now and then kept a core busy polling beside the completions.

const (
	// EmbedMaxTokens is the most tokens of a text that are embedded; the
	// rest of a longer text is left out.
	EmbedMaxTokens = 512
	// embedQueue is how many Embed calls may wait for an embedder.
	embedQueue = 64
)

// embedJob is one Embed call's texts and where its answer goes.
type embedJob struct {
	ctx   context.Context
	texts []string
	out   chan embedResult
}

type embedResult struct {
	vecs [][]float32
	err  error
}

// embedder owns one embeddings context of a model.
type embedder struct {
	model Model
	jobs  chan embedJob
	stop  chan struct{}
	done  chan struct{}
}

// Embed returns the mean-pooled embedding of each text by the named model,
// in order, each of the model's embedding width (ModelInfo.NEmbd). A text
// longer than EmbedMaxTokens tokens is embedded by its first EmbedMaxTokens
// tokens. Embed is safe for concurrent use; a cancelled ctx ends the call
// with ctx's error (a text being embedded finishes first).
func (e *Engine) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	em, err := e.embedderOf(model)
	if err != nil {
		return nil, err
	}
	j := embedJob{ctx: ctx, texts: texts, out: make(chan embedResult, 1)}
	select {
	case em.jobs <- j:
	case <-em.stop:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-j.out:
		return r.vecs, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// embedderOf returns the model's embedder, starting it on first use.
func (e *Engine) embedderOf(model string) (*embedder, error) {
	e.mu.RLock()
	em := e.embedders[model]
	e.mu.RUnlock()
	if em != nil {
		return em, nil
	}
	s, err := e.Get(model)
	if err != nil {
		return nil, err
	}
	c, err := s.Model().NewContext(ContextParams{NCtx: EmbedMaxTokens, NBatch: EmbedMaxTokens, NSeqMax: 1,
		NThreads: s.cfg.NThreads, Embeddings: true, Pooling: PoolingMean})
	if err != nil {
		return nil, fmt.Errorf("embeddings of %q: %w", model, err)
	}
	e.mu.Lock()
	if old := e.embedders[model]; old != nil || e.closed || e.models[model] != s {
		e.mu.Unlock()
		c.Close()
		if old != nil {
			return old, nil
		}
		return nil, ErrClosed
	}
	em = &embedder{model: s.Model(), jobs: make(chan embedJob, embedQueue), stop: make(chan struct{}), done: make(chan struct{})}
	if e.embedders == nil {
		e.embedders = map[string]*embedder{}
	}
	e.embedders[model] = em
	e.mu.Unlock()
	go em.run(c)
	return em, nil
}

// closeEmbedder stops the model's embedder, if it has one, and waits until
// its context is closed. The caller holds no lock.
func (e *Engine) closeEmbedder(model string) {
	e.mu.Lock()
	em := e.embedders[model]
	delete(e.embedders, model)
	e.mu.Unlock()
	if em != nil {
		close(em.stop)
		<-em.done
	}
}

// run is the embedder's goroutine, the only one that touches c.
func (em *embedder) run(c Context) {
	defer close(em.done)
	defer c.Close()
	var b Batch
	for {
		var j embedJob
		select {
		case <-em.stop:
			return
		case j = <-em.jobs:
		default:
			// Nothing waits: the worker threads sleep until the next job.
			if ic, ok := c.(IdleContext); ok {
				ic.Idle()
			}
			select {
			case <-em.stop:
				return
			case j = <-em.jobs:
			}
		}
		j.out <- em.do(c, &b, j)
	}
}

// do embeds a job's texts, stopping at the first error or when the job's
// caller has gone.
func (em *embedder) do(c Context, b *Batch, j embedJob) embedResult {
	vecs := make([][]float32, 0, len(j.texts))
	for _, t := range j.texts {
		if err := j.ctx.Err(); err != nil {
			return embedResult{err: err}
		}
		v, err := em.embed(c, b, t)
		if err != nil {
			return embedResult{err: err}
		}
		vecs = append(vecs, v)
	}
	return embedResult{vecs: vecs}
}

// embed decodes one text in c's only sequence and returns its pooled
// embedding.
func (em *embedder) embed(c Context, b *Batch, text string) ([]float32, error) {
	toks, err := em.model.Tokenize(text, true, false)
	if err != nil {
		return nil, fmt.Errorf("embed: tokenize: %w", err)
	}
	if len(toks) == 0 {
		return nil, errors.New("embed: empty text")
	}
	toks = toks[:min(len(toks), c.NBatch(), EmbedMaxTokens)]
	c.Clear()
	b.Reset()
	for i, t := range toks {
		b.Add(t, int32(i), 0, true)
	}
	if err := c.Decode(b); err != nil {
		return nil, fmt.Errorf("embed: decode: %w", err)
	}
	v, err := c.Embeddings(0)
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	return v, nil
}
