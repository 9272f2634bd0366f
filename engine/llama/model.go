package llama

/*
#include "binding.h"
*/
import "C"

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/code4me/code4me/engine"
)

// noExtraBufts, set by tests and benchmarks, loads models without the CPU
// backend's extra buffer types (AMX, see amx.cpp; weight repacking): every
// weight then stays in an ordinary CPU buffer.
var noExtraBufts atomic.Bool

// ErrClosed is returned by methods of a closed Model or Context.
var ErrClosed = errors.New("llama: closed")

// Model is a loaded llama.cpp model (engine.Model). Its methods are safe for
// concurrent use; Close must come after every Context made from it is
// closed, and returns an error instead of freeing while one is open.
type Model struct {
	// mu is held for reading by every call into the model and for writing
	// by Close, so no call can run on a freed model.
	mu     sync.RWMutex
	model  *C.struct_llama_model
	vocab  *C.struct_llama_vocab
	nVocab int

	info     engine.ModelInfo
	special  engine.SpecialTokens
	contexts atomic.Int64 // open contexts
}

var _ engine.Model = (*Model)(nil)

// Load checks that path is a well-formed GGUF file (errors wrap
// ErrInvalidModel, or fs.ErrNotExist for a missing file), then loads it with
// llama.cpp while hashing it (sha256) in a second goroutine. progress, when
// non-nil, is called from the calling goroutine with values in [0,1].
func (b *Backend) Load(path string, opts engine.LoadOptions, progress func(float32)) (engine.Model, error) {
	m, err := b.LoadModel(path, opts, progress)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// LoadModel is Load returning the concrete type.
func (*Backend) LoadModel(path string, opts engine.LoadOptions, progress func(float32)) (*Model, error) {
	if _, err := checkGGUF(path); err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}

	type hashResult struct {
		sum string
		err error
	}
	stop := make(chan struct{})
	hashed := make(chan hashResult, 1)
	go func() {
		sum, err := hashFile(path, stop)
		hashed <- hashResult{sum, err}
	}()

	h := registerProgress(progress)
	cpath := C.CString(path)
	cm := C.c4m_model_load(cpath, C.int32_t(opts.NGPULayers), C.bool(opts.UseMmap), C.bool(!noExtraBufts.Load()), C.uintptr_t(h))
	C.free(unsafe.Pointer(cpath))
	unregisterProgress(h)
	if cm == nil {
		close(stop)
		<-hashed
		return nil, fmt.Errorf("load model %q: llama.cpp could not load it%s", path, lastErrorSuffix())
	}
	hr := <-hashed
	if hr.err != nil {
		C.llama_model_free(cm)
		return nil, fmt.Errorf("load model %q: hash: %w", path, hr.err)
	}

	m := &Model{model: cm, vocab: C.llama_model_get_vocab(cm)}
	m.nVocab = int(C.llama_vocab_n_tokens(m.vocab))
	m.info = engine.ModelInfo{
		Path:         path,
		SHA256:       hr.sum,
		Arch:         m.meta("general.architecture"),
		Name:         m.meta("general.name"),
		Description:  m.desc(),
		NCtxTrain:    int(C.llama_model_n_ctx_train(cm)),
		NParams:      uint64(C.llama_model_n_params(cm)),
		SizeBytes:    uint64(C.llama_model_size(cm)),
		NVocab:       m.nVocab,
		NEmbd:        int(C.llama_model_n_embd(cm)),
		ChatTemplate: m.chatTemplate(),
		Synthetic:    m.meta("general.synthetic") == "true",
	}
	v := m.vocab
	m.special = engine.SpecialTokens{
		BOS:    token(C.llama_vocab_bos(v)),
		EOS:    token(C.llama_vocab_eos(v)),
		EOT:    token(C.llama_vocab_eot(v)),
		FIMPre: token(C.llama_vocab_fim_pre(v)),
		FIMSuf: token(C.llama_vocab_fim_suf(v)),
		FIMMid: token(C.llama_vocab_fim_mid(v)),
		FIMPad: token(C.llama_vocab_fim_pad(v)),
		FIMRep: token(C.llama_vocab_fim_rep(v)),
		FIMSep: token(C.llama_vocab_fim_sep(v)),
		AddBOS: bool(C.llama_vocab_get_add_bos(v)),
	}
	return m, nil
}

// token converts a llama token, mapping LLAMA_TOKEN_NULL to engine.NoToken.
func token(t C.llama_token) engine.Token {
	if t < 0 {
		return engine.NoToken
	}
	return engine.Token(t)
}

