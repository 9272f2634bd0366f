-- Study results and the study export (server/study_results.go,
-- server/study_export.go). A study's exposed queries are the completion
-- queries (query_type = 'completion') answered by one of its arms
-- (meta_query.arm_id) and requested in its window [from_time, to_time),
-- which the caller sets to [starts_at, coalesce(ends_at, now())); the
-- results leave out cache-warming requests (trigger 'warm-up'), the
-- export keeps every query.
-- shown, accepted and the ground truths that apply are defined as in
-- admin_analytics.sql. For admins only (GET
-- /api/analytics/studies/{study_id}/evaluation, /results and /export).

-- name: StudyResultArms :many
-- Per arm of the study, in arm_id order, empty arms included: units
-- exposed (the distinct users, sessions or queries that study.unit
-- randomises; a session unit without a session is its user, as
-- assignment has it), participants (distinct users), queries, their
-- generations, shown and accepted generations, and over the queries that
-- record total_serving_ms: how many, their mean and sample standard
-- deviation (0 when undefined: n_latency says) and the nearest-rank
-- 50th and 95th percentiles.
WITH q AS (
    SELECT mq.meta_query_id, mq.arm_id, mq.user_id, mq.total_serving_ms,
        CASE sqlc.arg('unit')::text WHEN 'user' THEN mq.user_id
                                    WHEN 'session' THEN coalesce(mq.session_id, mq.user_id)
                                    ELSE mq.meta_query_id END AS unit_id
    FROM meta_query mq
    JOIN study_arm a ON a.arm_id = mq.arm_id
    WHERE a.study_id = sqlc.arg('study_id') AND mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up')
        AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
)
SELECT a.arm_id, a.name, a.config_id, a.is_baseline,
    count(DISTINCT q.unit_id)::bigint AS units,
    count(DISTINCT q.user_id)::bigint AS participants,
    count(q.meta_query_id)::bigint AS queries,
    coalesce(sum(g.n), 0)::bigint AS generations,
    coalesce(sum(g.shown), 0)::bigint AS shown,
    coalesce(sum(g.accepted), 0)::bigint AS accepted,
    count(q.total_serving_ms)::bigint AS n_latency,
    coalesce(avg(q.total_serving_ms), 0)::float8 AS latency_mean,
    coalesce(stddev_samp(q.total_serving_ms), 0)::float8 AS latency_sd,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY q.total_serving_ms)::float8[] AS latency_percentiles
FROM study_arm a
LEFT JOIN q ON q.arm_id = a.arm_id
LEFT JOIN LATERAL (
    SELECT count(*) AS n,
        count(*) FILTER (WHERE cardinality(x.shown_at) > 0) AS shown,
        count(*) FILTER (WHERE cardinality(x.shown_at) > 0 AND x.was_accepted) AS accepted
    FROM generation x WHERE x.meta_query_id = q.meta_query_id
) g ON true
WHERE a.study_id = sqlc.arg('study_id')
GROUP BY a.arm_id
ORDER BY a.arm_id;

