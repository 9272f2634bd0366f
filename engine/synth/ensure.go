package synth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/code4me/code4me/engine/gguf"
)

// DefaultSeed is the seed Ensure uses.
const DefaultSeed = 1

// FileName is the name Ensure gives a model: it encodes the shape, weight
// type, seed and generator version, so a changed generator never reuses a
// stale file.
func FileName(shape, typ string, seed int64) string {
	if typ == "" {
		typ = "f16"
	}
	return fmt.Sprintf("synthetic-%s-%s-s%d-g%d.gguf", shape, typ, seed, GeneratorVersion)
}

var ensureMu sync.Map // path -> *sync.Mutex

// Ensure returns the path of the synthetic model shapeName of type typ in
// dir, writing it first if it is missing or unreadable. Trained
// vocabularies are cached in dir/bpe. Concurrent calls for the same file in
// one process write it once; across processes the atomic rename keeps the
// file whole.
func Ensure(ctx context.Context, dir, shapeName, typ string) (string, error) {
	s, err := Lookup(shapeName)
	if err != nil {
		return "", err
	}
	opts := Options{Seed: DefaultSeed, Type: typ, CacheDir: filepath.Join(dir, "bpe")}
	if _, _, err := opts.tensorType(); err != nil {
		return "", err
	}
	path := filepath.Join(dir, FileName(s.Name, typ, opts.Seed))
	mu, _ := ensureMu.LoadOrStore(path, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if f, err := gguf.Open(path); err == nil {
		if ok, _ := f.Bool(KeySynthetic); ok {
			return path, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("synth: model dir: %w", err)
	}
	if err := Write(ctx, path, s, opts); err != nil {
		return "", err
	}
	return path, nil
}
