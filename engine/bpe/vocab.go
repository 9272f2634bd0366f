package bpe

import (
	"fmt"
	"strings"
)

// TokenType is llama.cpp's token type as stored in tokenizer.ggml.token_type.
type TokenType int32

// Token types, numbered as llama_token_type.
const (
	TokenNormal      TokenType = 1
	TokenUnknown     TokenType = 2
	TokenControl     TokenType = 3
	TokenUserDefined TokenType = 4
	TokenUnused      TokenType = 5
	TokenByte        TokenType = 6
)

// Qwen2.5-Coder's special tokens, in the order their ids follow the
// ordinary vocabulary.
const (
	EndOfText = "<|endoftext|>"
	IMStart   = "<|im_start|>"
	IMEnd     = "<|im_end|>"
	FIMPrefix = "<|fim_prefix|>"
	FIMMiddle = "<|fim_middle|>"
	FIMSuffix = "<|fim_suffix|>"
	FIMPad    = "<|fim_pad|>"
	RepoName  = "<|repo_name|>"
	FileSep   = "<|file_sep|>"
)

// QwenSpecials lists the Qwen2.5-Coder special tokens in id order.
var QwenSpecials = []string{EndOfText, IMStart, IMEnd, FIMPrefix, FIMMiddle, FIMSuffix, FIMPad, RepoName, FileSep}

// Vocab is a byte-level BPE vocabulary. Token texts are in GPT-2 byte-mapped
// form except for special tokens, which are stored verbatim; a token's id is
// its index. Merges are "left right" pairs, ranked by index.
type Vocab struct {
	Tokens []string
	Types  []TokenType
	Merges []string

	index map[string]int
	ranks map[[2]string]int
}

func newByteVocab() *Vocab {
	v := &Vocab{index: map[string]int{}}
	for b := 0; b < 256; b++ {
		s := string(byteToRune[b])
		v.Tokens = append(v.Tokens, s)
		v.Types = append(v.Types, TokenNormal)
		v.index[s] = b
	}
	return v
}

// FromMerges rebuilds a vocabulary from its merges: the 256 byte tokens, then
// each merge result not already present, in merge order.
func FromMerges(merges []string) (*Vocab, error) {
	v := newByteVocab()
	for i, m := range merges {
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			return nil, fmt.Errorf("bpe: merge %d %q has no space", i, m)
		}
		if _, ok := v.index[a]; !ok {
			return nil, fmt.Errorf("bpe: merge %d %q: unknown left %q", i, m, a)
		}
		if _, ok := v.index[b]; !ok {
			return nil, fmt.Errorf("bpe: merge %d %q: unknown right %q", i, m, b)
		}
		if _, ok := v.index[a+b]; !ok {
			v.index[a+b] = len(v.Tokens)
			v.Tokens = append(v.Tokens, a+b)
			v.Types = append(v.Types, TokenNormal)
		}
	}
	v.Merges = append([]string(nil), merges...)
	v.buildRanks()
	return v, nil
}

func (v *Vocab) buildRanks() {
	v.ranks = make(map[[2]string]int, len(v.Merges))
	for i, m := range v.Merges {
		a, b, _ := strings.Cut(m, " ")
		if _, dup := v.ranks[[2]string{a, b}]; !dup {
			v.ranks[[2]string{a, b}] = i
		}
	}
}

// Clone returns a deep copy, so specials can be added without touching a
// cached vocabulary.
func (v *Vocab) Clone() *Vocab {
	c := &Vocab{
		Tokens: append([]string(nil), v.Tokens...),
		Types:  append([]TokenType(nil), v.Types...),
		Merges: append([]string(nil), v.Merges...),
		index:  make(map[string]int, len(v.index)),
		ranks:  v.ranks, // read-only after build
	}
	for k, id := range v.index {
		c.index[k] = id
	}
	return c
}

// AddSpecial appends CONTROL tokens and returns their ids. A text that is
// already a token is an error: token texts must be unique.
func (v *Vocab) AddSpecial(texts ...string) ([]int, error) {
	ids := make([]int, len(texts))
	for i, s := range texts {
		if _, ok := v.index[s]; ok {
			return nil, fmt.Errorf("bpe: special token %q already in vocabulary", s)
		}
		ids[i] = len(v.Tokens)
		v.index[s] = ids[i]
		v.Tokens = append(v.Tokens, s)
		v.Types = append(v.Types, TokenControl)
	}
	return ids, nil
}

