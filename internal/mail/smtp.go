package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strconv"
	"time"
)

// SMTP sends messages through an SMTP server, one connection per message.
// The zero value is not usable: Host and From are required.
type SMTP struct {
	// Host is the server's host name; it is also the name its TLS
	// certificate must carry.
	Host string
	// Port is the server's port (default 587 with StartTLS, 465 with
	// ImplicitTLS, else 25).
	Port int
	// Username and Password are sent with AUTH PLAIN when Username is set.
	// net/smtp refuses to send them over an unencrypted connection except
	// to localhost.
	Username, Password string
	// From is the sender, "Code4me <noreply@example.com>".
	From string
	// StartTLS upgrades the connection with STARTTLS; a server that does not
	// offer it is an error, never a fallback to plain text.
	StartTLS bool
	// ImplicitTLS connects with TLS from the first byte (SMTPS, port 465).
	ImplicitTLS bool
	// TLSConfig overrides the TLS settings (tests, private CAs). ServerName
	// defaults to Host.
	TLSConfig *tls.Config
	// HelloName is the name sent with EHLO (default "localhost").
	HelloName string
	// Timeout bounds one delivery when ctx has no earlier deadline
	// (default 30 s).
	Timeout time.Duration
}

var _ Sender = (*SMTP)(nil)

// Send delivers m. It returns when the server has accepted the message, when
// delivery fails, or when ctx ends (the connection is then closed).
func (s *SMTP) Send(ctx context.Context, m Message) error {
	if s.Host == "" {
		return errors.New("mail: smtp host not configured")
	}
	env, err := compose(s.From, m, time.Now())
	if err != nil {
		return err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.port()))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("mail: dial %s: %w", addr, err)
	}
	// Every pending and later read or write fails once ctx ends (deadline
	// or cancellation), and the error then names ctx's cause.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer conn.Close()

	if err := s.deliver(conn, env); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mail: send via %s: %w", addr, context.Cause(ctx))
		}
		return fmt.Errorf("mail: send via %s: %w", addr, err)
	}
	return nil
}

func (s *SMTP) port() int {
	switch {
	case s.Port != 0:
		return s.Port
	case s.ImplicitTLS:
		return 465
	case s.StartTLS:
		return 587
	}
	return 25
}

func (s *SMTP) tlsConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLSConfig != nil {
		cfg = s.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = s.Host
	}
	return cfg
}

func (s *SMTP) deliver(conn net.Conn, env envelope) error {
	if s.ImplicitTLS {
		tc := tls.Client(conn, s.tlsConfig())
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	hello := s.HelloName
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if s.StartTLS && !s.ImplicitTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS")
		}
		if err := c.StartTLS(s.tlsConfig()); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if s.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("server does not offer AUTH")
		}
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(env.from); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(env.to); err != nil {
		return fmt.Errorf("rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(env.data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	// The message is accepted; a failed QUIT does not undo that.
	_ = c.Quit()
	return nil
}
