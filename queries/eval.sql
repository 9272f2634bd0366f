-- name: EvalRunInsert :one
-- Records an offline evaluation run: 'running' for the command line,
-- 'queued' for a job. Its figures are set by EvalRunFinish. started_at is
-- now unless given.
INSERT INTO eval_run (model_name, model_sha256, arm, seed, repo, task_count, max_tokens, languages,
    status, requested_by, started_at)
VALUES (@model_name, @model_sha256, @arm, @seed, @repo, @task_count, @max_tokens, @languages::text[],
    @status, sqlc.narg('requested_by'), coalesce(sqlc.narg('started_at')::timestamptz, now()))
RETURNING *;

-- name: EvalRunClaim :one
-- A job's start: the run becomes 'running' unless it is finished (no row
-- then: a retried job of a finished run does nothing).
UPDATE eval_run SET status = 'running', error = NULL
WHERE eval_run_id = @eval_run_id AND status <> 'finished'
RETURNING *;

-- name: EvalRunSetFailed :exec
-- An attempt failed: status 'queued' when the job is tried again, else
-- 'failed'. A finished run is left as it is.
UPDATE eval_run SET status = @status, error = @error
WHERE eval_run_id = @eval_run_id AND status <> 'finished';

-- name: EvalResultDeleteByRun :exec
-- Clears what an earlier attempt of a run stored.
DELETE FROM eval_result WHERE eval_run_id = @eval_run_id;

-- name: EvalRunFinish :exec
UPDATE eval_run SET
    status = 'finished',
    error = NULL,
    finished_at = now(),
    exact_match_rate = @exact_match_rate,
    mean_edit_similarity = @mean_edit_similarity,
    latency_p50_ms = @latency_p50_ms,
    latency_p95_ms = @latency_p95_ms,
    latency_p99_ms = @latency_p99_ms
WHERE eval_run_id = @eval_run_id;

-- name: EvalRunList :many
-- Finished runs, newest first.
SELECT * FROM eval_run WHERE finished_at IS NOT NULL
ORDER BY started_at DESC, eval_run_id DESC LIMIT @max_rows;

-- name: EvalResultInsert :copyfrom
INSERT INTO eval_result (eval_run_id, task_index, file_path, language, kind, expected, output,
    exact, edit_similarity, latency_ms, prompt_tokens, generated_tokens)
VALUES (@eval_run_id, @task_index, @file_path, @language, @kind, @expected, @output,
    @exact, @edit_similarity, @latency_ms, @prompt_tokens, @generated_tokens);

-- name: EvalResultListByRun :many
SELECT * FROM eval_result WHERE eval_run_id = @eval_run_id ORDER BY task_index;

-- name: EvalCompare :many
-- Finished runs side by side, by model file, arm, source tree and seed (runs
-- with the same tree and seed had the same tasks), per task kind and language.
SELECT r.model_name, r.model_sha256, r.arm, r.repo, r.seed, x.kind, x.language,
    count(DISTINCT r.eval_run_id)::bigint AS runs,
    count(*)::bigint AS tasks,
    avg(x.exact::int)::double precision AS exact_match_rate,
    avg(x.edit_similarity)::double precision AS mean_edit_similarity,
    (percentile_disc(0.5) WITHIN GROUP (ORDER BY x.latency_ms))::double precision AS latency_p50_ms
FROM eval_run r JOIN eval_result x USING (eval_run_id)
WHERE r.finished_at IS NOT NULL
GROUP BY r.model_name, r.model_sha256, r.arm, r.repo, r.seed, x.kind, x.language
ORDER BY r.repo, r.seed, x.kind, x.language, r.model_name, r.arm;
