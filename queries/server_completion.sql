-- Queries of the plugin API's completion and chat handlers (server package).

-- name: GenerationRecordFeedback :execrows
-- Records acceptance for one (query, model) and appends the times the
-- completion was shown; 0 rows when there is no such generation.
UPDATE generation SET
    was_accepted = @was_accepted,
    feedback_at = now(),
    shown_at = shown_at || @shown_at::timestamptz[]
WHERE meta_query_id = @meta_query_id AND model_id = @model_id;

-- name: ProjectContextFileGetMany :many
-- The named files of a project's multi-file context.
SELECT file_name, lines, change_count
FROM project_context_file
WHERE project_id = @project_id AND file_name = ANY(@file_names::text[]);

-- name: ProjectContextFileListAll :many
-- Every file of a project's multi-file context, oldest update first, so the
-- most recently edited files come last (most relevant last).
SELECT file_name, lines, change_count
FROM project_context_file
WHERE project_id = @project_id
ORDER BY updated_at, file_name;

-- name: ProjectContextLock :exec
-- Serialises multi-file context updates of one project until the
-- transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended(@lock_key::text, 4242));

-- name: MetaQueryInsert :exec
-- MetaQueryCreate without the returned row, so it can be queued in a batch
-- with the query's other rows (one round trip, one implicit transaction).
INSERT INTO meta_query (
    meta_query_id, query_type, user_id, session_id, project_id, chat_id, config_id, study_id, arm_id,
    client, server_version, requested_at, total_serving_ms, redact_ms, context_ms, context_chunks)
VALUES (
    @meta_query_id, @query_type, @user_id::uuid, sqlc.narg('session_id'), sqlc.narg('project_id'), sqlc.narg('chat_id'),
    @config_id, sqlc.narg('study_id'), sqlc.narg('arm_id'), @client, @server_version, @requested_at,
    sqlc.narg('total_serving_ms'), sqlc.narg('redact_ms'), sqlc.narg('context_ms'), sqlc.narg('context_chunks'));

-- name: QueryContextFileInsertMany :exec
-- The context files of a query in one statement (batchable, unlike COPY),
-- numbered from 0 in array order. An empty contents array stores no content
-- (indexing past an array's end gives NULL).
INSERT INTO query_context_file (meta_query_id, ordinal, file_name, change_index, content)
SELECT @meta_query_id, i - 1, (@file_names::text[])[i], (@change_indexes::integer[])[i], (@contents::text[])[i]
FROM generate_subscripts(@file_names::text[], 1) AS i;

-- name: CompletionRequestState :one
-- The caller's own config and consent flags, and whether the telemetry
-- lookup ids exist, in one round trip: no row when the user is gone. (A
-- running study's arm, when the caller has one, is decided in memory.)
SELECT u.config_id,
       u.store_context, u.store_contextual_telemetry, u.store_behavioral_telemetry,
       EXISTS (SELECT 1 FROM plugin_version WHERE version_id = @version_id)::boolean AS version_ok,
       EXISTS (SELECT 1 FROM trigger_type WHERE trigger_type_id = @trigger_type_id)::boolean AS trigger_type_ok,
       EXISTS (SELECT 1 FROM programming_language WHERE language_id = @language_id)::boolean AS language_ok
FROM users u
WHERE u.user_id = @user_id;

-- name: MetaQuerySetTotalServing :exec
-- Sets a query's total serving time once its models have answered (its row
-- was written while they ran; the column is not indexed, so this is a HOT
-- update in the same transaction).
UPDATE meta_query SET total_serving_ms = @total_serving_ms WHERE meta_query_id = @meta_query_id;
