-- The retention job (server/retention.go).

-- name: RetentionDeleteFinishedJobs :execrows
-- Up to @batch finished jobs of @kind (completed, cancelled or discarded)
-- that finished over an hour ago, found through River's (state,
-- finalized_at) index.
DELETE FROM river_job
WHERE id IN (
    SELECT j.id FROM river_job j
    WHERE j.state IN ('completed', 'cancelled', 'discarded')
      AND j.finalized_at < now() - interval '1 hour'
      AND j.kind = @kind
    LIMIT sqlc.arg('batch')::integer
);
