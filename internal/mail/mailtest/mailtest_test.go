package mailtest

import (
	"context"
	"encoding/base64"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dial opens a raw SMTP conversation and reads the greeting.
func dial(t *testing.T, s *Server) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	expect(t, c, 220)
	return c
}

func expect(t *testing.T, c *textproto.Conn, code int) string {
	t.Helper()
	_, msg, err := c.ReadResponse(code)
	if err != nil {
		t.Fatalf("want %d: %v", code, err)
	}
	return msg
}

func send(t *testing.T, c *textproto.Conn, code int, format string, args ...any) string {
	t.Helper()
	if err := c.PrintfLine(format, args...); err != nil {
		t.Fatal(err)
	}
	return expect(t, c, code)
}

func TestRawConversation(t *testing.T) {
	s := Start(t, Options{Username: "u", Password: "p"})
	c := dial(t, s)
	ehlo := send(t, c, 250, "EHLO client.test")
	if !strings.Contains(ehlo, "AUTH PLAIN") || strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO reply %q", ehlo)
	}
	send(t, c, 530, "MAIL FROM:<a@example.com>")
	send(t, c, 535, "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00u\x00wrong")))
	send(t, c, 334, "AUTH PLAIN")
	send(t, c, 235, "%s", base64.StdEncoding.EncodeToString([]byte("\x00u\x00p")))
	send(t, c, 503, "RCPT TO:<b@example.com>")
	send(t, c, 250, "MAIL FROM:<a@example.com> BODY=8BITMIME")
	send(t, c, 503, "DATA")
	send(t, c, 250, "RCPT TO:<b@example.com>")
	send(t, c, 250, "RCPT TO:<c@example.com>")
	send(t, c, 354, "DATA")
	w := c.DotWriter()
	w.Write([]byte("Subject: hi\r\n\r\n.dot line\r\nbody\r\n"))
	w.Close()
	expect(t, c, 250)
	send(t, c, 250, "NOOP")
	send(t, c, 502, "VRFY b@example.com")
	send(t, c, 221, "QUIT")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := s.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := msgs[0]
	if r.From != "a@example.com" || strings.Join(r.To, ",") != "b@example.com,c@example.com" || r.AuthUser != "u" {
		t.Fatalf("received %+v", r)
	}
	bodies, err := r.Bodies()
	if err != nil {
		t.Fatal(err)
	}
	if bodies["text/plain"] != ".dot line\r\nbody\r\n" {
		t.Fatalf("body %q", bodies["text/plain"])
	}
}

func TestWaitTimesOut(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Wait(ctx, 1); err == nil {
		t.Fatal("Wait returned without messages")
	}
}

func TestCloseEndsOpenConnections(t *testing.T) {
	s := Start(t, Options{TLS: true})
	c := dial(t, s)
	if !strings.Contains(send(t, c, 250, "EHLO x"), "STARTTLS") {
		t.Fatal("TLS server does not offer STARTTLS")
	}
	s.Close() // must not hang on the idle connection; goleak checks the rest
	if s.ClientTLSConfig() == nil {
		t.Fatal("no client TLS config")
	}
}
