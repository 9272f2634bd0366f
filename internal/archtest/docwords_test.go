package archtest

import (
	"bytes"
	"errors"
	"fmt"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/code4me/code4me/internal/testenv"
)

// Docs and comments describe the product as it is. Two kinds of words make
// them useless to a maintainer, and TestDocWords fails on both (docRules
// holds the exact patterns):
//
//   - words about how the work went: the word session followed by a number
//     or preceded by this, last, previous, next or earlier; until last week;
//     sprint. Session alone is a product word here (session tokens, the
//     session table), so only these history phrases match, and not where
//     the phrase names a product session ("this session's tokens");
//   - citations of documents that are not in the repository: the section
//     sign, the original platform's specification and the ids of its list
//     of defects, the design and style notes kept outside the repository,
//     issue numbers. A defect id counts only where it is cited (in
//     parentheses, next to fixed, bug or spec, in a range or a pair), so an
//     NVIDIA T4 or an AWS S3 bucket is not one. Say the rule instead, where
//     it is applied.
//
// Go files are checked in their comments, SQL files in their -- comments,
// shell scripts and Makefiles in their # comments, Markdown files in full.

// A docHit is one line that breaks the rule.
type docHit struct {
	Path string
	Line int
	Why  string
	Text string
}

func (h docHit) String() string { return fmt.Sprintf("%s:%d: %s: %s", h.Path, h.Line, h.Why, h.Text) }

// bugID is an id of the original platform's list of defects.
const bugID = `(?:[SR][1-9]|W[1-7]|T[1-7]|C[1-7]|A(?:1[0-2]|[1-9]))`

var docRules = []struct {
	why string
	re  *regexp.Regexp
	// not, when set, clears a match that it also matches at the match's
	// start (with what follows it on the line).
	not *regexp.Regexp
}{
	{why: "work-session words", re: regexp.MustCompile(`\b[Ss]essions? [0-9]+\b`)},
	{why: "work-session words", re: regexp.MustCompile(`\b(?:[Tt]his|[Ll]ast|[Pp]revious|[Nn]ext|[Ee]arlier) session\b`),
		// "this session's project tokens", "the next session token", "the
		// last session row" are the product's sessions, not the work's.
		not: regexp.MustCompile(`^\w+ session(?:'s|’s|s?[ _-](?:tokens?|rows?|ids?|cookies?|keys?|table|TTL|data|ends?|ended|starts?|expires|lookup))`)},
	{why: "work-session words", re: regexp.MustCompile(`\b[Uu]ntil last week\b|\bsprints?\b`)},
	{why: "citation of a document outside the repository", re: regexp.MustCompile(`§|\b[Ss]pec(?:ification)? [A-Z][0-9]|\b(?:DESIGN|STYLE)\.md\b|code4me-v2-spec|shared/reference|\b[Ii]ssue #?[0-9]+\b`)},
	{why: "bug id of the original's specification", re: regexp.MustCompile(
		// in parentheses: "(R2)", "(T5, T7)", "(C2, C4)", "(T5," at a line end
		`\(` + bugID + `(?:\s*(?:[,/–-]|and)\s*` + bugID + `)*(?:\)|,|\s*$)` +
			// ranges and pairs: "W1–W7", "R2/R4"
			`|\b` + bugID + `[–/-]` + bugID + `\b` +
			// next to words that cite: "S2 fixed", "fixing R2", "spec C5", "no R3 coercion"
			`|\b` + bugID + `\b (?:fixed|bug|stays? fixed)` +
			`|\b(?:[Ff]ix(?:ed|es|ing)?|[Bb]ug|[Ss]pec|original's|no) ` + bugID + `\b` +
			// leading a comment: "S3: a non-member cannot…"
			`|^\s*` + bugID + `:`)},
}

