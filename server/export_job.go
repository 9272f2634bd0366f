package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// A large data export is a River job. GET /api/user/export inserts a
// queued user_export row and its job in one transaction, so an export
// never exists without the job that builds it, and answers 202 with the
// row's status_url. The job writes the same document as the streamed
// export (writeExport), gzip-compressed, and stores it in the row; GET
// /api/user/export/{export_id} answers 202 until then, then the document.
// An export stays for EXPORT_TTL after it is ready, then answers 410 until
// the hourly cleanup job deletes it; deleting the user deletes it at once
// (ON DELETE CASCADE).
//
// The document is kept in Postgres rather than in a file under DATA_DIR:
// every server process can serve it whichever one built it, it is in the
// database's backups, and it goes in the same transaction as the user.
// The job holds the compressed document in memory while it writes it
// (about a tenth of the JSON's size).
//
// The job is idempotent: it claims the row (queued or running ->
// running) and stores the document in one statement at the end, so a
// retried job rebuilds the document of an attempt that stopped half way,
// and a job whose export is ready, failed or deleted does nothing.

// Messages of the export job routes.
const (
	MsgExportNotFound = "Export not found"
	MsgExportExpired  = "The export has expired. Request a new one with GET /api/user/export."
	MsgExportFailed   = "The export failed. Request a new one with GET /api/user/export."
)

const (
	// exportAttempts bounds the tries of one export job.
	exportAttempts = 3
	// exportRetryAfter is the Retry-After (seconds) of a 202: when to ask
	// for the export's status again.
	exportRetryAfter = 5
	// exportCleanupEvery is how often the cleanup job deletes expired
	// exports.
	exportCleanupEvery = time.Hour
)

// exportArgs is an export job: which export to build.
type exportArgs struct {
	ExportID uuid.UUID `json:"export_id"`
}

// Kind is the River job kind.
func (exportArgs) Kind() string { return "user_export" }

type exportWorker struct {
	river.WorkerDefaults[exportArgs]
	s *Server
}

// Timeout gives a job as long as a streamed export gets.
func (w *exportWorker) Timeout(*river.Job[exportArgs]) time.Duration { return exportTimeout }

// Work builds the export's document and stores it.
func (w *exportWorker) Work(ctx context.Context, job *river.Job[exportArgs]) error {
	s := w.s
	id := job.Args.ExportID
	uid, err := s.q.UserExportClaim(ctx, s.db, id)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return nil // ready, failed or deleted
	} else if err != nil {
		return err
	}
	doc, err := s.buildExport(ctx, uid)
	if err == nil {
		_, err = s.q.UserExportFinish(ctx, s.db, models.UserExportFinishParams{ExportID: id, Content: doc.gzip,
			Bytes: doc.bytes, Sha256: doc.sha256, TtlSeconds: s.cfg.ExportTTL.Seconds()})
	}
	if err != nil {
		return w.fail(ctx, job, err)
	}
	s.log.Info("user export ready", slog.String("export_id", id.String()), slog.Int64("bytes", doc.bytes),
		slog.Int("gzip_bytes", len(doc.gzip)))
	return nil
}

// fail records why an attempt stopped: the export is queued again while
// the job has attempts left, else failed (and the job cancelled).
func (w *exportWorker) fail(ctx context.Context, job *river.Job[exportArgs], cause error) error {
	retry := job.Attempt < job.MaxAttempts
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	id := job.Args.ExportID.String()
	if err := w.s.q.UserExportFail(ctx, w.s.db, models.UserExportFailParams{ExportID: job.Args.ExportID, Retry: retry,
		Error: cause.Error()}); err != nil {
		w.s.log.Warn("user export: record failure", slog.String("export_id", id), slog.String("error", err.Error()))
	}
	w.s.log.Warn("user export failed", slog.String("export_id", id), slog.Bool("retry", retry), slog.String("error", cause.Error()))
	if !retry {
		return river.JobCancel(cause)
	}
	return cause
}

