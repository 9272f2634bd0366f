-- Queries of the research analytics (GET /api/analytics/*, for admins
-- only). Every query counts completion queries only (query_type =
-- 'completion': chat turns never enter completion metrics) and no
-- cache-warming request (its generations have trigger 'warm-up': the
-- n_predict 0 requests llama.vim and llama.vscode send to fill the KV
-- cache, which show nothing and time a prompt alone), takes the
-- queries requested in [from_time, to_time), optionally of one user, and
-- counts each generation once (no join multiplies rows).

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
WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up')
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
WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up')
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
WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up')
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
WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up')
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
GROUP BY g.model_id, m.name
ORDER BY g.model_id;

-- name: AnalyticsQuality :many
-- Per model with shown completion generations, in model_id order: over
-- the shown generations whose latest ground truth (by truth_timestamp,
-- then ground_truth_id) has its figures in generation_truth_match, how
-- many, and the means of exact_match and edit_similarity against it;
-- the same over the accepted ones; and per horizon of horizons_s (in that
-- order), over the accepted, non-empty generations with a ground truth
-- reported at or before accepted_at + horizon, how many and the mean
-- survival against the latest such one. Means are 0 where the count is.
-- accepted_at is when the acceptance was recorded (feedback_at), else the
-- last time the completion was shown.
WITH g AS (
    SELECT g.meta_query_id, g.model_id, g.was_accepted,
        coalesce(g.feedback_at, g.shown_at[cardinality(g.shown_at)]) AS accepted_at
    FROM generation g
    JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
    WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up') AND cardinality(g.shown_at) > 0
        AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
        AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
), matched AS (
    SELECT g.model_id,
        count(t.exact_match) AS n_shown,
        avg(t.exact_match::int) AS em_shown,
        avg(t.edit_similarity) AS es_shown,
        count(t.exact_match) FILTER (WHERE g.was_accepted) AS n_accepted,
        avg(t.exact_match::int) FILTER (WHERE g.was_accepted) AS em_accepted,
        avg(t.edit_similarity) FILTER (WHERE g.was_accepted) AS es_accepted
    FROM g
    LEFT JOIN LATERAL (
        SELECT x.exact_match, x.edit_similarity FROM generation_truth_match x
        WHERE x.meta_query_id = g.meta_query_id AND x.model_id = g.model_id
        ORDER BY x.truth_at DESC, x.ground_truth_id DESC LIMIT 1
    ) t ON true
    GROUP BY g.model_id
), survived AS (
    SELECT g.model_id, h.k, count(t.survival) AS n, avg(t.survival) AS mean
    FROM g
    CROSS JOIN unnest(sqlc.arg('horizons_s')::int[]) WITH ORDINALITY AS h(secs, k)
    LEFT JOIN LATERAL (
        SELECT x.survival FROM generation_truth_match x
        WHERE x.meta_query_id = g.meta_query_id AND x.model_id = g.model_id
            AND x.truth_at <= g.accepted_at + make_interval(secs => h.secs)
        ORDER BY x.truth_at DESC, x.ground_truth_id DESC LIMIT 1
    ) t ON true
    WHERE g.was_accepted
    GROUP BY g.model_id, h.k
)
SELECT a.model_id, m.name AS model_name,
    a.n_shown::bigint AS n_shown, coalesce(a.em_shown, 0)::float8 AS em_shown, coalesce(a.es_shown, 0)::float8 AS es_shown,
    a.n_accepted::bigint AS n_accepted, coalesce(a.em_accepted, 0)::float8 AS em_accepted,
    coalesce(a.es_accepted, 0)::float8 AS es_accepted,
    coalesce((SELECT array_agg(s.n ORDER BY s.k) FROM survived s WHERE s.model_id = a.model_id), '{}')::bigint[] AS survival_n,
    coalesce((SELECT array_agg(coalesce(s.mean, 0) ORDER BY s.k) FROM survived s WHERE s.model_id = a.model_id), '{}')::float8[] AS survival_mean
FROM matched a
JOIN model m ON m.model_id = a.model_id
ORDER BY a.model_id;
