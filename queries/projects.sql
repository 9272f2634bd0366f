-- name: ProjectCreate :one
INSERT INTO project (project_name, created_by) VALUES (@project_name, @created_by::uuid)
RETURNING *;

-- name: ProjectGetByID :one
SELECT * FROM project WHERE project_id = @project_id;

-- name: ProjectListByUser :many
SELECT p.*, pu.role FROM project p JOIN project_users pu USING (project_id)
WHERE pu.user_id = @user_id::uuid ORDER BY p.created_at DESC;

-- name: ProjectDelete :execrows
DELETE FROM project WHERE project_id = @project_id;

-- name: ProjectMemberAdd :exec
INSERT INTO project_users (project_id, user_id, role) VALUES (@project_id, @user_id::uuid, @role)
ON CONFLICT (project_id, user_id) DO NOTHING;

-- name: ProjectMemberCheck :one
SELECT EXISTS (SELECT 1 FROM project_users WHERE project_id = @project_id AND user_id = @user_id::uuid)::boolean;

-- name: ProjectMemberList :many
SELECT u.user_id, u.name, u.email, pu.role, pu.joined_at
FROM project_users pu JOIN users u USING (user_id)
WHERE pu.project_id = @project_id ORDER BY pu.joined_at;

-- name: ProjectMemberRemove :execrows
DELETE FROM project_users WHERE project_id = @project_id AND user_id = @user_id::uuid;

-- name: ProjectAllMembersStoreContext :one
-- Whether every member of the project consented to storing context (true
-- for a project without members).
SELECT coalesce(bool_and(u.store_context), true)::boolean
FROM project_users pu JOIN users u USING (user_id)
WHERE pu.project_id = @project_id;
