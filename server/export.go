package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/models"
)

// ExportSchemaVersion is the version of the export document's layout
// (docs/api.md, "Data export"). It changes whenever a field is removed or
// changes meaning; added fields keep it.
const ExportSchemaVersion = 1

// MsgExportError answers an export that fails before its first byte.
const MsgExportError = "Server failed to export the user's data."

// Export limits.
const (
	// exportPageSize is how many sessions, queries or chats one
	// database round trip reads.
	exportPageSize = 200
	// exportTimeout bounds the whole export, writes to a slow client
	// included.
	exportTimeout = 10 * time.Minute
)

// GET /api/user/export?async=
//
// userExport answers all of the caller's data as one JSON document,
// streamed: the rows are read a page at a time in one read-only,
// repeatable-read transaction (a consistent snapshot) and each is written
// as soon as it is read, so the export's size does not bound memory. The
// status is sent before the rows are read: an export that fails half way
// ends the connection with the document unterminated (invalid JSON),
// which the client must treat as a failure; the cause is logged.
//
// A user with more than EXPORT_SYNC_MAX_QUERIES queries, or a request
// with async=true, gets 202 instead and the document is built by a job
// (export_job.go): a download that long would hold a connection, and the
// snapshot, for minutes, and would have to start over when it broke.
func (s *Server) userExport(c *fiber.Ctx) error {
	q := queryFields(c)
	async, _ := q.boolean("async", false)
	if err := q.err(); err != nil {
		return err
	}
	p := principal(c)
	if _, err := s.loadUser(c.UserContext(), p.UserID, MsgExportError); err != nil {
		return err
	}
	uid := p.UserID
	if !async {
		// Counting one past the limit tells "larger" without counting
		// every query of a heavy user.
		limit := int64(s.cfg.ExportSyncMaxQueries)
		n, err := s.q.ExportQueryCountUpTo(c.UserContext(), s.db, models.ExportQueryCountUpToParams{UserID: uid, MaxRows: limit + 1})
		if err != nil {
			return internal(MsgExportError, err)
		}
		async = n > limit
	}
	if async {
		return s.userExportQueue(c, uid)
	}
	// Fiber returns from the handler before the body is written, and the
	// request's context is not cancelled when the client leaves: the
	// export has its own deadline and stops at the first failed write.
	base := context.WithoutCancel(c.UserContext())
	setExportHeaders(c, uid)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithTimeout(base, exportTimeout)
		defer cancel()
		if err := s.writeExport(ctx, w, uid); err != nil {
			s.log.Warn("user export failed", slog.String("user_id", uid.String()), slog.String("error", err.Error()))
		}
	})
	return nil
}

// setExportHeaders marks the response as the user's export document: a
// JSON attachment that no cache keeps.
func setExportHeaders(c *fiber.Ctx, uid uuid.UUID) {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="code4me-export-%s.json"`, uid))
	c.Set(fiber.HeaderCacheControl, "no-store")
}

// writeExport writes the document to out in a snapshot of the database:
// the response of GET /api/user/export, or an export job's gzip stream. A
// *bufio.Writer (the response's) is flushed after each page, so the
// client receives the document as it is read; any other writer gets a
// buffer of its own, flushed the same way.
func (s *Server) writeExport(ctx context.Context, out io.Writer, uid uuid.UUID) error {
	w, ok := out.(*bufio.Writer)
	if !ok {
		w = bufio.NewWriter(out)
	}
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	ew := &exportWriter{w: w, enc: json.NewEncoder(w)}
	user, err := s.q.ExportUser(ctx, tx, uid)
	if err != nil {
		return fmt.Errorf("user: %w", err)
	}
	ew.raw(`{"schema_version":`)
	ew.value(ExportSchemaVersion)
	ew.raw(`,"exported_at":`)
	ew.value(time.Now().UTC())
	ew.raw(`,"user":`)
	ew.value(user)
	lists := []struct {
		name string
		rows func() ([]json.RawMessage, error)
	}{
		{"api_keys", func() ([]json.RawMessage, error) { return s.q.ExportApiKeys(ctx, tx, uid) }},
		{"config_assignments", func() ([]json.RawMessage, error) { return s.q.ExportConfigAssignments(ctx, tx, uid) }},
		{"projects", func() ([]json.RawMessage, error) { return s.q.ExportProjects(ctx, tx, uid) }},
	}
	for _, l := range lists {
		rows, err := l.rows()
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		ew.raw(`,"` + l.name + `":[`)
		for i, r := range rows {
			if i > 0 {
				ew.raw(",")
			}
			ew.value(r)
		}
		ew.raw("]")
		if err := ew.flush(); err != nil {
			return err
		}
	}
	pages := []struct {
		name string
		page func(after uuid.UUID) ([]exportRow, error)
	}{
		{"sessions", func(after uuid.UUID) ([]exportRow, error) {
			rows, err := s.q.ExportSessionPage(ctx, tx, models.ExportSessionPageParams{UserID: uid, After: after, PageSize: exportPageSize})
			out := make([]exportRow, len(rows))
			for i, r := range rows {
				out[i] = exportRow{r.ID, r.Doc}
			}
			return out, err
		}},
		{"queries", func(after uuid.UUID) ([]exportRow, error) {
			rows, err := s.q.ExportQueryPage(ctx, tx, models.ExportQueryPageParams{UserID: uid, After: after, PageSize: exportPageSize})
			out := make([]exportRow, len(rows))
			for i, r := range rows {
				out[i] = exportRow{r.ID, r.Doc}
			}
			return out, err
		}},
		{"chats", func(after uuid.UUID) ([]exportRow, error) {
			rows, err := s.q.ExportChatPage(ctx, tx, models.ExportChatPageParams{UserID: uid, After: after, PageSize: exportPageSize})
			out := make([]exportRow, len(rows))
			for i, r := range rows {
				out[i] = exportRow{r.ID, r.Doc}
			}
			return out, err
		}},
	}
	for _, p := range pages {
		ew.raw(`,"` + p.name + `":[`)
		first := true
		for after := uuid.Nil; ; {
			rows, err := p.page(after)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			for _, r := range rows {
				if !first {
					ew.raw(",")
				}
				first = false
				ew.value(r.doc)
			}
			if err := ew.flush(); err != nil {
				return err
			}
			if len(rows) < exportPageSize {
				break
			}
			after = rows[len(rows)-1].id
		}
		ew.raw("]")
	}
	ew.raw("}\n")
	return ew.flush()
}

// exportRow is one row of a paged export query: its key and its JSON.
type exportRow struct {
	id  uuid.UUID
	doc json.RawMessage
}

// exportWriter writes the document's pieces and keeps the first error.
type exportWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
	err error
}

func (e *exportWriter) raw(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

// value writes v as JSON (the encoder's trailing newline is harmless
// whitespace between tokens).
func (e *exportWriter) value(v any) {
	if e.err == nil {
		e.err = e.enc.Encode(v)
	}
}

// flush sends what is buffered; an error means the client is gone.
func (e *exportWriter) flush() error {
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return fmt.Errorf("write: %w", e.err)
	}
	return nil
}
