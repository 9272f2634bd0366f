-- Derived telemetry: how well each generation matched each ground truth that
-- applies to it (a ground truth of its query for its model or for no
-- model). The truth_match River job (server/truth_job.go) writes the rows
-- of a ground truth within seconds of its arrival, so the analytics and the
-- study results aggregate stored figures instead of comparing texts on
-- every request. Rows are written for completion queries only, the only
-- queries those figures count.
--
-- exact_match and edit_similarity are eval.ExactMatch and
-- eval.EditSimilarity of the completion against the ground truth; survival
-- is the share of the completion's characters that survive in the ground
-- truth (their longest common subsequence over the completion's length),
-- NULL for an empty completion. truth_at copies ground_truth.truth_timestamp
-- (never updated) so that "the latest ground truth by time t" reads one
-- index. Both texts are never updated, so a row never goes stale; it goes
-- with its generation or its ground truth.
CREATE TABLE generation_truth_match (
    meta_query_id   uuid NOT NULL,
    model_id        bigint NOT NULL,
    ground_truth_id bigint NOT NULL REFERENCES ground_truth (ground_truth_id) ON DELETE CASCADE,
    truth_at        timestamptz NOT NULL,
    exact_match     boolean NOT NULL,
    edit_similarity double precision NOT NULL,
    survival        double precision,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meta_query_id, model_id, ground_truth_id),
    FOREIGN KEY (meta_query_id, model_id) REFERENCES generation (meta_query_id, model_id) ON DELETE CASCADE,
    CONSTRAINT generation_truth_match_edit_similarity CHECK (edit_similarity BETWEEN 0 AND 1),
    CONSTRAINT generation_truth_match_survival CHECK (survival BETWEEN 0 AND 1)
);

-- The latest ground truth of a generation, or the latest by a time.
CREATE INDEX generation_truth_match_latest_idx
    ON generation_truth_match (meta_query_id, model_id, truth_at DESC, ground_truth_id DESC);
-- Deleting a ground truth deletes its rows.
CREATE INDEX generation_truth_match_ground_truth_idx ON generation_truth_match (ground_truth_id);
