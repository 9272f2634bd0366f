package eval

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/models"
)

// RunInfo says what a run evaluated.
type RunInfo struct {
	ModelName   string
	ModelSHA256 string // hex sha256 of the model file
	Arm         string // free label of the configuration; may be empty
	Seed        uint64
	Repo        string // the source tree's path or name
	MaxTokens   int
}

var q = models.New()

// Begin records the start of a run of tasks tasks and returns its id.
func Begin(ctx context.Context, pool *pgxpool.Pool, info RunInfo, tasks int) (int64, error) {
	r, err := q.EvalRunInsert(ctx, pool, models.EvalRunInsertParams{
		ModelName: info.ModelName, ModelSha256: info.ModelSHA256, Arm: info.Arm,
		Seed: int64(info.Seed), Repo: info.Repo, TaskCount: int32(tasks), MaxTokens: int32(info.MaxTokens),
	})
	if err != nil {
		return 0, fmt.Errorf("eval: record run: %w", err)
	}
	return r.EvalRunID, nil
}

// Finish stores the results of run id and its overall figures, in one
// transaction: a run is finished (finished_at set) only with all its rows.
func Finish(ctx context.Context, pool *pgxpool.Pool, id int64, results []Result, s Summary) error {
	rows := make([]models.EvalResultInsertParams, len(results))
	for i, r := range results {
		rows[i] = models.EvalResultInsertParams{
			EvalRunID: id, TaskIndex: int32(r.Index), FilePath: r.File, Language: r.Language, Kind: string(r.Kind),
			Expected: r.Expected, Output: r.Output, Exact: r.Exact, EditSimilarity: r.EditSimilarity,
			LatencyMs: r.LatencyMS, PromptTokens: int32(r.PromptTokens), GeneratedTokens: int32(r.GeneratedTokens),
		}
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := q.EvalResultInsert(ctx, tx, rows); err != nil {
			return err
		}
		o := s.Overall
		return q.EvalRunFinish(ctx, tx, models.EvalRunFinishParams{
			EvalRunID: id, ExactMatchRate: &o.ExactMatchRate, MeanEditSimilarity: &o.MeanEditSimilarity,
			LatencyP50Ms: &o.LatencyP50MS, LatencyP95Ms: &o.LatencyP95MS, LatencyP99Ms: &o.LatencyP99MS,
		})
	})
	if err != nil {
		return fmt.Errorf("eval: store run %d: %w", id, err)
	}
	return nil
}
