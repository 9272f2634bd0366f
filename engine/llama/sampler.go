package llama

/*
#include "binding.h"
*/
import "C"

import (
	"errors"
	"fmt"

	"github.com/code4me/code4me/engine"
)

// Sampler is a llama.cpp sampler chain (engine.Sampler). It belongs to the
// goroutine that owns the Context it samples from.
type Sampler struct {
	chain *C.struct_llama_sampler
}

var _ engine.Sampler = (*Sampler)(nil)

// NewSampler builds a chain in llama.cpp's usual order: repetition
// penalties (when RepeatPenalty is neither 0 nor 1), then for Temperature
// <= 0 greedy, otherwise top-k (TopK > 0), top-p (0 < TopP < 1), min-p
// (MinP > 0), temperature and a seeded draw. RepeatLastN 0 means 64.
func (m *Model) NewSampler(p engine.SamplingParams) (engine.Sampler, error) {
	s, err := m.NewLlamaSampler(p)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewLlamaSampler is NewSampler returning the concrete type.
func (m *Model) NewLlamaSampler(p engine.SamplingParams) (*Sampler, error) {
	if p.TopK < 0 || p.TopP < 0 || p.MinP < 0 || p.RepeatPenalty < 0 || p.RepeatLastN < -1 {
		return nil, fmt.Errorf("new sampler: negative parameter in %+v", p)
	}
	chain := C.c4m_chain_new()
	if chain == nil {
		return nil, errors.New("new sampler: llama_sampler_chain_init failed")
	}
	add := func(s *C.struct_llama_sampler) bool {
		if s == nil {
			return false
		}
		C.llama_sampler_chain_add(chain, s) // the chain owns s
		return true
	}
	ok := true
	if p.RepeatPenalty != 0 && p.RepeatPenalty != 1 {
		lastN := p.RepeatLastN
		if lastN == 0 {
			lastN = 64
		}
		ok = ok && add(C.llama_sampler_init_penalties(C.int32_t(lastN), C.float(p.RepeatPenalty), 0, 0))
	}
	if p.Temperature <= 0 {
		ok = ok && add(C.llama_sampler_init_greedy())
	} else {
		if p.TopK > 0 {
			ok = ok && add(C.llama_sampler_init_top_k(C.int32_t(p.TopK)))
		}
		if p.TopP > 0 && p.TopP < 1 {
			ok = ok && add(C.llama_sampler_init_top_p(C.float(p.TopP), 1))
		}
		if p.MinP > 0 {
			ok = ok && add(C.llama_sampler_init_min_p(C.float(p.MinP), 1))
		}
		ok = ok && add(C.llama_sampler_init_temp(C.float(p.Temperature)))
		ok = ok && add(C.llama_sampler_init_dist(C.uint32_t(p.Seed)))
	}
	if !ok {
		C.llama_sampler_free(chain)
		return nil, errors.New("new sampler: a llama.cpp sampler failed to initialise")
	}
	return &Sampler{chain: chain}, nil
}

// Sample picks a token from batch row i of c's last Decode and accepts it.
// It returns engine.NoToken when c is not a *Context of this package or row
// i has no logits (llama.cpp would dereference a null pointer).
func (s *Sampler) Sample(c engine.Context, i int) engine.Token {
	lc, ok := c.(*Context)
	if !ok || s.chain == nil || lc.Logits(i) == nil {
		return engine.NoToken
	}
	return engine.Token(C.llama_sampler_sample(s.chain, lc.ctx, C.int32_t(i)))
}

// Accept records t in the sampler's history (for repetition penalties).
func (s *Sampler) Accept(t engine.Token) {
	if s.chain == nil || t < 0 {
		return
	}
	C.llama_sampler_accept(s.chain, C.llama_token(t))
}

// Reset clears the penalty history and reseeds the draw with the chain's
// seed, so a reset sampler repeats its choices on the same logits.
func (s *Sampler) Reset() {
	if s.chain != nil {
		C.llama_sampler_reset(s.chain)
	}
}

// Close frees the chain; later calls do nothing.
func (s *Sampler) Close() {
	if s.chain != nil {
		C.llama_sampler_free(s.chain)
		s.chain = nil
	}
}
