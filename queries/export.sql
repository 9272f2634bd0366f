-- Queries of a user's data export (GET /api/user/export). Each returns the
-- rows as JSON objects built here, so the export document's fields are the
-- tables' columns; secrets (password hash, key hashes) and embeddings are
-- left out. The paged queries walk the user's rows in id order from
-- @after (exclusive), @page_size at a time, so an export never holds all
-- of a user's rows in memory.

-- name: ExportUser :one
SELECT (to_jsonb(u) - 'password_hash')::jsonb AS doc
FROM users u WHERE u.user_id = @user_id::uuid;

-- name: ExportApiKeys :many
SELECT (to_jsonb(k) - 'key_hash' - 'user_id')::jsonb AS doc
FROM api_key k WHERE k.user_id = @user_id::uuid
ORDER BY k.created_at, k.api_key_id;

-- name: ExportConfigAssignments :many
SELECT (to_jsonb(h) - 'user_id')::jsonb AS doc
FROM config_assignment_history h WHERE h.user_id = @user_id::uuid
ORDER BY h.assigned_at, h.assignment_id;

-- name: ExportProjects :many
-- The projects the user belongs to, with their role. A project's
-- multi-file context is the user's own only while they are its sole
-- member, so context_files is null for shared projects.
SELECT (to_jsonb(p) || jsonb_build_object(
    'role', pu.role,
    'joined_at', pu.joined_at,
    'member_count', (SELECT count(*) FROM project_users o WHERE o.project_id = p.project_id),
    'context_files', CASE WHEN NOT EXISTS (
            SELECT 1 FROM project_users o WHERE o.project_id = p.project_id AND o.user_id <> pu.user_id)
        THEN (SELECT coalesce(jsonb_agg(to_jsonb(f) - 'project_id' - 'embedding' ORDER BY f.file_name), '[]'::jsonb)
              FROM project_context_file f WHERE f.project_id = p.project_id)
        END))::jsonb AS doc
FROM project p JOIN project_users pu ON pu.project_id = p.project_id
WHERE pu.user_id = @user_id::uuid
ORDER BY pu.joined_at, p.project_id;

-- name: ExportSessionPage :many
SELECT s.session_id AS id, ((to_jsonb(s) - 'user_id') || jsonb_build_object(
    'projects', (SELECT coalesce(jsonb_agg(to_jsonb(sp) - 'session_id' ORDER BY sp.activated_at, sp.project_id), '[]'::jsonb)
                 FROM session_project sp WHERE sp.session_id = s.session_id)))::jsonb AS doc
FROM session s
WHERE s.user_id = @user_id::uuid AND s.session_id > @after::uuid
ORDER BY s.session_id
LIMIT @page_size::int;

-- name: ExportQueryPage :many
-- The user's queries of both kinds, each with what was stored beside it:
-- the context, the context files used, telemetry, generations and ground
-- truth (null or empty where nothing was stored).
SELECT m.meta_query_id AS id, ((to_jsonb(m) - 'user_id') || jsonb_build_object(
    'completion', (SELECT to_jsonb(c) - 'meta_query_id' FROM completion_query c WHERE c.meta_query_id = m.meta_query_id),
    'chat', (SELECT to_jsonb(c) - 'meta_query_id' FROM chat_query c WHERE c.meta_query_id = m.meta_query_id),
    'context', (SELECT to_jsonb(c) - 'meta_query_id' FROM context c WHERE c.meta_query_id = m.meta_query_id),
    'context_files', (SELECT coalesce(jsonb_agg(to_jsonb(f) - 'meta_query_id' ORDER BY f.ordinal), '[]'::jsonb)
                      FROM query_context_file f WHERE f.meta_query_id = m.meta_query_id),
    'contextual_telemetry', (SELECT to_jsonb(t) - 'meta_query_id' FROM contextual_telemetry t WHERE t.meta_query_id = m.meta_query_id),
    'behavioral_telemetry', (SELECT to_jsonb(t) - 'meta_query_id' FROM behavioral_telemetry t WHERE t.meta_query_id = m.meta_query_id),
    'generations', (SELECT coalesce(jsonb_agg(to_jsonb(g) - 'meta_query_id' ORDER BY g.created_at, g.model_id), '[]'::jsonb)
                    FROM generation g WHERE g.meta_query_id = m.meta_query_id),
    'ground_truth', (SELECT coalesce(jsonb_agg(to_jsonb(gt) - 'meta_query_id' ORDER BY gt.truth_timestamp, gt.ground_truth_id), '[]'::jsonb)
                     FROM ground_truth gt WHERE gt.meta_query_id = m.meta_query_id)))::jsonb AS doc
