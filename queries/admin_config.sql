-- The config administration routes under /api/config (server/admin_config.go),
-- for admins only: configs, programming languages, registered models and
-- admin grants. The queries other routes share stay in configs.sql,
-- lookups.sql, models.sql and users.sql.

-- name: ConfigList :many
SELECT * FROM config ORDER BY config_id;

-- name: ConfigCreate :one
INSERT INTO config (config_data) VALUES (@config_data) RETURNING *;

-- name: ConfigUpdate :one
UPDATE config SET config_data = @config_data, updated_at = now()
WHERE config_id = @config_id
RETURNING *;

-- name: ConfigDelete :execrows
-- Fails with a foreign-key violation while users, study arms or queries use it.
DELETE FROM config WHERE config_id = @config_id;

-- name: ConfigReferenceCounts :one
-- What still uses a config, for the answer to a refused delete.
SELECT
    (SELECT count(*) FROM users WHERE users.config_id = @config_id)::bigint AS users,
    (SELECT count(*) FROM study_arm WHERE study_arm.config_id = @config_id)::bigint AS study_arms,
    (SELECT count(*) FROM config_assignment_history h WHERE h.assigned_config_id = @config_id)::bigint AS assignments,
    (SELECT count(*) FROM meta_query WHERE meta_query.config_id = @config_id)::bigint AS queries;

-- name: LanguageList :many
SELECT * FROM programming_language ORDER BY language_id;

-- name: LanguageCreate :one
INSERT INTO programming_language (language_name) VALUES (@language_name) RETURNING *;

-- name: LanguageUpdate :one
UPDATE programming_language SET language_name = @language_name
WHERE language_id = @language_id
RETURNING *;

-- name: LanguageDelete :execrows
-- Fails with a foreign-key violation while telemetry rows use it.
DELETE FROM programming_language WHERE language_id = @language_id;

-- name: ModelGetByID :one
SELECT * FROM model WHERE model_id = @model_id;

-- name: ModelList :many
SELECT * FROM model ORDER BY model_id;

-- name: ModelDelete :execrows
-- Fails with a foreign-key violation while generations or ground truths use it.
DELETE FROM model WHERE model_id = @model_id;

-- name: UserSetAdmin :exec
UPDATE users SET is_admin = @is_admin, updated_at = now() WHERE user_id = @user_id::uuid;
