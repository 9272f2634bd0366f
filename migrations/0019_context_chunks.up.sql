-- Retrieval of project context. Each file of a project's multi-file context
-- is cut into overlapping chunks of lines; each chunk carries its redacted
-- text, a hash of that text and, once the embedding job has run, its
-- embedding by the embedding model the row names. A chunk whose text did
-- not change keeps its embedding when its file changes.
--
-- The vector width is fixed at 384 so that one HNSW index covers every row
-- (pgvector indexes only columns of one declared width). Embedders of
-- another width are mapped onto 384 dimensions by the server: a narrower
-- vector is padded with zeros, which keeps every cosine similarity exactly;
-- a wider one is folded (coordinate i is added to i mod 384), a fixed linear
-- projection that keeps identical texts identical and near ones near.
CREATE TABLE project_context_chunk (
    chunk_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id   uuid NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    file_name    text NOT NULL,
    chunk_index  integer NOT NULL,
    -- Lines [start_line, end_line) of the file, 0-based.
    start_line   integer NOT NULL,
    end_line     integer NOT NULL,
    content_hash bytea NOT NULL,
    content      text NOT NULL,
    embedding    vector(384),
    -- The engine model that computed embedding; NULL until it is computed.
    embedder     text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT project_context_chunk_unique UNIQUE (project_id, file_name, chunk_index),
    CONSTRAINT project_context_chunk_lines CHECK (start_line >= 0 AND end_line > start_line),
    CONSTRAINT project_context_chunk_embedder CHECK ((embedding IS NULL) = (embedder IS NULL))
);

CREATE INDEX project_context_chunk_embedding_idx ON project_context_chunk
    USING hnsw (embedding vector_cosine_ops);

-- The embedding job's work list: a project's chunks without an embedding.
CREATE INDEX project_context_chunk_pending_idx ON project_context_chunk (project_id)
    WHERE embedding IS NULL;

-- size_bytes is a file's size with a newline after each line (0: an empty
-- file), so that a project's context is bounded without reading its text.
ALTER TABLE project_context_file ADD COLUMN size_bytes integer NOT NULL DEFAULT 0;
UPDATE project_context_file
SET size_bytes = octet_length(array_to_string(lines, E'\n')) + (cardinality(lines) > 0)::int;

-- The chunks a completion laid out as extra context, in prompt order:
-- [{"id", "file", "start_line", "end_line", "score"}], NULL when the query
-- used no retrieved chunk.
ALTER TABLE meta_query ADD COLUMN context_chunks jsonb;
