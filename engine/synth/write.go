package synth

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/code4me/code4me/engine/bpe"
	"github.com/code4me/code4me/engine/gguf"
)

// GeneratorVersion changes whenever Write would produce different bytes for
// the same shape, type, seed and corpus. It is part of Ensure's file names.
const GeneratorVersion = 2

// KeySynthetic is the custom boolean key that marks a synthetic model.
const KeySynthetic = "general.synthetic"

// Weight scales, chosen so that a random model behaves like a model: logits
// finite and peaked enough that sampling is not uniform, and a next token that
// depends on the current one, so greedy decoding does not lock onto one token.
//
//   - A matrix with input size n has standard deviation 1/sqrt(n), so
//     projections keep activations near unit scale.
//   - The projections that write into the residual stream are scaled by
//     1/sqrt(2*n_layer), as in GPT-2's initialisation, and attn_output by a
//     further attnOutScale: otherwise attention averages over the context
//     swamp the current token's path and every position predicts the same
//     token.
//   - Embedding and output rows have logitStd/sqrt(n_embd), which gives
//     logits a standard deviation near logitStd.
//   - output_norm is ±1 at random instead of 1: with tied embeddings the
//     current token's own embedding would otherwise lift its own logit and
//     make it repeat.
//   - Other norm weights are 1; biases are small.
const (
	logitStd     = 2.0
	attnOutScale = 0.3
	biasStd      = 0.02
)

// specials are the Qwen2.5-Coder special tokens every synthetic model carries.
var specials = bpe.QwenSpecials

// ChatTemplate is the ChatML template written into qwen2-style models;
// llama.cpp recognises it as "chatml".
const ChatTemplate = "{% for message in messages %}" +
	"{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
	"{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// Options control Write.
type Options struct {
	Seed      int64  // weight seed; files differ only in weights across seeds
	Type      string // "f16" (default), "q8_0" or "f32": the type of 2-D weights; 1-D tensors are F32
	CacheDir  string // where trained vocabularies are cached; "" trains every time
	CorpusDir string // Go source to train the vocabulary on; "" means $GOROOT/src, or generated Go-like text where that is missing
}

func (o Options) tensorType() (gguf.TensorType, uint32, error) {
	switch o.Type {
	case "", "f16", "F16":
		return gguf.TensorF16, gguf.FileTypeMostlyF16, nil
	case "q8_0", "Q8_0":
		return gguf.TensorQ8_0, gguf.FileTypeMostlyQ80, nil
	case "f32", "F32":
		return gguf.TensorF32, gguf.FileTypeAllF32, nil
	}
	return 0, 0, fmt.Errorf("synth: unsupported weight type %q (want f16, q8_0 or f32)", o.Type)
}

// Vocab returns the vocabulary a model of shape s carries: the trained BPE,
// the Qwen2.5-Coder specials, then padding up to s.NVocab.
func Vocab(ctx context.Context, s Shape, opts Options) (*bpe.Vocab, error) {
	root := opts.CorpusDir
	if root == "" {
		root = filepath.Join(runtime.GOROOT(), "src")
	}
	docs, err := bpe.GoCorpus(root, s.CorpusSize)
	if err != nil {
		if opts.CorpusDir != "" {
			return nil, err
		}
		// No Go source tree here (a release container): train on generated text.
		docs = bpe.FallbackCorpus(int(min(s.CorpusSize, 4<<20)))
	}
	base, err := bpe.TrainCached(ctx, opts.CacheDir, docs, s.BPEVocab)
	if err != nil {
		return nil, err
	}
	v := base.Clone()
	if _, err := v.AddSpecial(specials...); err != nil {
		return nil, err
	}
	if err := v.PadTo(s.NVocab); err != nil {
		return nil, err
	}
	return v, nil
}

// Write writes a synthetic model of shape s to path (atomically). Weights
// are uniform (scales below) from PCG streams seeded by opts.Seed and the
// tensor name.
func Write(ctx context.Context, path string, s Shape, opts Options) error {
	if err := s.Validate(); err != nil {
		return err
	}
	wt, ftype, err := opts.tensorType()
	if err != nil {
		return err
	}
	v, err := Vocab(ctx, s, opts)
	if err != nil {
		return fmt.Errorf("synth: vocabulary for %q: %w", s.Name, err)
	}
	w := gguf.NewWriter()
	setMetadata(w, s, v, ftype, wt, opts.Seed)
	if err := addTensors(w, s, wt, uint64(opts.Seed)); err != nil {
		return err
	}
	w.Parallelism = 2 // each Source fans out over all cores itself
	if err := w.WriteFile(ctx, path); err != nil {
		return fmt.Errorf("synth: write %q: %w", path, err)
	}
	return nil
}

