// Package mailtest runs a minimal SMTP server inside a test process, so tests
// can send real mail over a real socket and read what arrived.
//
// It speaks enough of RFC 5321 for net/smtp and most clients: EHLO/HELO,
// STARTTLS (with a self-signed certificate made for the test), AUTH PLAIN,
// MAIL, RCPT, DATA, RSET, NOOP and QUIT. It delivers nothing anywhere: every
// accepted message is kept in memory. The server stops, and its goroutines
// end, when the test finishes.
package mailtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Server. The zero value is a plain-text server without
// authentication.
type Options struct {
	// TLS offers STARTTLS with a self-signed certificate for "localhost" and
	// 127.0.0.1; ClientTLSConfig trusts it.
	TLS bool
	// RequireTLS refuses MAIL before STARTTLS (implies TLS).
	RequireTLS bool
	// ImplicitTLS speaks TLS from the first byte (SMTPS) instead of
	// offering STARTTLS (implies TLS).
	ImplicitTLS bool
	// Username and Password, when Username is set, make AUTH PLAIN
	// mandatory before MAIL and the only accepted credentials.
	Username, Password string
}

// Received is one accepted message.
type Received struct {
	// From is the MAIL FROM address; To the RCPT TO addresses.
	From string
	To   []string
	// Data is the message as sent after DATA, dot-unstuffed, CRLF endings.
	Data []byte
	// TLS reports whether the message came over an encrypted connection.
	TLS bool
	// AuthUser is the user that authenticated, if any.
	AuthUser string
}

// Message parses Data as an RFC 5322 message.
func (r Received) Message() (*mail.Message, error) {
	return mail.ReadMessage(bytes.NewReader(r.Data))
}

// Bodies returns the decoded bodies of the message by media type
// ("text/plain", "text/html"), for single-part and multipart messages.
func (r Received) Bodies() (map[string]string, error) {
	m, err := r.Message()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	err = collect(textproto.MIMEHeader(m.Header), m.Body, out)
	return out, err
}

func collect(h textproto.MIMEHeader, body io.Reader, out map[string]string) error {
	typ, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		typ = "text/plain"
	}
	if strings.HasPrefix(typ, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := collect(p.Header, p, out); err != nil {
				return err
			}
		}
	}
	if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	} else if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "base64") {
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	out[typ] = string(b)
	return nil
}

// Server is a running test SMTP server.
type Server struct {
	opts Options
	ln   net.Listener
	tls  *tls.Config // server side; nil without TLS
	pool *x509.CertPool

	mu      sync.Mutex
	msgs    []Received
	conns   map[net.Conn]struct{}
	arrived chan struct{} // closed and replaced on every new message
	closed  bool
	wg      sync.WaitGroup
}

// Start starts a server on 127.0.0.1 and stops it when t ends.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.RequireTLS || o.ImplicitTLS {
		o.TLS = true
	}
	s := &Server{opts: o, conns: make(map[net.Conn]struct{}), arrived: make(chan struct{})}
	if o.TLS {
		cert, pool, err := selfSigned()
		if err != nil {
			t.Fatalf("mailtest: certificate: %v", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.pool = pool
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: listen: %v", err)
	}
	if o.ImplicitTLS {
		ln = tls.NewListener(ln, s.tls)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr is the server's "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is the server's host, "127.0.0.1".
func (s *Server) Host() string {
	h, _, _ := net.SplitHostPort(s.Addr())
	return h
}

// Port is the server's port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// ClientTLSConfig trusts the server's certificate. It is nil without TLS.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.pool == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.msgs...)
}

// Wait returns the messages once at least n have arrived, or ctx's error.
func (s *Server) Wait(ctx context.Context, n int) ([]Received, error) {
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			out := append([]Received(nil), s.msgs...)
			s.mu.Unlock()
			return out, nil
		}
		ch := s.arrived
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("mailtest: waiting for %d messages: %w", n, ctx.Err())
		}
	}
}

// Close stops the server, closes open connections and waits for its
// goroutines. Start registers it with t.Cleanup.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *Server) deliver(r Received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, r)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// session is the state of one SMTP connection.
type session struct {
	conn     net.Conn
	text     *textproto.Conn
	tls      bool
	authUser string
	from     string
	to       []string
	inMail   bool
}

