package engine

import (
	"fmt"
	"testing"
)

func toks(s string) []Token {
	out := make([]Token, len(s))
	for i := range len(s) {
		out[i] = Token(s[i])
	}
	return out
}

func TestCommonPrefix(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 0}, {"abc", "abd", 2}, {"abc", "abc", 3}, {"ab", "abc", 2}, {"x", "y", 0},
	} {
		if got := commonPrefix(toks(tc.a), toks(tc.b)); got != tc.want {
			t.Errorf("commonPrefix(%q,%q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestPickSlot(t *testing.T) {
	mk := func(cached string, lastUsed uint64, busy bool) *slot {
		s := &slot{cached: toks(cached), lastUsed: lastUsed}
		if busy {
			s.seq = &sequence{}
		}
		return s
	}
	keyed := func(s *slot, key string) *slot { s.key = key; return s }
	for _, tc := range []struct {
		name      string
		slots     []*slot
		prompt    string
		key       string
		threshold float64
		minChunk  int
		want      int // index, -1 for nil
	}{
		{"longest prefix", []*slot{mk("abx", 1, false), mk("abcdx", 2, false), mk("", 0, false)}, "abcdef", "", 0.1, 0, 1},
		{"below threshold takes LRU", []*slot{mk("zz", 5, false), mk("aq", 3, false), mk("", 4, false)}, "abcdefghijklmnopqrstuvwxyz", "", 0.1, 0, 1},
		{"threshold zero takes any prefix", []*slot{mk("zz", 5, false), mk("aq", 3, false)}, "abcdefghijklmnopqrstuvwxyz", "", -1, 0, 1},
		{"busy slots skipped", []*slot{mk("abcdef", 1, true), mk("ab", 9, false)}, "abcdef", "", 0.1, 0, 1},
		{"all busy", []*slot{mk("a", 1, true)}, "a", "", 0.1, 0, -1},
		{"no prefix anywhere takes LRU", []*slot{mk("x", 7, false), mk("y", 2, false), mk("z", 3, false)}, "abc", "", 0.1, 0, 1},
		// The window's start moved: the typist's slot holds the prompt's
		// body one line later, which shifting recovers.
		{"moved window takes the slot with reusable chunks", []*slot{mk("hdr1111abcdefghijklmnop", 7, false), mk("hzzzzzzzzzzzzzzzzzzzz", 2, false)},
			"habcdefghijklmnopq", "", 0.5, 4, 0},
		// A request of key u1 was superseded after evaluating 3 tokens of
		// its prompt: u1's next request goes on from them, though they are
		// below the threshold, even where another slot shares as much.
		{"the typist's own slot below the threshold", []*slot{mk("zz", 1, false), keyed(mk("abc", 5, false), "u1")}, "abcdefghijklmnopqrstuvwxyz", "u1", 0.5, 0, 1},
		{"the typist's own slot on a tie", []*slot{mk("abc", 1, false), keyed(mk("abc", 5, false), "u1")}, "abcdefghijklmnopqrstuvwxyz", "u1", 0.1, 0, 1},
		{"a longer similar prefix beats the own slot", []*slot{mk("abcdefghijklmnop", 1, false), keyed(mk("abc", 5, false), "u1")}, "abcdefghijklmnopqrstuvwxyz", "u1", 0.5, 0, 0},
		{"another typist's slot is not own", []*slot{mk("zz", 1, false), keyed(mk("abc", 5, false), "u2")}, "abcdefghijklmnopqrstuvwxyz", "u1", 0.5, 0, 0},
		{"no key, no own slot", []*slot{mk("zz", 1, false), keyed(mk("abc", 5, false), "")}, "abcdefghijklmnopqrstuvwxyz", "", 0.5, 0, 0},
		{"a busy own slot is skipped", []*slot{mk("zz", 1, false), keyed(mk("abc", 5, true), "u1")}, "abcdefghijklmnopqrstuvwxyz", "u1", 0.5, 0, 0},
		{"reusable chunks below the threshold take LRU", []*slot{mk("hdr1111abcdefghijklmnop", 7, false), mk("hzzzzzzzzzzzzzzzzzzzz", 2, false)},
			"habcdexxxxxxxxxxxxxxxxxxxxxxxxxx", "", 0.5, 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickSlot(tc.slots, toks(tc.prompt), tc.key, tc.threshold, tc.minChunk)
			idx := -1
			for i, s := range tc.slots {
				if s == got {
					idx = i
				}
			}
			if idx != tc.want {
				t.Errorf("picked %d, want %d", idx, tc.want)
			}
		})
	}
}

// kvLog records KV operations and applies them to a position→token map.
type kvLog struct {
	ops  []string
	cell map[int32]Token
}

func (k *kvLog) SeqRm(seq, p0, p1 int32) bool {
	k.ops = append(k.ops, fmt.Sprintf("rm %d %d", p0, p1))
	for p := range k.cell {
		if p >= p0 && (p1 < 0 || p < p1) {
			delete(k.cell, p)
		}
	}
	return true
}

func (k *kvLog) SeqAdd(seq, p0, p1, delta int32) {
	k.ops = append(k.ops, fmt.Sprintf("add %d %d %+d", p0, p1, delta))
	moved := map[int32]Token{}
	for p, t := range k.cell {
		if p >= p0 && p < p1 {
			moved[p+delta] = t
			delete(k.cell, p)
		}
	}
	for p, t := range moved {
		k.cell[p] = t
	}
}

func TestReuseChunks(t *testing.T) {
	for _, tc := range []struct {
		name, cached, prompt string
		minChunk             int
		wantPast, wantShift  int
		wantOps              string
	}{
		{"deleted middle", "AAAAxxBBBBCCCC", "AAAABBBBCCCCz", 3, 12, 8, "[rm 4 6 add 6 14 -2]"},
		{"two chunks", "AAAAxBBBByCCCC", "AAAABBBBCCCC", 4, 12, 8, "[rm 4 5 add 5 9 -1 rm 8 10 add 10 14 -2]"},
		{"short chunk blocks the rest", "AAAAxBBqCCCC", "AAAABBCCCC", 3, 4, 0, "[]"},
		{"short match skipped", "AAAAxBqBBBCCC", "AAAABBBCCC", 3, 10, 6, "[rm 4 7 add 7 13 -3]"},
		{"nothing after", "AAAA", "AAAAB", 2, 4, 0, "[]"},
		{"insertion cannot shift right", "AAAABBBB", "AAAAzBBBB", 2, 4, 0, "[]"},
		{"off", "AAAAxxBBBB", "AAAABBBB", 0, 4, 0, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := &kvLog{cell: map[int32]Token{}}
			cached := toks(tc.cached)
			for i, c := range cached {
				kv.cell[int32(i)] = c
			}
			prompt := toks(tc.prompt)
			n := commonPrefix(cached, prompt)
			past, shifted := reuseChunks(kv, 0, cached, prompt, n, tc.minChunk)
			if past != tc.wantPast || shifted != tc.wantShift || fmt.Sprint(kv.ops) != tc.wantOps {
				t.Fatalf("past %d shifted %d ops %v; want %d %d %s", past, shifted, kv.ops, tc.wantPast, tc.wantShift, tc.wantOps)
			}
			// The mirror and the KV agree with the prompt on [0, past).
			for i := range past {
				if cached[i] != prompt[i] || kv.cell[int32(i)] != prompt[i] {
					t.Fatalf("position %d: mirror %c kv %c prompt %c", i, cached[i], kv.cell[int32(i)], prompt[i])
				}
			}
		})
	}
}
