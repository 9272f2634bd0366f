-- Projects, their members, the sessions that activated them, and the
-- project-level multi-file context (spec §7.2) as rows instead of a JSON blob.

CREATE TABLE project (
    project_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_name text NOT NULL,
    created_by   uuid REFERENCES users (user_id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT project_name_length CHECK (char_length(project_name) BETWEEN 1 AND 100)
);

CREATE TABLE project_users (
    project_id uuid NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    role       text NOT NULL DEFAULT 'member',
    joined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id),
    CONSTRAINT project_users_role CHECK (role IN ('owner', 'member'))
);

CREATE INDEX project_users_user_id_idx ON project_users (user_id);

CREATE TABLE session_project (
    session_id   uuid NOT NULL REFERENCES session (session_id) ON DELETE CASCADE,
    project_id   uuid NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    activated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, project_id)
);

CREATE INDEX session_project_project_id_idx ON session_project (project_id);

-- The current, redacted lines of each file in a project's multi-file
-- context. change_count is the number of changes applied so far, the index a
-- query records to tie itself to a state of the file.
CREATE TABLE project_context_file (
    project_id   uuid NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    file_name    text NOT NULL,
    lines        text[] NOT NULL DEFAULT '{}',
    change_count integer NOT NULL DEFAULT 0,
    embedding    vector(384),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, file_name)
);

CREATE INDEX project_context_file_embedding_idx ON project_context_file
    USING hnsw (embedding vector_cosine_ops);

-- The change log of the multi-file context, redacted like the files. seq
-- counts from 1 per file; replaying changes 1..n rebuilds the file as a
-- query with change index n saw it.
CREATE TABLE project_context_change (
    project_id  uuid NOT NULL,
    file_name   text NOT NULL,
    seq         integer NOT NULL,
    change_type text NOT NULL,
    start_line  integer NOT NULL,
    end_line    integer NOT NULL,
    new_lines   text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, file_name, seq),
    FOREIGN KEY (project_id) REFERENCES project (project_id) ON DELETE CASCADE,
    CONSTRAINT project_context_change_type CHECK (change_type IN ('update', 'insert', 'remove')),
    CONSTRAINT project_context_change_lines CHECK (start_line >= 0 AND end_line >= 0),
    CONSTRAINT project_context_change_seq CHECK (seq >= 1)
);
