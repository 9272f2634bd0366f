-- The worker tier's registry (internal/remote, server).

-- name: EngineWorkerRegister :exec
INSERT INTO engine_worker (worker_id, host, pid, version) VALUES (@worker_id, @host, @pid, @version)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), draining = false;

-- name: EngineWorkerModelSet :exec
-- weights_bytes and kv_cells are the model's memory, fixed at load.
INSERT INTO engine_worker_model (worker_id, model_id, slots, slots_busy, queue_len, chat_template, weights_bytes, kv_cells)
VALUES (@worker_id, @model_id, sqlc.arg('slots'), sqlc.arg('slots_busy'), @queue_len, sqlc.narg('chat_template'),
    sqlc.narg('weights_bytes'), sqlc.narg('kv_cells'))
ON CONFLICT (worker_id, model_id) DO UPDATE SET
    slots = excluded.slots, slots_busy = excluded.slots_busy, queue_len = excluded.queue_len,
    chat_template = excluded.chat_template, weights_bytes = excluded.weights_bytes, kv_cells = excluded.kv_cells;

-- name: EngineWorkerHeartbeat :execrows
-- No row: the worker was removed (a long pause made it look dead and
-- another node cleaned it up); it registers again.
UPDATE engine_worker SET heartbeat_at = now(), draining = @draining WHERE worker_id = @worker_id;

-- name: EngineWorkerLoad :exec
UPDATE engine_worker_model SET slots_busy = @slots_busy, queue_len = @queue_len
WHERE worker_id = @worker_id AND model_id = @model_id;

-- name: EngineWorkerStop :exec
-- A stopped worker stays registered as a dead one: its heartbeat moves back
-- by the liveness window (@alive_ms), so API nodes send it nothing and a
-- request for a model only it served answers 503 (no live worker), as after
-- a crash, rather than naming an unknown model, until
-- EngineWorkerForgetDead removes it.
UPDATE engine_worker
SET draining = true, heartbeat_at = now() - make_interval(0, 0, 0, 0, 0, 0, sqlc.arg('alive_ms')::double precision / 1000)
WHERE worker_id = @worker_id;

-- name: EngineWorkerForgetDead :execrows
-- Workers silent for an hour are gone for good.
DELETE FROM engine_worker WHERE heartbeat_at < now() - interval '1 hour';

-- name: EngineWorkerServing :many
-- Every model of every worker with its load and memory, the worker's liveness judged
-- by the database clock (heartbeat younger than @alive_ms), and the
-- model's registration.
SELECT w.worker_id, w.host, w.pid, w.version, w.started_at, w.heartbeat_at, w.draining,
       (w.heartbeat_at > now() - make_interval(0, 0, 0, 0, 0, 0, sqlc.arg('alive_ms')::double precision / 1000))::boolean AS alive,
       wm.model_id, wm.slots, wm.slots_busy, wm.queue_len, wm.chat_template, wm.weights_bytes, wm.kv_cells,
       m.name AS model_name, m.family, m.is_chat, m.is_synthetic, m.file_sha256
FROM engine_worker w
JOIN engine_worker_model wm USING (worker_id)
JOIN model m USING (model_id)
ORDER BY w.started_at, w.worker_id, wm.model_id;
