-- River's job table as sqlc sees it: River creates and migrates the table
-- (internal/db applies River's migrations), so no migration of ours
-- declares it. This file is schema input for sqlc only (sqlc.yaml) and
-- declares only the columns that queries/*.sql read, with River's types.
CREATE TYPE river_job_state AS ENUM ('available', 'cancelled', 'completed', 'discarded', 'retryable', 'running', 'scheduled');

CREATE TABLE river_job (
    id           bigserial PRIMARY KEY,
    state        river_job_state NOT NULL DEFAULT 'available',
    attempt      smallint NOT NULL DEFAULT 0,
    max_attempts smallint NOT NULL,
    priority     smallint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    errors       jsonb[],
    tags         varchar(255)[] NOT NULL DEFAULT '{}',
    attempted_at timestamptz,
    finalized_at timestamptz,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL,
    queue        text NOT NULL DEFAULT 'default'
);

COMMENT ON TABLE river_job IS 'River''s job table, owned by River; only the columns code4me''s queries read.';
