package server

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"riverqueue.com/riverui"

	"github.com/code4me/code4me/models"
)

// Operating the job queue: River's web UI for admins at /admin/jobs, and
// the queue's depth and wait in /api/ping (docs/architecture.md, Jobs).
//
// The UI is riverui's http.Handler, mounted in the Fiber app through the
// net/http adaptor. Every path under /admin/jobs, its pages, assets and
// JSON API (which can cancel, retry and delete jobs and pause queues),
// passes guardAdmin first: an admin's login or account-scoped API key, a
// 403 for anyone else, a 401 without credentials; its writes append
// audit rows (jobs_admin_audit.go). Its routes are
// riverui's, not this server's, so /openapi.json documents the mount point
// and not each path under it.

const (
	// jobsUIPath is where River's UI is mounted.
	jobsUIPath = "/admin/jobs"
	// jobsUIRatePerHour is the default rate limit of the UI's paths
	// (jobsUIPath+"/*", one counter per admin): an open page polls the
	// JSON API every 2 s, a few requests each time, which
	// DEFAULT_MAX_REQUEST_RATE_PER_HOUR would cut off within minutes.
	// MAX_REQUEST_RATE_PER_HOUR_CONFIG can set another.
	jobsUIRatePerHour = 20000
	// jobStatsFor is how long /api/ping reuses the queue's figures: the
	// route is public and unlimited, so the query runs at most once a
	// second per process however often it is called.
	jobStatsFor = time.Second
)

// jobsUIRates is the rate limits by route (MAX_REQUEST_RATE_PER_HOUR_CONFIG)
// with the UI's default added unless configured.
func jobsUIRates(byRoute map[string]int) map[string]int {
	out := maps.Clone(byRoute)
	if out == nil {
		out = map[string]int{}
	}
	if _, ok := out[jobsUIPath+"/*"]; !ok {
		out[jobsUIPath+"/*"] = jobsUIRatePerHour
	}
	return out
}

// jobsAdminRoutes mounts River's UI at jobsUIPath for admins.
func (s *Server) jobsAdminRoutes() {
	ui := s.jobsUI()
	s.app.Get(jobsUIPath, s.guardAdmin(func(c *fiber.Ctx) error {
		// riverui answers its bare prefix with a redirect to prefix/;
		// the page is served here directly.
		uri := jobsUIPath + "/"
		if q := c.Request().URI().QueryString(); len(q) > 0 {
			uri += "?" + string(q)
		}
		c.Request().SetRequestURI(uri)
		return ui(c)
	})...)
	s.app.Add(fiber.MethodGet, jobsUIPath+"/*", s.guardAdmin(ui)...)
	// Its writes append audit rows (jobs_admin_audit.go).
	for _, method := range []string{fiber.MethodPost, fiber.MethodPut, fiber.MethodPatch} {
		s.app.Add(method, jobsUIPath+"/*", s.guardAdmin(s.auditJobsUI(ui))...)
	}
}

// jobsUI builds riverui's handler on a River client of its own, which
// only reads and changes jobs and queues (it works none), so the UI does
// not wait for the job queue to start. The handler is not started:
// Start would run riverui's background counts of large job states in
// every server process whether or not anyone looks; without them the
// UI counts on demand, estimating states of over 10,000 jobs from the
// planner's statistics. Arguments are hidden in the job list until asked
// for: an engine request's arguments hold a user's code.
func (s *Server) jobsUI() fiber.Handler {
	h, err := func() (http.Handler, error) {
		client, err := river.NewClient(riverpgxv5.New(s.db), &river.Config{Logger: s.log.With(slog.String("component", "river"))})
		if err != nil {
			return nil, err
		}
		return riverui.NewHandler(&riverui.HandlerOpts{
			Endpoints:                riverui.NewEndpoints(client, nil),
			JobListHideArgsByDefault: true,
			Logger:                   s.log.With(slog.String("component", "riverui")),
			Prefix:                   jobsUIPath,
		})
	}()
	if err != nil {
		return func(*fiber.Ctx) error { return internalDetail(MsgAdminError, fmt.Errorf("jobs UI: %w", err)) }
	}
	return adaptor.HTTPHandler(h)
}

// jobStats is the job queue in /api/ping, per queue.
type jobStats struct {
	ObservedAt time.Time       `json:"observed_at"`
	Queues     []jobQueueStats `json:"queues"`
}

// jobQueueStats is one queue's figures; the wait of a job is from its
// scheduled_at (its insert, or when its retry was due) to its attempt's
// start.
type jobQueueStats struct {
	Queue string `json:"queue"`
	// Available jobs wait for a worker; Running ones are being worked.
	Available int64 `json:"available"`
	Running   int64 `json:"running"`
	// OldestAvailableMs is how long the oldest available job has waited;
	// nil when none waits.
	OldestAvailableMs *float64 `json:"oldest_available_ms"`
	// Completed5m counts the jobs completed in the last five minutes and
	// WaitP50Ms is their median wait; nil when there are none.
	Completed5m int64    `json:"completed_5m"`
	WaitP50Ms   *float64 `json:"wait_p50_ms"`
}

// jobStatsCache holds the last figures for jobStatsFor.
type jobStatsCache struct {
	mu   sync.Mutex
	last *jobStats
}

// jobStats returns the job queue's figures, read at most once per
// jobStatsFor: concurrent callers wait for one query.
func (s *Server) jobStats(ctx context.Context) (*jobStats, error) {
	cache := &s.jobFigures
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if cache.last != nil && time.Since(cache.last.ObservedAt) < jobStatsFor {
		return cache.last, nil
	}
	rows, err := s.q.JobQueueStats(ctx, s.db)
	if err != nil {
		return nil, err
	}
	st := &jobStats{ObservedAt: time.Now(), Queues: make([]jobQueueStats, 0, len(rows))}
	for _, r := range rows {
		st.Queues = append(st.Queues, queueStats(r))
	}
	cache.last = st
	return st, nil
}

// queueStats is a JobQueueStats row with the figures that no job gives
// set to nil.
func queueStats(r models.JobQueueStatsRow) jobQueueStats {
	q := jobQueueStats{Queue: r.Queue, Available: r.Available, Running: r.Running, Completed5m: r.Completed5m}
	if r.Available > 0 {
		q.OldestAvailableMs = &r.OldestAvailableMs
	}
	if r.Completed5m > 0 {
		q.WaitP50Ms = &r.WaitP50Ms
	}
	return q
}

// pingJobs is the "jobs" member of /api/ping: the figures, or nil when
// they cannot be read (ping still answers on the state of Postgres and
// Redis).
func (s *Server) pingJobs(ctx context.Context) *jobStats {
	st, err := s.jobStats(ctx)
	if err != nil {
		s.log.Warn("ping: job queue figures", slog.String("error", err.Error()))
		return nil
	}
	return st
}
