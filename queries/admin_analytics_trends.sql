-- Queries of the research analytics' trends and per-model figures (GET
-- /api/analytics/trends and /models), under the rules of admin_analytics.sql:
-- completion queries only (query_type = 'completion'), no cache-warming
-- request (trigger 'warm-up'), requested in
-- [from_time, to_time), optionally of one user, each generation counted
-- once.

-- name: AnalyticsTrends :many
-- One row per bucket (the UTC hour, day or week, from Monday, of
-- requested_at), every bucket from the one holding from_time to the last
-- one starting before to_time, those without a query included with zeros:
-- completion queries, shown and accepted generations, distinct users,
-- distinct (user, UTC day) pairs, and the nearest-rank 50th, 95th and 99th
-- percentiles of total_serving_ms with how many queries record it. The
-- steps are fixed lengths (24 hours, 168 hours), which UTC buckets always
-- are, whatever the connection's time zone. With model_id, only the
-- queries that model answered count, and only its generations.
WITH q AS (
    SELECT date_trunc(sqlc.arg('granularity')::text, mq.requested_at, 'UTC') AS bucket,
        mq.user_id, date_trunc('day', mq.requested_at, 'UTC') AS day, mq.total_serving_ms, g.shown, g.accepted
    FROM meta_query mq
    JOIN LATERAL (
        SELECT count(*) AS n,
            count(*) FILTER (WHERE cardinality(x.shown_at) > 0) AS shown,
            count(*) FILTER (WHERE cardinality(x.shown_at) > 0 AND x.was_accepted) AS accepted
        FROM generation x WHERE x.meta_query_id = mq.meta_query_id
            AND (sqlc.narg('model_id')::bigint IS NULL OR x.model_id = sqlc.narg('model_id')::bigint)
    ) g ON sqlc.narg('model_id')::bigint IS NULL OR g.n > 0
    WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up')
        AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
        AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
)
SELECT b.bucket::timestamptz AS bucket,
    count(q.bucket)::bigint AS completions,
    coalesce(sum(q.shown), 0)::bigint AS shown,
    coalesce(sum(q.accepted), 0)::bigint AS accepted,
    count(DISTINCT q.user_id)::bigint AS users,
    count(DISTINCT q.user_id::text || q.day::text)::bigint AS user_days,
    count(q.total_serving_ms)::bigint AS n_total_serving,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY q.total_serving_ms)::float8[] AS total_serving
FROM generate_series(
    date_trunc(sqlc.arg('granularity')::text, sqlc.arg('from_time')::timestamptz, 'UTC'),
    sqlc.arg('to_time')::timestamptz,
    CASE sqlc.arg('granularity')::text WHEN 'hour' THEN interval '1 hour' WHEN 'day' THEN interval '24 hours' ELSE interval '168 hours' END
) AS b (bucket)
LEFT JOIN q ON q.bucket = b.bucket
WHERE b.bucket < sqlc.arg('to_time')::timestamptz
GROUP BY b.bucket
ORDER BY b.bucket;

-- name: AnalyticsModels :many
-- Per model, over its completion generations: how many, how many shown
-- and accepted, the sum of the confidences and how many record one, the
-- nearest-rank 50th, 95th and 99th percentiles of generation_time_ms, how
-- many completions are empty, how many record a stop_reason and how many
-- of those failed (error, cancelled or deadline: the generation did not
-- end on its own stop rules).
SELECT g.model_id, m.name AS model_name,
    count(*)::bigint AS generations,
    count(*) FILTER (WHERE cardinality(g.shown_at) > 0)::bigint AS shown,
    count(*) FILTER (WHERE cardinality(g.shown_at) > 0 AND g.was_accepted)::bigint AS accepted,
    count(g.confidence)::bigint AS n_confidence,
    coalesce(sum(g.confidence), 0)::float8 AS confidence_sum,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY g.generation_time_ms::float8)::float8[] AS generation_time,
    count(*) FILTER (WHERE g.completion = '')::bigint AS empty,
    count(g.stop_reason)::bigint AS with_stop_reason,
    count(*) FILTER (WHERE g.stop_reason IN ('error', 'cancelled', 'deadline'))::bigint AS failed
FROM generation g
JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
JOIN model m ON m.model_id = g.model_id
WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up')
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
GROUP BY g.model_id, m.name
ORDER BY g.model_id;
