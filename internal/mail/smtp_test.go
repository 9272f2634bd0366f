package mail

import (
	"context"
	"errors"
	"mime"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/code4me/code4me/internal/mail/mailtest"
)

const from = "Code4me <noreply@code4me.test>"

func smtpFor(srv *mailtest.Server) *SMTP {
	return &SMTP{Host: srv.Host(), Port: srv.Port(), From: from}
}

func waitOne(t *testing.T, srv *mailtest.Server) mailtest.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := srv.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

func TestSMTPDeliversVerificationEmail(t *testing.T) {
	srv := mailtest.Start(t)
	m, err := VerificationEmail("Jane Doe <jane@example.com>", "Jane", "https://code4me.test/api/user/verify/", "tok-123_abc", VerificationTTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := smtpFor(srv).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := waitOne(t, srv)
	if got.From != "noreply@code4me.test" || len(got.To) != 1 || got.To[0] != "jane@example.com" {
		t.Fatalf("envelope from %q to %v", got.From, got.To)
	}
	if got.TLS || got.AuthUser != "" {
		t.Fatalf("plain delivery reported TLS=%v auth=%q", got.TLS, got.AuthUser)
	}
	msg, err := got.Message()
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Header
	for k, want := range map[string]string{
		"From":         `"Code4me" <noreply@code4me.test>`,
		"To":           `"Jane Doe" <jane@example.com>`,
		"Subject":      "Verify Your Email Address",
		"Mime-Version": "1.0",
	} {
		if h.Get(k) != want {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), want)
		}
	}
	if d, err := h.Date(); err != nil || time.Since(d) > time.Minute {
		t.Errorf("Date header %q: %v", h.Get("Date"), err)
	}
	if id := h.Get("Message-Id"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@code4me.test>") {
		t.Errorf("Message-ID %q", id)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "multipart/alternative; boundary=") {
		t.Errorf("Content-Type %q", h.Get("Content-Type"))
	}
	bodies, err := got.Bodies()
	if err != nil {
		t.Fatal(err)
	}
	link := "https://code4me.test/api/user/verify/?token=tok-123_abc"
	if text := bodies["text/plain"]; !strings.Contains(text, "Hi Jane,") || !strings.Contains(text, link) ||
		!strings.Contains(text, "This link will expire in 1440 minutes.") || !strings.Contains(text, "Thank you for signing up!") {
		t.Errorf("text body:\n%s", text)
	}
	if html := bodies["text/html"]; !strings.Contains(html, `href="`+link+`"`) || !strings.Contains(html, "1440 minutes") {
		t.Errorf("html body:\n%s", html)
	}
}

func TestSMTPStartTLSAndAuth(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{RequireTLS: true, Username: "mailer", Password: "pw-Ünï"})
	s := smtpFor(srv)
	s.StartTLS, s.TLSConfig, s.Username, s.Password = true, srv.ClientTLSConfig(), "mailer", "pw-Ünï"
	m, err := PasswordResetEmail("jane@example.com", "", "https://code4me.test/api/user/reset-password/", "reset-tok", PasswordResetTTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := waitOne(t, srv)
	if !got.TLS || got.AuthUser != "mailer" {
		t.Fatalf("TLS=%v auth=%q, want TLS and mailer", got.TLS, got.AuthUser)
	}
	msg, _ := got.Message()
	if s := msg.Header.Get("Subject"); s != "Reset Your Password" {
		t.Fatalf("Subject %q", s)
	}
	bodies, _ := got.Bodies()
	if text := bodies["text/plain"]; !strings.Contains(text, "https://code4me.test/api/user/reset-password/?token=reset-tok") ||
		!strings.Contains(text, "This link will expire after 15 minutes.") || !strings.Contains(text, "Hi there,") {
		t.Fatalf("text body:\n%s", text)
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{ImplicitTLS: true})
	s := smtpFor(srv)
	s.ImplicitTLS, s.TLSConfig = true, srv.ClientTLSConfig()
	if err := s.Send(context.Background(), Message{To: "a@example.com", Subject: "s", Text: "t"}); err != nil {
		t.Fatal(err)
	}
	if got := waitOne(t, srv); !got.TLS {
		t.Fatal("message did not arrive over TLS")
	}
	s.TLSConfig = nil // the system roots do not trust the test certificate
	if err := s.Send(context.Background(), Message{To: "a@example.com", Subject: "s", Text: "t"}); err == nil {
		t.Fatal("implicit TLS succeeded against an untrusted certificate")
	}
}

