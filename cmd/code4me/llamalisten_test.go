package main

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/code4me/code4me/internal/config"
)

// TestJoinListeners: the joined listener accepts the connections of both
// listeners, and closing it closes both.
func TestJoinListeners(t *testing.T) {
	var lns []net.Listener
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	j := joinListeners(lns...)
	if j.Addr() != lns[0].Addr() {
		t.Errorf("Addr = %v, want the first listener's %v", j.Addr(), lns[0].Addr())
	}
	for i, ln := range lns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		go func() { c.Write([]byte{byte('a' + i)}); c.Close() }()
		got, err := j.Accept()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(got)
		got.Close()
		if string(b) != string(rune('a'+i)) {
			t.Errorf("listener %d: read %q", i, b)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	for i, ln := range lns {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
			t.Errorf("listener %d still accepts after Close", i)
		}
	}
}

// TestCheckOpen: serve --open starts only with every listener on a
// loopback address, and LLAMA_LISTEN and OPEN_USER are checked at load.
func TestCheckOpen(t *testing.T) {
	load := func(env map[string]string) (config.Config, error) {
		return config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	for _, tc := range []struct {
		host, llama string
		ok          bool
	}{
		{"127.0.0.1", "", true}, {"::1", "127.0.0.1:8012", true}, {"localhost", "[::1]:8012", true},
		{"0.0.0.0", "", false}, {"192.0.2.7", "", false}, {"127.0.0.1", "0.0.0.0:8012", false}, {"127.0.0.1", ":8012", false},
	} {
		cfg, err := load(map[string]string{"SERVER_HOST": tc.host, "LLAMA_LISTEN": tc.llama})
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if err := checkOpen(cfg); (err == nil) != tc.ok {
			t.Errorf("SERVER_HOST=%s LLAMA_LISTEN=%s: checkOpen = %v, want ok %v", tc.host, tc.llama, err, tc.ok)
		}
	}
	for k, v := range map[string]string{"LLAMA_LISTEN": "8012", "OPEN_USER": "local@localhost"} {
		if _, err := load(map[string]string{k: v}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v, want an error naming it", k, v, err)
		}
	}
}