// builtExport is an export's document as it is stored: its gzip stream,
// and the document's size and sha256.
type builtExport struct {
	gzip   []byte
	bytes  int64
	sha256 []byte
}

// buildExport writes the user's export document through gzip.
func (s *Server) buildExport(ctx context.Context, uid uuid.UUID) (builtExport, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	h := sha256.New()
	n := &countingWriter{}
	if err := s.writeExport(ctx, io.MultiWriter(zw, h, n), uid); err != nil {
		return builtExport{}, err
	}
	if err := zw.Close(); err != nil {
		return builtExport{}, err
	}
	return builtExport{gzip: buf.Bytes(), bytes: n.n, sha256: h.Sum(nil)}, nil
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// exportCleanupArgs is the periodic job that deletes expired exports.
type exportCleanupArgs struct{}

// Kind is the River job kind.
func (exportCleanupArgs) Kind() string { return "user_export_cleanup" }

type exportCleanupWorker struct {
	river.WorkerDefaults[exportCleanupArgs]
	s *Server
}

// Work deletes the exports whose expires_at has passed.
func (w *exportCleanupWorker) Work(ctx context.Context, _ *river.Job[exportCleanupArgs]) error {
	n, err := w.s.q.UserExportDeleteExpired(ctx, w.s.db)
	if err == nil && n > 0 {
		w.s.log.Info("user exports expired", slog.Int64("deleted", n))
	}
	return err
}

// addExportWorkers registers the export and cleanup workers.
func (s *Server) addExportWorkers(workers *river.Workers) error {
	return errors.Join(river.AddWorkerSafely(workers, &exportWorker{s: s}),
		river.AddWorkerSafely(workers, &exportCleanupWorker{s: s}))
}

// exportPeriodicJobs is the cleanup job on queue, every
// exportCleanupEvery and once when the client starts. River's leader (one
// server process of those sharing the database) inserts it.
func exportPeriodicJobs(queue string) []*river.PeriodicJob {
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(exportCleanupEvery),
		func() (river.JobArgs, *river.InsertOpts) { return exportCleanupArgs{}, &river.InsertOpts{Queue: queue} },
		&river.PeriodicJobOpts{RunOnStart: true})}
}

// userExportQueue answers GET /api/user/export with 202: a new queued
// export and its job, or the caller's export that is already queued or
// running (one at a time per user, so repeated requests do not pile up
// work).
func (s *Server) userExportQueue(c *fiber.Ctx, uid uuid.UUID) error {
	ctx := c.UserContext()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return internal(MsgExportError, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	ex, err := s.queueExportTx(ctx, tx, uid)
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		return internal(MsgExportError, err)
	}
	return exportPending(c, ex.ExportID, ex.Status)
}

// queueExportTx inserts a queued export of uid and its job in tx, or finds
// the one in progress. An export in progress that finishes between the two
// statements is no longer found; the insert is then tried again.
func (s *Server) queueExportTx(ctx context.Context, tx pgx.Tx, uid uuid.UUID) (models.UserExportInProgressRow, error) {
	for range 3 {
		id, err := s.q.UserExportCreate(ctx, tx, models.UserExportCreateParams{UserID: uid, TtlSeconds: s.cfg.ExportTTL.Seconds()})
		if err == nil {
			_, err = s.jobs.client.InsertTx(ctx, tx, exportArgs{ExportID: id},
				&river.InsertOpts{Queue: s.jobs.queue, MaxAttempts: exportAttempts})
			return models.UserExportInProgressRow{ExportID: id, Status: "queued"}, err
		}
		if !errors.Is(db.Translate(err), db.ErrNotFound) {
			return models.UserExportInProgressRow{}, err
		}
		cur, err := s.q.UserExportInProgress(ctx, tx, uid)
		if !errors.Is(db.Translate(err), db.ErrNotFound) {
			return cur, err
		}
	}
	return models.UserExportInProgressRow{}, errors.New("user export: the export in progress kept changing")
}

