-- Enrolment in the running study and its assignments (server/study.go),
-- and the reads the study routes share with it. The study routes' own
-- queries are in admin_studies.sql.

-- name: StudyArmList :many
SELECT * FROM study_arm WHERE study_id = @study_id ORDER BY arm_id;

-- name: StudyRunning :one
SELECT * FROM study WHERE status = 'running';

-- name: StudyLock :one
-- Locks a running study's row for an enrolment: concurrent enrolments wait,
-- so the count after it is exact. No row when the study no longer runs.
SELECT max_participants FROM study WHERE study_id = @study_id AND status = 'running' FOR UPDATE;

-- name: StudyParticipantCount :one
SELECT count(*) FROM study_participant WHERE study_id = @study_id;

-- name: StudyIsParticipant :one
SELECT EXISTS (SELECT 1 FROM study_participant WHERE study_id = @study_id AND user_id = @user_id::uuid)::boolean;

-- name: StudyParticipantAdd :exec
INSERT INTO study_participant (study_id, user_id) VALUES (@study_id, @user_id::uuid)
ON CONFLICT (study_id, user_id) DO NOTHING;

-- name: StudyAssignmentLog :exec
-- A user or session unit's arm, logged at its first exposure (once: a
-- second server node logging the same unit changes nothing).
INSERT INTO config_assignment_history (user_id, study_id, arm_id, assigned_config_id, session_id, reason)
VALUES (@user_id::uuid, @study_id, @arm_id, @assigned_config_id, sqlc.narg('session_id'), 'enrol')
ON CONFLICT (study_id, user_id, coalesce(session_id, '00000000-0000-0000-0000-000000000000'::uuid)) WHERE reason = 'enrol'
DO NOTHING;

-- name: ConfigAssignmentListByUser :many
SELECT * FROM config_assignment_history WHERE user_id = @user_id::uuid ORDER BY assigned_at, assignment_id;
