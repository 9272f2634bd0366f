package llama

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/code4me/code4me/engine"
)

func TestLoadMetadata(t *testing.T) {
	path := tinyModelPath(t)
	b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var calls []float32
	m, err := b.LoadModel(path, engine.LoadOptions{UseMmap: true}, func(p float32) { calls = append(calls, p) })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	info := m.Info()
	t.Logf("info: %+v", info)
	if info.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 = %s, want %x", info.SHA256, sum)
	}
	if info.Path != path {
		t.Errorf("Path = %q", info.Path)
	}
	if info.Arch == "" || info.Description == "" {
		t.Errorf("Arch %q, Description %q: want both set", info.Arch, info.Description)
	}
	if !info.Synthetic {
		t.Error("Synthetic = false for a synth model")
	}
	if info.NCtxTrain <= 0 || info.NParams == 0 || info.SizeBytes == 0 || info.NVocab <= 0 || info.NEmbd <= 0 {
		t.Errorf("sizes not filled: %+v", info)
	}
	if info.SizeBytes > uint64(len(data)) {
		t.Errorf("SizeBytes %d > file size %d", info.SizeBytes, len(data))
	}
	if len(calls) == 0 || calls[len(calls)-1] != 1 {
		t.Errorf("progress calls %v: want some, ending at 1", calls)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] < calls[i-1] {
			t.Errorf("progress went backwards: %v", calls)
			break
		}
	}
	if got := m.Meta("general.architecture"); got != info.Arch {
		t.Errorf("Meta(general.architecture) = %q, want %q", got, info.Arch)
	}
	if got := m.Meta("no.such.key"); got != "" {
		t.Errorf("Meta(missing) = %q", got)
	}
}
