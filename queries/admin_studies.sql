-- The admin API's studies, arms and configs (server/admin_api_resources.go).
-- Their writes are the study and config routes': the study routes'
-- queries are at the end of this file, the config routes' in
-- admin_config.sql.
--
-- Every list query of the admin API has the same shape: optional filters
-- (NULL: not applied; id selects one row, which is how GET /:id reads it),
-- a sort key @sort from the resource's fixed list, "-" first for
-- descending, and keyset pagination: the rows after the cursor (@after_id
-- with the sort value in @after_time, @after_text or @after_int, by the
-- key's type), at most @lim of them. Ties of the sort value are broken by
-- the row's id as text, in the sort's direction, so the order is total and
-- a page never repeats or skips a row. The cursor also bounds the sort
-- column alone, and the server plans each call for its sort (the CASEs
-- fold away), so an index on the column serves the order and starts at
-- the cursor. No query returns a password hash, a token or a key.

-- name: AdminStudyList :many
-- name matches a part of the name, in any case.
SELECT s.study_id, s.name, s.description, s.created_by, s.starts_at, s.ends_at, s.status, s.unit, s.seed, s.max_participants,
    s.created_at, s.updated_at,
    (SELECT count(*) FROM study_arm a WHERE a.study_id = s.study_id)::bigint AS arms,
    (SELECT count(*) FROM study_participant p WHERE p.study_id = s.study_id)::bigint AS participants
FROM study s
WHERE (sqlc.narg('id')::uuid IS NULL OR s.study_id = sqlc.narg('id')::uuid)
    AND (sqlc.narg('status')::text IS NULL OR s.status = sqlc.narg('status')::text)
    AND (sqlc.narg('name')::text IS NULL OR strpos(lower(s.name), lower(sqlc.narg('name')::text)) > 0)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN s.created_at >= sqlc.narg('after_time')::timestamptz AND (s.created_at, s.study_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN s.created_at <= sqlc.narg('after_time')::timestamptz AND (s.created_at, s.study_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'starts_at' THEN s.starts_at >= sqlc.narg('after_time')::timestamptz AND (s.starts_at, s.study_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-starts_at' THEN s.starts_at <= sqlc.narg('after_time')::timestamptz AND (s.starts_at, s.study_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'name' THEN s.name >= sqlc.narg('after_text')::text AND (s.name, s.study_id::text) > (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN '-name' THEN s.name <= sqlc.narg('after_text')::text AND (s.name, s.study_id::text) < (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN s.created_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN s.created_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'starts_at' THEN s.starts_at END,
    CASE WHEN sqlc.arg('sort')::text = '-starts_at' THEN s.starts_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'name' THEN s.name END,
    CASE WHEN sqlc.arg('sort')::text = '-name' THEN s.name END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN s.study_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN s.study_id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminArmList :many
SELECT a.arm_id, a.study_id, a.name, a.config_id, a.weight, a.is_baseline, a.policy,
    (SELECT count(*) FROM meta_query mq WHERE mq.arm_id = a.arm_id)::bigint AS exposed_queries
FROM study_arm a
WHERE (sqlc.narg('id')::bigint IS NULL OR a.arm_id = sqlc.narg('id')::bigint)
    AND (sqlc.narg('study_id')::uuid IS NULL OR a.study_id = sqlc.narg('study_id')::uuid)
    AND (sqlc.narg('config_id')::bigint IS NULL OR a.config_id = sqlc.narg('config_id')::bigint)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'arm_id' THEN a.arm_id >= sqlc.narg('after_int')::bigint AND (a.arm_id, a.arm_id::text) > (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
        WHEN '-arm_id' THEN a.arm_id <= sqlc.narg('after_int')::bigint AND (a.arm_id, a.arm_id::text) < (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
        WHEN 'name' THEN a.name >= sqlc.narg('after_text')::text AND (a.name, a.arm_id::text) > (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN '-name' THEN a.name <= sqlc.narg('after_text')::text AND (a.name, a.arm_id::text) < (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'arm_id' THEN a.arm_id END,
    CASE WHEN sqlc.arg('sort')::text = '-arm_id' THEN a.arm_id END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'name' THEN a.name END,
    CASE WHEN sqlc.arg('sort')::text = '-name' THEN a.name END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN a.arm_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN a.arm_id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminConfigList :many
-- users: how many users the config is handed to at login.
SELECT c.config_id, c.config_data, c.created_at, c.updated_at,
    (SELECT count(*) FROM users u WHERE u.config_id = c.config_id)::bigint AS users
FROM config c
WHERE (sqlc.narg('id')::bigint IS NULL OR c.config_id = sqlc.narg('id')::bigint)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN c.created_at >= sqlc.narg('after_time')::timestamptz AND (c.created_at, c.config_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN c.created_at <= sqlc.narg('after_time')::timestamptz AND (c.created_at, c.config_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'updated_at' THEN c.updated_at >= sqlc.narg('after_time')::timestamptz AND (c.updated_at, c.config_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-updated_at' THEN c.updated_at <= sqlc.narg('after_time')::timestamptz AND (c.updated_at, c.config_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'config_id' THEN c.config_id >= sqlc.narg('after_int')::bigint AND (c.config_id, c.config_id::text) > (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
        WHEN '-config_id' THEN c.config_id <= sqlc.narg('after_int')::bigint AND (c.config_id, c.config_id::text) < (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN c.created_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN c.created_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'updated_at' THEN c.updated_at END,
    CASE WHEN sqlc.arg('sort')::text = '-updated_at' THEN c.updated_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'config_id' THEN c.config_id END,
    CASE WHEN sqlc.arg('sort')::text = '-config_id' THEN c.config_id END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN c.config_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN c.config_id::text END DESC
LIMIT sqlc.arg('lim');

-- The study routes under /api/analytics/studies (server/study_admin.go),
-- for admins only: create, read, update and change the status of studies.
-- The queries enrolment shares (server/study.go) stay in studies.sql.

-- name: StudyCreate :one
INSERT INTO study (name, description, created_by, starts_at, ends_at, unit, seed, max_participants)
VALUES (@name, sqlc.narg('description'), sqlc.narg('created_by'), @starts_at, sqlc.narg('ends_at'), @unit, @seed, sqlc.narg('max_participants'))
RETURNING *;

-- name: StudyArmCreate :one
INSERT INTO study_arm (study_id, name, config_id, weight, is_baseline, policy)
VALUES (@study_id, @name, @config_id, @weight, @is_baseline, @policy)
RETURNING *;

-- name: StudyGetByID :one
SELECT * FROM study WHERE study_id = @study_id;

-- name: StudyList :many
-- Newest first, with who created each and how many users it enrolled.
SELECT s.*, u.name AS creator_name,
       (SELECT count(*) FROM study_participant p WHERE p.study_id = s.study_id)::bigint AS participants
FROM study s LEFT JOIN users u ON u.user_id = s.created_by
WHERE @status::text = '' OR s.status = @status::text
ORDER BY s.created_at DESC, s.study_id;

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

-- name: StudyAssignmentCounts :many
-- Per arm: units assigned (logged user or session units) and queries exposed.
SELECT a.arm_id,
       (SELECT count(*) FROM config_assignment_history h WHERE h.arm_id = a.arm_id)::bigint AS assigned_units,
       (SELECT count(*) FROM meta_query q WHERE q.arm_id = a.arm_id)::bigint AS exposed_queries
FROM study_arm a WHERE a.study_id = @study_id
ORDER BY a.arm_id;
