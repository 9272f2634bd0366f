package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/db"
)

// The audit rows of River's UI. Its JSON API under /admin/jobs/api
// changes jobs (POST jobs/cancel, jobs/delete, jobs/retry with {"ids":
// [...]}) and queues (PUT queues/{name}/pause and /resume, PATCH
// queues/{name}) in transactions of its own, so the rows cannot commit
// with the change as the admin API's do: they are appended once the UI
// has answered 2xx. A job's row holds the job as GET /api/admin/jobs/{id}
// shows it before and after (after is NULL when the job was deleted); a
// queue's holds its name and what was asked (paused, or the concurrency
// sent). Any other write of the UI gets one row of resource "jobs_ui"
// naming its path. A process that dies between the UI's commit and the
// insert loses the row; the admin API's job writes
// (POST /api/admin/jobs/{id}/cancel, /retry) have no such gap.

// jobsUIWrite is what a write of the UI changes: its audit action, the
// resource and the ids of the rows.
type jobsUIWrite struct {
	action, resource string
	ids              []string
	jobIDs           []int64 // the jobs' ids, for reading their rows
}

// parseJobsUIWrite reads the write a request of the UI's API makes, from
// its method, its path under the mount point and its body.
func parseJobsUIWrite(method, rest string, body []byte) jobsUIWrite {
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case method == fiber.MethodPost && len(parts) == 3 && parts[0] == "api" && parts[1] == "jobs" &&
		(parts[2] == "cancel" || parts[2] == "delete" || parts[2] == "retry"):
		w := jobsUIWrite{action: parts[2], resource: "jobs"}
		var req struct {
			IDs []json.RawMessage `json:"ids"`
		}
		if json.Unmarshal(body, &req) == nil {
			for _, raw := range req.IDs {
				s := strings.Trim(string(raw), `"`)
				if n, err := strconv.ParseInt(s, 10, 64); err == nil {
					w.ids = append(w.ids, strconv.FormatInt(n, 10))
					w.jobIDs = append(w.jobIDs, n)
				}
			}
		}
		return w
	case method == fiber.MethodPut && len(parts) == 4 && parts[0] == "api" && parts[1] == "queues" &&
		(parts[3] == "pause" || parts[3] == "resume"):
		return jobsUIWrite{action: parts[3], resource: "queues", ids: []string{parts[2]}}
	case method == fiber.MethodPatch && len(parts) == 3 && parts[0] == "api" && parts[1] == "queues":
		return jobsUIWrite{action: "update", resource: "queues", ids: []string{parts[2]}}
	}
	return jobsUIWrite{action: strings.ToLower(method), resource: "jobs_ui", ids: []string{"/" + strings.Trim(rest, "/")}}
}

// jobRow is job id as the admin API shows it; nil when it is gone.
func (s *Server) jobRow(ctx context.Context, id int64) (any, error) {
	row, err := adminJobs.one(ctx, s, s.db, map[string]any{"id": &id})
	if errors.Is(err, db.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return row, nil
}

// auditJobsUI runs the UI's handler for a write and, when it answers 2xx,
// appends the write's audit rows.
func (s *Server) auditJobsUI(ui fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ctx := c.UserContext()
		rest, _ := strings.CutPrefix(c.Path(), jobsUIPath)
		body := append([]byte(nil), c.Body()...)
		w := parseJobsUIWrite(c.Method(), rest, body)
		before := make([]any, len(w.jobIDs))
		for i, id := range w.jobIDs {
			row, err := s.jobRow(ctx, id)
			if err != nil {
				return internalDetail(MsgAdminError, fmt.Errorf("jobs UI: read job %d: %w", id, err))
			}
			before[i] = row
		}
		if err := ui(c); err != nil {
			return err
		}
		if st := c.Response().StatusCode(); st < 200 || st > 299 {
			return nil
		}
		for i, id := range w.ids {
			var b, a any
			switch w.resource {
			case "jobs":
				row, err := s.jobRow(ctx, w.jobIDs[i])
				if err != nil {
					s.log.Error("jobs UI: audit row not written", slog.String("action", w.action), slog.String("job", id),
						slog.String("error", err.Error()))
					continue
				}
				b, a = before[i], row
			case "queues":
				q := map[string]any{"name": id}
				switch w.action {
				case "pause", "resume":
					q["paused"] = w.action == "pause"
				case "update":
					var req struct {
						Concurrency json.RawMessage `json:"concurrency"`
					}
					if json.Unmarshal(body, &req) == nil && req.Concurrency != nil {
						q["concurrency"] = req.Concurrency
					}
				}
				a = q
			}
			if err := s.audit(ctx, s.db, c, w.action, w.resource, id, b, a); err != nil {
				s.log.Error("jobs UI: audit row not written", slog.String("action", w.action), slog.String("resource", w.resource),
					slog.String("id", id), slog.String("error", err.Error()))
			}
		}
		return nil
	}
}
