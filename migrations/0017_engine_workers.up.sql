-- The worker tier: `code4me worker` processes run models on their own
-- engine and take completion and chat requests as River jobs. Each
-- registers here and sends a heartbeat every second; API nodes send a
-- request only to models some live worker serves (heartbeat younger than
-- a few seconds), and read a worker's load to keep a session on it.
CREATE TABLE engine_worker (
    worker_id    uuid PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- A draining worker finishes what it runs and takes no new request.
    draining     boolean NOT NULL DEFAULT false
);

CREATE INDEX engine_worker_heartbeat_idx ON engine_worker (heartbeat_at);

-- The models a worker serves, with its load at the last heartbeat.
CREATE TABLE engine_worker_model (
    worker_id     uuid NOT NULL REFERENCES engine_worker (worker_id) ON DELETE CASCADE,
    model_id      bigint NOT NULL REFERENCES model (model_id) ON DELETE CASCADE,
    slots         integer NOT NULL,
    slots_busy    integer NOT NULL DEFAULT 0,
    queue_len     integer NOT NULL DEFAULT 0,
    -- The model's chat template (GGUF tokenizer.chat_template), so API
    -- nodes render chat prompts exactly as an in-process engine would.
    chat_template text,
    PRIMARY KEY (worker_id, model_id),
    CONSTRAINT engine_worker_model_slots_positive CHECK (slots > 0)
);

CREATE INDEX engine_worker_model_model_idx ON engine_worker_model (model_id);
