-- name: LanguageExists :one
SELECT EXISTS (SELECT 1 FROM programming_language WHERE language_id = @language_id)::boolean;

-- name: LanguageList :many
SELECT * FROM programming_language ORDER BY language_id;

-- name: TriggerTypeExists :one
SELECT EXISTS (SELECT 1 FROM trigger_type WHERE trigger_type_id = @trigger_type_id)::boolean;

-- name: TriggerTypeList :many
SELECT * FROM trigger_type ORDER BY trigger_type_id;

-- name: PluginVersionExists :one
SELECT EXISTS (SELECT 1 FROM plugin_version WHERE version_id = @version_id)::boolean;

-- name: PluginVersionList :many
SELECT * FROM plugin_version ORDER BY version_id;

-- name: TelemetryIDsCheck :one
-- Checks the three contextual-telemetry ids in one round trip.
SELECT
    EXISTS (SELECT 1 FROM plugin_version WHERE version_id = @version_id)::boolean AS version_ok,
    EXISTS (SELECT 1 FROM trigger_type WHERE trigger_type_id = @trigger_type_id)::boolean AS trigger_type_ok,
    EXISTS (SELECT 1 FROM programming_language WHERE language_id = @language_id)::boolean AS language_ok;

-- name: LanguageCreate :one
INSERT INTO programming_language (language_name) VALUES (@language_name) RETURNING *;

-- name: LanguageUpdate :one
UPDATE programming_language SET language_name = @language_name
WHERE language_id = @language_id
RETURNING *;

-- name: LanguageDelete :execrows
-- Fails with a foreign-key violation while telemetry rows use it.
DELETE FROM programming_language WHERE language_id = @language_id;