func TestSMTPFailures(t *testing.T) {
	msg := Message{To: "jane@example.com", Subject: "s", Text: "t"}
	ctx := context.Background()

	plain := mailtest.Start(t)
	s := smtpFor(plain)
	s.StartTLS = true
	if err := s.Send(ctx, msg); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("StartTLS against a server without it: %v", err)
	}

	tlsOnly := mailtest.Start(t, mailtest.Options{RequireTLS: true})
	if err := smtpFor(tlsOnly).Send(ctx, msg); err == nil {
		t.Error("plain MAIL accepted by a server that requires TLS")
	}

	authed := mailtest.Start(t, mailtest.Options{Username: "u", Password: "right"})
	s = smtpFor(authed)
	s.Username, s.Password = "u", "wrong"
	if err := s.Send(ctx, msg); err == nil || !strings.Contains(err.Error(), "auth") {
		t.Errorf("wrong password: %v", err)
	}
	s.Username = ""
	if err := s.Send(ctx, msg); err == nil {
		t.Error("unauthenticated MAIL accepted by a server that requires AUTH")
	}

	// A server whose certificate the client does not trust.
	untrusted := mailtest.Start(t, mailtest.Options{TLS: true})
	s = smtpFor(untrusted)
	s.StartTLS = true
	if err := s.Send(ctx, msg); err == nil {
		t.Error("STARTTLS succeeded against an untrusted certificate")
	}

	for name, srv := range map[string]*mailtest.Server{"plain": plain, "tls": tlsOnly, "auth": authed, "untrusted": untrusted} {
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("%s server accepted %d messages", name, n)
		}
	}
	if err := (&SMTP{From: from}).Send(ctx, msg); err == nil {
		t.Error("Send without a host succeeded")
	}
}

// TestSMTPHonoursContext sends to a server that accepts and never answers.
func TestSMTPHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		<-done
		c.Close()
	}()
	addr := ln.Addr().(*net.TCPAddr)
	s := &SMTP{Host: "127.0.0.1", Port: addr.Port, From: from}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err = s.Send(ctx, Message{To: "a@example.com", Subject: "s", Text: "t"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Send took %v after cancellation", d)
	}

	s.Timeout = 100 * time.Millisecond
	if err := s.Send(context.Background(), Message{To: "a@example.com", Subject: "s", Text: "t"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with Timeout = %v, want DeadlineExceeded", err)
	}
}

func TestSMTPTransportKeepsContent(t *testing.T) {
	srv := mailtest.Start(t)
	text := "line one\n.leading dot stays\n..two dots\n" + strings.Repeat("long line ", 30) + "\nünïcödé ✓\n"
	m := Message{To: "jane@example.com", Subject: "Grüße aus Delft ✓", Text: text}
	if err := smtpFor(srv).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := waitOne(t, srv)
	msg, err := got.Message()
	if err != nil {
		t.Fatal(err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != m.Subject {
		t.Fatalf("Subject %q (%v), want %q", subj, err, m.Subject)
	}
	if ct := msg.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("single-part Content-Type %q", ct)
	}
	bodies, err := got.Bodies()
	if err != nil {
		t.Fatal(err)
	}
	if b := strings.ReplaceAll(bodies["text/plain"], "\r\n", "\n"); b != text {
		t.Fatalf("body changed in transit:\n%q\nwant\n%q", b, text)
	}
	for _, line := range strings.Split(string(got.Data), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line of %d bytes exceeds RFC 5322's limit", len(line))
		}
	}
}

func TestComposeRejectsInvalid(t *testing.T) {
	for name, m := range map[string]Message{
		"header injection in To":      {To: "a@example.com\r\nBcc: evil@example.com", Subject: "s", Text: "t"},
		"header injection in Subject": {To: "a@example.com", Subject: "s\r\nBcc: evil@example.com", Text: "t"},
		"no address":                  {To: "not an address", Subject: "s", Text: "t"},
		"empty body":                  {To: "a@example.com", Subject: "s"},
	} {
		if _, err := compose(from, m, time.Now()); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: compose = %v, want ErrInvalidMessage", name, err)
		}
	}
	if _, err := compose("nobody", Message{To: "a@example.com", Text: "t"}, time.Now()); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("bad sender: %v", err)
	}
}
