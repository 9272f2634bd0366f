-- The evaluation routes (POST and GET /api/eval/runs, GET /api/analytics/eval;
-- server/eval_job.go), for admins only. The queries the evaluation job and
-- the command line share (internal/eval) stay in eval.sql.

-- name: EvalRunSetJob :exec
UPDATE eval_run SET job_id = @job_id WHERE eval_run_id = @eval_run_id;

-- name: EvalRunPage :many
-- Every run, newest first.
SELECT * FROM eval_run
ORDER BY started_at DESC, eval_run_id DESC
LIMIT @max_rows OFFSET @skip_rows;

-- name: EvalRunComparable :many
-- Finished runs, optionally of one model name and arm, ordered so that
-- runs over the same tasks (repo, seed, task_count, languages) are
-- adjacent.
SELECT * FROM eval_run
WHERE status = 'finished'
    AND (sqlc.narg('model_name')::text IS NULL OR model_name = sqlc.narg('model_name')::text)
    AND (sqlc.narg('arm')::text IS NULL OR arm = sqlc.narg('arm')::text)
ORDER BY repo, seed, task_count, languages, model_name, arm, started_at, eval_run_id;

-- name: EvalRunGetByID :one
SELECT * FROM eval_run WHERE eval_run_id = @eval_run_id;
