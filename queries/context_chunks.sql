-- Chunks of a project's multi-file context and their embeddings
-- (server/retrieval.go).

-- name: ProjectContextChunkReplaceFile :one
-- Replaces the chunks of one file with the given ones. A new chunk whose
-- content hash equals one of the file's old chunks keeps that chunk's
-- embedding, so only changed text is embedded again. Returns how many of
-- the new chunks have no embedding (the embedding job's work).
WITH old AS (
    DELETE FROM project_context_chunk d
    WHERE d.project_id = @project_id AND d.file_name = @file_name
    RETURNING content_hash, embedding, embedder
), kept AS (
    SELECT DISTINCT ON (content_hash) content_hash, embedding, embedder
    FROM old WHERE embedding IS NOT NULL
), ins AS (
    INSERT INTO project_context_chunk (
        project_id, file_name, chunk_index, start_line, end_line, content_hash, content, embedding, embedder)
    SELECT @project_id, @file_name, n.chunk_index, n.start_line, n.end_line, n.content_hash, n.content,
        kept.embedding, kept.embedder
    FROM (SELECT unnest(@chunk_indexes::int[]) AS chunk_index, unnest(@start_lines::int[]) AS start_line,
        unnest(@end_lines::int[]) AS end_line, unnest(@content_hashes::bytea[]) AS content_hash,
        unnest(@contents::text[]) AS content) AS n
    LEFT JOIN kept ON kept.content_hash = n.content_hash
    RETURNING embedding IS NULL AS pending
)
SELECT count(*) FILTER (WHERE pending)::int AS pending FROM ins;

-- name: ProjectContextChunkDeleteByProject :exec
DELETE FROM project_context_chunk WHERE project_id = @project_id;

-- name: ProjectContextChunkListPending :many
-- Chunks of a project that have no embedding by @embedder.
SELECT chunk_id, content_hash, content
FROM project_context_chunk
WHERE project_id = @project_id AND (embedding IS NULL OR embedder <> @embedder::text)
ORDER BY chunk_id
LIMIT @max_rows;

-- name: ProjectContextChunkSetEmbedding :execrows
-- Stores a chunk's embedding, unless the chunk was replaced meanwhile.
UPDATE project_context_chunk SET embedding = @embedding::vector, embedder = @embedder::text
WHERE chunk_id = @chunk_id AND content_hash = @content_hash;

-- name: ProjectContextChunkSearch :many
-- The chunks of the named files nearest to @query by cosine distance,
-- nearest first, among those embedded by @embedder.
SELECT chunk_id, file_name, start_line, end_line, content_hash, content,
    (1 - (embedding <=> @query::vector))::float8 AS score
FROM project_context_chunk
WHERE project_id = @project_id AND embedder = @embedder::text AND file_name = ANY(@file_names::text[])
ORDER BY embedding <=> @query::vector
LIMIT @max_rows;

-- name: ProjectContextChunkPresent :many
-- Which of the given chunks (file name and content hash, pairwise) the
-- project's context still holds.
SELECT c.file_name, c.content_hash FROM project_context_chunk c
JOIN (SELECT unnest(@file_names::text[]) AS file_name, unnest(@content_hashes::bytea[]) AS content_hash) AS w
    ON c.file_name = w.file_name AND c.content_hash = w.content_hash
WHERE c.project_id = @project_id;

-- name: ProjectContextSizeExcept :one
-- The number of non-empty files of a project's context and their bytes
-- (size_bytes), leaving out the named files.
SELECT count(*)::int AS files, coalesce(sum(size_bytes), 0)::bigint AS bytes
FROM project_context_file
WHERE project_id = @project_id AND size_bytes > 0 AND file_name <> ALL(@file_names::text[]);
