-- name: StudyCreate :one
INSERT INTO study (name, description, created_by, starts_at, ends_at, is_active, default_config_id)
VALUES (@name, sqlc.narg('description'), @created_by::uuid, @starts_at, sqlc.narg('ends_at'), @is_active, @default_config_id)
RETURNING *;

-- name: StudyArmCreate :exec
INSERT INTO study_arm (study_id, config_id, weight) VALUES (@study_id, @config_id, @weight);

-- name: StudyArmList :many
SELECT * FROM study_arm WHERE study_id = @study_id ORDER BY config_id;

-- name: StudyGetByID :one
SELECT * FROM study WHERE study_id = @study_id;

-- name: StudyList :many
SELECT s.*, u.name AS creator_name,
       (SELECT count(DISTINCT h.user_id) FROM config_assignment_history h WHERE h.study_id = s.study_id)::bigint AS assigned_users_count
FROM study s LEFT JOIN users u ON u.user_id = s.created_by
WHERE s.is_active OR @include_inactive::boolean
ORDER BY s.created_at DESC;

-- name: StudyGetActive :one
SELECT * FROM study WHERE is_active;

-- name: StudyDeactivateAll :many
UPDATE study SET is_active = false, ends_at = coalesce(ends_at, greatest(now(), starts_at + interval '1 microsecond'))
WHERE is_active
RETURNING study_id;

-- name: StudyActivate :execrows
UPDATE study SET is_active = true WHERE study_id = @study_id;

-- name: StudyDeactivate :execrows
UPDATE study SET is_active = false, ends_at = coalesce(ends_at, greatest(now(), starts_at + interval '1 microsecond'))
WHERE study_id = @study_id AND is_active;

-- name: StudyActiveForUser :one
-- The active study and the user's arm in it, if the user was assigned one.
SELECT s.study_id, h.assigned_config_id
FROM study s
JOIN LATERAL (
    SELECT assigned_config_id FROM config_assignment_history
    WHERE study_id = s.study_id AND user_id = @user_id::uuid
    ORDER BY assigned_at DESC, assignment_id DESC LIMIT 1
) h ON true
WHERE s.is_active;

-- name: StudyAssignedUsers :many
-- Each user assigned in the study with their latest arm.
SELECT DISTINCT ON (user_id) user_id, assigned_config_id
FROM config_assignment_history
WHERE study_id = @study_id::uuid AND user_id IS NOT NULL
ORDER BY user_id, assigned_at DESC, assignment_id DESC;

-- name: ConfigAssignmentCreate :one
INSERT INTO config_assignment_history (user_id, study_id, assigned_config_id, reason)
VALUES (@user_id::uuid, sqlc.narg('study_id'), @assigned_config_id, @reason)
RETURNING *;

-- name: ConfigAssignmentListByUser :many
SELECT * FROM config_assignment_history WHERE user_id = @user_id::uuid ORDER BY assigned_at, assignment_id;
