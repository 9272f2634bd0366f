package redact

import (
	"context"
	"strings"
	"testing"
)

func TestTailRedactsSecretCutByTheWindow(t *testing.T) {
	r := newRedactor(t)
	src := serverGo(t)[:8<<10]
	pat := githubPAT(seeded(20))
	s := src + "var tok = \"" + pat + "\"\n" + src
	// The window edge falls inside the token.
	n := len(s) - strings.Index(s, pat) - 10
	out, fs := r.Tail(context.Background(), s, n)
	if strings.Contains(out, pat[10:]) || !hasRule(fs, "github-pat") {
		t.Fatalf("the token's tail leaked from Tail: %v", fs)
	}
	if len(out) < n || !strings.HasSuffix(out, src) {
		t.Fatalf("Tail returned %d bytes, want at least %d ending with the text", len(out), n)
	}
	if whole, _ := r.Text(context.Background(), s); !strings.HasSuffix(whole, out) {
		t.Fatal("Tail's window is not a suffix of Text's result")
	}
}

func TestHeadRedactsSecretCutByTheWindow(t *testing.T) {
	r := newRedactor(t)
	src := serverGo(t)[:8<<10]
	aws := awsKey(seeded(21))
	s := src + "var k = \"" + aws + "\"\n" + src
	n := strings.Index(s, aws) + 6
	out, fs := r.Head(context.Background(), s, n)
	if strings.Contains(out, aws[:12]) || !hasRule(fs, "aws-access-token") {
		t.Fatalf("the key leaked from Head: %v", fs)
	}
	if whole, _ := r.Text(context.Background(), s); !strings.HasPrefix(whole, out) {
		t.Fatal("Head's window is not a prefix of Text's result")
	}
}

func TestWindowsWidenToPrivateKeyBlock(t *testing.T) {
	r := newRedactor(t)
	src := serverGo(t)[:4<<10]
	key := privateKeyPEM(t)
	s := src + "const k = `" + key + "`\n" + src
	body := strings.Split(key, "\n")
	mid := strings.Index(s, body[2]) // a line inside the key body

	tail, _ := r.Tail(context.Background(), s, len(s)-mid-Margin-20)
	if !strings.Contains(tail, "const k = `<redacted:private-key>`") {
		t.Fatal("Tail did not widen to the private key's BEGIN line")
	}
	assertNoFragment(t, tail, key)

	head, _ := r.Head(context.Background(), s, mid-Margin)
	if !strings.Contains(head, "const k = `<redacted:private-key>`") {
		t.Fatal("Head did not widen to the private key's END line")
	}
	assertNoFragment(t, head, key)
}

func TestWindowEdges(t *testing.T) {
	r := newRedactor(t)
	s := "short text\n"
	for _, n := range []int{-1, 0, 5, len(s), 10 * len(s)} {
		if out, _ := r.Tail(context.Background(), s, n); out != s {
			t.Errorf("Tail(%d) = %q", n, out)
		}
		if out, _ := r.Head(context.Background(), s, n); out != s {
			t.Errorf("Head(%d) = %q", n, out)
		}
	}
	tests := []struct {
		s    string
		pos  int
		want int
	}{
		{"a\n-----BEGIN RSA PRIVATE KEY-----\nxx\n", 36, 2},
		{"a\n-----BEGIN RSA PRIVATE KEY-----\nxx\n-----END RSA PRIVATE KEY-----\nb\n", 67, 67},
		{"a\n-----BEGIN CERTIFICATE-----\nxx\n", 33, 33},
		{"a\n-----BEGIN EC PRIVATE KEY-----\n// ----- note\nxx\n", 47, 2},
		{"no markers\n", 11, 11},
	}
	for _, tc := range tests {
		if got := openPEMStart(tc.s, tc.pos); got != tc.want {
			t.Errorf("openPEMStart(%q, %d) = %d, want %d", tc.s, tc.pos, got, tc.want)
		}
	}
}
