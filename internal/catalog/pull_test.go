package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func blob(n int) ([]byte, string) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

// server serves data with Range support (http.ServeContent); when cutAt > 0
// the first full response is cut after cutAt bytes.
func server(t *testing.T, data []byte, cutAt int) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n == 1 && cutAt > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", "999999999")
			w.WriteHeader(http.StatusOK)
			w.Write(data[:cutAt])
			w.(http.Flusher).Flush()
			hj, _, _ := w.(http.Hijacker).Hijack()
			hj.Close()
			return
		}
		http.ServeContent(w, r, "m.gguf", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestPullVerifiesAndPins(t *testing.T) {
	data, sum := blob(3 << 20)
	srv, _ := server(t, data, 0)
	p := &Puller{Dir: t.TempDir()}
	e := Entry{Name: "x", File: "x.gguf", URL: srv.URL + "/x.gguf", SHA256: sum}
	var last int64
	path, got, err := p.Pull(context.Background(), e, func(done, total int64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	if got != sum || last != int64(len(data)) {
		t.Fatalf("sum %s last %d", got, last)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
		t.Fatal("file differs from served data")
	}
	if pin, _ := os.ReadFile(path + ".sha256"); strings.TrimSpace(string(pin)) != sum {
		t.Fatal("pin not written")
	}
}

func TestPullResumes(t *testing.T) {
	data, sum := blob(2 << 20)
	srv, calls := server(t, data, 700_000)
	p := &Puller{Dir: t.TempDir()}
	e := Entry{Name: "x", File: "x.gguf", URL: srv.URL + "/x.gguf", SHA256: sum}
	if _, _, err := p.Pull(context.Background(), e, nil); err == nil {
		t.Fatal("first pull should fail when the connection is cut")
	}
	st, err := os.Stat(p.Path(e) + ".part")
	if err != nil || st.Size() != 700_000 {
		t.Fatalf("partial file: %v size %v", err, st)
	}
	if _, got, err := p.Pull(context.Background(), e, nil); err != nil || got != sum {
		t.Fatalf("resume: %v %s", err, got)
	}
	if calls.Load() != 2 {
		t.Fatalf("want 2 requests, got %d", calls.Load())
	}
}

func TestPullChecksumMismatch(t *testing.T) {
	data, _ := blob(1 << 20)
	srv, _ := server(t, data, 0)
	p := &Puller{Dir: t.TempDir()}
	e := Entry{Name: "x", File: "x.gguf", URL: srv.URL + "/x.gguf", SHA256: strings.Repeat("0", 64)}
	_, _, err := p.Pull(context.Background(), e, nil)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("want ErrChecksum, got %v", err)
	}
	if _, err := os.Stat(p.Path(e)); !os.IsNotExist(err) {
		t.Fatal("a file with a bad checksum must not be installed")
	}
}

func TestPullTrustOnFirstUse(t *testing.T) {
	data, sum := blob(1 << 16)
	srv, _ := server(t, data, 0)
	dir := t.TempDir()
	p := &Puller{Dir: dir}
	e := Entry{Name: "x", File: "x.gguf", URL: srv.URL + "/x.gguf"}
	if _, got, err := p.Pull(context.Background(), e, nil); err != nil || got != sum {
		t.Fatal(err)
	}
	// Tamper with the file: the pin now catches it.
	os.WriteFile(filepath.Join(dir, "x.gguf"), []byte("tampered"), 0o644)
	if _, _, err := p.Pull(context.Background(), e, nil); !errors.Is(err, ErrChecksum) {
		t.Fatalf("want ErrChecksum against the pin, got %v", err)
	}
}

func TestPullOffline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	p := &Puller{Dir: t.TempDir()}
	_, _, err = p.Pull(context.Background(), Entry{Name: "x", File: "x.gguf", URL: "http://" + addr + "/x.gguf"}, nil)
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "model add") {
		t.Fatalf("want a clear offline error, got %v", err)
	}
}

func TestCatalogEntries(t *testing.T) {
	families := map[string]bool{"qwen2.5-coder": true, "deepseek-coder": true, "starcoder2": true, "codellama": true, "codestral": true}
	seen := map[string]bool{}
	chat := 0
	for _, e := range All() {
		if seen[e.Name] {
			t.Errorf("duplicate %s", e.Name)
		}
		seen[e.Name] = true
		if !families[e.Family] || !strings.HasPrefix(e.URL, "https://") || !strings.HasSuffix(e.File, ".gguf") {
			t.Errorf("bad entry %+v", e)
		}
		if e.Chat {
			chat++
		}
	}
	for _, want := range []string{"qwen2.5-coder-0.5b-q8_0", "qwen2.5-coder-7b-q4_k_m", "deepseek-coder-1.3b-base-q8_0", "deepseek-coder-6.7b-base-q4_k_m", "starcoder2-3b-q8_0", "starcoder2-7b-q8_0", DefaultFIM} {
		if _, err := Get(want); err != nil {
			t.Error(err)
		}
	}
	if chat == 0 {
		t.Error("the catalog needs an instruct model for chat")
	}
	if _, err := Get("nope"); err == nil {
		t.Error("unknown names must fail")
	}
}

// TestNextEditFormats: an entry's own next-edit format wins; without one,
// Qwen2.5-Coder models get Sweep's format and the other families Zeta's.
func TestNextEditFormats(t *testing.T) {
	for _, e := range All() {
		f := e.NextEditFormat()
		if !slices.Contains(NextEditFormats, f) {
			t.Errorf("%s: next-edit format %q", e.Name, f)
		}
		if e.NextEdit == "" && f != DefaultNextEdit(e.Family) {
			t.Errorf("%s: %q, not its family's default", e.Name, f)
		}
	}
	for family, want := range map[string]string{"qwen2.5-coder": NextEditSweep, "deepseek-coder": NextEditZeta, "starcoder2": NextEditZeta, "": NextEditZeta} {
		if got := DefaultNextEdit(family); got != want {
			t.Errorf("DefaultNextEdit(%q) = %q, want %q", family, got, want)
		}
	}
	sweep, err := Get("sweep-next-edit-1.5b-q8_0")
	if err != nil || sweep.NextEditFormat() != NextEditSweep {
		t.Errorf("Sweep's model: %+v %v", sweep, err)
	}
	if e := (Entry{Family: "qwen2.5-coder", NextEdit: NextEditTabby}); e.NextEditFormat() != NextEditTabby {
		t.Errorf("an entry's own format = %q", e.NextEditFormat())
	}
}