FROM meta_query m
WHERE m.user_id = @user_id::uuid AND m.meta_query_id > @after::uuid
ORDER BY m.meta_query_id
LIMIT @page_size::int;

-- name: ExportChatPage :many
-- The user's chats with their messages in order.
SELECT c.chat_id AS id, ((to_jsonb(c) - 'user_id') || jsonb_build_object(
    'messages', (SELECT coalesce(jsonb_agg(to_jsonb(cm) - 'chat_id' ORDER BY cm.created_at, cm.position, cm.chat_message_id), '[]'::jsonb)
                 FROM chat_message cm WHERE cm.chat_id = c.chat_id)))::jsonb AS doc
FROM chat c
WHERE c.user_id = @user_id::uuid AND c.chat_id > @after::uuid
ORDER BY c.chat_id
LIMIT @page_size::int;

-- name: ExportQueryCountUpTo :one
-- The user's queries, counted up to @max_rows: whether the export is
-- larger than EXPORT_SYNC_MAX_QUERIES, without counting all of a heavy
-- user's rows.
SELECT count(*) FROM (
    SELECT 1 FROM meta_query WHERE user_id = @user_id::uuid LIMIT @max_rows::bigint) q;

-- name: UserExportCreate :one
-- A queued export, built by a job (server/export_job.go) and expiring
-- @ttl_seconds from now; no row when one of the user's is queued or
-- running already (user_export_in_progress).
INSERT INTO user_export (user_id, expires_at)
VALUES (@user_id::uuid, now() + make_interval(secs => @ttl_seconds::float8))
ON CONFLICT (user_id) WHERE status IN ('queued', 'running') DO NOTHING
RETURNING export_id;

-- name: UserExportInProgress :one
SELECT export_id, status FROM user_export
WHERE user_id = @user_id::uuid AND status IN ('queued', 'running');

-- name: UserExportClaim :one
-- The job's claim: the export is running, unless it is ready, failed or
-- gone (no row).
UPDATE user_export SET status = 'running'
WHERE export_id = @export_id::uuid AND status IN ('queued', 'running')
RETURNING user_id;

-- name: UserExportFinish :execrows
-- The document is stored; the export expires @ttl_seconds from now.
UPDATE user_export
SET status = 'ready', error = NULL, content = @content::bytea, bytes = @bytes::bigint, sha256 = @sha256::bytea,
    finished_at = now(), expires_at = now() + make_interval(secs => @ttl_seconds::float8)
WHERE export_id = @export_id::uuid AND status = 'running';

-- name: UserExportFail :exec
-- An attempt failed: queued again when @retry, else failed for good.
UPDATE user_export
SET status = CASE WHEN @retry::bool THEN 'queued' ELSE 'failed' END, error = @error::text,
    finished_at = CASE WHEN @retry::bool THEN NULL ELSE now() END
WHERE export_id = @export_id::uuid AND status IN ('queued', 'running');

-- name: UserExportGet :one
-- The caller's export: another user's id finds nothing, as an unknown one.
SELECT export_id, status, error, expires_at <= now() AS expired, bytes, content
FROM user_export WHERE export_id = @export_id::uuid AND user_id = @user_id::uuid;

-- name: UserExportDeleteExpired :execrows
DELETE FROM user_export WHERE expires_at <= now();
