package workload

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBuildFromGoTree(t *testing.T) {
	root := filepath.Join(runtime.GOROOT(), "src", "net")
	ts, err := Build(root, 4, Options{Files: 1, Keystrokes: 40, MaxPrefix: 2048, MaxSuffix: 512})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 4 {
		t.Fatalf("typists %d", len(ts))
	}
	files := map[string]bool{}
	for _, ty := range ts {
		if len(ty.Keystrokes) < 30 {
			t.Fatalf("typist %d has %d keystrokes", ty.ID, len(ty.Keystrokes))
		}
		files[ty.Keystrokes[0].File] = true
		for i, k := range ty.Keystrokes {
			if !utf8.ValidString(k.Prefix) || !utf8.ValidString(k.Suffix) {
				t.Fatal("keystroke splits a character")
			}
			if len(k.Prefix) > 2048 || len(k.Suffix) > 512 {
				t.Fatalf("window too large: %d/%d", len(k.Prefix), len(k.Suffix))
			}
			if i > 0 && k.Suffix != ty.Keystrokes[i-1].Suffix {
				t.Fatal("the suffix must not change while typing")
			}
		}
	}
	if len(files) != 4 {
		t.Fatal("each typist should type a different file")
	}
	// Deterministic.
	again, _ := Build(root, 4, Options{Files: 1, Keystrokes: 40, MaxPrefix: 2048, MaxSuffix: 512})
	if again[2].Keystrokes[10] != ts[2].Keystrokes[10] {
		t.Fatal("workload is not deterministic")
	}
}

func TestPrefixGrowsOneCharacter(t *testing.T) {
	src := strings.Repeat("x := 1\n", 20) + "héllo wörld\n" + strings.Repeat("y := 2\n", 20)
	ks := typeRegion("f.go", src, Options{Keystrokes: 30})
	for i := 1; i < len(ks); i++ {
		if !strings.HasPrefix(ks[i].Prefix, ks[i-1].Prefix) || utf8.RuneCountInString(ks[i].Prefix)-utf8.RuneCountInString(ks[i-1].Prefix) != 1 {
			t.Fatalf("keystroke %d does not add exactly one character", i)
		}
	}
}