// PadTo appends UNUSED tokens "[PAD<id>]" until the vocabulary has n tokens,
// as converters do for models whose embedding has more rows than tokens.
func (v *Vocab) PadTo(n int) error {
	if n < len(v.Tokens) {
		return fmt.Errorf("bpe: cannot pad %d tokens down to %d", len(v.Tokens), n)
	}
	for id := len(v.Tokens); id < n; id++ {
		s := fmt.Sprintf("[PAD%d]", id)
		if _, ok := v.index[s]; ok {
			return fmt.Errorf("bpe: padding token %q already in vocabulary", s)
		}
		v.index[s] = id
		v.Tokens = append(v.Tokens, s)
		v.Types = append(v.Types, TokenUnused)
	}
	return nil
}

// ID returns the id of a token text (byte-mapped, or verbatim for specials).
func (v *Vocab) ID(text string) (int, bool) {
	id, ok := v.index[text]
	return id, ok
}

// Encode tokenizes text as ordinary text: special-token texts inside it are
// not recognised, as llama.cpp's tokenize with parse_special=false.
func (v *Vocab) Encode(text string) []int {
	var ids []int
	SplitFunc(text, func(w string) { ids = v.encodeWord(ids, w) })
	return ids
}

// EncodeSpecial tokenizes text, turning occurrences of CONTROL and
// USER_DEFINED token texts into their ids (parse_special=true).
func (v *Vocab) EncodeSpecial(text string) []int {
	var ids []int
	for len(text) > 0 {
		pos, tok := -1, ""
		for i, s := range v.Tokens {
			if v.Types[i] != TokenControl && v.Types[i] != TokenUserDefined {
				continue
			}
			if p := strings.Index(text, s); p >= 0 && (pos < 0 || p < pos || (p == pos && len(s) > len(tok))) {
				pos, tok = p, s
			}
		}
		if pos < 0 {
			return append(ids, v.Encode(text)...)
		}
		ids = append(ids, v.Encode(text[:pos])...)
		ids = append(ids, v.index[tok])
		text = text[pos+len(tok):]
	}
	return ids
}

// encodeWord applies the merges to one pre-token, lowest rank first and
// leftmost among equals, as llama.cpp does.
func (v *Vocab) encodeWord(ids []int, w string) []int {
	mapped := ByteToUnicode([]byte(w))
	syms := make([]string, 0, len(w))
	for _, r := range mapped {
		syms = append(syms, string(r))
	}
	for len(syms) > 1 {
		best, at := -1, -1
		for i := 0; i+1 < len(syms); i++ {
			if r, ok := v.ranks[[2]string{syms[i], syms[i+1]}]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if best < 0 {
			break
		}
		syms[at] += syms[at+1]
		syms = append(syms[:at+1], syms[at+2:]...)
	}
	for _, s := range syms {
		if id, ok := v.index[s]; ok {
			ids = append(ids, id)
			continue
		}
		for _, r := range s { // not reached for a trained vocabulary
			ids = append(ids, int(runeToByte[r]))
		}
	}
	return ids
}

// Decode turns ids back into text. Special tokens are rendered verbatim when
// special is true and dropped otherwise; ids out of range are an error.
func (v *Vocab) Decode(ids []int, special bool) (string, error) {
	var sb strings.Builder
	for _, id := range ids {
		if id < 0 || id >= len(v.Tokens) {
			return sb.String(), fmt.Errorf("bpe: token id %d out of range", id)
		}
		switch v.Types[id] {
		case TokenNormal, TokenByte:
			b, ok := UnicodeToByte(v.Tokens[id])
			if !ok {
				return sb.String(), fmt.Errorf("bpe: token %d %q is not byte-mapped", id, v.Tokens[id])
			}
			sb.Write(b)
		default:
			if special {
				sb.WriteString(v.Tokens[id])
			}
		}
	}
	return sb.String(), nil
}
