package redact

import (
	"context"
	"strings"
	"testing"

	"github.com/zricethezav/gitleaks/v8/detect"
)

// chunkTexts returns the text of every chunk of s, overlap included.
func chunkTexts(s string) []string {
	var out []string
	for _, c := range chunkSpans(s) {
		out = append(out, s[c[0]:c[1]])
	}
	return out
}

func TestChunkSpansCoverAndOverlap(t *testing.T) {
	src := serverGo(t)
	spans := chunkSpans(src)
	if len(spans) < len(src)/maxChunk {
		t.Fatalf("%d chunks for %d bytes", len(spans), len(src))
	}
	var total int
	for i, c := range spans {
		if c[0] != 0 && src[c[0]-1] != '\n' {
			t.Fatalf("chunk %d starts inside a line", i)
		}
		if c[1] != len(src) && src[c[1]-1] != '\n' {
			t.Fatalf("chunk %d ends inside a line", i)
		}
		if i > 0 && c[0] >= spans[i-1][1] {
			t.Fatalf("chunk %d does not overlap chunk %d", i, i-1)
		}
		total += c[1] - c[0]
	}
	if spans[0][0] != 0 || spans[len(spans)-1][1] != len(src) {
		t.Fatal("chunks do not cover the text")
	}
	avg := len(src) / len(spans)
	t.Logf("%d bytes: %d chunks, %d bytes average, %.1f%% scanned twice",
		len(src), len(spans), avg, 100*float64(total-len(src))/float64(len(src)))
	if avg < minChunk || avg > maxChunk {
		t.Fatalf("average chunk %d bytes, want between %d and %d", avg, minChunk, maxChunk)
	}
}

func TestChunkSpansStableUnderEdits(t *testing.T) {
	src := serverGo(t)[:16<<10]
	before := chunkTexts(src)

	// Typing at the end changes only the last chunks.
	typed := chunkTexts(src + "\tif err != nil {")
	same := 0
	for i := range min(len(before), len(typed)) {
		if before[i] == typed[i] {
			same++
		}
	}
	if same < len(before)-2 {
		t.Fatalf("typing at the end changed %d of %d chunks", len(before)-same, len(before))
	}

	// Dropping the first lines (a sliding window) keeps the later chunks.
	cut := strings.IndexByte(src[600:], '\n') + 601
	slid := chunkTexts(src[cut:])
	set := make(map[string]bool, len(before))
	for _, c := range before {
		set[c] = true
	}
	kept := 0
	for _, c := range slid {
		if set[c] {
			kept++
		}
	}
	if kept < len(slid)-3 {
		t.Fatalf("sliding the window kept %d of %d chunks", kept, len(slid))
	}
}

func TestChunkNeverCutsPrivateKey(t *testing.T) {
	// A long RSA-like body: far more than maxChunk, so only the PEM guard
	// keeps it in one chunk.
	body := strings.Repeat(randFrom(seeded(9), alnum, 64)+"\n", 3*maxChunk/65)
	block := "-----BEGIN RSA PRIVATE KEY-----\n" + body + "-----END RSA PRIVATE KEY-----"
	src := serverGo(t)[:8<<10] + "const k = `" + block + "`\n" + serverGo(t)[8<<10:16<<10]
	found := false
	for _, c := range chunkTexts(src) {
		if strings.Contains(c, "-----BEGIN RSA") {
			if !strings.Contains(c, block) {
				t.Fatal("a chunk holds the BEGIN line without the whole block")
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no chunk holds the BEGIN line")
	}
	r := newRedactor(t)
	out, _ := r.Text(context.Background(), src)
	if !strings.Contains(out, "const k = `<redacted:private-key>`\n") {
		t.Fatal("the long private key was not redacted as one block")
	}
	assertNoFragment(t, out, body)
}

func TestPemOpen(t *testing.T) {
	tests := []struct {
		line       string
		open, want bool
	}{
		{"-----BEGIN EC PRIVATE KEY-----\n", false, true},
		{"-----begin openssh private key-----\n", false, true},
		{"-----BEGIN CERTIFICATE-----\n", false, false},
		{"-----END EC PRIVATE KEY-----\n", true, false},
		{`"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"`, false, false},
		{"// ----- section -----\n", true, true},
		{"// ----- section -----\n", false, false},
	}
	for _, tc := range tests {
		if got := pemOpen(tc.line, tc.open); got != tc.want {
			t.Errorf("pemOpen(%q, %v) = %v, want %v", tc.line, tc.open, got, tc.want)
		}
	}
}

// TestChunkedEqualsWhole plants secrets at many offsets, chunk boundaries
// included, and checks that chunked redaction finds exactly what one gitleaks
// scan of the whole text finds.
func TestChunkedEqualsWhole(t *testing.T) {
	r := newRedactor(t)
	src := serverGo(t)[:32<<10]
	lines := strings.SplitAfter(src, "\n")
	rng := seeded(10)
	for i := 3; i < len(lines); i += 37 {
		switch i % 4 {
		case 0:
			lines[i] = "\tk := \"" + awsKey(rng) + "\"\n" + lines[i]
		case 1:
			lines[i] = "\tt := \"" + githubPAT(rng) + "\"\n" + lines[i]
		case 2:
			lines[i] = "\tdbPassword := \"" + randFrom(rng, alnum, 14) + "7!\"\n" + lines[i]
		default: // a value on the line after its name
			lines[i] = "\tslack :=\n\t\t\"" + slackBotToken(rng) + "\"\n" + lines[i]
		}
	}
	planted := strings.Join(lines, "")

	whole := append(hits(r.d.DetectContext(context.Background(), detect.Fragment{Raw: planted})), contextHits(planted)...)
	wantOut, wantCounts := apply(planted, whole)
	gotOut, gotCounts := r.Text(context.Background(), planted)
	if gotOut != wantOut || !equalFindings(gotCounts, wantCounts) {
		t.Fatalf("chunked redaction differs from a whole scan: %v vs %v", gotCounts, wantCounts)
	}
	if strings.Contains(gotOut, "AKIA") || strings.Contains(gotOut, "ghp_") || strings.Contains(gotOut, "xoxb-") || strings.Contains(gotOut, "7!") {
		t.Fatal("a planted secret survived")
	}
}
