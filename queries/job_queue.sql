-- The job queue as /api/ping reports it (server/jobs_admin.go).

-- name: JobQueueStats :many
-- Per queue: the jobs waiting (available) and running, how long the
-- oldest waiting one has waited, and the jobs completed in the last five
-- minutes with their median wait from scheduled_at to attempted_at. Both
-- parts read River's indexes: (state, queue, priority, scheduled_at, id)
-- for the waiting and running jobs, (state, finalized_at) for the
-- completed ones. A queue with none of these jobs is not listed; the
-- age and the median are 0 where there is no job to take them from.
WITH depth AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'available') AS available,
           count(*) FILTER (WHERE state = 'running') AS running,
           min(scheduled_at) FILTER (WHERE state = 'available') AS oldest_available_at
    FROM river_job
    WHERE state IN ('available', 'running')
    GROUP BY queue
), done AS (
    SELECT queue, count(*) AS completed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY attempted_at - scheduled_at) AS wait_p50
    FROM river_job
    WHERE state = 'completed' AND finalized_at > now() - interval '5 minutes' AND attempted_at IS NOT NULL
    GROUP BY queue
)
SELECT coalesce(d.queue, c.queue)::text AS queue,
       coalesce(d.available, 0)::bigint AS available,
       coalesce(d.running, 0)::bigint AS running,
       coalesce(extract(epoch FROM greatest(now() - d.oldest_available_at, interval '0')) * 1000, 0)::double precision AS oldest_available_ms,
       coalesce(c.completed, 0)::bigint AS completed_5m,
       coalesce(extract(epoch FROM c.wait_p50) * 1000, 0)::double precision AS wait_p50_ms
FROM depth d
FULL JOIN done c ON c.queue = d.queue
ORDER BY 1;