func (s *Server) handle(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	_, implicit := c.(*tls.Conn)
	ss := &session{conn: c, text: textproto.NewConn(c), tls: implicit}
	reply := func(format string, args ...any) bool {
		return ss.text.PrintfLine(format, args...) == nil
	}
	if !reply("220 localhost mailtest ESMTP ready") {
		return
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := ss.text.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ss.reset()
			lines := []string{"localhost greets " + arg, "8BITMIME", "SIZE 10485760"}
			if s.tls != nil && !ss.tls {
				lines = append(lines, "STARTTLS")
			}
			if s.opts.Username != "" {
				lines = append(lines, "AUTH PLAIN")
			}
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				if !reply("250%s%s", sep, l) {
					return
				}
			}
		case "HELO":
			ss.reset()
			reply("250 localhost")
		case "STARTTLS":
			if s.tls == nil || ss.tls {
				reply("454 TLS not available")
				continue
			}
			if !reply("220 Ready to start TLS") {
				return
			}
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			ss.conn, ss.text, ss.tls = tc, textproto.NewConn(tc), true
			ss.reset()
			ss.authUser = ""
		case "AUTH":
			s.auth(ss, arg)
		case "MAIL":
			switch {
			case s.opts.RequireTLS && !ss.tls:
				reply("530 Must issue a STARTTLS command first")
			case s.opts.Username != "" && ss.authUser == "":
				reply("530 Authentication required")
			case !strings.HasPrefix(strings.ToUpper(arg), "FROM:"):
				reply("501 Syntax: MAIL FROM:<address>")
			default:
				ss.reset()
				ss.from, ss.inMail = angle(arg[len("FROM:"):]), true
				reply("250 OK")
			}
		case "RCPT":
			switch {
			case !ss.inMail:
				reply("503 Need MAIL first")
			case !strings.HasPrefix(strings.ToUpper(arg), "TO:"):
				reply("501 Syntax: RCPT TO:<address>")
			default:
				ss.to = append(ss.to, angle(arg[len("TO:"):]))
				reply("250 OK")
			}
		case "DATA":
			if len(ss.to) == 0 {
				reply("503 Need RCPT first")
				continue
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			data, err := io.ReadAll(ss.text.DotReader())
			if err != nil {
				return
			}
			s.deliver(Received{
				From:     ss.from,
				To:       ss.to,
				Data:     bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")),
				TLS:      ss.tls,
				AuthUser: ss.authUser,
			})
			ss.reset()
			reply("250 OK: queued")
		case "RSET":
			ss.reset()
			reply("250 OK")
		case "NOOP":
			reply("250 OK")
		case "QUIT":
			reply("221 Bye")
			return
		default:
			reply("502 Command not implemented")
		}
	}
}

func (ss *session) reset() { ss.from, ss.to, ss.inMail = "", nil, false }

func (s *Server) auth(ss *session, arg string) {
	mech, initial, _ := strings.Cut(arg, " ")
	if s.opts.Username == "" || !strings.EqualFold(mech, "PLAIN") {
		ss.text.PrintfLine("504 Unrecognized authentication type")
		return
	}
	if initial == "" {
		if ss.text.PrintfLine("334 ") != nil {
			return
		}
		line, err := ss.text.ReadLine()
		if err != nil {
			return
		}
		initial = line
	}
	raw, err := base64.StdEncoding.DecodeString(initial)
	if err != nil {
		ss.text.PrintfLine("501 Cannot decode response")
		return
	}
	// authzid \0 authcid \0 password
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[1] != s.opts.Username || parts[2] != s.opts.Password {
		ss.text.PrintfLine("535 Authentication credentials invalid")
		return
	}
	ss.authUser = parts[1]
	ss.text.PrintfLine("235 Authentication successful")
}

// angle extracts the address from "<addr> PARAMS".
func angle(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j >= 0 {
			return s[i+1 : i+j]
		}
	}
	addr, _, _ := strings.Cut(s, " ")
	return addr
}

// selfSigned makes a certificate for localhost and 127.0.0.1 and a pool that
// trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailtest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