-- name: StudyResultQuality :many
-- AnalyticsQuality's figures per arm, over the study's exposed queries,
-- in arm_id order; arms without a shown generation have no row.
WITH g AS (
    SELECT mq.arm_id::bigint AS arm_id, g.meta_query_id, g.model_id, g.was_accepted,
        coalesce(g.feedback_at, g.shown_at[cardinality(g.shown_at)]) AS accepted_at
    FROM generation g
    JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
    JOIN study_arm a ON a.arm_id = mq.arm_id
    WHERE a.study_id = sqlc.arg('study_id') AND mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up') AND cardinality(g.shown_at) > 0
        AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
), matched AS (
    SELECT g.arm_id,
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
    GROUP BY g.arm_id
), survived AS (
    SELECT g.arm_id, h.k, count(t.survival) AS n, avg(t.survival) AS mean
    FROM g
    CROSS JOIN unnest(sqlc.arg('horizons_s')::int[]) WITH ORDINALITY AS h(secs, k)
    LEFT JOIN LATERAL (
        SELECT x.survival FROM generation_truth_match x
        WHERE x.meta_query_id = g.meta_query_id AND x.model_id = g.model_id
            AND x.truth_at <= g.accepted_at + make_interval(secs => h.secs)
        ORDER BY x.truth_at DESC, x.ground_truth_id DESC LIMIT 1
    ) t ON true
    WHERE g.was_accepted
    GROUP BY g.arm_id, h.k
)
SELECT a.arm_id,
    a.n_shown::bigint AS n_shown, coalesce(a.em_shown, 0)::float8 AS em_shown, coalesce(a.es_shown, 0)::float8 AS es_shown,
    a.n_accepted::bigint AS n_accepted, coalesce(a.em_accepted, 0)::float8 AS em_accepted,
    coalesce(a.es_accepted, 0)::float8 AS es_accepted,
    coalesce((SELECT array_agg(s.n ORDER BY s.k) FROM survived s WHERE s.arm_id = a.arm_id), '{}')::bigint[] AS survival_n,
    coalesce((SELECT array_agg(coalesce(s.mean, 0) ORDER BY s.k) FROM survived s WHERE s.arm_id = a.arm_id), '{}')::float8[] AS survival_mean
FROM matched a
ORDER BY a.arm_id;

-- name: StudyExportPage :many
-- One page of the export: the next page_size exposed queries after
-- (after_time, after_id) in (requested_at, meta_query_id) order, each
-- with one row per generation (by model_id), or one row with NULL
-- generation columns when it has none; with its contextual telemetry's
-- language and trigger type, and the ground truths that apply to each
-- generation, oldest first.
WITH q AS (
    SELECT mq.meta_query_id, mq.arm_id, mq.user_id, mq.session_id, mq.config_id, mq.requested_at, mq.total_serving_ms
    FROM meta_query mq
    JOIN study_arm a ON a.arm_id = mq.arm_id
    WHERE a.study_id = sqlc.arg('study_id') AND mq.query_type = 'completion'
        AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
        AND (mq.requested_at > sqlc.arg('after_time')::timestamptz
            OR (mq.requested_at = sqlc.arg('after_time')::timestamptz AND mq.meta_query_id > sqlc.arg('after_id')::uuid))
    ORDER BY mq.requested_at, mq.meta_query_id
    LIMIT sqlc.arg('page_size')::int
)
SELECT q.meta_query_id, q.arm_id::bigint AS arm_id, a.name AS arm_name, q.user_id, q.session_id, q.config_id,
    q.requested_at, q.total_serving_ms, ct.language_id AS language_id, tt.trigger_type_name AS trigger,
    g.model_id AS model_id, m.name AS model_name, g.completion AS completion, g.shown_at AS shown_at,
    g.was_accepted AS was_accepted, g.feedback_at AS feedback_at, g.confidence AS confidence,
    g.generation_time_ms AS generation_time_ms, g.tokens_generated AS tokens_generated,
    t.truths, t.truth_times
FROM q
JOIN study_arm a ON a.arm_id = q.arm_id
LEFT JOIN contextual_telemetry ct ON ct.meta_query_id = q.meta_query_id
LEFT JOIN trigger_type tt ON tt.trigger_type_id = ct.trigger_type_id
LEFT JOIN generation g ON g.meta_query_id = q.meta_query_id
LEFT JOIN model m ON m.model_id = g.model_id
LEFT JOIN LATERAL (
    SELECT coalesce(array_agg(gt.ground_truth ORDER BY gt.truth_timestamp, gt.ground_truth_id), '{}')::text[] AS truths,
        coalesce(array_agg(gt.truth_timestamp ORDER BY gt.truth_timestamp, gt.ground_truth_id), '{}')::timestamptz[] AS truth_times
    FROM ground_truth gt
    WHERE g.model_id IS NOT NULL AND gt.meta_query_id = q.meta_query_id AND (gt.model_id IS NULL OR gt.model_id = g.model_id)
) t ON true
ORDER BY q.requested_at, q.meta_query_id, g.model_id;
