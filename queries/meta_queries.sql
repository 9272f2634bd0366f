-- name: MetaQueryCreate :one
INSERT INTO meta_query (
    meta_query_id, query_type, user_id, session_id, project_id, chat_id, config_id, study_id, arm_id,
    client, server_version, requested_at, total_serving_ms, redact_ms, context_ms)
VALUES (
    @meta_query_id, @query_type, @user_id::uuid, sqlc.narg('session_id'), sqlc.narg('project_id'), sqlc.narg('chat_id'),
    @config_id, sqlc.narg('study_id'), sqlc.narg('arm_id'), @client, @server_version, @requested_at,
    sqlc.narg('total_serving_ms'), sqlc.narg('redact_ms'), sqlc.narg('context_ms'))
RETURNING *;

-- name: MetaQueryGetByID :one
SELECT * FROM meta_query WHERE meta_query_id = @meta_query_id;

-- name: MetaQuerySetServingTime :exec
UPDATE meta_query SET total_serving_ms = @total_serving_ms WHERE meta_query_id = @meta_query_id;

-- name: MetaQueryDelete :execrows
DELETE FROM meta_query WHERE meta_query_id = @meta_query_id;

-- name: CompletionQueryCreate :exec
INSERT INTO completion_query (meta_query_id, stop_sequences) VALUES (@meta_query_id, @stop_sequences);

-- name: ChatQueryCreate :exec
INSERT INTO chat_query (meta_query_id, web_enabled) VALUES (@meta_query_id, @web_enabled);

-- name: ContextCreate :exec
INSERT INTO context (meta_query_id, prefix, suffix, file_name, selected_text)
VALUES (@meta_query_id, @prefix, @suffix, sqlc.narg('file_name'), sqlc.narg('selected_text'));

-- name: ContextGetByMetaQuery :one
SELECT * FROM context WHERE meta_query_id = @meta_query_id;

-- name: QueryContextFileCreate :copyfrom
INSERT INTO query_context_file (meta_query_id, ordinal, file_name, change_index, content)
VALUES (@meta_query_id, @ordinal, @file_name, @change_index, @content);

-- name: QueryContextFileList :many
SELECT * FROM query_context_file WHERE meta_query_id = @meta_query_id ORDER BY ordinal;

-- name: ContextualTelemetryCreate :exec
INSERT INTO contextual_telemetry (
    meta_query_id, version_id, trigger_type_id, language_id,
    file_path, caret_line, document_char_length, relative_document_position)
VALUES (
    @meta_query_id, @version_id, @trigger_type_id, @language_id,
    sqlc.narg('file_path'), sqlc.narg('caret_line'), sqlc.narg('document_char_length'), sqlc.narg('relative_document_position'));

-- name: BehavioralTelemetryCreate :exec
INSERT INTO behavioral_telemetry (meta_query_id, time_since_last_shown, time_since_last_accepted, typing_speed)
VALUES (@meta_query_id, sqlc.narg('time_since_last_shown'), sqlc.narg('time_since_last_accepted'), sqlc.narg('typing_speed'));

-- name: MetaQueryRetrievedChunks :one
-- How many chunks retrieved from the project context the query's prompt
-- held (0 when it held none).
SELECT coalesce(jsonb_array_length(context_chunks), 0)::int AS n
FROM meta_query WHERE meta_query_id = @meta_query_id;
