-- The redacted editor context stored with each query is tens of KiB per
-- keystroke, written by the first commit while the model runs. lz4 compresses
-- it for a fraction of pglz's CPU, work the database otherwise does beside a
-- CPU model (docs/benchmarks.md, session 5). Only where the server was built
-- with lz4 (PostgreSQL 14+ --with-lz4, as Debian's and the official images
-- are); elsewhere the columns keep the default.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE context
            ALTER COLUMN prefix SET COMPRESSION lz4,
            ALTER COLUMN suffix SET COMPRESSION lz4,
            ALTER COLUMN selected_text SET COMPRESSION lz4;
        ALTER TABLE query_context_file ALTER COLUMN content SET COMPRESSION lz4;
    END IF;
END
$$;
