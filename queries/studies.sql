-- Studies, their arms, enrolment and assignments (server/study.go).

-- name: StudyCreate :one
INSERT INTO study (name, description, created_by, starts_at, ends_at, unit, seed, max_participants)
VALUES (@name, sqlc.narg('description'), sqlc.narg('created_by'), @starts_at, sqlc.narg('ends_at'), @unit, @seed, sqlc.narg('max_participants'))
RETURNING *;

-- name: StudyArmCreate :one
INSERT INTO study_arm (study_id, name, config_id, weight, is_baseline, policy)
VALUES (@study_id, @name, @config_id, @weight, @is_baseline, @policy)
RETURNING *;

-- name: StudyArmList :many
SELECT * FROM study_arm WHERE study_id = @study_id ORDER BY arm_id;

-- name: StudyGetByID :one
SELECT * FROM study WHERE study_id = @study_id;

-- name: StudyList :many
-- Newest first, with who created each and how many users it enrolled.
SELECT s.*, u.name AS creator_name,
       (SELECT count(*) FROM study_participant p WHERE p.study_id = s.study_id)::bigint AS participants
FROM study s LEFT JOIN users u ON u.user_id = s.created_by
WHERE @status::text = '' OR s.status = @status::text
ORDER BY s.created_at DESC, s.study_id;

-- name: StudyRunning :one
SELECT * FROM study WHERE status = 'running';

-- name: StudySetStatus :one
-- Moves a study from one of the statuses in from_statuses to status; no
-- row when it is not in one of them. Ending a study closes its window now
-- (kept after starts_at, which the table's check needs).
UPDATE study SET status = @status::text, updated_at = now(),
    ends_at = CASE WHEN @status::text = 'ended'
                   THEN greatest(starts_at + interval '1 millisecond', least(coalesce(ends_at, now()), now()))
                   ELSE ends_at END
WHERE study_id = @study_id AND status = ANY (@from_statuses::text[])
RETURNING *;

-- name: StudyUpdate :one
-- What may change once a study exists: its description, its end and its
-- enrolment cap (never below the users already enrolled: checked by the
-- caller). Ended studies are final.
UPDATE study SET description = sqlc.narg('description'), ends_at = sqlc.narg('ends_at'),
    max_participants = sqlc.narg('max_participants'), updated_at = now()
WHERE study_id = @study_id AND status <> 'ended'
RETURNING *;

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

-- name: StudyAssignmentCounts :many
-- Per arm: units assigned (logged user or session units) and queries exposed.
SELECT a.arm_id,
       (SELECT count(*) FROM config_assignment_history h WHERE h.arm_id = a.arm_id)::bigint AS assigned_units,
       (SELECT count(*) FROM meta_query q WHERE q.arm_id = a.arm_id)::bigint AS exposed_queries
FROM study_arm a WHERE a.study_id = @study_id
ORDER BY a.arm_id;

-- name: ConfigAssignmentListByUser :many
SELECT * FROM config_assignment_history WHERE user_id = @user_id::uuid ORDER BY assigned_at, assignment_id;
