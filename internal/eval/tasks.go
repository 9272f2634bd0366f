// Package eval is offline evaluation: it cuts fill-in-the-middle tasks out
// of a source tree (the rest of a line, a few whole lines, or a random span
// of text), has a model complete them, scores each output against the text
// that was cut out (exact match and edit similarity), summarises the scores
// and latencies per task kind and language, and stores a run in Postgres.
//
// Building tasks is deterministic: the same tree, options and seed give the
// same tasks on every machine, so runs of different models or arms on them
// compare task by task. The package runs tasks one at a time through a
// function the caller supplies, and knows nothing of the engine.
package eval

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is how a task's expected text was cut from its file.
type Kind string

// Task kinds.
const (
	// SingleLine: the rest of a line after a cut point inside it.
	SingleLine Kind = "single_line"
	// MultiLine: two to four whole lines.
	MultiLine Kind = "multi_line"
	// Span: a random stretch of 8 to 64 characters, which may cross lines.
	Span Kind = "span"
)

// Kinds lists the task kinds in the order tasks cycle through them.
var Kinds = []Kind{SingleLine, MultiLine, Span}

// Task is one fill-in-the-middle problem: the model sees Prefix and Suffix
// and should produce Expected.
type Task struct {
	Index    int    `json:"index"`
	File     string `json:"file"` // slash-separated path relative to the tree's root
	Language string `json:"language"`
	Kind     Kind   `json:"kind"`
	Prefix   string `json:"prefix"`
	Suffix   string `json:"suffix"`
	Expected string `json:"expected"`
}

// languages maps file extensions to the language a task is reported under.
var languages = map[string]string{
	".go": "go", ".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
	".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript", ".java": "java",
	".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
	".rs": "rust", ".rb": "ruby", ".php": "php", ".cs": "csharp", ".kt": "kotlin",
	".swift": "swift", ".scala": "scala", ".sh": "shell", ".lua": "lua",
}

// Language names the language of a file from its extension; "" when the
// extension is not a known source language.
func Language(path string) string { return languages[strings.ToLower(filepath.Ext(path))] }

// LanguageNames lists every language Language can name, sorted.
func LanguageNames() []string {
	var out []string
	for _, l := range languages {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// skippedDirs are never walked into, besides hidden directories.
var skippedDirs = map[string]bool{"vendor": true, "testdata": true, "node_modules": true, "third_party": true}

// generated matches the marker of a generated file (Go's convention, which
// many other generators follow in their own comment syntax).
var generated = regexp.MustCompile(`(?m)^\W*Code generated .* DO NOT EDIT\.?`)

// Options shape a set of tasks.
type Options struct {
	Tasks     int      // tasks to build (required)
	Seed      uint64   // seeds every random choice
	Languages []string // only these languages; empty: every language found
	MaxPrefix int      // bytes of prefix kept before the cut (an editor's window); 0: 4096
	MaxSuffix int      // bytes of suffix kept after it; 0: 1024
	MaxFile   int      // larger files are skipped; 0: 512 KiB
}

func (o Options) withDefaults() Options {
	if o.MaxPrefix <= 0 {
		o.MaxPrefix = 4096
	}
	if o.MaxSuffix <= 0 {
		o.MaxSuffix = 1024
	}
	if o.MaxFile <= 0 {
		o.MaxFile = 512 << 10
	}
	return o
}

// SourceFiles lists the source files under root by language, each list
// sorted, with slash-separated paths relative to root. It skips hidden
// directories, vendor, testdata, node_modules and third_party, files
// larger than maxFile bytes, files that are not UTF-8 text, and generated
// files (a "Code generated ... DO NOT EDIT" line).
func SourceFiles(root string, maxFile int) (map[string][]string, error) {
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || skippedDirs[d.Name()]) {
				return filepath.SkipDir
			}
			return nil
		}
		lang := Language(p)
		if lang == "" || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > int64(maxFile) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 || generated.Match(b) {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out[lang] = append(out[lang], filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eval: walk %s: %w", root, err)
	}
	for _, files := range out {
		slices.Sort(files)
	}
	return out, nil
}

// Build cuts o.Tasks tasks out of the source files under root. Task i has
// kind Kinds[i%3] and takes the languages in turn (sorted by name, one per
// three tasks), so every kind and language gets its share; the file and the
// cut within it are drawn from a generator seeded with o.Seed. A drawn file
// without room for a task of every kind (see usable) is not drawn again,
// and a language whose files are all passed over leaves the rotation.
func Build(root string, o Options) ([]Task, error) {
	o = o.withDefaults()
	if o.Tasks <= 0 {
		return nil, fmt.Errorf("eval: the number of tasks must be positive")
	}
	byLang, err := SourceFiles(root, o.MaxFile)
	if err != nil {
		return nil, err
	}
	if len(o.Languages) > 0 {
		for l := range byLang {
			if !slices.Contains(o.Languages, l) {
				delete(byLang, l)
			}
		}
	}
	var langs []string
	for l := range byLang {
		langs = append(langs, l)
	}
	slices.Sort(langs)
	if len(langs) == 0 {
		return nil, fmt.Errorf("eval: no source files under %s", root)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x636f6465346d65)) // "code4me"
	contents := map[string]string{}
	read := func(rel string) (string, error) {
		if s, ok := contents[rel]; ok {
			return s, nil
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return "", err
		}
		contents[rel] = string(b)
		return contents[rel], nil
	}
	tasks := make([]Task, 0, o.Tasks)
	for i := 0; len(tasks) < o.Tasks; {
		if len(langs) == 0 {
			return nil, fmt.Errorf("eval: no source file under %s has room for every kind of task", root)
		}
		kind := Kinds[i%len(Kinds)]
		lang := langs[(i/len(Kinds))%len(langs)]
		files := byLang[lang]
		if len(files) == 0 {
			// Every file of the language was passed over: the others
			// share its turns from here on.
			langs = slices.DeleteFunc(langs, func(l string) bool { return l == lang })
			continue
		}
		fi := rng.IntN(len(files))
		text, err := read(files[fi])
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		cut, end, ok := 0, 0, usable(text)
		if ok {
			cut, end, ok = pick(kind, text, rng)
		}
		if !ok {
			byLang[lang] = slices.Delete(files, fi, fi+1)
			continue
		}
		tasks = append(tasks, Task{
			Index: i, File: files[fi], Language: lang, Kind: kind,
			Prefix:   tail(text[:cut], o.MaxPrefix),
			Suffix:   head(text[end:], o.MaxSuffix),
			Expected: text[cut:end],
		})
		i++
	}
	return tasks, nil
}

