-- Studies as experiments: a study randomises a unit (a user, a session or
-- a single request) over its arms with a seeded hash, so the same unit
-- always gets the same arm on every server node without a lookup. It runs
-- between starts_at and ends_at while its status is 'running'; 'paused'
-- stops exposure without losing who is enrolled; 'ended' is final. At
-- most one study runs at a time, so a user is never in two experiments.
--
-- An arm is a plugin config (config_id, the document the editor plugin
-- reads) plus a server policy (policy, JSON): the models that answer, the
-- token and time budgets, the multi-file context, the suffix, and the
-- trigger policy (a server-side debounce, a minimum prefix). The server
-- applies the policy per request, so a study needs no plugin update.
--
-- study_participant is enrolment: a user joins the running study at their
-- first completion request while it is under max_participants. Exposure is
-- per query: meta_query.study_id and arm_id say which arm answered it.
ALTER TABLE study
    ADD COLUMN unit             text NOT NULL DEFAULT 'user',
    ADD COLUMN seed             bigint NOT NULL DEFAULT (floor(random() * 9007199254740991))::bigint,
    ADD COLUMN max_participants integer,
    ADD COLUMN status           text NOT NULL DEFAULT 'draft',
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT study_unit_known CHECK (unit IN ('user', 'session', 'request')),
    ADD CONSTRAINT study_status_known CHECK (status IN ('draft', 'running', 'paused', 'ended')),
    ADD CONSTRAINT study_max_participants_positive CHECK (max_participants IS NULL OR max_participants > 0);

-- Studies made before: an active one runs, one past its end has ended.
UPDATE study SET status = CASE WHEN is_active THEN 'running'
                               WHEN ends_at IS NOT NULL AND ends_at <= now() THEN 'ended'
                               ELSE 'draft' END;

ALTER TABLE study_arm
    DROP CONSTRAINT study_arm_pkey,
    ADD COLUMN arm_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ADD COLUMN name        text,
    ADD COLUMN is_baseline boolean NOT NULL DEFAULT false,
    ADD COLUMN policy      jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT study_arm_policy_object CHECK (jsonb_typeof(policy) = 'object');

-- The old default config becomes the baseline arm.
INSERT INTO study_arm (study_id, config_id)
SELECT s.study_id, s.default_config_id FROM study s
WHERE NOT EXISTS (SELECT 1 FROM study_arm a WHERE a.study_id = s.study_id AND a.config_id = s.default_config_id);
UPDATE study_arm a SET name = 'config ' || a.config_id,
                       is_baseline = EXISTS (SELECT 1 FROM study s WHERE s.study_id = a.study_id AND s.default_config_id = a.config_id);
ALTER TABLE study_arm
    ALTER COLUMN name SET NOT NULL,
    ADD CONSTRAINT study_arm_name_unique UNIQUE (study_id, name);

DROP INDEX study_one_active_idx;
ALTER TABLE study DROP COLUMN default_config_id, DROP COLUMN is_active;
CREATE UNIQUE INDEX study_one_running_idx ON study ((true)) WHERE status = 'running';

CREATE UNIQUE INDEX study_arm_one_baseline_idx ON study_arm (study_id) WHERE is_baseline;

CREATE TABLE study_participant (
    participant_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    study_id       uuid NOT NULL REFERENCES study (study_id) ON DELETE CASCADE,
    -- NULL once the user is deleted and their research data kept.
    user_id        uuid REFERENCES users (user_id) ON DELETE SET NULL,
    enrolled_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT study_participant_unique UNIQUE (study_id, user_id)
);

CREATE INDEX study_participant_user_idx ON study_participant (user_id);

-- Assignments of user and session units, logged at their first exposure
-- (a request unit's assignment is its query's meta_query row).
ALTER TABLE config_assignment_history
    ADD COLUMN arm_id     bigint REFERENCES study_arm (arm_id) ON DELETE CASCADE,
    ADD COLUMN session_id uuid,
    DROP CONSTRAINT config_assignment_reason,
    ADD CONSTRAINT config_assignment_reason CHECK (reason IN ('study_start', 'study_activate', 'study_end', 'admin', 'signup', 'enrol'));

CREATE UNIQUE INDEX config_assignment_unit_idx ON config_assignment_history (study_id, user_id, coalesce(session_id, '00000000-0000-0000-0000-000000000000'::uuid))
    WHERE reason = 'enrol';

ALTER TABLE meta_query
    ADD COLUMN arm_id bigint REFERENCES study_arm (arm_id) ON DELETE SET NULL;

CREATE INDEX meta_query_arm_id_idx ON meta_query (arm_id) WHERE arm_id IS NOT NULL;
