DROP INDEX meta_query_arm_id_idx;
ALTER TABLE meta_query DROP COLUMN arm_id;

DROP INDEX config_assignment_unit_idx;
DELETE FROM config_assignment_history WHERE reason = 'enrol';
ALTER TABLE config_assignment_history
    DROP CONSTRAINT config_assignment_reason,
    ADD CONSTRAINT config_assignment_reason CHECK (reason IN ('study_start', 'study_activate', 'study_end', 'admin', 'signup')),
    DROP COLUMN session_id,
    DROP COLUMN arm_id;

DROP TABLE study_participant;

ALTER TABLE study
    ADD COLUMN is_active boolean NOT NULL DEFAULT false,
    ADD COLUMN default_config_id bigint REFERENCES config (config_id) ON DELETE RESTRICT;
UPDATE study s SET is_active = (s.status = 'running'),
    default_config_id = coalesce(
        (SELECT a.config_id FROM study_arm a WHERE a.study_id = s.study_id ORDER BY a.is_baseline DESC, a.arm_id LIMIT 1),
        (SELECT min(config_id) FROM config));
DELETE FROM study WHERE default_config_id IS NULL;
ALTER TABLE study ALTER COLUMN default_config_id SET NOT NULL;
DROP INDEX study_one_running_idx;
CREATE UNIQUE INDEX study_one_active_idx ON study ((true)) WHERE is_active;
ALTER TABLE study
    DROP COLUMN updated_at,
    DROP COLUMN status,
    DROP COLUMN max_participants,
    DROP COLUMN seed,
    DROP COLUMN unit;

-- Arms sharing a config in one study cannot survive the old key.
DELETE FROM study_arm a USING study_arm b
WHERE a.study_id = b.study_id AND a.config_id = b.config_id AND a.arm_id > b.arm_id;
DROP INDEX study_arm_one_baseline_idx;
ALTER TABLE study_arm
    DROP CONSTRAINT study_arm_name_unique,
    DROP CONSTRAINT study_arm_policy_object,
    DROP COLUMN policy,
    DROP COLUMN is_baseline,
    DROP COLUMN name,
    DROP COLUMN arm_id,
    ADD PRIMARY KEY (study_id, config_id);
