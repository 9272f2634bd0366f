-- name: LanguageExists :one
SELECT EXISTS (SELECT 1 FROM programming_language WHERE language_id = @language_id)::boolean;

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
