// Package workload generates the typing workload of the benchmarks: a
// developer retyping a region of a real source file one character at a
// time, with one fill-in-the-middle request per keystroke. The same
// keystrokes drive the engine benchmark and the server benchmark, so the two
// can be compared as a ratio.
package workload

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Keystroke is the editor state after one typed character.
type Keystroke struct {
	File   string // path relative to the source root
	Prefix string // text before the cursor
	Suffix string // text after the cursor
}

// Options shape a workload.
type Options struct {
	Files        int // source files to type through
	Keystrokes   int // keystrokes per file
	MaxPrefix    int // bytes of prefix kept (the editor window); 0 = all
	MaxSuffix    int // bytes of suffix kept; 0 = all
	MinFileBytes int // skip smaller files
}

// Typist is one developer's sequence of keystrokes.
type Typist struct {
	ID         int
	Keystrokes []Keystroke
}

// SourceFiles lists .go files under root (not tests, not testdata), sorted,
// so a workload is reproducible on every machine with the same Go tree.
func SourceFiles(root string, minBytes int) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Size() >= int64(minBytes) {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// Build makes n typists, each retyping a region of its own file: the region
// starts at the beginning of a line in the middle of the file, the suffix is
// the unchanged rest of the file, and every keystroke adds one character to
// the prefix.
func Build(root string, n int, o Options) ([]Typist, error) {
	if o.Keystrokes <= 0 {
		return nil, fmt.Errorf("workload: keystrokes must be positive")
	}
	files, err := SourceFiles(root, max(o.MinFileBytes, 4096))
	if err != nil {
		return nil, err
	}
	per := max(o.Files, 1)
	if len(files) < n*per {
		return nil, fmt.Errorf("workload: %s has %d usable files, need %d", root, len(files), n*per)
	}
	// Spread the picks over the tree deterministically.
	step := len(files) / (n * per)
	var out []Typist
	for t := range n {
		ty := Typist{ID: t}
		for f := range per {
			path := files[(t*per+f)*step]
			src, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			rel, _ := filepath.Rel(root, path)
			ty.Keystrokes = append(ty.Keystrokes, typeRegion(rel, string(src), o)...)
		}
		out = append(out, ty)
	}
	return out, nil
}

func typeRegion(file, src string, o Options) []Keystroke {
	start := strings.LastIndexByte(src[:len(src)/2], '\n') + 1
	end := min(start+o.Keystrokes, len(src))
	before, region, after := src[:start], src[start:end], src[end:]
	ks := make([]Keystroke, 0, len(region))
	for i := 1; i <= len(region); i++ {
		// Never split a UTF-8 sequence: editors send whole characters.
		if i < len(region) && !isRuneStart(region[i]) {
			continue
		}
		prefix := before + region[:i]
		if o.MaxPrefix > 0 && len(prefix) > o.MaxPrefix {
			prefix = trimStartAtLine(prefix, len(prefix)-o.MaxPrefix)
		}
		suffix := after
		if o.MaxSuffix > 0 && len(suffix) > o.MaxSuffix {
			suffix = trimEndAtLine(suffix, o.MaxSuffix)
		}
		ks = append(ks, Keystroke{File: file, Prefix: prefix, Suffix: suffix})
	}
	return ks
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// trimStartAtLine drops at least cut bytes from the start, then to the next
// line start, so the window is stable while the cursor moves within a line.
func trimStartAtLine(s string, cut int) string {
	// Quantise the cut to 256 bytes so consecutive keystrokes share a window
	// start (and so a prompt prefix) most of the time.
	cut = (cut + 255) &^ 255
	if cut >= len(s) {
		return s[len(s)-1:]
	}
	if i := strings.IndexByte(s[cut:], '\n'); i >= 0 {
		return s[cut+i+1:]
	}
	return s[cut:]
}

func trimEndAtLine(s string, keep int) string {
	if i := strings.LastIndexByte(s[:keep], '\n'); i >= 0 {
		return s[:i+1]
	}
	return s[:keep]
}
