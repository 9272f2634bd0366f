package bpe

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
)

// Train learns merges on docs until the vocabulary (256 byte tokens plus one
// token per new merge result) reaches size, or no pair occurs twice. Pairs
// are counted within Qwen2 pre-tokens only (see Split), so the merges are the
// ones llama.cpp will apply. Ties between equally frequent pairs go to the
// pair whose symbols were created first, which makes training deterministic.
func Train(ctx context.Context, docs [][]byte, size int) (*Vocab, error) {
	if size < 256 {
		return nil, fmt.Errorf("bpe: vocabulary size %d is below the 256 byte tokens", size)
	}
	// Count pre-tokens.
	counts := map[string]int64{}
	for _, d := range docs {
		SplitFunc(string(d), func(s string) { counts[s]++ })
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	v := newByteVocab()
	t := &trainer{pairs: map[uint64]int64{}, where: map[uint64][]int32{}}
	for _, k := range keys {
		syms := make([]int32, len(k))
		for i := 0; i < len(k); i++ {
			syms[i] = int32(k[i])
		}
		t.words = append(t.words, word{syms: syms, count: counts[k]})
	}
	for wi := range t.words {
		w := &t.words[wi]
		for i := 0; i+1 < len(w.syms); i++ {
			p := pairKey(w.syms[i], w.syms[i+1])
			t.pairs[p] += w.count
			t.where[p] = append(t.where[p], int32(wi))
		}
	}
	for p, c := range t.pairs {
		t.h = append(t.h, entry{count: c, pair: p})
	}
	heap.Init(&t.h)
	t.stamp = make([]int32, len(t.words))

	for iter := int32(1); len(v.Tokens) < size && t.h.Len() > 0; iter++ {
		if iter%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e := heap.Pop(&t.h).(entry)
		if cur := t.pairs[e.pair]; cur != e.count {
			continue // stale entry; the current count has its own entry
		}
		if e.count < 2 {
			break
		}
		a, b := int32(e.pair>>32), int32(uint32(e.pair))
		merged := v.Tokens[a] + v.Tokens[b]
		id, ok := v.index[merged]
		if !ok {
			id = len(v.Tokens)
			v.Tokens = append(v.Tokens, merged)
			v.Types = append(v.Types, TokenNormal)
			v.index[merged] = id
		}
		v.Merges = append(v.Merges, v.Tokens[a]+" "+v.Tokens[b])
		t.merge(e.pair, a, b, int32(id), iter)
	}
	v.buildRanks()
	return v, nil
}

type word struct {
	syms  []int32
	count int64
}

type entry struct {
	count int64
	pair  uint64
}

type pairHeap []entry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].pair < h[j].pair
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(entry)) }
func (h *pairHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type trainer struct {
	words []word
	pairs map[uint64]int64
	where map[uint64][]int32 // words that contain (or once contained) a pair
	h     pairHeap
	stamp []int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// merge replaces every (a,b) by id in the words that hold it and updates
// the pair counts and heap.
func (t *trainer) merge(p uint64, a, b, id int32, iter int32) {
	changed := map[uint64]struct{}{}
	for _, wi := range t.where[p] {
		if t.stamp[wi] == iter {
			continue
		}
		t.stamp[wi] = iter
		w := &t.words[wi]
		found := false
		for i := 0; i+1 < len(w.syms); i++ {
			if w.syms[i] == a && w.syms[i+1] == b {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		for i := 0; i+1 < len(w.syms); i++ {
			q := pairKey(w.syms[i], w.syms[i+1])
			t.pairs[q] -= w.count
			changed[q] = struct{}{}
		}
		out := w.syms[:0]
		for i := 0; i < len(w.syms); i++ {
			if i+1 < len(w.syms) && w.syms[i] == a && w.syms[i+1] == b {
				out = append(out, id)
				i++
				continue
			}
			out = append(out, w.syms[i])
		}
		w.syms = out
		for i := 0; i+1 < len(w.syms); i++ {
			q := pairKey(w.syms[i], w.syms[i+1])
			t.pairs[q] += w.count
			changed[q] = struct{}{}
			if w.syms[i] == id || w.syms[i+1] == id {
				t.where[q] = append(t.where[q], wi)
			}
		}
	}
	delete(t.where, p)
	// Push in a fixed order so the heap layout, and so tie-breaking, is deterministic.
	keys := make([]uint64, 0, len(changed))
	for q := range changed {
		keys = append(keys, q)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, q := range keys {
		c := t.pairs[q]
		if c <= 0 {
			delete(t.pairs, q)
			continue
		}
		heap.Push(&t.h, entry{count: c, pair: q})
	}
}
