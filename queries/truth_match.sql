-- Derived telemetry of ground truths (server/truth_job.go): the figures
-- of each generation against each ground truth that applies to it, in
-- generation_truth_match. A ground truth applies to the generations of its
-- query for its model, or to all of them when it names no model; figures
-- are derived for completion queries only.

-- name: TruthMatchSourceList :many
-- The ground truth's text and time with the completion of every
-- generation it applies to, by model_id; no rows when the ground truth
-- is gone or applies to no completion generation.
SELECT gt.ground_truth, gt.truth_timestamp, g.meta_query_id, g.model_id, g.completion
FROM ground_truth gt
JOIN meta_query mq ON mq.meta_query_id = gt.meta_query_id
JOIN generation g ON g.meta_query_id = gt.meta_query_id AND (gt.model_id IS NULL OR g.model_id = gt.model_id)
WHERE gt.ground_truth_id = @ground_truth_id AND mq.query_type = 'completion'
ORDER BY g.model_id;

-- name: TruthMatchCreate :exec
-- Stores one generation's figures against a ground truth. Both texts
-- never change, so a row that exists already holds the same figures and
-- is kept as it is.
INSERT INTO generation_truth_match (meta_query_id, model_id, ground_truth_id, truth_at, exact_match, edit_similarity, survival)
VALUES (@meta_query_id, @model_id, @ground_truth_id, @truth_at, @exact_match, @edit_similarity, sqlc.narg('survival'))
ON CONFLICT (meta_query_id, model_id, ground_truth_id) DO NOTHING;

-- name: TruthMatchScan :many
-- The next scan_size ground truths after after_id, in id order, each
-- with whether a completion generation it applies to lacks its figures.
WITH scanned AS (
    SELECT gt.ground_truth_id, gt.meta_query_id, gt.model_id
    FROM ground_truth gt
    WHERE gt.ground_truth_id > @after_id
    ORDER BY gt.ground_truth_id
    LIMIT sqlc.arg('scan_size')::int
)
SELECT s.ground_truth_id, EXISTS (
    SELECT 1 FROM generation g
    JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
    WHERE g.meta_query_id = s.meta_query_id AND (s.model_id IS NULL OR g.model_id = s.model_id)
        AND mq.query_type = 'completion'
        AND NOT EXISTS (SELECT 1 FROM generation_truth_match t
            WHERE t.meta_query_id = g.meta_query_id AND t.model_id = g.model_id AND t.ground_truth_id = s.ground_truth_id)
)::bool AS missing
FROM scanned s
ORDER BY s.ground_truth_id;
