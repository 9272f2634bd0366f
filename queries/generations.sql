-- name: GenerationCreate :exec
INSERT INTO generation (
    meta_query_id, model_id, completion, generation_time_ms, shown_at, confidence, logprobs,
    stop_reason, queue_ms, prefill_ms, decode_ms, tokens_cached, tokens_evaluated, tokens_generated,
    sampler, seed, template_version, engine_build, context_policy, trigger)
VALUES (
    @meta_query_id, @model_id, @completion, @generation_time_ms, @shown_at, sqlc.narg('confidence'), @logprobs,
    sqlc.narg('stop_reason'), sqlc.narg('queue_ms'), sqlc.narg('prefill_ms'), sqlc.narg('decode_ms'),
    sqlc.narg('tokens_cached'), sqlc.narg('tokens_evaluated'), sqlc.narg('tokens_generated'),
    @sampler, sqlc.narg('seed'), sqlc.narg('template_version'), sqlc.narg('engine_build'),
    sqlc.narg('context_policy'), sqlc.narg('trigger'));

-- name: GenerationReplayGet :one
-- What re-running a completion generation needs: the generation, its
-- model's file, the query's stop sequences and study arm, and the stored
-- context (has_context false: the context was not stored).
SELECT g.completion, g.stop_reason, g.tokens_generated, g.logprobs, g.sampler, g.seed, g.template_version,
       g.engine_build, g.context_policy, g.trigger, m.name AS model_name, m.file_sha256,
       mq.study_id, mq.arm_id, mq.config_id, cq.stop_sequences,
       (c.meta_query_id IS NOT NULL)::boolean AS has_context,
       coalesce(c.prefix, '')::text AS prefix, coalesce(c.suffix, '')::text AS suffix,
       coalesce(c.file_name, '')::text AS file_name
FROM generation g
JOIN model m USING (model_id)
JOIN meta_query mq USING (meta_query_id)
JOIN completion_query cq USING (meta_query_id)
LEFT JOIN context c USING (meta_query_id)
WHERE g.meta_query_id = @meta_query_id AND g.model_id = @model_id;

-- name: GenerationGet :one
SELECT * FROM generation WHERE meta_query_id = @meta_query_id AND model_id = @model_id;

-- name: GenerationListByMetaQuery :many
-- The generations of a query with their model's name, in model id order.
SELECT g.*, m.name AS model_name
FROM generation g JOIN model m USING (model_id)
WHERE g.meta_query_id = @meta_query_id
ORDER BY g.model_id;

-- name: GenerationListByMetaQueries :many
SELECT g.meta_query_id, g.model_id, m.name AS model_name, g.completion, g.generation_time_ms,
       g.confidence, g.was_accepted
FROM generation g JOIN model m USING (model_id)
WHERE g.meta_query_id = ANY(@meta_query_ids::uuid[])
ORDER BY g.meta_query_id, g.model_id;

-- name: GenerationUpdateFeedback :execrows
-- Records acceptance for one (query, model); 0 rows when there is no such
-- generation. @shown_at, when not NULL, is appended to shown_at.
UPDATE generation SET
    was_accepted = @was_accepted,
    feedback_at = now(),
    shown_at = CASE WHEN sqlc.narg('shown_at')::timestamptz IS NULL THEN shown_at
                    ELSE array_append(shown_at, sqlc.narg('shown_at')::timestamptz) END
WHERE meta_query_id = @meta_query_id AND model_id = @model_id;

-- name: GroundTruthCreate :one
INSERT INTO ground_truth (meta_query_id, model_id, ground_truth)
VALUES (@meta_query_id, sqlc.narg('model_id'), @ground_truth)
RETURNING *;

-- name: GroundTruthListByMetaQuery :many
SELECT * FROM ground_truth WHERE meta_query_id = @meta_query_id ORDER BY truth_timestamp, ground_truth_id;
