package server

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnifiedDiffExamples: the diff of known texts, hunk headers, merged
// and split hunks, and the missing final newline, as diff -u writes them.
func TestUnifiedDiffExamples(t *testing.T) {
	lines := func(n int, change map[int]string) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			if s, ok := change[i]; ok {
				b.WriteString(s)
				continue
			}
			b.WriteString("l" + itoa(i) + "\n")
		}
		return b.String()
	}
	for _, tc := range []struct{ name, a, b, want string }{
		{"equal", "x\n", "x\n", ""},
		{"one line changed", "a\nb\nc\n", "a\nB\nc\n", "--- a/f.go\n+++ b/f.go\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{"insert into empty", "", "a\n", "--- a/f.go\n+++ b/f.go\n@@ -0,0 +1 @@\n+a\n"},
		{"delete all", "a\nb\n", "", "--- a/f.go\n+++ b/f.go\n@@ -1,2 +0,0 @@\n-a\n-b\n"},
		{"no final newline", "a\nb", "a\nc", "--- a/f.go\n+++ b/f.go\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"},
		{"newline added", "a", "a\n", "--- a/f.go\n+++ b/f.go\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"},
		{"far apart: two hunks", lines(20, nil), lines(20, map[int]string{2: "X\n", 18: "Y\n"}),
			"--- a/f.go\n+++ b/f.go\n@@ -1,5 +1,5 @@\n l1\n-l2\n+X\n l3\n l4\n l5\n@@ -15,6 +15,6 @@\n l15\n l16\n l17\n-l18\n+Y\n l19\n l20\n"},
		{"six apart: one hunk", lines(12, nil), lines(12, map[int]string{3: "X\n", 10: "Y\n"}),
			"--- a/f.go\n+++ b/f.go\n@@ -1,12 +1,12 @@\n l1\n l2\n-l3\n+X\n l4\n l5\n l6\n l7\n l8\n l9\n-l10\n+Y\n l11\n l12\n"},
		{"insertion mid-file", lines(8, nil), lines(8, map[int]string{5: "l5\nnew\n"}),
			"--- a/f.go\n+++ b/f.go\n@@ -3,6 +3,7 @@\n l3\n l4\n l5\n+new\n l6\n l7\n l8\n"},
	} {
		if got := unifiedDiff("f.go", tc.a, tc.b); got != tc.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

// randomText is n lines drawn from a small alphabet, so that lines repeat
// and the diff has real choices; the final newline is sometimes left out.
func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString([]string{"a", "b", "c", "d", "{", "}", ""}[r.IntN(7)])
		if i < n-1 || r.IntN(4) > 0 {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestDiffLinesApplies: the edit script rebuilds both texts exactly, and
// it is minimal: as many lines changed as GNU diff --minimal changes.
func TestDiffLinesApplies(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gnu, _ := exec.LookPath("diff")
	dir := t.TempDir()
	for i := range 300 {
		a, b := randomText(r, r.IntN(14)), randomText(r, r.IntN(14))
		ops := diffLines(splitLines(a), splitLines(b))
		if applyDiff(ops, false) != a || applyDiff(ops, true) != b {
			t.Fatalf("case %d: the script does not rebuild %q -> %q: %v", i, a, b, ops)
		}
		if gnu == "" || i%5 != 0 {
			continue
		}
		changed := 0
		for _, op := range ops {
			if op.kind != ' ' {
				changed++
			}
		}
		pa, pb := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		os.WriteFile(pa, []byte(a), 0o600)
		os.WriteFile(pb, []byte(b), 0o600)
		out, _ := exec.Command(gnu, "--minimal", "-U0", pa, pb).Output()
		want := 0
		for _, l := range strings.Split(string(out), "\n") {
			if (strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "---")) || (strings.HasPrefix(l, "+") && !strings.HasPrefix(l, "+++")) {
				want++
			}
		}
		if changed != want {
			t.Errorf("case %d: %d lines changed, GNU diff changes %d:\n%s", i, changed, want, out)
		}
	}
}

// TestUnifiedDiffPatches: GNU patch applies every unified diff to the old
// text and gets the new one; parseHunks reads a one-hunk diff back as the
// two texts.
func TestUnifiedDiffPatches(t *testing.T) {
	patch, err := exec.LookPath("patch")
	if err != nil {
		t.Skip("no patch program")
	}
	r := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	for i := range 80 {
		a, b := randomText(r, r.IntN(30)), randomText(r, r.IntN(30))
		if i%3 == 0 {
			// A few edits in a long text: several hunks.
			ls := splitLines(a + "\n")
			for j := range ls {
				if r.IntN(8) == 0 {
					ls[j] = "changed\n"
				}
			}
			b = strings.Join(ls, "")
			a += "\n"
		}
		d := unifiedDiff("f.txt", a, b)
		f := filepath.Join(dir, "f.txt")
		os.WriteFile(f, []byte(a), 0o600)
		cmd := exec.Command(patch, "--quiet", "--force", "--posix", f)
		cmd.Stdin = strings.NewReader(d)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("case %d: patch: %v: %s\n%s", i, err, out, d)
		}
		got, _ := os.ReadFile(f)
		if string(got) != b {
			t.Fatalf("case %d: patched %q, want %q\n%s", i, got, b, d)
		}
	}
	a, b := "a\nb\nc\n", "a\nx\nc\nd\n"
	h := parseHunks(unifiedDiff("f", a, b))
	if len(h) != 1 || h[0].before != a || h[0].after != b {
		t.Fatalf("hunks = %+v", h)
	}
	h = parseHunks("@@ -1 +1 @@\n-old\n\\ No newline at end of file\n+new\n")
	if len(h) != 1 || h[0].before != "old" || h[0].after != "new\n" {
		t.Fatalf("hunks = %+v", h)
	}
}
