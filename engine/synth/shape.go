package synth

import (
	"fmt"
	"sort"
	"strings"
)

// Shape is a model architecture with its dimensions.
type Shape struct {
	Name       string
	Arch       string // general.architecture: "qwen2" or "llama"
	NLayer     int
	NEmbd      int
	NFF        int
	NHead      int
	NHeadKV    int
	NCtx       int     // training context length
	NVocab     int     // embedding rows; the vocabulary is padded to this
	RopeTheta  float32 // rope.freq_base
	RMSEps     float32 // attention.layer_norm_rms_epsilon
	TiedEmbed  bool    // no output.weight: the output projection reuses token_embd
	QKVBias    bool    // attn_q/k/v carry biases (Qwen2)
	BPEVocab   int     // trained byte-level BPE size (bytes + merges), before specials
	CorpusSize int64   // bytes of Go source to train the BPE on
}

// HeadDim is the per-head dimension.
func (s Shape) HeadDim() int { return s.NEmbd / s.NHead }

// ParamCount returns the number of weights a file of this shape holds.
func (s Shape) ParamCount() int64 {
	e, ff, kv := int64(s.NEmbd), int64(s.NFF), int64(s.NHeadKV*s.HeadDim())
	layer := e + e*e + 2*e*kv + e*e + e + 3*e*ff
	if s.QKVBias {
		layer += e + 2*kv
	}
	n := int64(s.NVocab)*e + e + int64(s.NLayer)*layer
	if !s.TiedEmbed {
		n += int64(s.NVocab) * e
	}
	return n
}

// Validate checks that llama.cpp can build the shape and that every row
// quantises to whole Q8_0 blocks.
func (s Shape) Validate() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("synth: shape has no name")
	case s.Arch != "qwen2" && s.Arch != "llama":
		return fmt.Errorf("synth: shape %q: unsupported architecture %q", s.Name, s.Arch)
	case s.NLayer <= 0 || s.NEmbd <= 0 || s.NFF <= 0 || s.NHead <= 0 || s.NHeadKV <= 0 || s.NCtx <= 0:
		return fmt.Errorf("synth: shape %q: dimensions must be positive", s.Name)
	case s.NEmbd%s.NHead != 0 || s.NHead%s.NHeadKV != 0:
		return fmt.Errorf("synth: shape %q: %d heads, %d kv heads do not divide embedding %d", s.Name, s.NHead, s.NHeadKV, s.NEmbd)
	case s.HeadDim()%2 != 0:
		return fmt.Errorf("synth: shape %q: head dim %d must be even for rope", s.Name, s.HeadDim())
	case s.NEmbd%32 != 0 || s.NFF%32 != 0:
		return fmt.Errorf("synth: shape %q: embedding and feed-forward sizes must be multiples of 32", s.Name)
	case s.BPEVocab < 256 || s.NVocab < s.BPEVocab+len(specials):
		return fmt.Errorf("synth: shape %q: vocabulary %d cannot hold %d BPE tokens and %d specials", s.Name, s.NVocab, s.BPEVocab, len(specials))
	case s.RopeTheta <= 0 || s.RMSEps <= 0:
		return fmt.Errorf("synth: shape %q: rope theta and rms eps must be positive", s.Name)
	}
	return nil
}

// The real shapes train 151643 BPE tokens, Qwen2.5's count, on all of
// $GOROOT/src (about ten seconds once, then cached), so prompts tokenize to
// realistic lengths (about 3.4 bytes per token on Go code) and only a few
// hundred padding rows remain. The tiny shapes have an untied output matrix: with two layers of 64 the
// input embedding would dominate the residual and, tied, make greedy decoding
// repeat one token forever. The real shapes are tied, like the models they copy.
var shapes = []Shape{
	{
		Name: "tiny", Arch: "qwen2", NLayer: 2, NEmbd: 64, NFF: 128, NHead: 4, NHeadKV: 2,
		NCtx: 4096, NVocab: 4096, RopeTheta: 1e6, RMSEps: 1e-6, QKVBias: true,
		BPEVocab: 4096 - 9, CorpusSize: 1 << 20,
	},
	{
		Name: "tiny-llama", Arch: "llama", NLayer: 2, NEmbd: 64, NFF: 128, NHead: 4, NHeadKV: 2,
		NCtx: 4096, NVocab: 4096, RopeTheta: 1e4, RMSEps: 1e-5,
		BPEVocab: 4096 - 9, CorpusSize: 1 << 20,
	},
	{
		Name: "qwen2.5-coder-0.5b", Arch: "qwen2", NLayer: 24, NEmbd: 896, NFF: 4864, NHead: 14, NHeadKV: 2,
		NCtx: 32768, NVocab: 151936, RopeTheta: 1e6, RMSEps: 1e-6, TiedEmbed: true, QKVBias: true,
		BPEVocab: 151643, CorpusSize: 64 << 20,
	},
	{
		Name: "qwen2.5-coder-1.5b", Arch: "qwen2", NLayer: 28, NEmbd: 1536, NFF: 8960, NHead: 12, NHeadKV: 2,
		NCtx: 32768, NVocab: 151936, RopeTheta: 1e6, RMSEps: 1e-6, TiedEmbed: true, QKVBias: true,
		BPEVocab: 151643, CorpusSize: 64 << 20,
	},
}

// Shapes returns the named shapes, smallest first.
func Shapes() []Shape { return append([]Shape(nil), shapes...) }

// Lookup returns the shape called name.
func Lookup(name string) (Shape, error) {
	for _, s := range shapes {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(shapes))
	for i, s := range shapes {
		names[i] = s.Name
	}
	sort.Strings(names)
	return Shape{}, fmt.Errorf("synth: unknown shape %q (have %s)", name, strings.Join(names, ", "))
}
