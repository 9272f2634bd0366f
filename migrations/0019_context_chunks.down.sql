ALTER TABLE project_context_file DROP COLUMN size_bytes;
ALTER TABLE meta_query DROP COLUMN context_chunks;
DROP TABLE project_context_chunk;
