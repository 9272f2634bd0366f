-- name: ApiKeyCreate :one
-- scopes NULL gives the column's default ({completions}).
INSERT INTO api_key (user_id, name, key_hash, prefix, expires_at, scopes)
VALUES (@user_id::uuid, @name, @key_hash, @prefix, sqlc.narg('expires_at'),
        coalesce(sqlc.narg('scopes')::text[], '{completions}'))
RETURNING *;

-- name: ApiKeyGetByHash :one
-- The live key with this sha256 (not revoked, not expired) and its owner.
SELECT sqlc.embed(api_key), sqlc.embed(users)
FROM api_key JOIN users USING (user_id)
WHERE api_key.key_hash = @key_hash
  AND api_key.revoked_at IS NULL
  AND (api_key.expires_at IS NULL OR api_key.expires_at > now());

-- name: ApiKeyTouch :execrows
-- Records a use of a live key; 0 rows when the key has been revoked, has
-- expired or is gone since it was read, so a caller can check it again.
UPDATE api_key SET last_used_at = now()
WHERE api_key_id = @api_key_id
  AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now());

-- name: ApiKeyListByUser :many
SELECT * FROM api_key WHERE user_id = @user_id::uuid ORDER BY created_at DESC;

-- name: ApiKeyRevoke :execrows
-- Revokes one of the user's keys; 0 rows when it is not theirs or already revoked.
UPDATE api_key SET revoked_at = now()
WHERE api_key_id = @api_key_id AND user_id = @user_id::uuid AND revoked_at IS NULL;

-- name: ApiKeyRevokeAllForUser :execrows
-- Revokes every live key of the user (a password reset or change).
UPDATE api_key SET revoked_at = now() WHERE user_id = @user_id::uuid AND revoked_at IS NULL;
