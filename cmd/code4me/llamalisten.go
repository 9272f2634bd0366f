package main

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/code4me/code4me/internal/config"
)

// The llama.cpp server API's clients (docs/clients.md) look for it on a
// port of their own: llama.vim's default endpoint is 127.0.0.1:8012.
// LLAMA_LISTEN binds that address too, and serve accepts on both listeners
// as one (joinListeners), so one app, one drain and one shutdown serve
// them.

// checkOpen refuses serve --open unless every address serve listens on is
// a loopback address: open access lets requests without credentials in,
// and only this machine may send them. (The server checks each request's
// peer too.)
func checkOpen(cfg config.Config) error {
	if !loopbackHost(cfg.ServerHost) {
		return fmt.Errorf("serve --open: SERVER_HOST %q is not a loopback address: set SERVER_HOST=127.0.0.1 (or ::1), "+
			"or give the clients an API key instead of --open", cfg.ServerHost)
	}
	if cfg.LlamaListen != "" {
		host, _, _ := net.SplitHostPort(cfg.LlamaListen)
		if !loopbackHost(host) {
			return fmt.Errorf("serve --open: LLAMA_LISTEN %q is not on a loopback address: use 127.0.0.1:PORT", cfg.LlamaListen)
		}
	}
	return nil
}

// loopbackHost reports whether host names this machine's loopback
// interface.
func loopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// withLlamaListener binds LLAMA_LISTEN, when set, and returns ln and it
// joined; ln alone otherwise.
func withLlamaListener(cfg config.Config, ln net.Listener) (net.Listener, error) {
	if cfg.LlamaListen == "" {
		return ln, nil
	}
	l2, err := net.Listen("tcp", cfg.LlamaListen)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on LLAMA_LISTEN %s: %s", cfg.LlamaListen, shortNetErr(err))
	}
	return joinListeners(ln, l2), nil
}

// joinedListener accepts the connections of several listeners. Closing it
// closes them all; so does the failure of one.
type joinedListener struct {
	lns   []net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func joinListeners(lns ...net.Listener) net.Listener {
	j := &joinedListener{lns: lns, conns: make(chan net.Conn), done: make(chan struct{})}
	for _, ln := range lns {
		go j.accept(ln)
	}
	return j
}

func (j *joinedListener) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			j.Close()
			return
		}
		select {
		case j.conns <- c:
		case <-j.done:
			c.Close()
			return
		}
	}
}

// Accept returns the next connection of any listener, or net.ErrClosed
// once the listener is closed.
func (j *joinedListener) Accept() (net.Conn, error) {
	select {
	case c := <-j.conns:
		return c, nil
	case <-j.done:
		return nil, net.ErrClosed
	}
}

func (j *joinedListener) Close() error {
	j.once.Do(func() {
		close(j.done)
		for _, ln := range j.lns {
			j.err = errors.Join(j.err, ln.Close())
		}
	})
	return j.err
}

// Addr is the first listener's address.
func (j *joinedListener) Addr() net.Addr { return j.lns[0].Addr() }
