package server

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/internal/testenv"
)

// runRetention runs the retention job through the server's job queue and
// waits for it to complete.
func runRetention(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	res, err := e.srv.jobs.client.Insert(ctx, retentionArgs{}, &river.InsertOpts{Queue: e.srv.jobs.queue})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		switch state := e.jobState(res.Job.ID); state {
		case "completed":
			return
		case "available", "running", "scheduled", "pending":
		default:
			t.Fatalf("retention job %s", state)
		}
		if time.Now().After(deadline) {
			t.Fatal("retention job not done after 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRetention seeds engine requests and workers on both sides of their
// retention and checks that the retention job deletes exactly those past
// it, in batches (more rows than one statement deletes), and that a second
// run deletes nothing more.
func TestRetention(t *testing.T) {
	e := newEnv(t, nil)
	queue := "retention_" + uuid.NewString()
	t.Cleanup(func() { e.exec("DELETE FROM river_job WHERE queue = $1", queue) })
	hours := func(h float64) *float64 { return secs(h * 3600) }

	expired := []int64{
		e.seedJob(queue, remote.JobKind, "completed", 7300, secs(7290), hours(2)),
		e.seedJob(queue, remote.JobKind, "cancelled", 3700, nil, secs(3660)),
		e.seedJob(queue, remote.JobKind, "discarded", 11000, secs(10900), hours(3)),
	}
	kept := []int64{
		e.seedJob(queue, remote.JobKind, "completed", 3600, secs(3590), secs(3540)), // finished 59 minutes ago
		e.seedJob(queue, remote.JobKind, "running", 7300, secs(7290), nil),
		e.seedJob(queue, remote.JobKind, "available", 7300, nil, nil),
		e.seedJob(queue, "mail", "completed", 7300, secs(7290), hours(2)), // River's cleaner keeps it a day
	}
	// More expired requests than one delete statement takes.
	e.exec(`INSERT INTO river_job (state, kind, queue, max_attempts, args, attempt, scheduled_at, attempted_at, finalized_at)
		SELECT 'completed', $1, $2, 1, '{}', 1, now() - interval '3 hours', now() - interval '3 hours', now() - interval '2 hours'
		FROM generate_series(1, $3::int)`, remote.JobKind, queue, retentionBatch+3)

	workers := map[string]uuid.UUID{"silent 2 h": uuid.New(), "silent 30 min": uuid.New(), "live": uuid.New()}
	t.Cleanup(func() {
		for _, id := range workers {
			e.exec("DELETE FROM engine_worker WHERE worker_id = $1", id)
		}
	})
	for name, ago := range map[string]string{"silent 2 h": "2 hours", "silent 30 min": "30 minutes", "live": "0 seconds"} {
		e.exec("INSERT INTO engine_worker (worker_id, host, pid, heartbeat_at) VALUES ($1, 'test', 1, now() - $2::interval)", workers[name], ago)
	}

	check := func(run int) {
		t.Helper()
		var left []int64
		rows, err := e.srv.db.Query(context.Background(), "SELECT id FROM river_job WHERE queue = $1 ORDER BY id", queue)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			left = append(left, id)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		if !slices.Equal(left, kept) {
			t.Errorf("run %d: jobs left %v, want %v (expired %v and %d more)", run, left, kept, expired, retentionBatch+3)
		}
		for name, id := range workers {
			var n int
			e.srv.db.QueryRow(context.Background(), "SELECT count(*) FROM engine_worker WHERE worker_id = $1", id).Scan(&n)
			if want := map[bool]int{true: 0, false: 1}[name == "silent 2 h"]; n != want {
				t.Errorf("run %d: worker %s: %d rows, want %d", run, name, n, want)
			}
		}
	}
	runRetention(t, e)
	check(1)
	runRetention(t, e)
	check(2)
}

// TestRetentionPeriodic checks that the job queue runs the retention job
// by itself, at start-up and then every RETENTION_INTERVAL, on a database
// of its own, where its River client is the only one and so the leader.
func TestRetentionPeriodic(t *testing.T) {
	ctx := context.Background()
	url := testenv.RawDatabaseURL(t)
	quiet := slog.New(slog.DiscardHandler)
	if err := db.Migrate(ctx, url, quiet); err != nil {
		t.Fatal(err)
	}
	pool, err := db.Open(ctx, url, db.Options{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.RetentionInterval = time.Second
	srv, err := New(Deps{Config: cfg, DB: pool, Redis: testenv.Redis(t), JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE kind = 'retention' AND state = 'completed' AND queue = $1",
			srv.jobs.queue).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d retention jobs completed after 20 s, want one at start-up and one a second later", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRetentionIntervalConfig checks RETENTION_INTERVAL: ten minutes by
// default, seconds when set, and refused under a second.
func TestRetentionIntervalConfig(t *testing.T) {
	load := func(v string, set bool) (config.Config, error) {
		return config.Load(func(k string) (string, bool) { return v, set && k == "RETENTION_INTERVAL" })
	}
	if c, err := load("", false); err != nil || c.RetentionInterval != 10*time.Minute {
		t.Errorf("default: %v %v, want 10m", c.RetentionInterval, err)
	}
	if c, err := load("30", true); err != nil || c.RetentionInterval != 30*time.Second {
		t.Errorf("30: %v %v, want 30s", c.RetentionInterval, err)
	}
	if _, err := load("0", true); err == nil || !strings.Contains(err.Error(), "RETENTION_INTERVAL") {
		t.Errorf("0: %v, want an error naming RETENTION_INTERVAL", err)
	}
}
