package eval

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/models"
)

// A run's status (eval_run.status).
const (
	StatusQueued   = "queued"   // its job waits for a worker
	StatusRunning  = "running"  // tasks are being completed
	StatusFinished = "finished" // every result is stored
	StatusFailed   = "failed"   // it stopped; eval_run.error says why
)

// RunInfo says what a run evaluated.
type RunInfo struct {
	ModelName   string
	ModelSHA256 string // hex sha256 of the model file
	Arm         string // free label of the configuration; may be empty
	Seed        uint64
	Repo        string   // the source tree's path or name
	Languages   []string // the languages tasks were drawn from; empty: all
	MaxTokens   int      // 0: the limit of the server that completed the tasks
	// StartedAt is when the run started; zero: when it is recorded.
	StartedAt time.Time
}

var q = models.New()

// Begin records the start of a run of tasks tasks (status running) and
// returns its id.
func Begin(ctx context.Context, pool *pgxpool.Pool, info RunInfo, tasks int) (int64, error) {
	return insert(ctx, pool, info, tasks, StatusRunning, nil)
}

// Queue records a run of tasks tasks that a job will start (status
// queued), in db (the job's transaction), and returns its id. requestedBy
// is the user who asked for it.
func Queue(ctx context.Context, db models.DBTX, info RunInfo, tasks int, requestedBy uuid.UUID) (int64, error) {
	return insert(ctx, db, info, tasks, StatusQueued, &requestedBy)
}

func insert(ctx context.Context, db models.DBTX, info RunInfo, tasks int, status string, requestedBy *uuid.UUID) (int64, error) {
	var started *time.Time
	if !info.StartedAt.IsZero() {
		started = &info.StartedAt
	}
	// Sorted and without repeats, so that runs over the same tasks
	// compare equal.
	langs := slices.Compact(slices.Sorted(slices.Values(info.Languages)))
	if langs == nil {
		langs = []string{}
	}
	r, err := q.EvalRunInsert(ctx, db, models.EvalRunInsertParams{
		ModelName: info.ModelName, ModelSha256: info.ModelSHA256, Arm: info.Arm,
		Seed: int64(info.Seed), Repo: info.Repo, TaskCount: int32(tasks), MaxTokens: int32(info.MaxTokens),
		Languages: langs, Status: status, RequestedBy: requestedBy, StartedAt: started,
	})
	if err != nil {
		return 0, fmt.Errorf("eval: record run: %w", err)
	}
	return r.EvalRunID, nil
}

// Claim starts an attempt at run id: the run becomes running and the
// results of any earlier attempt are deleted, in one transaction. ok is
// false, and nothing changes, when the run is already finished.
func Claim(ctx context.Context, pool *pgxpool.Pool, id int64) (run models.EvalRun, ok bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		r, err := q.EvalRunClaim(ctx, tx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		run, ok = r, true
		return q.EvalResultDeleteByRun(ctx, tx, id)
	})
	if err != nil {
		return models.EvalRun{}, false, fmt.Errorf("eval: claim run %d: %w", id, err)
	}
	return run, ok, nil
}

// Fail records why an attempt at run id stopped: the run is failed, or
// queued again when retry (its job will be tried again). A finished run is
// left as it is.
func Fail(ctx context.Context, db models.DBTX, id int64, cause error, retry bool) error {
	status := StatusFailed
	if retry {
		status = StatusQueued
	}
	msg := cause.Error()
	if err := q.EvalRunSetFailed(ctx, db, models.EvalRunSetFailedParams{EvalRunID: id, Status: status, Error: &msg}); err != nil {
		return fmt.Errorf("eval: record failure of run %d: %w", id, err)
	}
	return nil
}

// Finish stores the results of run id and its overall figures, in one
// transaction: a run is finished (status finished, finished_at set) only
// with all its rows.
func Finish(ctx context.Context, pool *pgxpool.Pool, id int64, results []Result, s Summary) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return finish(ctx, tx, id, results, s) })
	if err != nil {
		return fmt.Errorf("eval: store run %d: %w", id, err)
	}
	return nil
}

// Record stores a run that has already completed its tasks: the run, its
// results and its figures, in one transaction. It returns the run's id.
func Record(ctx context.Context, pool *pgxpool.Pool, info RunInfo, results []Result, s Summary) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if id, err = insert(ctx, tx, info, len(results), StatusRunning, nil); err != nil {
			return err
		}
		return finish(ctx, tx, id, results, s)
	})
	if err != nil {
		return 0, fmt.Errorf("eval: store run: %w", err)
	}
	return id, nil
}

func finish(ctx context.Context, tx pgx.Tx, id int64, results []Result, s Summary) error {
	rows := make([]models.EvalResultInsertParams, len(results))
	for i, r := range results {
		rows[i] = models.EvalResultInsertParams{
			EvalRunID: id, TaskIndex: int32(r.Index), FilePath: r.File, Language: r.Language, Kind: string(r.Kind),
			Expected: r.Expected, Output: r.Output, Exact: r.Exact, EditSimilarity: r.EditSimilarity,
			LatencyMs: r.LatencyMS, PromptTokens: int32(r.PromptTokens), GeneratedTokens: int32(r.GeneratedTokens),
		}
	}
	if _, err := q.EvalResultInsert(ctx, tx, rows); err != nil {
		return err
	}
	o := s.Overall
	return q.EvalRunFinish(ctx, tx, models.EvalRunFinishParams{
		EvalRunID: id, ExactMatchRate: &o.ExactMatchRate, MeanEditSimilarity: &o.MeanEditSimilarity,
		LatencyP50Ms: &o.LatencyP50MS, LatencyP95Ms: &o.LatencyP95MS, LatencyP99Ms: &o.LatencyP99MS,
	})
}

// Stored reads the results stored for run id, in task order. The tasks'
// prefix and suffix are not stored, so they are empty.
func Stored(ctx context.Context, db models.DBTX, id int64) ([]Result, error) {
	rows, err := q.EvalResultListByRun(ctx, db, id)
	if err != nil {
		return nil, fmt.Errorf("eval: read results of run %d: %w", id, err)
	}
	out := make([]Result, len(rows))
	for i, r := range rows {
		out[i] = Result{
			Task:   Task{Index: int(r.TaskIndex), File: r.FilePath, Language: r.Language, Kind: Kind(r.Kind), Expected: r.Expected},
			Output: r.Output, Exact: r.Exact, EditSimilarity: r.EditSimilarity, LatencyMS: r.LatencyMs,
			PromptTokens: int(r.PromptTokens), GeneratedTokens: int(r.GeneratedTokens),
		}
	}
	return out, nil
}
