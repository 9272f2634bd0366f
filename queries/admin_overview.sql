-- The admin overview (GET /api/admin/overview, server/admin_api_overview.go).

-- name: AdminOverview :many
-- Per time bucket (date_bin of requested_at with @bucket_s seconds from
-- @from_time) and model, over the queries requested in [from_time,
-- to_time), completion and chat alike: the generations (one per model and
-- query, so a model's requests), how many were shown and accepted, and the
-- nearest-rank 50th and 95th percentiles of their generation_time_ms, of
-- their queries' total_serving_ms, and of each stage: the generations'
-- queue_ms, prefill_ms and decode_ms and their queries' redact_ms and
-- context_ms (NULL where none records it). Buckets without a generation
-- are not returned.
SELECT date_bin(make_interval(secs => sqlc.arg('bucket_s')::double precision), mq.requested_at, sqlc.arg('from_time')::timestamptz)::timestamptz AS bucket,
    g.model_id, m.name AS model_name,
    count(*)::bigint AS requests,
    count(*) FILTER (WHERE cardinality(g.shown_at) > 0)::bigint AS shown,
    count(*) FILTER (WHERE cardinality(g.shown_at) > 0 AND g.was_accepted)::bigint AS accepted,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY g.generation_time_ms::float8)::float8[] AS generation_time,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY mq.total_serving_ms)::float8[] AS total_serving,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY mq.redact_ms)::float8[] AS redact,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY mq.context_ms)::float8[] AS context,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY g.queue_ms)::float8[] AS queue,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY g.prefill_ms)::float8[] AS prefill,
    percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY g.decode_ms)::float8[] AS decode
FROM generation g
JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
JOIN model m ON m.model_id = g.model_id
WHERE mq.requested_at >= sqlc.arg('from_time')::timestamptz AND mq.requested_at < sqlc.arg('to_time')::timestamptz
GROUP BY 1, g.model_id, m.name
ORDER BY g.model_id, 1;
