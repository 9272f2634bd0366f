-- Chats. Deleting a chat deletes its queries (meta_query.chat_id cascades),
-- so no orphan rows remain (spec §11 C4).
CREATE TABLE chat (
    chat_id    uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    user_id    uuid REFERENCES users (user_id) ON DELETE SET NULL,
    title      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX chat_user_project_created_idx ON chat (user_id, project_id, created_at DESC);
CREATE INDEX chat_project_id_idx ON chat (project_id);
