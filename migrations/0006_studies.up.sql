-- Studies assign users to configs (arms). Assignment happens server-side;
-- every change is appended to config_assignment_history, and every query
-- records the study and config in effect when it was made (spec §11 A3).

CREATE TABLE study (
    study_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL,
    description       text,
    created_by        uuid REFERENCES users (user_id) ON DELETE SET NULL,
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz,
    is_active         boolean NOT NULL DEFAULT false,
    default_config_id bigint NOT NULL REFERENCES config (config_id) ON DELETE RESTRICT,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT study_ends_after_start CHECK (ends_at IS NULL OR ends_at > starts_at)
);

-- At most one study is active at a time.
CREATE UNIQUE INDEX study_one_active_idx ON study ((true)) WHERE is_active;
CREATE INDEX study_created_by_idx ON study (created_by);
CREATE INDEX study_starts_at_idx ON study (starts_at);
CREATE INDEX study_ends_at_idx ON study (ends_at);

-- The arms of a study: each is a config, drawn with probability
-- weight / sum(weight).
CREATE TABLE study_arm (
    study_id  uuid NOT NULL REFERENCES study (study_id) ON DELETE CASCADE,
    config_id bigint NOT NULL REFERENCES config (config_id) ON DELETE RESTRICT,
    weight    integer NOT NULL DEFAULT 1,
    PRIMARY KEY (study_id, config_id),
    CONSTRAINT study_arm_weight_positive CHECK (weight > 0)
);

CREATE INDEX study_arm_config_id_idx ON study_arm (config_id);

-- Append-only: the newest row per (user, study) is the user's arm. A deleted
-- user's history stays, pseudonymised, unless the data is deleted too.
CREATE TABLE config_assignment_history (
    assignment_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            uuid REFERENCES users (user_id) ON DELETE SET NULL,
    study_id           uuid REFERENCES study (study_id) ON DELETE CASCADE,
    assigned_config_id bigint NOT NULL REFERENCES config (config_id) ON DELETE RESTRICT,
    reason             text NOT NULL,
    assigned_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT config_assignment_reason CHECK (reason IN ('study_start', 'study_activate', 'study_end', 'admin', 'signup'))
);

CREATE INDEX config_assignment_history_user_idx ON config_assignment_history (user_id, assigned_at DESC);
CREATE INDEX config_assignment_history_study_idx ON config_assignment_history (study_id, user_id);
CREATE INDEX config_assignment_history_assigned_at_idx ON config_assignment_history (assigned_at);
CREATE INDEX config_assignment_history_config_idx ON config_assignment_history (assigned_config_id);
