-- Queries of a user's own usage (GET /api/user/usage): the caller's
-- completion queries requested in [from_time, to_time), cache-warming
-- requests (generations with trigger 'warm-up') left out, each generation
-- counted once (no join multiplies rows).

-- name: UsageUserDaily :many
-- Per UTC day: completion queries, generations shown (at least one
-- shown_at), shown generations accepted, how many queries record their
-- total serving time, and the nearest-rank 50th and 95th percentiles of
-- it in milliseconds (NULL when none does).
SELECT date_trunc('day', mq.requested_at, 'UTC')::timestamptz AS day,
    count(*)::bigint AS completions,
    coalesce(sum(g.shown), 0)::bigint AS shown,
    coalesce(sum(g.accepted), 0)::bigint AS accepted,
    count(mq.total_serving_ms)::bigint AS n_served,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY mq.total_serving_ms)::float8[] AS serving_ms
FROM meta_query mq
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE cardinality(x.shown_at) > 0) AS shown,
        count(*) FILTER (WHERE cardinality(x.shown_at) > 0 AND x.was_accepted) AS accepted
    FROM generation x WHERE x.meta_query_id = mq.meta_query_id
) g ON true
WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up') AND mq.user_id = @user_id::uuid
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
GROUP BY 1
ORDER BY 1;

-- name: UsageUserLanguages :many
-- Per programming language of the queries' contextual telemetry (queries
-- stored without telemetry are left out): completion queries, generations
-- shown and shown generations accepted, most used first.
SELECT pl.language_name,
    count(*)::bigint AS completions,
    coalesce(sum(g.shown), 0)::bigint AS shown,
    coalesce(sum(g.accepted), 0)::bigint AS accepted
FROM meta_query mq
JOIN contextual_telemetry ct ON ct.meta_query_id = mq.meta_query_id
JOIN programming_language pl ON pl.language_id = ct.language_id
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE cardinality(x.shown_at) > 0) AS shown,
        count(*) FILTER (WHERE cardinality(x.shown_at) > 0 AND x.was_accepted) AS accepted
    FROM generation x WHERE x.meta_query_id = mq.meta_query_id
) g ON true
WHERE mq.query_type = 'completion' AND NOT EXISTS (SELECT 1 FROM generation w WHERE w.meta_query_id = mq.meta_query_id AND w.trigger = 'warm-up') AND mq.user_id = @user_id::uuid
    AND mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
GROUP BY pl.language_name
ORDER BY 2 DESC, 1;
