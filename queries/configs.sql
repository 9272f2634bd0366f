-- name: ConfigGetByID :one
SELECT * FROM config WHERE config_id = @config_id;

-- name: ConfigExists :one
SELECT EXISTS (SELECT 1 FROM config WHERE config_id = @config_id)::boolean;

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
