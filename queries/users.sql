-- name: UserCreate :one
-- google_sub binds a Google account at sign-up (NULL for none).
INSERT INTO users (email, name, password_hash, is_oauth_signup, config_id, preference, google_sub)
VALUES (lower(@email), @name, @password_hash, @is_oauth_signup, @config_id, @preference, sqlc.narg('google_sub'))
RETURNING *;

-- name: UserGetByID :one
SELECT * FROM users WHERE user_id = @user_id::uuid;

-- name: UserGetByEmail :one
SELECT * FROM users WHERE email = lower(@email);

-- name: UserGetByGoogleSub :one
-- The account bound to a Google account (its subject).
SELECT * FROM users WHERE google_sub = @google_sub::text;

-- name: UserLinkGoogle :execrows
-- Binds a Google account to a user that has none; 0 rows when the user
-- already has one (or is gone). A subject bound to another user is a
-- unique violation (users_google_sub_key).
UPDATE users SET google_sub = @google_sub::text, updated_at = now()
WHERE user_id = @user_id::uuid AND google_sub IS NULL;

-- name: UserEmailTaken :one
-- Whether another user than @user_id::uuid has this email (pass uuid.Nil on create).
SELECT EXISTS (SELECT 1 FROM users WHERE email = lower(@email) AND user_id <> @user_id::uuid)::boolean;

-- name: UserUpdateProfile :one
-- Updates the fields a user may change themselves; NULL keeps a field. A
-- new email is not verified: verified and verified_at are cleared with it.
UPDATE users SET
    name = coalesce(sqlc.narg('name'), name),
    email = coalesce(lower(sqlc.narg('email')), email),
    verified = verified AND (sqlc.narg('email')::text IS NULL OR lower(sqlc.narg('email')) = email),
    verified_at = CASE WHEN sqlc.narg('email')::text IS NULL OR lower(sqlc.narg('email')) = email
                       THEN verified_at END,
    updated_at = now()
WHERE user_id = @user_id::uuid
RETURNING *;

-- name: UserUpdatePreference :one
-- Replaces the preference object and records when consent last changed.
UPDATE users SET
    preference = @preference,
    consent_updated_at = CASE
        WHEN (preference -> 'store_context', preference -> 'store_contextual_telemetry', preference -> 'store_behavioral_telemetry')
             IS DISTINCT FROM
             ((@preference::jsonb) -> 'store_context', (@preference::jsonb) -> 'store_contextual_telemetry', (@preference::jsonb) -> 'store_behavioral_telemetry')
        THEN now() ELSE consent_updated_at END,
    updated_at = now()
WHERE user_id = @user_id::uuid
RETURNING *;

-- name: UserUpdatePassword :exec
UPDATE users SET password_hash = @password_hash, password_changed_at = now(), updated_at = now()
WHERE user_id = @user_id::uuid;

-- name: UserSetVerified :exec
UPDATE users SET verified = true, verified_at = coalesce(verified_at, now()), updated_at = now()
WHERE user_id = @user_id::uuid;

-- name: UserSetConfig :exec
UPDATE users SET config_id = @config_id, updated_at = now() WHERE user_id = @user_id::uuid;

-- name: UserListVerifiedIDs :many
SELECT user_id FROM users WHERE verified ORDER BY joined_at;

-- name: UserDelete :execrows
-- Deletes the account. Sessions, queries, chats and assignment history keep
-- their rows with user_id NULL (pseudonymised); memberships and API keys go.
DELETE FROM users WHERE user_id = @user_id::uuid;

-- name: UserDataDeleteMetaQueries :execrows
-- First step of deleting a user's data: their queries, with everything that
-- cascades from them (context, telemetry, generations, ground truth, messages).
DELETE FROM meta_query WHERE user_id = @user_id::uuid;

-- name: UserDataDeleteSoleProjects :execrows
-- Deletes the projects whose only member is the user (with their chats,
-- queries and multi-file context).
DELETE FROM project p
WHERE EXISTS (SELECT 1 FROM project_users pu WHERE pu.project_id = p.project_id AND pu.user_id = @user_id::uuid)
  AND NOT EXISTS (SELECT 1 FROM project_users pu WHERE pu.project_id = p.project_id AND pu.user_id <> @user_id::uuid);

-- name: UserDataClearSharedContext :many
-- Drops the multi-file context (files, change log and chunks) of the
-- user's remaining projects where no other member consents to storing context,
-- and returns those projects. Run after UserDataDeleteSoleProjects and
-- before the memberships go.
WITH p AS (
    SELECT pu.project_id FROM project_users pu
    WHERE pu.user_id = @user_id::uuid
      AND NOT EXISTS (SELECT 1 FROM project_users o JOIN users u ON u.user_id = o.user_id
                      WHERE o.project_id = pu.project_id AND o.user_id <> @user_id::uuid AND u.store_context)
), files AS (
    DELETE FROM project_context_file f USING p WHERE f.project_id = p.project_id
), changes AS (
    DELETE FROM project_context_change c USING p WHERE c.project_id = p.project_id
), chunks AS (
    DELETE FROM project_context_chunk k USING p WHERE k.project_id = p.project_id
)
SELECT p.project_id FROM p;

-- name: UserDataDeleteChats :execrows
DELETE FROM chat WHERE user_id = @user_id::uuid;

-- name: UserDataDeleteSessions :execrows
DELETE FROM session WHERE user_id = @user_id::uuid;

-- name: UserDataDeleteAssignments :execrows
DELETE FROM config_assignment_history WHERE user_id = @user_id::uuid;

-- name: UserDataDeleteParticipation :execrows
DELETE FROM study_participant WHERE user_id = @user_id::uuid;
