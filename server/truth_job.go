package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/code4me/code4me/internal/eval"
	"github.com/code4me/code4me/models"
)

// Derived telemetry of ground truths. The quality figures of the analytics
// and the study results (exact match, edit similarity and survival of a
// completion against what the developer wrote) are computed once per
// (generation, ground truth) and stored in generation_truth_match, not on
// every request:
//
//   - recordFeedback inserts a truth_match job in the transaction that
//     stores the ground truth, so a ground truth never lacks its job and a
//     rolled-back one never has one. The job's worker reads the ground
//     truth and the completion generations it applies to and stores their
//     figures. Rows that exist already are kept: the texts never change,
//     so running a job twice leaves the same rows. A ground truth deleted
//     before its job runs leaves nothing to do, and the job ends without
//     error.
//   - the truth_sweep job, every truthSweepInterval and once when the job
//     queue starts, scans the ground truths in id order, truthSweepScan at
//     a time, and queues a truth_match job for each that still lacks
//     figures of a generation it applies to (rows stored before the figures
//     were derived, a job that was discarded, a generation stored after its
//     ground truth). A scan that fills its batch queues the next scan after
//     its last id, so each statement stays short however many rows there
//     are.

const (
	// truthMatchAttempts bounds a truth_match job's attempts; the sweep
	// queues a discarded one again.
	truthMatchAttempts = 5
	// truthSweepInterval is how often the sweep runs.
	truthSweepInterval = 10 * time.Minute
	// truthSweepScan is how many ground truths one sweep job scans.
	truthSweepScan = 2000
)

// truthMatchArgs is the job that derives a ground truth's figures.
type truthMatchArgs struct {
	GroundTruthID int64 `json:"ground_truth_id"`
}

// Kind is the River job kind.
func (truthMatchArgs) Kind() string { return "truth_match" }

// truthSweepArgs is the job that queues the truth_match jobs of the
// ground truths after AfterID that lack figures.
type truthSweepArgs struct {
	AfterID int64 `json:"after_id"`
}

// Kind is the River job kind.
func (truthSweepArgs) Kind() string { return "truth_sweep" }

// truthMatchOpts are the insert options of a truth_match job: one job
// per ground truth waits or runs at a time on a queue.
func (s *Server) truthMatchOpts() *river.InsertOpts {
	return &river.InsertOpts{Queue: s.jobs.queue, MaxAttempts: truthMatchAttempts, UniqueOpts: river.UniqueOpts{
		ByArgs: true, ByQueue: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
			rivertype.JobStateRunning, rivertype.JobStateScheduled},
	}}
}

// queueTruthMatchTx inserts the truth_match job of ground truth id in tx,
// the transaction that stores the ground truth.
func (s *Server) queueTruthMatchTx(ctx context.Context, tx pgx.Tx, id int64) error {
	if _, err := s.jobs.client.InsertTx(ctx, tx, truthMatchArgs{GroundTruthID: id}, s.truthMatchOpts()); err != nil {
		return fmt.Errorf("queue truth_match %d: %w", id, err)
	}
	return nil
}

type truthMatchWorker struct {
	river.WorkerDefaults[truthMatchArgs]
	s *Server
}

// Work stores the figures of the job's ground truth.
func (w *truthMatchWorker) Work(ctx context.Context, job *river.Job[truthMatchArgs]) error {
	return w.s.deriveTruthMatch(ctx, job.Args.GroundTruthID)
}

// deriveTruthMatch stores the figures of every completion generation
// ground truth id applies to. A ground truth or generation deleted
// meanwhile is no error: its rows would go with it.
func (s *Server) deriveTruthMatch(ctx context.Context, id int64) error {
	rows, err := s.q.TruthMatchSourceList(ctx, s.db, id)
	if err != nil {
		return fmt.Errorf("truth_match %d: load: %w", id, err)
	}
	for _, r := range rows {
		p := models.TruthMatchCreateParams{MetaQueryID: r.MetaQueryID, ModelID: r.ModelID, GroundTruthID: id,
			TruthAt: r.TruthTimestamp, ExactMatch: eval.ExactMatch(r.Completion, r.GroundTruth),
			EditSimilarity: eval.EditSimilarity(r.Completion, r.GroundTruth)}
		if r.Completion != "" {
			v := survival(r.Completion, r.GroundTruth)
			p.Survival = &v
		}
		if err := s.q.TruthMatchCreate(ctx, s.db, p); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation: deleted meanwhile
				continue
			}
			return fmt.Errorf("truth_match %d: store: %w", id, err)
		}
	}
	return nil
}

type truthSweepWorker struct {
	river.WorkerDefaults[truthSweepArgs]
	s *Server
}

// Work queues the truth_match jobs of the scanned ground truths that lack
// figures, and the next scan when this one filled its batch, in one
// transaction.
func (w *truthSweepWorker) Work(ctx context.Context, job *river.Job[truthSweepArgs]) error {
	s := w.s
	rows, err := s.q.TruthMatchScan(ctx, s.db, models.TruthMatchScanParams{AfterID: job.Args.AfterID, ScanSize: truthSweepScan})
	if err != nil {
		return fmt.Errorf("truth_sweep: scan: %w", err)
	}
	var params []river.InsertManyParams
	for _, r := range rows {
		if r.Missing {
			params = append(params, river.InsertManyParams{Args: truthMatchArgs{GroundTruthID: r.GroundTruthID}, InsertOpts: s.truthMatchOpts()})
		}
	}
	if len(rows) == truthSweepScan {
		params = append(params, river.InsertManyParams{Args: truthSweepArgs{AfterID: rows[len(rows)-1].GroundTruthID},
			InsertOpts: &river.InsertOpts{Queue: s.jobs.queue, MaxAttempts: 1}})
	}
	if len(params) == 0 {
		return nil
	}
	if _, err := s.jobs.client.InsertMany(ctx, params); err != nil {
		return fmt.Errorf("truth_sweep: queue: %w", err)
	}
	return nil
}

// addTruthMatch registers the truth_match and truth_sweep workers.
func (s *Server) addTruthMatch(workers *river.Workers) error {
	if err := river.AddWorkerSafely(workers, &truthMatchWorker{s: s}); err != nil {
		return err
	}
	return river.AddWorkerSafely(workers, &truthSweepWorker{s: s})
}

// truthSweepJob is the periodic sweep on queue. One attempt: a run that
// fails is the next run's work.
func (s *Server) truthSweepJob(queue string) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(truthSweepInterval),
		func() (river.JobArgs, *river.InsertOpts) {
			return truthSweepArgs{}, &river.InsertOpts{Queue: queue, MaxAttempts: 1}
		},
		&river.PeriodicJobOpts{RunOnStart: true})
}