func setMetadata(w *gguf.Writer, s Shape, v *bpe.Vocab, ftype uint32, wt gguf.TensorType, seed int64) {
	a := s.Arch
	w.SetString("general.architecture", a)
	w.SetString("general.type", "model")
	w.SetString("general.name", "synthetic "+s.Name)
	w.SetString("general.description", "random weights in the shape of "+s.Name+"; its text is noise")
	w.SetBool(KeySynthetic, true)
	w.SetString("general.synthetic.shape", s.Name)
	w.SetInt32("general.synthetic.seed", int32(seed))
	w.SetUint32("general.synthetic.generator_version", GeneratorVersion)
	w.SetUint32("general.file_type", ftype)
	if wt == gguf.TensorQ8_0 {
		w.SetUint32("general.quantization_version", 2)
	}
	w.SetUint32(a+".context_length", uint32(s.NCtx))
	w.SetUint32(a+".embedding_length", uint32(s.NEmbd))
	w.SetUint32(a+".block_count", uint32(s.NLayer))
	w.SetUint32(a+".feed_forward_length", uint32(s.NFF))
	w.SetUint32(a+".attention.head_count", uint32(s.NHead))
	w.SetUint32(a+".attention.head_count_kv", uint32(s.NHeadKV))
	w.SetFloat32(a+".rope.freq_base", s.RopeTheta)
	w.SetFloat32(a+".attention.layer_norm_rms_epsilon", s.RMSEps)
	if a == "llama" {
		w.SetUint32(a+".rope.dimension_count", uint32(s.HeadDim()))
		w.SetUint32(a+".vocab_size", uint32(s.NVocab))
	}

	types := make([]int32, len(v.Types))
	for i, t := range v.Types {
		types[i] = int32(t)
	}
	id := func(text string) uint32 { n, _ := v.ID(text); return uint32(n) }
	w.SetString("tokenizer.ggml.model", "gpt2")
	w.SetString("tokenizer.ggml.pre", "qwen2")
	w.SetStrings("tokenizer.ggml.tokens", v.Tokens)
	w.SetInt32s("tokenizer.ggml.token_type", types)
	w.SetStrings("tokenizer.ggml.merges", v.Merges)
	w.SetUint32("tokenizer.ggml.bos_token_id", id(bpe.EndOfText))
	w.SetUint32("tokenizer.ggml.eos_token_id", id(bpe.EndOfText))
	w.SetUint32("tokenizer.ggml.eot_token_id", id(bpe.IMEnd))
	w.SetUint32("tokenizer.ggml.padding_token_id", id(bpe.EndOfText))
	w.SetBool("tokenizer.ggml.add_bos_token", false)
	w.SetUint32("tokenizer.ggml.fim_pre_token_id", id(bpe.FIMPrefix))
	w.SetUint32("tokenizer.ggml.fim_suf_token_id", id(bpe.FIMSuffix))
	w.SetUint32("tokenizer.ggml.fim_mid_token_id", id(bpe.FIMMiddle))
	w.SetUint32("tokenizer.ggml.fim_pad_token_id", id(bpe.FIMPad))
	w.SetUint32("tokenizer.ggml.fim_rep_token_id", id(bpe.RepoName))
	w.SetUint32("tokenizer.ggml.fim_sep_token_id", id(bpe.FileSep))
	w.SetString("tokenizer.chat_template", ChatTemplate)
}

