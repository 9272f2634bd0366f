-- name: DocumentationCreate :one
INSERT INTO documentation (content, language, embedding)
VALUES (@content, @language, sqlc.narg('embedding'))
RETURNING *;

-- name: DocumentationGetByID :one
SELECT * FROM documentation WHERE documentation_id = @documentation_id;

-- name: DocumentationUpdate :one
UPDATE documentation SET content = @content, language = @language, embedding = sqlc.narg('embedding'), updated_at = now()
WHERE documentation_id = @documentation_id
RETURNING *;

-- name: DocumentationDelete :execrows
DELETE FROM documentation WHERE documentation_id = @documentation_id;

-- name: DocumentationList :many
SELECT * FROM documentation
WHERE sqlc.narg('language')::text IS NULL OR language = sqlc.narg('language')::text
ORDER BY created_at DESC
LIMIT @max_results;

-- name: DocumentationSearch :many
-- Snippets with cosine similarity to @query of at least @min_similarity,
-- most similar first.
SELECT documentation_id, content, language, (1 - (embedding <=> @query::vector))::float8 AS similarity
FROM documentation
WHERE embedding IS NOT NULL
  AND (sqlc.narg('language')::text IS NULL OR language = sqlc.narg('language')::text)
  AND 1 - (embedding <=> @query::vector) >= @min_similarity::float8
ORDER BY embedding <=> @query::vector
LIMIT @max_results;
