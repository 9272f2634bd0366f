-- name: ChatUpsert :one
-- Creates the chat, or touches it when it exists for the same user and
-- project. No row (ErrNotFound) means the id belongs to another user or
-- project.
INSERT INTO chat (chat_id, project_id, user_id, title)
VALUES (@chat_id, @project_id, @user_id::uuid, @title)
ON CONFLICT (chat_id) DO UPDATE SET updated_at = now()
WHERE chat.user_id = excluded.user_id AND chat.project_id = excluded.project_id
RETURNING *;

-- name: ChatGetByID :one
SELECT * FROM chat WHERE chat_id = @chat_id;

-- name: ChatUpdateTitle :exec
UPDATE chat SET title = @title, updated_at = now() WHERE chat_id = @chat_id;

-- name: ChatGetPage :many
-- One page of the user's chats in a project, newest first.
SELECT * FROM chat
WHERE user_id = @user_id::uuid AND project_id = @project_id
ORDER BY created_at DESC, chat_id
LIMIT @page_size OFFSET @page_offset;

-- name: ChatDelete :execrows
-- Deletes the chat of this user and project with all its queries,
-- generations and messages; 0 rows when it is not theirs.
DELETE FROM chat WHERE chat_id = @chat_id AND user_id = @user_id::uuid AND project_id = @project_id;

-- name: ChatTurnListByChats :many
-- The turns (chat queries) of the given chats, oldest first.
SELECT mq.meta_query_id, mq.chat_id, mq.requested_at
FROM meta_query mq
WHERE mq.chat_id = ANY(@chat_ids::uuid[])
ORDER BY mq.chat_id, mq.requested_at, mq.meta_query_id;

-- name: ChatMessageCreate :one
INSERT INTO chat_message (chat_id, meta_query_id, position, role, content)
VALUES (@chat_id, @meta_query_id, @position, @role, @content)
RETURNING *;

-- name: ChatMessageListByChats :many
-- The messages of the given chats, by turn and position.
SELECT cm.* FROM chat_message cm JOIN meta_query mq USING (meta_query_id)
WHERE cm.chat_id = ANY(@chat_ids::uuid[])
ORDER BY cm.chat_id, mq.requested_at, cm.meta_query_id, cm.position;

-- name: ChatMessageListByMetaQuery :many
SELECT * FROM chat_message WHERE meta_query_id = @meta_query_id ORDER BY position;
