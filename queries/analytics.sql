-- Queries of the research analytics (GET /api/analytics/*). Every query
-- counts completion queries only (query_type = 'completion': chat turns
-- never enter completion metrics), takes the queries requested in
-- [from_time, to_time), optionally of one user, and counts each
-- generation once (no join multiplies rows).

-- name: AnalyticsUsage :many
-- Per bucket (the UTC day or hour of requested_at): completion queries,
-- generations shown (at least one shown_at), shown generations accepted,
-- distinct users and distinct (user, UTC day) pairs.
SELECT date_trunc(sqlc.arg('granularity')::text, mq.requested_at, 'UTC')::timestamptz AS bucket,
    count(*)::bigint AS completions,
    coalesce(sum(g.shown), 0)::bigint AS shown,
    coalesce(sum(g.accepted), 0)::bigint AS accepted,
    count(DISTINCT mq.user_id)::bigint AS users,
    count(DISTINCT mq.user_id::text || date_trunc('day', mq.requested_at, 'UTC')::text)::bigint AS user_days
FROM meta_query mq
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE cardinality(x.shown_at) > 0) AS shown,
        count(*) FILTER (WHERE cardinality(x.shown_at) > 0 AND x.was_accepted) AS accepted
    FROM generation x WHERE x.meta_query_id = mq.meta_query_id
) g ON true
WHERE mq.query_type = 'completion'
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
GROUP BY 1
ORDER BY 1;

-- name: AnalyticsUsageTotal :one
-- AnalyticsUsage over the whole window.
SELECT count(*)::bigint AS completions,
    coalesce(sum(g.shown), 0)::bigint AS shown,
    coalesce(sum(g.accepted), 0)::bigint AS accepted,
    count(DISTINCT mq.user_id)::bigint AS users,
    count(DISTINCT mq.user_id::text || date_trunc('day', mq.requested_at, 'UTC')::text)::bigint AS user_days
FROM meta_query mq
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE cardinality(x.shown_at) > 0) AS shown,
        count(*) FILTER (WHERE cardinality(x.shown_at) > 0 AND x.was_accepted) AS accepted
    FROM generation x WHERE x.meta_query_id = mq.meta_query_id
) g ON true
WHERE mq.query_type = 'completion'
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid);

-- name: AnalyticsCalibration :many
-- Reliability bins per model over shown completion generations with a
-- confidence: bin b of @bins holds confidences in [b/bins, (b+1)/bins),
-- the last bin also 1. brier_sum is the bin's sum of (confidence -
-- accepted)².
SELECT g.model_id, m.name AS model_name,
    LEAST(floor(g.confidence * sqlc.arg('bins')::int)::int, sqlc.arg('bins')::int - 1)::int AS bin,
    count(*)::bigint AS n,
    avg(g.confidence)::float8 AS mean_confidence,
    avg(CASE WHEN g.was_accepted THEN 1.0 ELSE 0.0 END)::float8 AS accept_rate,
    sum(power(g.confidence - CASE WHEN g.was_accepted THEN 1.0 ELSE 0.0 END, 2))::float8 AS brier_sum
FROM generation g
JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
JOIN model m ON m.model_id = g.model_id
WHERE mq.query_type = 'completion'
    AND cardinality(g.shown_at) > 0 AND g.confidence IS NOT NULL
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
GROUP BY g.model_id, m.name, 3
ORDER BY g.model_id, 3;

-- name: AnalyticsLatency :many
-- Per model, the nearest-rank 50th, 95th and 99th percentiles (p: the
-- smallest value that at least p of the values are at or below) of each
-- stage of its completion generations, and how many generations record
-- the stage (NULLs are left out). The meta_query stages are those of the
-- queries the model answered.
SELECT g.model_id, m.name AS model_name,
    count(*)::bigint AS n_generation_time,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY g.generation_time_ms::float8)::float8[] AS generation_time,
    count(g.queue_ms)::bigint AS n_queue,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY g.queue_ms)::float8[] AS queue,
    count(g.prefill_ms)::bigint AS n_prefill,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY g.prefill_ms)::float8[] AS prefill,
    count(g.decode_ms)::bigint AS n_decode,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY g.decode_ms)::float8[] AS decode,
    count(mq.total_serving_ms)::bigint AS n_total_serving,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY mq.total_serving_ms)::float8[] AS total_serving,
    count(mq.redact_ms)::bigint AS n_redact,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY mq.redact_ms)::float8[] AS redact,
    count(mq.context_ms)::bigint AS n_context,
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY mq.context_ms)::float8[] AS context
FROM generation g
JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
JOIN model m ON m.model_id = g.model_id
WHERE mq.query_type = 'completion'
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
GROUP BY g.model_id, m.name
ORDER BY g.model_id;

-- name: AnalyticsQualityList :many
-- The shown completion generations with the ground truths that apply to
-- them (those of their query for their model or for no model), oldest
-- first. accepted_at is when the acceptance was recorded (feedback_at),
-- else the last time the completion was shown.
SELECT g.model_id, m.name AS model_name, g.completion, g.was_accepted,
    coalesce(g.feedback_at, g.shown_at[cardinality(g.shown_at)])::timestamptz AS accepted_at,
    coalesce(array_agg(gt.ground_truth ORDER BY gt.truth_timestamp, gt.ground_truth_id)
        FILTER (WHERE gt.ground_truth_id IS NOT NULL), '{}')::text[] AS truths,
    coalesce(array_agg(gt.truth_timestamp ORDER BY gt.truth_timestamp, gt.ground_truth_id)
        FILTER (WHERE gt.ground_truth_id IS NOT NULL), '{}')::timestamptz[] AS truth_times
FROM generation g
JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
JOIN model m ON m.model_id = g.model_id
LEFT JOIN ground_truth gt ON gt.meta_query_id = g.meta_query_id AND (gt.model_id IS NULL OR gt.model_id = g.model_id)
WHERE mq.query_type = 'completion' AND cardinality(g.shown_at) > 0
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
GROUP BY g.meta_query_id, g.model_id, m.name
ORDER BY g.model_id, g.meta_query_id;
