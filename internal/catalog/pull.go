package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Progress receives download progress: bytes done and total (total 0 when
// unknown). It is called from the downloading goroutine.
type Progress func(done, total int64)

// ErrOffline means the download host could not be reached at all.
var ErrOffline = errors.New("model host unreachable")

// ErrChecksum means the downloaded file does not have the expected sha256.
var ErrChecksum = errors.New("sha256 mismatch")

// Puller downloads catalog entries into Dir.
type Puller struct {
	Dir    string
	Client *http.Client // nil: a client with sane timeouts
}

// Path is where e lives under the puller's directory.
func (p *Puller) Path(e Entry) string { return filepath.Join(p.Dir, e.File) }

func pinPath(model string) string { return model + ".sha256" }

// Pull downloads e to Path(e). A partial download (.part) is resumed with an
// HTTP Range request. The result is checked against e.SHA256, or against the
// pin recorded by an earlier pull; with neither, the computed hash is pinned.
// It returns the file's path and sha256.
func (p *Puller) Pull(ctx context.Context, e Entry, progress Progress) (path, sum string, err error) {
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return "", "", fmt.Errorf("model directory %s: %w", p.Dir, err)
	}
	path = p.Path(e)
	want := e.SHA256
	if pin, err := os.ReadFile(pinPath(path)); err == nil && want == "" {
		want = strings.TrimSpace(string(pin))
	}
	if _, err := os.Stat(path); err == nil {
		sum, err := FileSHA256(path)
		if err != nil {
			return "", "", err
		}
		if want == "" || sum == want {
			return path, sum, p.pin(path, sum)
		}
		return "", "", fmt.Errorf("%s: %w: have %s, want %s (delete the file and pull again)", path, ErrChecksum, sum, want)
	}
	part := path + ".part"
	if err := p.download(ctx, e.URL, part, progress); err != nil {
		return "", "", err
	}
	sum, err = FileSHA256(part)
	if err != nil {
		return "", "", err
	}
	if want != "" && sum != want {
		os.Remove(part)
		return "", "", fmt.Errorf("%s: %w: got %s, want %s; the partial file was removed", e.Name, ErrChecksum, sum, want)
	}
	if err := os.Rename(part, path); err != nil {
		return "", "", err
	}
	return path, sum, p.pin(path, sum)
}

func (p *Puller) pin(path, sum string) error {
	return os.WriteFile(pinPath(path), []byte(sum+"\n"), 0o644)
}

func (p *Puller) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
}

func (p *Puller) download(ctx context.Context, url, part string, progress Progress) error {
	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := p.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: %v (offline? use `code4me model add FILE` for a local GGUF, or `code4me model synth`)", ErrOffline, req.URL.Host, shortErr(err))
	}
	defer resp.Body.Close()
	total := int64(0)
	switch resp.StatusCode {
	case http.StatusOK:
		// Server ignored the range: start over.
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		have = 0
		total = resp.ContentLength
	case http.StatusPartialContent:
		if resp.ContentLength >= 0 {
			total = have + resp.ContentLength
		}
	case http.StatusRequestedRangeNotSatisfiable:
		return nil // already complete; the checksum decides
	default:
		return fmt.Errorf("download %s: HTTP %d", url, resp.StatusCode)
	}
	buf := make([]byte, 1<<20)
	done := have
	last := time.Time{}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			done += int64(n)
			if progress != nil && time.Since(last) > 100*time.Millisecond {
				progress(done, total)
				last = time.Now()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("download interrupted after %d bytes (run pull again to resume): %w", done, rerr)
		}
	}
	if progress != nil {
		progress(done, total)
	}
	if total > 0 && done != total {
		return fmt.Errorf("download incomplete: %d of %d bytes (run pull again to resume)", done, total)
	}
	return f.Sync()
}

// FileSHA256 hashes a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func shortErr(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "cannot resolve " + dns.Name
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// Bar renders a one-line progress bar, e.g. for a terminal.
func Bar(done, total int64) string {
	const width = 30
	if total <= 0 {
		return fmt.Sprintf("%8.1f MiB", float64(done)/(1<<20))
	}
	frac := float64(done) / float64(total)
	n := int(frac * width)
	return fmt.Sprintf("[%s%s] %5.1f%% %8.1f/%.1f MiB", strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, float64(done)/(1<<20), float64(total)/(1<<20))
}