func addTensors(w *gguf.Writer, s Shape, wt gguf.TensorType, seed uint64) error {
	e, ff, kv, nv := uint64(s.NEmbd), uint64(s.NFF), uint64(s.NHeadKV*s.HeadDim()), uint64(s.NVocab)
	var errs []error
	add := func(name string, typ gguf.TensorType, src gguf.Source, dims ...uint64) {
		if err := w.AddTensor(name, typ, dims, src); err != nil {
			errs = append(errs, err)
		}
	}
	matrix := func(name string, dims ...uint64) {
		add(name, wt, randomSource(name, wt, dims, seed, float32(matrixStd(s, name, dims[0]))), dims...)
	}
	vector := func(name string, n uint64, std float32) {
		if std == 0 {
			add(name, gguf.TensorF32, constSource(1), n)
			return
		}
		add(name, gguf.TensorF32, randomSource(name, gguf.TensorF32, []uint64{n}, seed, std), n)
	}
	matrix("token_embd.weight", e, nv)
	for i := 0; i < s.NLayer; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		vector(p+"attn_norm.weight", e, 0)
		matrix(p+"attn_q.weight", e, e)
		matrix(p+"attn_k.weight", e, kv)
		matrix(p+"attn_v.weight", e, kv)
		if s.QKVBias {
			vector(p+"attn_q.bias", e, biasStd)
			vector(p+"attn_k.bias", kv, biasStd)
			vector(p+"attn_v.bias", kv, biasStd)
		}
		matrix(p+"attn_output.weight", e, e)
		vector(p+"ffn_norm.weight", e, 0)
		matrix(p+"ffn_gate.weight", e, ff)
		matrix(p+"ffn_up.weight", e, ff)
		matrix(p+"ffn_down.weight", ff, e)
	}
	add("output_norm.weight", gguf.TensorF32, signSource("output_norm.weight", seed), e)
	if !s.TiedEmbed {
		matrix("output.weight", e, nv)
	}
	if len(errs) > 0 {
		return fmt.Errorf("synth: %v", errs[0])
	}
	return nil
}

// matrixStd is the standard deviation of the named matrix with input size n.
func matrixStd(s Shape, name string, n uint64) float64 {
	std := 1 / math.Sqrt(float64(n))
	switch {
	case name == "token_embd.weight" || name == "output.weight":
		std *= logitStd
	case strings.HasSuffix(name, "attn_output.weight"):
		std *= attnOutScale / math.Sqrt(float64(2*s.NLayer))
	case strings.HasSuffix(name, "ffn_down.weight"):
		std /= math.Sqrt(float64(2 * s.NLayer))
	}
	return std
}

// signSource fills an F32 tensor with ±1 from a seeded stream.
func signSource(name string, seed uint64) gguf.Source {
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(h.Sum64(), seed))
	return func(_ context.Context, dst []byte) error {
		vals := make([]float32, len(dst)/4)
		for i := range vals {
			vals[i] = float32(1 - 2*int(rng.Uint64()&1))
		}
		gguf.EncodeF32(dst, vals)
		return nil
	}
}

// constSource fills an F32 tensor with v.
func constSource(v float32) gguf.Source {
	return func(_ context.Context, dst []byte) error {
		vals := make([]float32, len(dst)/4)
		for i := range vals {
			vals[i] = v
		}
		gguf.EncodeF32(dst, vals)
		return nil
	}
}

// chunkElems is the work unit of weight generation; results do not depend
// on how many goroutines share the chunks.
const chunkElems = 1 << 18

// randomSource fills a tensor with uniform values of standard deviation std,
// chunk by chunk in parallel, each chunk from its own PCG stream.
func randomSource(name string, t gguf.TensorType, dims []uint64, seed uint64, std float32) gguf.Source {
	h := fnv.New64a()
	h.Write([]byte(name))
	tensorSeed := h.Sum64() ^ (seed * 0x9e3779b97f4a7c15)
	ne0 := int(dims[0])
	rows := 1
	for _, d := range dims[1:] {
		rows *= int(d)
	}
	rowsPerChunk := max(1, chunkElems/ne0)
	nChunks := (rows + rowsPerChunk - 1) / rowsPerChunk
	// Uniform on [-a, a] has standard deviation a/sqrt(3).
	scale := std * float32(math.Sqrt(3)) / 32768
	return func(ctx context.Context, dst []byte) error {
		rowBytes, err := t.RowSize(int64(ne0))
		if err != nil {
			return err
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, 1)
		for range min(runtime.GOMAXPROCS(0), nChunks) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]float32, rowsPerChunk*ne0)
				for {
					c := int(next.Add(1) - 1)
					if c >= nChunks {
						return
					}
					if err := ctx.Err(); err != nil {
						select {
						case errc <- err:
						default:
						}
						return
					}
					r0 := c * rowsPerChunk
					r1 := min(rows, r0+rowsPerChunk)
					vals := buf[:(r1-r0)*ne0]
					rng := rand.NewPCG(tensorSeed, uint64(c))
					for i := 0; i < len(vals); i += 4 {
						x := rng.Uint64()
						for k := 0; k < 4 && i+k < len(vals); k++ {
							vals[i+k] = float32(int16(uint16(x>>(16*k)))) * scale
						}
					}
					out := dst[int64(r0)*rowBytes : int64(r1)*rowBytes]
					if err := gguf.Encode(t, out, vals); err != nil {
						select {
						case errc <- err:
						default:
						}
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errc:
			return err
		default:
			return nil
		}
	}
}
