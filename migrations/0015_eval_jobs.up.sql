-- Evaluation runs started from the admin API (POST /api/eval/runs) run as
-- River jobs, so a run has a lifecycle: 'queued' (the job is waiting),
-- 'running', 'finished' (every result stored, finished_at set) or
-- 'failed' (error says why). A run of `code4me eval` starts 'running'.
--
-- requested_by: the admin who started the run from the API (NULL for the
--   command line, or once that user is deleted).
-- job_id: the River job that runs it (NULL for the command line).
-- languages: the languages the tasks were drawn from; empty: every
--   language of the tree. With repo, seed and task_count it fixes the
--   tasks, so runs agreeing on all four compare task by task.
-- max_tokens is 0 for a run against a server URL: the server applies its
--   own limit (COMPLETION_MAX_TOKENS).
ALTER TABLE eval_run
    ADD COLUMN status       text NOT NULL DEFAULT 'running',
    ADD COLUMN error        text,
    ADD COLUMN requested_by uuid REFERENCES users (user_id) ON DELETE SET NULL,
    ADD COLUMN job_id       bigint,
    ADD COLUMN languages    text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT eval_run_status_known CHECK (status IN ('queued', 'running', 'finished', 'failed'));

UPDATE eval_run SET status = 'finished' WHERE finished_at IS NOT NULL;

ALTER TABLE eval_run
    ADD CONSTRAINT eval_run_finished_at_set CHECK ((status = 'finished') = (finished_at IS NOT NULL));

CREATE INDEX eval_run_started_idx ON eval_run (started_at DESC, eval_run_id DESC);
