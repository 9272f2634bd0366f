package mail

import (
	"strings"
	"testing"
	"time"
)

func TestTokenLink(t *testing.T) {
	tests := []struct{ base, token, want string }{
		{"https://code4me.test/api/user/verify/", "abc", "https://code4me.test/api/user/verify/?token=abc"},
		{"https://code4me.test/verify?lang=en", "abc", "https://code4me.test/verify?lang=en&token=abc"},
		{"http://localhost:8008/reset", "a+b/c=", "http://localhost:8008/reset?token=a%2Bb%2Fc%3D"},
	}
	for _, tc := range tests {
		got, err := TokenLink(tc.base, tc.token)
		if err != nil || got != tc.want {
			t.Errorf("TokenLink(%q, %q) = %q, %v; want %q", tc.base, tc.token, got, err, tc.want)
		}
	}
	for _, bad := range []string{"javascript:alert(1)", "/relative/path", "://nope"} {
		if _, err := TokenLink(bad, "t"); err == nil {
			t.Errorf("TokenLink(%q) succeeded", bad)
		}
	}
}

func TestTemplatesEscapeName(t *testing.T) {
	m, err := VerificationEmail("a@example.com", `<script>alert("x")</script>`, "https://x.test/v", "t", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<script>") {
		t.Fatalf("HTML body contains the raw name:\n%s", m.HTML)
	}
	if !strings.Contains(m.HTML, "&lt;script&gt;") || !strings.Contains(m.Text, "This link will expire in 60 minutes.") {
		t.Fatalf("bodies:\n%s\n%s", m.Text, m.HTML)
	}
	r, err := PasswordResetEmail("a@example.com", "Jane", "https://x.test/r", "t", PasswordResetTTL)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "Reset Your Password" || !strings.Contains(r.HTML, "#f44336") || !strings.Contains(r.HTML, "This link will expire after 15 minutes.") {
		t.Fatalf("reset email: %+v", r)
	}
}

func TestEmailChangedEmail(t *testing.T) {
	m, err := EmailChangedEmail("old@example.com", "Jane", `new+<b>@example.com`)
	if err != nil {
		t.Fatal(err)
	}
	if m.To != "old@example.com" || m.Subject != EmailChangedSubject ||
		!strings.Contains(m.Text, "changed to new+<b>@example.com.") || !strings.Contains(m.HTML, "new&#43;&lt;b&gt;@example.com") {
		t.Fatalf("notice: %+v", m)
	}
	if strings.Contains(m.HTML, "<b>@") || strings.Contains(m.Text, "token=") {
		t.Fatalf("notice escapes nothing or carries a link: %+v", m)
	}
}