// docWordHits returns the lines of text, the content of the file at path,
// that break a rule.
func docWordHits(path string, text []byte) []docHit {
	var hits []docHit
	check := func(line int, s string) {
		for _, r := range docRules {
			for _, m := range r.re.FindAllStringIndex(s, -1) {
				if r.not == nil || !r.not.MatchString(s[m[0]:]) {
					hits = append(hits, docHit{Path: path, Line: line, Why: r.why, Text: strings.TrimSpace(s)})
					return
				}
			}
		}
	}
	base := filepath.Base(path)
	switch {
	case strings.HasSuffix(path, ".go"):
		goComments(text, check)
	case strings.HasSuffix(path, ".md"):
		for i, l := range strings.Split(string(text), "\n") {
			check(i+1, l)
		}
	case strings.HasSuffix(path, ".sql"):
		for i, l := range strings.Split(string(text), "\n") {
			if c, ok := sqlComment(l); ok {
				check(i+1, c)
			}
		}
	case strings.HasSuffix(path, ".sh") || base == "Makefile" || strings.HasSuffix(base, ".mk"):
		for i, l := range strings.Split(string(text), "\n") {
			if c, ok := hashComment(l); ok {
				check(i+1, c)
			}
		}
	}
	return hits
}

// goComments calls check with every line of every comment in src.
func goComments(src []byte, check func(line int, s string)) {
	fset := token.NewFileSet()
	f := fset.AddFile("", fset.Base(), len(src))
	var s scanner.Scanner
	s.Init(f, src, func(token.Position, string) {}, scanner.ScanComments)
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			return
		}
		if tok != token.COMMENT {
			continue
		}
		line := fset.Position(pos).Line
		// A comment's lines start after its marker, so that "// S3: …"
		// leads its line.
		lit = strings.TrimPrefix(strings.TrimPrefix(lit, "//"), "/*")
		for i, l := range strings.Split(lit, "\n") {
			check(line+i, l)
		}
	}
}

// sqlComment returns what follows "--" outside a quoted string.
func sqlComment(l string) (string, bool) {
	quoted := false
	for i := 0; i+1 < len(l); i++ {
		switch {
		case l[i] == '\'':
			quoted = !quoted
		case !quoted && l[i] == '-' && l[i+1] == '-':
			return l[i+2:], true
		}
	}
	return "", false
}

// hashComment returns what follows a "#" that starts the line or a word.
func hashComment(l string) (string, bool) {
	for i := 0; i < len(l); i++ {
		if l[i] == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t') {
			return l[i+1:], true
		}
	}
	return "", false
}

// skippedDirs are generated, vendored or local directories whose text is
// not ours to word.
var skippedDirs = []string{".git", ".cache", "data", "bin", "build", "third_party/ollama", "models"}

// frozenFiles are not checked. This file quotes the phrases it looks for.
// The migrations landed with such comments; migrations are never edited
// once they land, so their comments are accepted as they are, and a new
// migration is checked like any file.
var frozenFiles = []string{
	"internal/archtest/docwords_test.go",
	"migrations/0002_lookups.up.sql",
	"migrations/0003_users.up.sql",
	"migrations/0004_projects.up.sql",
	"migrations/0006_studies.up.sql",
	"migrations/0007_chats.up.sql",
	"migrations/0008_queries.up.sql",
	"migrations/0010_context_lz4.up.sql",
}

func checkedKind(path string) bool {
	base := filepath.Base(path)
	switch filepath.Ext(path) {
	case ".go", ".md", ".sql", ".sh", ".mk":
		return true
	}
	return base == "Makefile"
}

