package mail

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Dir writes each message as an RFC 5322 .eml file under Path, for machines
// without a mail server: open the file in a mail client, or read the link
// out of it. Files are readable by the owner only, because they hold tokens.
type Dir struct {
	// Path is the directory, e.g. DATA_DIR/mail; it is created on first use.
	Path string
	// From is the sender, "Code4me <noreply@example.com>".
	From string
	// Logger receives one line per message with the file's path, never its
	// content or recipient. Nil means slog.Default().
	Logger *slog.Logger
}

var _ Sender = (*Dir)(nil)

// Send writes m to a new file under d.Path.
func (d *Dir) Send(ctx context.Context, m Message) error {
	_, err := d.Write(ctx, m)
	return err
}

// Write writes m to a new file under d.Path and returns its path. The file
// appears complete or not at all.
func (d *Dir) Write(ctx context.Context, m Message) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := time.Now()
	env, err := compose(d.From, m, now)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return "", fmt.Errorf("mail: create %s: %w", d.Path, err)
	}
	name := now.UTC().Format("20060102T150405.000000000Z") + "-" + randomHex(4) + ".eml"
	path := filepath.Join(d.Path, name)

	tmp, err := os.CreateTemp(d.Path, ".tmp-*.eml")
	if err != nil {
		return "", fmt.Errorf("mail: create message file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(env.data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("mail: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("mail: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("mail: rename to %s: %w", path, err)
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "mail written to file", slog.String("path", path))
	return path, nil
}
