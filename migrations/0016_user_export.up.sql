-- A user's data export built by a River job (GET /api/user/export when the
-- user has more queries than EXPORT_SYNC_MAX_QUERIES, or with ?async=true).
--
-- status: 'queued' (the job is waiting), 'running', 'ready' (content holds
--   the document) or 'failed' (error says why, for operators).
-- expires_at: when the cleanup job deletes the row: EXPORT_TTL after the
--   request, and EXPORT_TTL after finished_at once ready.
-- bytes, sha256: the size and the sha256 of the JSON document.
-- content: the document, gzip-compressed. It is kept in the database, not
--   in a file under DATA_DIR, so that every server process can serve it,
--   it is in the database's backups, and deleting the user deletes it in
--   the same transaction (ON DELETE CASCADE). gzip data does not compress
--   further, so TOAST stores it as it is (STORAGE EXTERNAL).
--
-- One export per user is in progress at a time (user_export_in_progress):
-- a second request while one is queued or running answers that one.
CREATE TABLE user_export (
    export_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'queued',
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    expires_at  timestamptz NOT NULL,
    bytes       bigint,
    sha256      bytea,
    content     bytea,
    CONSTRAINT user_export_status_known CHECK (status IN ('queued', 'running', 'ready', 'failed')),
    CONSTRAINT user_export_ready_has_content CHECK ((status = 'ready') = (content IS NOT NULL)),
    CONSTRAINT user_export_ready_has_digest CHECK (status <> 'ready' OR (bytes IS NOT NULL AND octet_length(sha256) = 32))
);
ALTER TABLE user_export ALTER COLUMN content SET STORAGE EXTERNAL;

CREATE INDEX user_export_user_idx ON user_export (user_id, created_at);
CREATE INDEX user_export_expires_idx ON user_export (expires_at);
CREATE UNIQUE INDEX user_export_in_progress ON user_export (user_id) WHERE status IN ('queued', 'running');
