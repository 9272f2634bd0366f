-- The admin API's models and workers (server/admin_api_resources.go).
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

-- name: AdminModelList :many
-- name matches a part of the name, in any case; workers: how many
-- registered workers serve the model.
SELECT m.model_id, m.name, m.family, m.file_sha256, m.file_size, m.parameters, m.is_chat, m.is_synthetic,
    m.registered_at, m.last_loaded_at,
    (SELECT count(*) FROM engine_worker_model wm WHERE wm.model_id = m.model_id)::bigint AS workers
FROM model m
WHERE (sqlc.narg('id')::bigint IS NULL OR m.model_id = sqlc.narg('id')::bigint)
    AND (sqlc.narg('name')::text IS NULL OR strpos(lower(m.name), lower(sqlc.narg('name')::text)) > 0)
    AND (sqlc.narg('family')::text IS NULL OR m.family = sqlc.narg('family')::text)
    AND (sqlc.narg('is_chat')::boolean IS NULL OR m.is_chat = sqlc.narg('is_chat')::boolean)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN m.registered_at >= sqlc.narg('after_time')::timestamptz AND (m.registered_at, m.model_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN m.registered_at <= sqlc.narg('after_time')::timestamptz AND (m.registered_at, m.model_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'last_loaded_at' THEN m.last_loaded_at >= sqlc.narg('after_time')::timestamptz AND (m.last_loaded_at, m.model_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-last_loaded_at' THEN m.last_loaded_at <= sqlc.narg('after_time')::timestamptz AND (m.last_loaded_at, m.model_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'name' THEN m.name >= sqlc.narg('after_text')::text AND (m.name, m.model_id::text) > (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN '-name' THEN m.name <= sqlc.narg('after_text')::text AND (m.name, m.model_id::text) < (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN m.registered_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN m.registered_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'last_loaded_at' THEN m.last_loaded_at END,
    CASE WHEN sqlc.arg('sort')::text = '-last_loaded_at' THEN m.last_loaded_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'name' THEN m.name END,
    CASE WHEN sqlc.arg('sort')::text = '-name' THEN m.name END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN m.model_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN m.model_id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminWorkerList :many
-- Each worker with its load over its models (slots, busy slots, queued
-- requests, load = busy/slots), its memory over them (weights_bytes,
-- kv_cells; a model that did not report them counts 0) and the models it
-- serves, each with its own figures (NULL memory: not reported); alive:
-- its heartbeat is younger than @alive_ms by the database clock.
SELECT w.worker_id, w.host, w.pid, w.version, w.started_at, w.heartbeat_at, w.draining,
    (extract(epoch FROM now() - w.heartbeat_at) * 1000)::double precision AS heartbeat_age_ms,
    (w.heartbeat_at > now() - make_interval(0, 0, 0, 0, 0, 0, sqlc.arg('alive_ms')::double precision / 1000))::boolean AS alive,
    l.slots, l.slots_busy, l.queue_len, l.load, l.weights_bytes, l.kv_cells, l.models
FROM engine_worker w
CROSS JOIN LATERAL (
    SELECT coalesce(sum(wm.slots), 0)::bigint AS slots, coalesce(sum(wm.slots_busy), 0)::bigint AS slots_busy,
        coalesce(sum(wm.queue_len), 0)::bigint AS queue_len,
        coalesce(sum(wm.slots_busy)::double precision / nullif(sum(wm.slots), 0), 0)::double precision AS load,
        coalesce(sum(wm.weights_bytes), 0)::bigint AS weights_bytes, coalesce(sum(wm.kv_cells), 0)::bigint AS kv_cells,
        coalesce(jsonb_agg(jsonb_build_object('model_id', wm.model_id, 'name', m.name, 'is_chat', m.is_chat,
            'slots', wm.slots, 'slots_busy', wm.slots_busy, 'queue_len', wm.queue_len,
            'weights_bytes', wm.weights_bytes, 'kv_cells', wm.kv_cells) ORDER BY wm.model_id), '[]')::jsonb AS models
    FROM engine_worker_model wm JOIN model m USING (model_id) WHERE wm.worker_id = w.worker_id
) l
WHERE (sqlc.narg('id')::uuid IS NULL OR w.worker_id = sqlc.narg('id')::uuid)
    AND (sqlc.narg('draining')::boolean IS NULL OR w.draining = sqlc.narg('draining')::boolean)
    AND (sqlc.narg('alive')::boolean IS NULL OR (w.heartbeat_at > now() - make_interval(0, 0, 0, 0, 0, 0, sqlc.arg('alive_ms')::double precision / 1000)) = sqlc.narg('alive')::boolean)
    AND (sqlc.narg('model_id')::bigint IS NULL OR EXISTS (SELECT 1 FROM engine_worker_model x WHERE x.worker_id = w.worker_id AND x.model_id = sqlc.narg('model_id')::bigint))
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN w.started_at >= sqlc.narg('after_time')::timestamptz AND (w.started_at, w.worker_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN w.started_at <= sqlc.narg('after_time')::timestamptz AND (w.started_at, w.worker_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'heartbeat_at' THEN w.heartbeat_at >= sqlc.narg('after_time')::timestamptz AND (w.heartbeat_at, w.worker_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-heartbeat_at' THEN w.heartbeat_at <= sqlc.narg('after_time')::timestamptz AND (w.heartbeat_at, w.worker_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'host' THEN w.host >= sqlc.narg('after_text')::text AND (w.host, w.worker_id::text) > (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN '-host' THEN w.host <= sqlc.narg('after_text')::text AND (w.host, w.worker_id::text) < (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN w.started_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN w.started_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'heartbeat_at' THEN w.heartbeat_at END,
    CASE WHEN sqlc.arg('sort')::text = '-heartbeat_at' THEN w.heartbeat_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'host' THEN w.host END,
    CASE WHEN sqlc.arg('sort')::text = '-host' THEN w.host END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN w.worker_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN w.worker_id::text END DESC
LIMIT sqlc.arg('lim');
