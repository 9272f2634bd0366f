-- name: ProjectContextFileUpsert :exec
INSERT INTO project_context_file (project_id, file_name, lines, change_count, size_bytes)
VALUES (@project_id, @file_name, @lines, @change_count, @size_bytes)
ON CONFLICT (project_id, file_name) DO UPDATE SET
    lines = excluded.lines,
    change_count = excluded.change_count,
    size_bytes = excluded.size_bytes,
    embedding = NULL,
    updated_at = now();

-- name: ProjectContextFileList :many
SELECT project_id, file_name, lines, change_count, updated_at
FROM project_context_file WHERE project_id = @project_id ORDER BY file_name;

-- name: ProjectContextFileDelete :execrows
DELETE FROM project_context_file WHERE project_id = @project_id AND file_name = @file_name;

-- name: ProjectContextFileSetEmbedding :exec
UPDATE project_context_file SET embedding = @embedding
WHERE project_id = @project_id AND file_name = @file_name;

-- name: ProjectContextFileSearch :many
-- The project's files nearest to @query by cosine similarity.
SELECT file_name, lines, (1 - (embedding <=> @query::vector))::float8 AS similarity
FROM project_context_file
WHERE project_id = @project_id AND embedding IS NOT NULL
ORDER BY embedding <=> @query::vector
LIMIT @max_results;

-- name: ProjectContextChangeCreate :copyfrom
INSERT INTO project_context_change (project_id, file_name, seq, change_type, start_line, end_line, new_lines)
VALUES (@project_id, @file_name, @seq, @change_type, @start_line, @end_line, @new_lines);

-- name: ProjectContextChangeListByFile :many
-- Changes 1..@up_to of one file, in order (replaying them rebuilds the file).
SELECT * FROM project_context_change
WHERE project_id = @project_id AND file_name = @file_name AND seq <= @up_to
ORDER BY seq;

-- name: ProjectContextClear :exec
-- Drops a project's whole multi-file context (files and change log).
WITH files AS (DELETE FROM project_context_file f WHERE f.project_id = @project_id)
DELETE FROM project_context_change c WHERE c.project_id = @project_id;