// hashFile returns the hex sha256 of the file, reading it in a stream; it
// gives up early when stop is closed.
func hashFile(path string, stop <-chan struct{}) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		select {
		case <-stop:
			return "", errors.New("stopped")
		default:
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// meta returns a GGUF metadata value as a string ("" when absent).
func (m *Model) meta(key string) string {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	buf := make([]byte, 256)
	for {
		n := C.llama_model_meta_val_str(m.model, ckey, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		if n < 0 {
			return ""
		}
		if int(n) < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, int(n)+1)
	}
}

func (m *Model) desc() string {
	buf := make([]byte, 256)
	n := C.llama_model_desc(m.model, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return ""
	}
	return string(buf[:min(int(n), len(buf)-1)])
}

func (m *Model) chatTemplate() string {
	p := C.llama_model_chat_template(m.model, nil)
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// Info returns the metadata read at load time.
func (m *Model) Info() engine.ModelInfo { return m.info }

// Special returns the special token ids read at load time.
func (m *Model) Special() engine.SpecialTokens { return m.special }

// Meta returns any GGUF metadata value as a string, "" when absent.
func (m *Model) Meta(key string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.model == nil {
		return ""
	}
	return m.meta(key)
}

// Tokenize converts text to tokens with llama_tokenize.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]engine.Token, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.model == nil {
		return nil, ErrClosed
	}
	if len(text) > 1<<30 {
		return nil, fmt.Errorf("tokenize: text of %d bytes is too long", len(text))
	}
	var ctext *C.char
	if len(text) > 0 {
		ctext = (*C.char)(unsafe.Pointer(unsafe.StringData(text)))
	}
	// A token covers at least one byte; add room for BOS/EOS.
	out := make([]engine.Token, len(text)+2)
	for range 2 {
		n := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)),
			(*C.llama_token)(unsafe.Pointer(unsafe.SliceData(out))), C.int32_t(len(out)),
			C.bool(addSpecial), C.bool(parseSpecial))
		runtime.KeepAlive(text)
		if n >= 0 {
			return out[:n], nil
		}
		if n == math.MinInt32 {
			return nil, errors.New("tokenize: token count overflows")
		}
		// Buffer too small: -n is the size needed.
		out = make([]engine.Token, -n)
	}
	return nil, errors.New("tokenize: buffer size negotiation failed")
}

// Piece returns the bytes of token t (nil for an invalid id). special
// renders control tokens as their text; otherwise they are empty.
func (m *Model) Piece(t engine.Token, special bool) []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.model == nil || t < 0 || int(t) >= m.nVocab {
		return nil
	}
	var small [64]byte
	buf := small[:]
	for range 2 {
		n := C.llama_token_to_piece(m.vocab, C.llama_token(t),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(special))
		if n >= 0 {
			return append([]byte(nil), buf[:n]...)
		}
		buf = make([]byte, -n)
	}
	return nil
}

// Detokenize renders tokens as text with llama_detokenize (the inverse of
// Tokenize, including the leading-space handling of some vocabularies).
func (m *Model) Detokenize(tokens []engine.Token, removeSpecial, unparseSpecial bool) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.model == nil {
		return "", ErrClosed
	}
	if len(tokens) == 0 {
		return "", nil
	}
	for _, t := range tokens {
		if t < 0 || int(t) >= m.nVocab {
			return "", fmt.Errorf("detokenize: token %d out of range [0,%d)", t, m.nVocab)
		}
	}
	buf := make([]byte, 8*len(tokens)+16)
	for range 2 {
		n := C.llama_detokenize(m.vocab, (*C.llama_token)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), C.bool(removeSpecial), C.bool(unparseSpecial))
		if n >= 0 {
			return string(buf[:n]), nil
		}
		buf = make([]byte, -n)
	}
	return "", errors.New("detokenize: buffer size negotiation failed")
}

// IsEOG reports whether t ends generation (EOS, EOT, and the like).
func (m *Model) IsEOG(t engine.Token) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.model == nil || t < 0 || int(t) >= m.nVocab {
		return false
	}
	return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(t)))
}

// Close frees the model. It fails while contexts made from it are open, and
// is a no-op after the first success.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.model == nil {
		return nil
	}
	if n := m.contexts.Load(); n > 0 {
		return fmt.Errorf("llama: close model: %d contexts still open", n)
	}
	C.llama_model_free(m.model)
	m.model, m.vocab = nil, nil
	return nil
}
