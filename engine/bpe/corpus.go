package bpe

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// GoCorpus reads a deterministic sample of about maxBytes of Go source from
// the tree under root (typically $GOROOT/src): all .go files outside
// testdata and vendor, sorted by path, taking every k-th file so that the
// sample spans the whole tree.
func GoCorpus(root string, maxBytes int64) ([][]byte, error) {
	type file struct {
		path string
		size int64
	}
	var files []file
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || (strings.HasPrefix(n, ".") && p != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, file{p, info.Size()})
		total += info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bpe: walk corpus %q: %w", root, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("bpe: no .go files under %q", root)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	step := 1
	if maxBytes > 0 && total > maxBytes {
		step = int(total / maxBytes)
	}
	var docs [][]byte
	var got int64
	for i := 0; i < len(files) && (maxBytes <= 0 || got < maxBytes); i += step {
		b, err := os.ReadFile(files[i].path)
		if err != nil {
			return nil, fmt.Errorf("bpe: read corpus: %w", err)
		}
		docs = append(docs, b)
		got += int64(len(b))
	}
	return docs, nil
}