// repoFiles lists the repository's files (relative, slash-separated): what
// git tracks plus new files it does not ignore, or, without git, a walk of
// the tree.
func repoFiles(t *testing.T) (root string, files []string) {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err == nil {
		root = strings.TrimSpace(string(out))
		out, err = exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	}
	if err == nil {
		for _, f := range bytes.Split(out, []byte{0}) {
			if len(f) > 0 {
				files = append(files, string(f))
			}
		}
		return root, files
	}
	root, err = testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if slices.Contains(skippedDirs, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return root, files
}

func skipped(path string) bool {
	if slices.Contains(frozenFiles, path) {
		return true
	}
	for _, d := range skippedDirs {
		if strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// TestDocWords fails on work-session words and on citations of documents
// outside the repository, naming file and line of each.
func TestDocWords(t *testing.T) {
	root, files := repoFiles(t)
	checked := 0
	for _, f := range files {
		if skipped(f) || !checkedKind(f) {
			continue
		}
		text, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		} else if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, h := range docWordHits(f, text) {
			t.Error(h)
		}
	}
	if checked < 50 {
		t.Fatalf("checked only %d files under %s", checked, root)
	}
}

// TestDocWordsDetected proves the matcher catches each kind of phrase and
// leaves the product's own uses of "session" and look-alike names alone.
func TestDocWordsDetected(t *testing.T) {
	bad := map[string]string{
		"a.go": "package a\n\n// Measured in session 7 on the AMD host.\nfunc f() {}\n" +
			"/* first line\n   until last week this was slower */\n" +
			"// S3: a non-member cannot activate the project.\n" +
			"var x = 1 // the body is checked first (T6)\n" +
			"// a bad id is a 422 (T5,\n" +
			"// Chat with C1–C7 fixed.\n" +
			"// Lines stay strings (no R3 coercion).\n" +
			"// Ground truth for chat queries too (spec C5).\n" +
			"// The enforcement of DESIGN.md and the house rules.\n",
		"docs/x.md": "Figures of sessions 5 and 6.\nIn this session we tried lz4.\nThe message catalogue of spec §1.3.\n" +
			"One session per login, fixing R2/R4.\nThe sprint ended.\nAs issue 4 says.\n",
		"m.sql":    "SELECT 1; -- spec §5.2 ids\n",
		"s.sh":     "echo hi # see the previous session\n",
		"Makefile": "# The cgo flags of session 5.\nall:\n",
	}
	want := map[string][]int{
		"a.go":      {3, 6, 7, 8, 9, 10, 11, 12, 13},
		"docs/x.md": {1, 2, 3, 4, 5, 6},
		"m.sql":     {1},
		"s.sh":      {1},
		"Makefile":  {1},
	}
	for path, text := range bad {
		var lines []int
		for _, h := range docWordHits(path, []byte(text)) {
			lines = append(lines, h.Line)
			if !strings.HasPrefix(h.String(), fmt.Sprintf("%s:%d: ", path, h.Line)) {
				t.Errorf("hit %q does not start with file:line", h)
			}
		}
		if !slices.Equal(lines, want[path]) {
			t.Errorf("%s: hits on lines %v, want %v", path, lines, want[path])
		}
	}

	good := map[string]string{
		"b.go": "package b\n\n// A session token belongs to one login; this session's project tokens end with it.\n" +
			"// The next session token is issued by acquire; the last session row is closed.\n" +
			"// ClassSP: ClassS plus a project token issued to that session.\n" +
			"// Revokes every session of the user (sessions table).\n" +
			"// Uploads to an AWS S3 bucket; runs on an NVIDIA T4 or A10; C11 atomics.\n" +
			"var s = \"session 5, spec §1\" // strings are not comments\n" +
			"func Sprint() {}\n",
		"docs/y.md": "Every session has a session_token cookie and a row in `session`.\n" +
			"A keystroke costs 1.1 ms (p50, T = 40 ms).\n| S1 | secret |\n",
		"n.sql":    "INSERT INTO t VALUES ('spec §5', 'T4'); -- ids that plugins send\n",
		"t.sh":     "echo 'session 5' # installs PostgreSQL\n",
		"Makefile": "# Every session token is random.\nall:\n\techo a#b\n",
	}
	for path, text := range good {
		if hits := docWordHits(path, []byte(text)); len(hits) != 0 {
			t.Errorf("%s: want no hits, got %v", path, hits)
		}
	}
}
