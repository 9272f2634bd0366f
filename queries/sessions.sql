-- name: SessionCreate :one
INSERT INTO session (session_id, user_id, user_agent, ip)
VALUES (@session_id, @user_id::uuid, sqlc.narg('user_agent'), sqlc.narg('ip'))
RETURNING *;

-- name: SessionGetByID :one
SELECT * FROM session WHERE session_id = @session_id;

-- name: SessionTouch :exec
UPDATE session SET last_seen_at = now() WHERE session_id = @session_id AND end_time IS NULL;

-- name: SessionEnd :execrows
-- Ends a session; ending an ended session changes nothing.
UPDATE session SET end_time = now() WHERE session_id = @session_id AND end_time IS NULL;

-- name: SessionEndAllForUser :many
-- Ends every open session of the user (password change, deletion) and
-- returns their ids so the caller can drop the tokens.
UPDATE session SET end_time = now() WHERE user_id = @user_id::uuid AND end_time IS NULL
RETURNING session_id;

-- name: SessionProjectAdd :exec
INSERT INTO session_project (session_id, project_id) VALUES (@session_id, @project_id)
ON CONFLICT DO NOTHING;

-- name: SessionProjectList :many
SELECT project_id FROM session_project WHERE session_id = @session_id ORDER BY activated_at;

-- name: SessionOpenCountForProject :one
-- Open sessions with this project active: when it reaches zero the project's
-- context may be persisted or dropped.
SELECT count(*) FROM session_project sp JOIN session s USING (session_id)
WHERE sp.project_id = @project_id AND s.end_time IS NULL;
