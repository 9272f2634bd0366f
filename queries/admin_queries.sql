-- The admin API's queries and generations (server/admin_api_resources.go).
-- The context of a query (prefix, suffix, files), stored only with the
-- user's consent, is not shown; generations show their redacted text.
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

-- name: AdminQueryList :many
-- from, to: requested_at in [from, to); model_id: queries that model
-- answered.
SELECT mq.meta_query_id, mq.query_type, mq.user_id, mq.session_id, mq.project_id, mq.chat_id, mq.config_id,
    mq.study_id, mq.arm_id, mq.client, mq.server_version, mq.requested_at, mq.total_serving_ms, mq.redact_ms, mq.context_ms,
    (SELECT coalesce(array_agg(g.model_id ORDER BY g.model_id), '{}') FROM generation g WHERE g.meta_query_id = mq.meta_query_id)::bigint[] AS model_ids
FROM meta_query mq
WHERE (sqlc.narg('id')::uuid IS NULL OR mq.meta_query_id = sqlc.narg('id')::uuid)
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
    AND (sqlc.narg('query_type')::text IS NULL OR mq.query_type = sqlc.narg('query_type')::text)
    AND (sqlc.narg('project_id')::uuid IS NULL OR mq.project_id = sqlc.narg('project_id')::uuid)
    AND (sqlc.narg('study_id')::uuid IS NULL OR mq.study_id = sqlc.narg('study_id')::uuid)
    AND (sqlc.narg('session_id')::uuid IS NULL OR mq.session_id = sqlc.narg('session_id')::uuid)
    AND (sqlc.narg('model_id')::bigint IS NULL OR EXISTS (SELECT 1 FROM generation g WHERE g.meta_query_id = mq.meta_query_id AND g.model_id = sqlc.narg('model_id')::bigint))
    AND (sqlc.narg('from')::timestamptz IS NULL OR mq.requested_at >= sqlc.narg('from')::timestamptz)
    AND (sqlc.narg('to')::timestamptz IS NULL OR mq.requested_at < sqlc.narg('to')::timestamptz)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN mq.requested_at >= sqlc.narg('after_time')::timestamptz AND (mq.requested_at, mq.meta_query_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN mq.requested_at <= sqlc.narg('after_time')::timestamptz AND (mq.requested_at, mq.meta_query_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN mq.requested_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN mq.requested_at END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN mq.meta_query_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN mq.meta_query_id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminGenerationList :many
-- A generation's id is "<meta_query_id>:<model_id>"; GET /:id reads it
-- with query_id and model_id. from, to: created_at in [from, to).
SELECT (g.meta_query_id::text || ':' || g.model_id::text)::text AS generation_id, g.meta_query_id, g.model_id, mq.user_id,
    g.completion, g.generation_time_ms, g.shown_at, g.was_accepted, g.feedback_at, g.confidence, g.stop_reason,
    g.queue_ms, g.prefill_ms, g.decode_ms, g.tokens_cached, g.tokens_evaluated, g.tokens_generated, g.sampler, g.seed,
    g.template_version, g.engine_build, g.context_policy, g.trigger, g.created_at, mq.requested_at
FROM generation g
JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
WHERE (sqlc.narg('query_id')::uuid IS NULL OR g.meta_query_id = sqlc.narg('query_id')::uuid)
    AND (sqlc.narg('model_id')::bigint IS NULL OR g.model_id = sqlc.narg('model_id')::bigint)
    AND (sqlc.narg('user_id')::uuid IS NULL OR mq.user_id = sqlc.narg('user_id')::uuid)
    AND (sqlc.narg('accepted')::boolean IS NULL OR g.was_accepted = sqlc.narg('accepted')::boolean)
    AND (sqlc.narg('from')::timestamptz IS NULL OR mq.requested_at >= sqlc.narg('from')::timestamptz)
    AND (sqlc.narg('to')::timestamptz IS NULL OR mq.requested_at < sqlc.narg('to')::timestamptz)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN mq.requested_at >= sqlc.narg('after_time')::timestamptz AND (mq.requested_at, (g.meta_query_id::text || ':' || g.model_id::text)) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN mq.requested_at <= sqlc.narg('after_time')::timestamptz AND (mq.requested_at, (g.meta_query_id::text || ':' || g.model_id::text)) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'generation_time_ms' THEN g.generation_time_ms::bigint >= sqlc.narg('after_int')::bigint AND (g.generation_time_ms::bigint, (g.meta_query_id::text || ':' || g.model_id::text)) > (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
        WHEN '-generation_time_ms' THEN g.generation_time_ms::bigint <= sqlc.narg('after_int')::bigint AND (g.generation_time_ms::bigint, (g.meta_query_id::text || ':' || g.model_id::text)) < (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN mq.requested_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN mq.requested_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'generation_time_ms' THEN g.generation_time_ms::bigint END,
    CASE WHEN sqlc.arg('sort')::text = '-generation_time_ms' THEN g.generation_time_ms::bigint END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN (g.meta_query_id::text || ':' || g.model_id::text) END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN (g.meta_query_id::text || ':' || g.model_id::text) END DESC
LIMIT sqlc.arg('lim');
