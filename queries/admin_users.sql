-- The admin API's users, sessions and projects (server/admin_api_resources.go).
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

-- name: AdminUserList :many
-- email matches a part of the address, in any case.
SELECT u.user_id, u.email, u.name, u.joined_at, u.is_oauth_signup, u.verified, u.verified_at, u.is_admin,
    u.config_id, u.store_context, u.store_contextual_telemetry, u.store_behavioral_telemetry,
    u.consent_updated_at, u.password_changed_at, u.updated_at, (u.google_sub IS NOT NULL)::boolean AS google_linked
FROM users u
WHERE (sqlc.narg('id')::uuid IS NULL OR u.user_id = sqlc.narg('id')::uuid)
    AND (sqlc.narg('email')::text IS NULL OR strpos(lower(u.email), lower(sqlc.narg('email')::text)) > 0)
    AND (sqlc.narg('is_admin')::boolean IS NULL OR u.is_admin = sqlc.narg('is_admin')::boolean)
    AND (sqlc.narg('verified')::boolean IS NULL OR u.verified = sqlc.narg('verified')::boolean)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN u.joined_at >= sqlc.narg('after_time')::timestamptz AND (u.joined_at, u.user_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN u.joined_at <= sqlc.narg('after_time')::timestamptz AND (u.joined_at, u.user_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'email' THEN u.email >= sqlc.narg('after_text')::text AND (u.email, u.user_id::text) > (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN '-email' THEN u.email <= sqlc.narg('after_text')::text AND (u.email, u.user_id::text) < (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN 'name' THEN u.name >= sqlc.narg('after_text')::text AND (u.name, u.user_id::text) > (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN '-name' THEN u.name <= sqlc.narg('after_text')::text AND (u.name, u.user_id::text) < (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN u.joined_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN u.joined_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'email' THEN u.email END,
    CASE WHEN sqlc.arg('sort')::text = '-email' THEN u.email END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'name' THEN u.name END,
    CASE WHEN sqlc.arg('sort')::text = '-name' THEN u.name END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN u.user_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN u.user_id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminSessionList :many
-- open: whether the session has not ended.
SELECT s.session_id, s.user_id, s.start_time, s.end_time, s.last_seen_at, s.user_agent, s.ip,
    (s.end_time IS NULL)::boolean AS open
FROM session s
WHERE (sqlc.narg('id')::uuid IS NULL OR s.session_id = sqlc.narg('id')::uuid)
    AND (sqlc.narg('user_id')::uuid IS NULL OR s.user_id = sqlc.narg('user_id')::uuid)
    AND (sqlc.narg('open')::boolean IS NULL OR (s.end_time IS NULL) = sqlc.narg('open')::boolean)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN s.start_time >= sqlc.narg('after_time')::timestamptz AND (s.start_time, s.session_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN s.start_time <= sqlc.narg('after_time')::timestamptz AND (s.start_time, s.session_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'last_seen_at' THEN s.last_seen_at >= sqlc.narg('after_time')::timestamptz AND (s.last_seen_at, s.session_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-last_seen_at' THEN s.last_seen_at <= sqlc.narg('after_time')::timestamptz AND (s.last_seen_at, s.session_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN s.start_time END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN s.start_time END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'last_seen_at' THEN s.last_seen_at END,
    CASE WHEN sqlc.arg('sort')::text = '-last_seen_at' THEN s.last_seen_at END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN s.session_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN s.session_id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminProjectList :many
-- name matches a part of the name, in any case; user_id: projects the
-- user is a member of.
SELECT p.project_id, p.project_name, p.created_by, p.created_at,
    (SELECT count(*) FROM project_users pu WHERE pu.project_id = p.project_id)::bigint AS members,
    (SELECT count(*) FROM project_context_file f WHERE f.project_id = p.project_id)::bigint AS context_files
FROM project p
WHERE (sqlc.narg('id')::uuid IS NULL OR p.project_id = sqlc.narg('id')::uuid)
    AND (sqlc.narg('name')::text IS NULL OR strpos(lower(p.project_name), lower(sqlc.narg('name')::text)) > 0)
    AND (sqlc.narg('created_by')::uuid IS NULL OR p.created_by = sqlc.narg('created_by')::uuid)
    AND (sqlc.narg('user_id')::uuid IS NULL OR EXISTS (SELECT 1 FROM project_users pu WHERE pu.project_id = p.project_id AND pu.user_id = sqlc.narg('user_id')::uuid))
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN p.created_at >= sqlc.narg('after_time')::timestamptz AND (p.created_at, p.project_id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN p.created_at <= sqlc.narg('after_time')::timestamptz AND (p.created_at, p.project_id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'name' THEN p.project_name >= sqlc.narg('after_text')::text AND (p.project_name, p.project_id::text) > (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
        WHEN '-name' THEN p.project_name <= sqlc.narg('after_text')::text AND (p.project_name, p.project_id::text) < (sqlc.narg('after_text')::text, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN p.created_at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN p.created_at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'name' THEN p.project_name END,
    CASE WHEN sqlc.arg('sort')::text = '-name' THEN p.project_name END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN p.project_id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN p.project_id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminUserLock :one
-- Locks a user's row for an admin write in the caller's transaction.
SELECT user_id FROM users WHERE user_id = @user_id::uuid FOR UPDATE;

-- name: AdminUserUpdate :exec
-- Sets the flags given (NULL keeps one). Verifying sets verified_at,
-- unverifying clears it.
UPDATE users SET
    is_admin = coalesce(sqlc.narg('is_admin')::boolean, is_admin),
    verified = coalesce(sqlc.narg('verified')::boolean, verified),
    verified_at = CASE WHEN sqlc.narg('verified')::boolean IS NULL THEN verified_at
                       WHEN sqlc.narg('verified')::boolean THEN coalesce(verified_at, now()) END,
    updated_at = now()
WHERE user_id = @user_id::uuid;