// usable reports whether text has room for a task of every kind: a line
// with at least two characters besides spaces (single line), a line that
// is not blank with four more after it (multi-line), and more than 64
// characters (span).
func usable(text string) bool {
	lines := lineStarts(text)
	single, multi := false, false
	for i := range lines {
		l := strings.TrimSpace(lineAt(text, lines, i))
		single = single || utf8.RuneCountInString(l) >= 2
		multi = multi || (l != "" && i+4 < len(lines))
	}
	return single && multi && utf8.RuneCountInString(text) > 64
}

// pick chooses where to cut a task of kind k out of text: the expected text
// is text[cut:end]. ok is false when text has no place for one.
func pick(k Kind, text string, rng *rand.Rand) (cut, end int, ok bool) {
	lines := lineStarts(text)
	switch k {
	case SingleLine:
		// A line with at least two characters after its indentation; the
		// cut lies after the indentation and leaves at least one
		// non-space character to complete.
		var cand []int
		for i := range lines {
			if utf8.RuneCountInString(strings.TrimSpace(lineAt(text, lines, i))) >= 2 {
				cand = append(cand, i)
			}
		}
		if len(cand) == 0 {
			return 0, 0, false
		}
		li := cand[rng.IntN(len(cand))]
		line := lineAt(text, lines, li)
		body := strings.TrimRightFunc(line, unicode.IsSpace)
		indent := len(line) - len(strings.TrimLeftFunc(line, unicode.IsSpace))
		var cuts []int // character boundaries from the indentation on
		for j := range body {
			if j >= indent {
				cuts = append(cuts, j)
			}
		}
		start := lines[li]
		c := cuts[rng.IntN(len(cuts))]
		return start + c, start + len(body), true
	case MultiLine:
		// Two to four whole lines, the first not blank; the expected text
		// ends with the last line's newline.
		n := 2 + rng.IntN(3)
		var cand []int
		for i := 0; i+n < len(lines); i++ { // a line after them starts the suffix
			if strings.TrimSpace(lineAt(text, lines, i)) != "" {
				cand = append(cand, i)
			}
		}
		if len(cand) == 0 {
			return 0, 0, false
		}
		li := cand[rng.IntN(len(cand))]
		return lines[li], lines[li+n], true
	case Span:
		// 8 to 64 characters starting at a character that is not a space.
		var runes []int // byte offset of every character
		for j := range text {
			runes = append(runes, j)
		}
		n := 8 + rng.IntN(57)
		var starts []int
		for s := 0; s+n < len(runes); s++ {
			if r, _ := utf8.DecodeRuneInString(text[runes[s]:]); !unicode.IsSpace(r) {
				starts = append(starts, s)
			}
		}
		if len(starts) == 0 {
			return 0, 0, false
		}
		s := starts[rng.IntN(len(starts))]
		return runes[s], runes[s+n], true
	}
	return 0, 0, false
}

// lineStarts returns the byte offset of the start of every line that ends
// with a newline (a last line without one is not included).
func lineStarts(text string) []int {
	var out []int
	for off := 0; ; {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			return out
		}
		out = append(out, off)
		off += i + 1
	}
}

// lineAt is line i without its newline.
func lineAt(text string, starts []int, i int) string {
	end := strings.IndexByte(text[starts[i]:], '\n')
	return text[starts[i] : starts[i]+end]
}

// tail is the last at most n bytes of s, starting at a character boundary.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

// head is the first at most n bytes of s, ending at a character boundary.
func head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
