package llama

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/code4me/code4me/engine"
)

func TestLoadRejectsBadFiles(t *testing.T) {
	good, err := os.ReadFile(tinyModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	patch := func(off int, v uint64) []byte {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	badVersion := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(badVersion[4:], 99)

	b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		invalid          bool
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "no such file", false},
		{"empty", write("empty.gguf", nil), "shorter than a GGUF header", true},
		{"not gguf", write("text.gguf", []byte(strings.Repeat("this is not a model\n", 10))), "bad magic", true},
		{"version", write("version.gguf", badVersion), "unsupported GGUF version 99", true},
		{"huge tensor count", write("tensors.gguf", patch(8, 1<<40)), "tensor count", true},
		{"huge kv count", write("kv.gguf", patch(16, 1<<40)), "metadata count", true},
		{"truncated header", write("header.gguf", good[:4000]), "truncated header|does not fit", true},
		{"truncated data", write("data.gguf", good[:len(good)-100]), "truncated: tensor", true},
		{"directory", dir, "not a regular file", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := b.Load(tc.path, engine.LoadOptions{UseMmap: true}, nil)
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			if !containsAny(err.Error(), strings.Split(tc.want, "|")) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if tc.invalid != errors.Is(err, ErrInvalidModel) {
				t.Errorf("errors.Is(err, ErrInvalidModel) = %v, want %v", !tc.invalid, tc.invalid)
			}
			if tc.name == "missing" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file: %v is not fs.ErrNotExist", err)
			}
		})
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestLoadCorruptTensorData flips bytes in the weights: the header is
// intact, so llama.cpp loads the file, and the sha256 tells it apart.
func TestLoadCorruptTensorData(t *testing.T) {
	good, err := os.ReadFile(tinyModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	for i := len(bad) - 64; i < len(bad); i++ {
		bad[i] ^= 0xff
	}
	p := filepath.Join(t.TempDir(), "flipped.gguf")
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := New(Config{})
	m, err := b.LoadModel(p, engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer m.Close()
	ref := loadTiny(t)
	if m.Info().SHA256 == ref.Info().SHA256 {
		t.Error("corrupted file has the same sha256")
	}
}

func TestCheckGGUFAcceptsModel(t *testing.T) {
	size, err := checkGGUF(tinyModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(tinyModelPath(t))
	if size != st.Size() {
		t.Errorf("size %d, want %d", size, st.Size())
	}
}

func TestQuantize(t *testing.T) {
	in := tinyModelPath(t)
	dir := t.TempDir()
	b, _ := New(Config{})
	for typ, desc := range map[string]string{"Q8_0": "Q8_0", "q4_k_m": "Q4_K - Medium"} {
		out := filepath.Join(dir, typ+".gguf")
		if err := Quantize(in, out, typ); err != nil {
			t.Fatalf("Quantize %s: %v", typ, err)
		}
		m, err := b.LoadModel(out, engine.LoadOptions{UseMmap: true}, nil)
		if err != nil {
			t.Fatalf("load %s: %v", typ, err)
		}
		info := m.Info()
		if !strings.Contains(info.Description, desc) {
			t.Errorf("%s: description %q does not name the type", typ, info.Description)
		}
		inSt, _ := os.Stat(in)
		outSt, _ := os.Stat(out)
		if outSt.Size() >= inSt.Size() {
			t.Errorf("%s: %d bytes, not smaller than the f16 input's %d", typ, outSt.Size(), inSt.Size())
		}
		// The quantized model still decodes to finite logits.
		c, err := m.NewLlamaContext(engine.ContextParams{NCtx: 256})
		if err != nil {
			t.Fatal(err)
		}
		toks, _ := m.Tokenize("func main() {}", false, false)
		var bt engine.Batch
		for i, tok := range toks {
			bt.Add(tok, int32(i), 0, i == len(toks)-1)
		}
		if err := c.Decode(&bt); err != nil {
			t.Fatal(err)
		}
		if l := c.Logits(len(toks) - 1); len(l) != info.NVocab {
			t.Errorf("%s: %d logits", typ, len(l))
		}
		c.Close()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := Quantize(in, filepath.Join(dir, "x.gguf"), "Q9_Z"); err == nil || !strings.Contains(err.Error(), "Q4_K_M") {
		t.Errorf("unknown type: %v", err)
	}
	if err := Quantize(filepath.Join(dir, "missing.gguf"), filepath.Join(dir, "y.gguf"), "Q8_0"); err == nil {
		t.Error("quantizing a missing file succeeded")
	}
}
