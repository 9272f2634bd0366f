package bpe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// trainerVersion changes whenever training would give different merges for
// the same input, so stale cache entries are never reused.
const trainerVersion = 1

// CacheKey identifies a training run: trainer version, target size and the
// corpus bytes themselves.
func CacheKey(docs [][]byte, size int) string {
	h := sha256.New()
	var buf [8]byte
	for _, v := range []uint64{trainerVersion, uint64(size), uint64(len(docs))} {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	for _, d := range docs {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(d)))
		h.Write(buf[:])
		h.Write(d)
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// TrainCached returns the vocabulary Train would give for docs and size,
// reading it from cacheDir when an earlier run stored it there and storing
// it otherwise. An empty cacheDir disables the cache. The result has no
// special tokens; callers Clone it before adding any.
func TrainCached(ctx context.Context, cacheDir string, docs [][]byte, size int) (*Vocab, error) {
	if cacheDir == "" {
		return Train(ctx, docs, size)
	}
	path := filepath.Join(cacheDir, fmt.Sprintf("bpe-%d-%s.merges", size, CacheKey(docs, size)))
	if b, err := os.ReadFile(path); err == nil {
		if v, err := parseMerges(b); err == nil {
			return v, nil
		}
		// A corrupt entry is retrained and overwritten.
	}
	v, err := Train(ctx, docs, size)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("bpe: cache dir: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString("#bpe merges v1\n")
	for _, m := range v.Merges {
		buf.WriteString(m)
		buf.WriteByte('\n')
	}
	tmp, err := os.CreateTemp(cacheDir, ".bpe-*")
	if err != nil {
		return nil, fmt.Errorf("bpe: write cache: %w", err)
	}
	_, werr := tmp.Write(buf.Bytes())
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("bpe: write cache: %v %v", werr, cerr)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("bpe: write cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("bpe: write cache: %w", err)
	}
	return v, nil
}

func parseMerges(b []byte) (*Vocab, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	if !sc.Scan() || sc.Text() != "#bpe merges v1" {
		return nil, fmt.Errorf("bpe: bad cache header")
	}
	var merges []string
	for sc.Scan() {
		if line := sc.Text(); strings.TrimSpace(line) != "" {
			merges = append(merges, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return FromMerges(merges)
}
