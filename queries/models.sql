-- name: ModelUpsert :one
-- Registers a loaded model file; the same name and sha256 keep their id.
INSERT INTO model (name, family, file_sha256, file_size, parameters, prompt_templates, is_chat, is_synthetic)
VALUES (@name, @family, @file_sha256, @file_size, @parameters, @prompt_templates, @is_chat, @is_synthetic)
ON CONFLICT (name, file_sha256) DO UPDATE SET
    family = excluded.family,
    file_size = excluded.file_size,
    parameters = excluded.parameters,
    prompt_templates = excluded.prompt_templates,
    is_chat = excluded.is_chat,
    is_synthetic = excluded.is_synthetic,
    last_loaded_at = now()
RETURNING *;

-- name: ModelGetLatestByName :one
SELECT * FROM model WHERE name = @name ORDER BY last_loaded_at DESC, model_id DESC LIMIT 1;

-- name: ModelListByIDs :many
SELECT * FROM model WHERE model_id = ANY(@model_ids::bigint[]) ORDER BY model_id;