// exportPending answers 202 for an export that is queued or running.
func exportPending(c *fiber.Ctx, id uuid.UUID, status string) error {
	url := "/api/user/export/" + id.String()
	c.Location(url)
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(exportRetryAfter))
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"export_id": id, "status": status, "status_url": url})
}

// GET /api/user/export/{export_id}
//
// userExportGet answers the caller's export: 202 while it is queued or
// running, the document once it is ready, 500 when it failed and 410 once
// it has expired. Another user's export answers 404 like an unknown id,
// so export ids cannot be probed. The document is sent as it is stored,
// gzip, to a client that accepts gzip, else decompressed as it is sent.
func (s *Server) userExportGet(c *fiber.Ctx) error {
	id, err := pathUUID(c, "export_id")
	if err != nil {
		return err
	}
	p := principal(c)
	ex, err := s.q.UserExportGet(c.UserContext(), s.db, models.UserExportGetParams{ExportID: id, UserID: p.UserID})
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return fail(fiber.StatusNotFound, MsgExportNotFound)
	} else if err != nil {
		return internal(MsgExportError, err)
	}
	switch {
	case ex.Expired:
		return fail(fiber.StatusGone, MsgExportExpired)
	case ex.Status == "queued" || ex.Status == "running":
		return exportPending(c, ex.ExportID, ex.Status)
	case ex.Status != "ready":
		cause := "no cause recorded"
		if ex.Error != nil {
			cause = *ex.Error
		}
		return internal(MsgExportFailed, fmt.Errorf("export %s failed: %s", id, cause))
	}
	setExportHeaders(c, p.UserID)
	c.Vary(fiber.HeaderAcceptEncoding)
	if acceptsGzip(c.Get(fiber.HeaderAcceptEncoding)) {
		c.Set(fiber.HeaderContentEncoding, "gzip")
		return c.Send(ex.Content)
	}
	zr, err := gzip.NewReader(bytes.NewReader(ex.Content))
	if err != nil {
		return internal(MsgExportError, err)
	}
	size := -1
	if ex.Bytes != nil {
		size = int(*ex.Bytes)
	}
	c.Context().SetBodyStream(zr, size)
	return nil
}

// acceptsGzip reports whether an Accept-Encoding header accepts gzip:
// named with a weight above 0, or not named and "*" accepted.
func acceptsGzip(header string) bool {
	gz, star := -1.0, -1.0
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(part, ";")
		q := 1.0
		if k, v, ok := strings.Cut(params, "="); ok && strings.TrimSpace(k) == "q" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				q = f
			}
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "gzip", "x-gzip":
			gz = q
		case "*":
			star = q
		}
	}
	if gz >= 0 {
		return gz > 0
	}
	return star > 0
}

// exportOps document the export job's route (openapi.go).
var exportOps = []apiOp{
	{Method: "GET", Path: "/api/user/export/{export_id}", Summary: "An export built by a job: its status, then the document",
		Auth: ClassA, Account: true, OK: 200,
		Doc: "The export GET /api/user/export queued (its status_url). While it is queued or running: 202 {export_id, status, " +
			"status_url} with Retry-After. Once ready: 200, the document of GET /api/user/export as an attachment, " +
			"with Content-Encoding gzip when the request's Accept-Encoding accepts gzip, else uncompressed. Exports stay " +
			"EXPORT_TTL (24 h) after they are ready; deleting the user deletes them.",
		Params: []apiField{reqField("export_id", "uuid", "")},
		Resp: []apiField{respField("schema_version", "integer", "the document, as GET /api/user/export answers it"),
			respField("export_id", "uuid", "202 only"), respField("status", "string", "202 only: queued or running"),
			respField("status_url", "string", "202 only: this route")},
		Errors: map[int]string{404: "No such export of the caller's (another user's export is not found either)",
			410: "The export has expired (until the cleanup job deletes it, within the hour; then 404)",
			500: "The export failed; request a new one"}},
}
