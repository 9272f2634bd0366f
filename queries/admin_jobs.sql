-- The admin API's jobs: River's job table (server/admin_api_resources.go).
-- A job's arguments are not shown: an engine request's hold a user's code.
--
-- Every list query of the admin API has the same shape: optional filters
-- (NULL: not applied; id selects one row, which is how GET /:id reads it),
-- a sort key @sort from the resource's fixed list, "-" first for
-- descending, and keyset pagination: the rows after the cursor (@after_id
-- with the sort value in @after_time, @after_text or @after_int, by the
-- key's type), at most @lim of them. Ties of the sort value are broken by
-- the row's id as text, in the sort's direction, so the order is total and
-- a page never repeats or skips a row. The cursor also bounds the sort
-- column alone, and the server plans each call for its sort (the CASEs
-- fold away), so an index on the column serves the order and starts at
-- the cursor. No query returns a password hash, a token or a key.

-- name: AdminJobList :many
-- last_error: the error of the job's latest failed attempt, null when none.
SELECT j.id, j.state::text AS state, j.kind, j.queue, j.priority, j.attempt, j.max_attempts, j.created_at, j.scheduled_at,
    j.attempted_at, j.finalized_at, j.tags,
    j.errors[array_length(j.errors, 1)] ->> 'error' AS last_error
FROM river_job j
WHERE (sqlc.narg('id')::bigint IS NULL OR j.id = sqlc.narg('id')::bigint)
    AND (sqlc.narg('state')::text IS NULL OR j.state::text = sqlc.narg('state')::text)
    AND (sqlc.narg('kind')::text IS NULL OR j.kind = sqlc.narg('kind')::text)
    AND (sqlc.narg('queue')::text IS NULL OR j.queue = sqlc.narg('queue')::text)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN j.created_at >= sqlc.narg('after_time')::timestamptz AND (j.created_at, j.id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN j.created_at <= sqlc.narg('after_time')::timestamptz AND (j.created_at, j.id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'scheduled_at' THEN j.scheduled_at >= sqlc.narg('after_time')::timestamptz AND (j.scheduled_at, j.id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-scheduled_at' THEN j.scheduled_at <= sqlc.narg('after_time')::timestamptz AND (j.scheduled_at, j.id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'id' THEN j.id >= sqlc.narg('after_int')::bigint AND (j.id, j.id::text) > (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
        WHEN '-id' THEN j.id <= sqlc.narg('after_int')::bigint AND (j.id, j.id::text) < (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN j.created_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN j.created_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'scheduled_at' THEN j.scheduled_at END,
    CASE WHEN sqlc.arg('sort')::text = '-scheduled_at' THEN j.scheduled_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'id' THEN j.id END,
    CASE WHEN sqlc.arg('sort')::text = '-id' THEN j.id END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN j.id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN j.id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminJobLock :one
-- Locks a job's row for an admin write in the caller's transaction.
SELECT id FROM river_job WHERE id = @id FOR UPDATE;
