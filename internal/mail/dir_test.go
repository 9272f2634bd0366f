package mail

import (
	"bytes"
	"context"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirWritesParseableEML(t *testing.T) {
	var logs bytes.Buffer
	d := &Dir{Path: filepath.Join(t.TempDir(), "mail"), From: from, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	const token = "secret-token-9f8e7d"
	m, err := VerificationEmail("jane@example.com", "Jane", "http://localhost:8008/api/user/verify/", token, VerificationTTL)
	if err != nil {
		t.Fatal(err)
	}
	path, err := d.Write(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != d.Path || filepath.Ext(path) != ".eml" {
		t.Fatalf("path %q is not an .eml file in %s", path, d.Path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Subject") != VerificationSubject || msg.Header.Get("To") != "<jane@example.com>" {
		t.Fatalf("headers %v", msg.Header)
	}

	line := logs.String()
	if !strings.Contains(line, path) {
		t.Fatalf("log %q lacks the path", line)
	}
	for _, leak := range []string{token, "jane@example.com", VerificationSubject} {
		if strings.Contains(line, leak) {
			t.Fatalf("log %q contains %q", line, leak)
		}
	}

	// Send writes another file; no temporary files remain.
	if err := d.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d files in %s, want 2", len(entries), d.Path)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") || strings.HasPrefix(e.Name(), ".tmp") {
			t.Fatalf("unexpected file %s", e.Name())
		}
	}
}

func TestDirRejectsInvalidAndCancelled(t *testing.T) {
	d := &Dir{Path: t.TempDir(), From: from}
	if err := d.Send(context.Background(), Message{To: "bad\r\nBcc: x@y.z", Text: "t"}); err == nil {
		t.Fatal("Dir accepted a header injection")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Send(ctx, Message{To: "a@example.com", Text: "t"}); err == nil {
		t.Fatal("Dir wrote with a cancelled context")
	}
	if entries, _ := os.ReadDir(d.Path); len(entries) != 0 {
		t.Fatalf("%d files written", len(entries))
	}
}
