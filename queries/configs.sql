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
-- Fails with a foreign-key violation while users, studies or queries use it.
DELETE FROM config WHERE config_id = @config_id;
