-- The admin audit log (server/admin_api.go).
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

-- name: AdminAuditList :many
-- from, to: at in [from, to).
SELECT a.id, a.at, a.actor_id, a.action, a.resource, a.resource_id, a.before, a.after
FROM admin_audit a
WHERE (sqlc.narg('id')::bigint IS NULL OR a.id = sqlc.narg('id')::bigint)
    AND (sqlc.narg('actor_id')::uuid IS NULL OR a.actor_id = sqlc.narg('actor_id')::uuid)
    AND (sqlc.narg('action')::text IS NULL OR a.action = sqlc.narg('action')::text)
    AND (sqlc.narg('resource')::text IS NULL OR a.resource = sqlc.narg('resource')::text)
    AND (sqlc.narg('resource_id')::text IS NULL OR a.resource_id = sqlc.narg('resource_id')::text)
    AND (sqlc.narg('from')::timestamptz IS NULL OR a.at >= sqlc.narg('from')::timestamptz)
    AND (sqlc.narg('to')::timestamptz IS NULL OR a.at < sqlc.narg('to')::timestamptz)
    AND (sqlc.narg('after_id')::text IS NULL OR CASE sqlc.arg('sort')::text
        WHEN 'created_at' THEN a.at >= sqlc.narg('after_time')::timestamptz AND (a.at, a.id::text) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN '-created_at' THEN a.at <= sqlc.narg('after_time')::timestamptz AND (a.at, a.id::text) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text)
        WHEN 'id' THEN a.id >= sqlc.narg('after_int')::bigint AND (a.id, a.id::text) > (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
        WHEN '-id' THEN a.id <= sqlc.narg('after_int')::bigint AND (a.id, a.id::text) < (sqlc.narg('after_int')::bigint, sqlc.narg('after_id')::text)
    END)
ORDER BY
    CASE WHEN sqlc.arg('sort')::text = 'created_at' THEN a.at END,
    CASE WHEN sqlc.arg('sort')::text = '-created_at' THEN a.at END DESC,
    CASE WHEN sqlc.arg('sort')::text = 'id' THEN a.id END,
    CASE WHEN sqlc.arg('sort')::text = '-id' THEN a.id END DESC,
    CASE WHEN left(sqlc.arg('sort')::text, 1) <> '-' THEN a.id::text END,
    CASE WHEN left(sqlc.arg('sort')::text, 1) = '-' THEN a.id::text END DESC
LIMIT sqlc.arg('lim');

-- name: AdminAuditInsert :exec
-- Appends a row; call it in the transaction of the change it records.
INSERT INTO admin_audit (actor_id, action, resource, resource_id, before, after)
VALUES (sqlc.narg('actor_id')::uuid, @action, @resource, @resource_id, sqlc.narg('before')::jsonb, sqlc.narg('after')::jsonb);

-- name: AdminLanguageGetByID :one
-- A language as the audit log records it before a change.
SELECT * FROM programming_language WHERE language_id = @language_id;
