-- name: ConfigGetByID :one
SELECT * FROM config WHERE config_id = @config_id;

-- name: ConfigExists :one
SELECT EXISTS (SELECT 1 FROM config WHERE config_id = @config_id)::boolean;
