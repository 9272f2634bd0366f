-- pgvector provides the vector type used for documentation and context-file
-- embeddings. Db.Migrate checks that the extension is available before it
-- runs this file, so a missing pgvector is reported with a fix, not as an
-- opaque SQL error.
CREATE EXTENSION IF NOT EXISTS vector;
