// Package mail sends the platform's emails: account verification and
// password reset.
//
// A Sender delivers a Message. SMTP delivers it to a mail server (STARTTLS or
// implicit TLS when configured, AUTH PLAIN when a username is set); Dir
// writes it as an RFC 5322 .eml file, for laptops and tests without a mail
// server. Messages are multipart/alternative (text and HTML, UTF-8,
// quoted-printable). Bodies carry single-use tokens, so nothing here logs a
// body, a subject line or a recipient; Dir logs only the file's path.
//
// mailtest holds an in-process SMTP server for tests.
package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// Message is one email to one recipient.
type Message struct {
	// To is the recipient, "jane@example.com" or "Jane <jane@example.com>".
	To string
	// Subject is the subject line; non-ASCII text is MIME-encoded.
	Subject string
	// Text is the plain-text body. At least one of Text and HTML is required.
	Text string
	// HTML is the HTML body.
	HTML string
}

// Sender delivers messages. Implementations are safe for concurrent use and
// return when ctx ends.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// ErrInvalidMessage is wrapped by the errors Send returns for a message that
// cannot be sent as given (bad address, header injection, empty body).
var ErrInvalidMessage = errors.New("mail: invalid message")

// envelope is a message ready to go: its envelope addresses and its bytes.
type envelope struct {
	from, to string // bare addresses for MAIL FROM and RCPT TO
	data     []byte // RFC 5322 message, CRLF line endings
}

// compose validates m and renders it as an RFC 5322 message from the address
// from ("Code4me <noreply@example.com>").
func compose(from string, m Message, now time.Time) (envelope, error) {
	fromAddr, err := mail.ParseAddress(from)
	if err != nil {
		return envelope{}, fmt.Errorf("%w: sender address: %v", ErrInvalidMessage, err)
	}
	toAddr, err := mail.ParseAddress(m.To)
	if err != nil {
		return envelope{}, fmt.Errorf("%w: recipient address: %v", ErrInvalidMessage, err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return envelope{}, fmt.Errorf("%w: line break in subject", ErrInvalidMessage)
	}
	if m.Text == "" && m.HTML == "" {
		return envelope{}, fmt.Errorf("%w: empty body", ErrInvalidMessage)
	}

	var buf bytes.Buffer
	header := func(k, v string) { buf.WriteString(k + ": " + v + "\r\n") }
	header("From", fromAddr.String())
	header("To", toAddr.String())
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", messageID(fromAddr.Address))
	header("MIME-Version", "1.0")

	parts := []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}}
	if m.Text == "" || m.HTML == "" {
		for _, p := range parts {
			if p.body != "" {
				header("Content-Type", p.typ+"; charset=utf-8")
				header("Content-Transfer-Encoding", "quoted-printable")
				buf.WriteString("\r\n")
				if err := writeQP(&buf, p.body); err != nil {
					return envelope{}, err
				}
			}
		}
	} else {
		mw := multipart.NewWriter(&buf)
		header("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
		buf.WriteString("\r\n")
		for _, p := range parts {
			w, err := mw.CreatePart(textproto.MIMEHeader{
				"Content-Type":              {p.typ + "; charset=utf-8"},
				"Content-Transfer-Encoding": {"quoted-printable"},
			})
			if err != nil {
				return envelope{}, fmt.Errorf("mail: compose part: %w", err)
			}
			if err := writeQP(w, p.body); err != nil {
				return envelope{}, err
			}
		}
		if err := mw.Close(); err != nil {
			return envelope{}, fmt.Errorf("mail: compose: %w", err)
		}
	}
	return envelope{from: fromAddr.Address, to: toAddr.Address, data: buf.Bytes()}, nil
}

func writeQP(w interface{ Write([]byte) (int, error) }, body string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(strings.ReplaceAll(body, "\r\n", "\n"))); err != nil {
		return fmt.Errorf("mail: encode body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("mail: encode body: %w", err)
	}
	return nil
}

// messageID returns a fresh "<random@domain>" for the sender's domain.
func messageID(from string) string {
	domain := "localhost"
	if at := strings.LastIndexByte(from, '@'); at >= 0 && at+1 < len(from) {
		domain = from[at+1:]
	}
	return "<" + randomHex(16) + "@" + domain + ">"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
