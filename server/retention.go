package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/riverqueue/river"

	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/models"
)

// The retention job deletes the rows whose retention is over, every
// RETENTION_INTERVAL and once when the job queue starts; River's leader
// (one of the processes sharing the database) inserts it. What it
// deletes, and why then:
//
//   - the worker tier's finished engine requests (River jobs of kind
//     engine_request, completed, cancelled or discarded) an hour after
//     they finish. Their arguments hold the prompt, a user's (redacted)
//     code, whatever the user's storage settings; River's own cleaner
//     would keep them a day (a week when discarded). The hour leaves them
//     in the jobs UI for looking into a failure.
//   - workers whose heartbeat is an hour old (EngineWorkerForgetDead): a
//     worker that is gone for good. Live workers do the same every ten
//     minutes; this covers a tier whose workers are all gone.
//
// Every delete is by age alone, so a run that stops half way, or two runs
// at once, leave the same rows as one. The verification, reset, session
// and auth tokens expire in Redis by their TTLs, and exports have their
// own cleanup job (export_job.go).

// retentionBatch bounds the rows of one delete statement, so each stays
// well inside DB_STATEMENT_TIMEOUT however many requests the tier served.
const retentionBatch = 5000

// retentionArgs is the retention job.
type retentionArgs struct{}

// Kind is the River job kind.
func (retentionArgs) Kind() string { return "retention" }

type retentionWorker struct {
	river.WorkerDefaults[retentionArgs]
	s *Server
}

// Work deletes what is past its retention.
func (w *retentionWorker) Work(ctx context.Context, _ *river.Job[retentionArgs]) error {
	jobs, jobsErr := w.s.deleteFinishedJobs(ctx, remote.JobKind)
	workers, workersErr := w.s.q.EngineWorkerForgetDead(ctx, w.s.db)
	if jobs > 0 || workers > 0 {
		w.s.log.Info("retention", slog.Int64("engine_requests_deleted", jobs), slog.Int64("workers_deleted", workers))
	}
	return errors.Join(jobsErr, workersErr)
}

// deleteFinishedJobs deletes the jobs of kind that finished over an hour
// ago, retentionBatch at a time, and returns how many it deleted.
func (s *Server) deleteFinishedJobs(ctx context.Context, kind string) (int64, error) {
	var total int64
	for {
		n, err := s.q.RetentionDeleteFinishedJobs(ctx, s.db, models.RetentionDeleteFinishedJobsParams{Kind: kind, Batch: retentionBatch})
		total += n
		if err != nil || n < retentionBatch {
			return total, err
		}
	}
}

// addRetention registers the retention worker with workers.
func (s *Server) addRetention(workers *river.Workers) error {
	return river.AddWorkerSafely(workers, &retentionWorker{s: s})
}

// retentionJob is the periodic retention job on queue. One attempt: a run
// that fails is the next run's work.
func (s *Server) retentionJob(queue string) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(s.cfg.RetentionInterval),
		func() (river.JobArgs, *river.InsertOpts) {
			return retentionArgs{}, &river.InsertOpts{Queue: queue, MaxAttempts: 1}
		},
		&river.PeriodicJobOpts{RunOnStart: true})
}
