-- Queries of the plugin API's completion and chat handlers (server package).

-- name: CompletionUserState :one
-- The caller's config in effect (the arm of the active study, else the
-- user's own), that study (nil UUID: none), and the consent flags.
SELECT u.config_id AS user_config_id,
       coalesce(a.assigned_config_id, u.config_id)::bigint AS config_id,
       coalesce(a.study_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS study_id,
       u.store_context, u.store_contextual_telemetry, u.store_behavioral_telemetry
FROM users u
LEFT JOIN LATERAL (
    SELECT s.study_id, h.assigned_config_id
    FROM study s
    JOIN config_assignment_history h ON h.study_id = s.study_id AND h.user_id = u.user_id
    WHERE s.is_active
    ORDER BY h.assigned_at DESC, h.assignment_id DESC
    LIMIT 1
) a ON true
WHERE u.user_id = @user_id;

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
    meta_query_id, query_type, user_id, session_id, project_id, chat_id, config_id, study_id,
    client, server_version, requested_at, total_serving_ms, redact_ms, context_ms)
VALUES (
    @meta_query_id, @query_type, @user_id::uuid, sqlc.narg('session_id'), sqlc.narg('project_id'), sqlc.narg('chat_id'),
    @config_id, sqlc.narg('study_id'), @client, @server_version, @requested_at,
    sqlc.narg('total_serving_ms'), sqlc.narg('redact_ms'), sqlc.narg('context_ms'));

-- name: QueryContextFileInsertMany :exec
-- The context files of a query in one statement (batchable, unlike COPY),
-- numbered from 0 in array order. An empty contents array stores no content
-- (indexing past an array's end gives NULL).
INSERT INTO query_context_file (meta_query_id, ordinal, file_name, change_index, content)
SELECT @meta_query_id, i - 1, (@file_names::text[])[i], (@change_indexes::integer[])[i], (@contents::text[])[i]
FROM generate_subscripts(@file_names::text[], 1) AS i;

-- name: CompletionRequestState :one
-- CompletionUserState and TelemetryIDsCheck in one round trip: no row when
-- the user is gone.
SELECT u.config_id AS user_config_id,
       coalesce(a.assigned_config_id, u.config_id)::bigint AS config_id,
       coalesce(a.study_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS study_id,
       u.store_context, u.store_contextual_telemetry, u.store_behavioral_telemetry,
       EXISTS (SELECT 1 FROM plugin_version WHERE version_id = @version_id)::boolean AS version_ok,
       EXISTS (SELECT 1 FROM trigger_type WHERE trigger_type_id = @trigger_type_id)::boolean AS trigger_type_ok,
       EXISTS (SELECT 1 FROM programming_language WHERE language_id = @language_id)::boolean AS language_ok
FROM users u
LEFT JOIN LATERAL (
    SELECT s.study_id, h.assigned_config_id
    FROM study s
    JOIN config_assignment_history h ON h.study_id = s.study_id AND h.user_id = u.user_id
    WHERE s.is_active
    ORDER BY h.assigned_at DESC, h.assignment_id DESC
    LIMIT 1
) a ON true
WHERE u.user_id = @user_id;

-- name: MetaQuerySetTotalServing :exec
-- Sets a query's total serving time once its models have answered (its row
-- was written while they ran; the column is not indexed, so this is a HOT
-- update in the same transaction).
UPDATE meta_query SET total_serving_ms = @total_serving_ms WHERE meta_query_id = @meta_query_id;
