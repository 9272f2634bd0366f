-- Queries (completion and chat requests) and everything recorded with them.
--
-- A meta_query owns its context, telemetry, context files, generations,
-- ground truth and chat messages: all of them cascade from it, so deleting a
-- query, a chat, a project or a user's data leaves no orphans. Each query
-- records the config and study in effect when it was made, the server
-- version, and per-generation the sampler, seed and template version needed
-- to reproduce it.

CREATE TABLE meta_query (
    meta_query_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    query_type       text NOT NULL,
    user_id          uuid REFERENCES users (user_id) ON DELETE SET NULL,
    session_id       uuid REFERENCES session (session_id) ON DELETE SET NULL,
    project_id       uuid REFERENCES project (project_id) ON DELETE CASCADE,
    chat_id          uuid REFERENCES chat (chat_id) ON DELETE CASCADE,
    config_id        bigint NOT NULL REFERENCES config (config_id) ON DELETE RESTRICT,
    study_id         uuid REFERENCES study (study_id) ON DELETE SET NULL,
    client           text NOT NULL DEFAULT 'plugin',
    server_version   text NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    total_serving_ms double precision,
    redact_ms        double precision,
    context_ms       double precision,
    CONSTRAINT meta_query_type CHECK (query_type IN ('completion', 'chat')),
    CONSTRAINT meta_query_chat_id CHECK ((query_type = 'chat') = (chat_id IS NOT NULL))
);

CREATE INDEX meta_query_requested_at_idx ON meta_query (requested_at);
CREATE INDEX meta_query_requested_at_type_idx ON meta_query (requested_at, query_type);
CREATE INDEX meta_query_query_type_idx ON meta_query (query_type);
CREATE INDEX meta_query_user_requested_at_idx ON meta_query (user_id, requested_at);
CREATE INDEX meta_query_session_id_idx ON meta_query (session_id);
CREATE INDEX meta_query_project_id_idx ON meta_query (project_id);
CREATE INDEX meta_query_chat_id_idx ON meta_query (chat_id, requested_at);
CREATE INDEX meta_query_config_id_idx ON meta_query (config_id);
CREATE INDEX meta_query_study_id_idx ON meta_query (study_id);

CREATE TABLE completion_query (
    meta_query_id  uuid PRIMARY KEY REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    stop_sequences text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE chat_query (
    meta_query_id uuid PRIMARY KEY REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    web_enabled   boolean NOT NULL DEFAULT false
);

-- The redacted code context, stored only when the request asks for it.
CREATE TABLE context (
    meta_query_id uuid PRIMARY KEY REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    prefix        text NOT NULL,
    suffix        text NOT NULL,
    file_name     text,
    selected_text text
);

-- The multi-file context a query used, in prompt order. change_index ties
-- the file to project_context_change (changes 1..change_index); content is
-- the redacted text and is stored only when the context is stored.
CREATE TABLE query_context_file (
    meta_query_id uuid NOT NULL REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    ordinal       integer NOT NULL,
    file_name     text NOT NULL,
    change_index  integer,
    content       text,
    PRIMARY KEY (meta_query_id, ordinal)
);

CREATE TABLE contextual_telemetry (
    meta_query_id              uuid PRIMARY KEY REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    version_id                 bigint NOT NULL REFERENCES plugin_version (version_id) ON DELETE RESTRICT,
    trigger_type_id            bigint NOT NULL REFERENCES trigger_type (trigger_type_id) ON DELETE RESTRICT,
    language_id                bigint NOT NULL REFERENCES programming_language (language_id) ON DELETE RESTRICT,
    file_path                  text,
    caret_line                 integer,
    document_char_length       integer,
    relative_document_position double precision,
    CONSTRAINT contextual_telemetry_caret_line CHECK (caret_line >= 0),
    CONSTRAINT contextual_telemetry_document_char_length CHECK (document_char_length >= 0),
    CONSTRAINT contextual_telemetry_relative_position CHECK (relative_document_position BETWEEN 0 AND 1)
);

CREATE INDEX contextual_telemetry_language_id_idx ON contextual_telemetry (language_id);
CREATE INDEX contextual_telemetry_trigger_type_id_idx ON contextual_telemetry (trigger_type_id);
CREATE INDEX contextual_telemetry_version_id_idx ON contextual_telemetry (version_id);

CREATE TABLE behavioral_telemetry (
    meta_query_id            uuid PRIMARY KEY REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    time_since_last_shown    bigint,
    time_since_last_accepted bigint,
    typing_speed             double precision,
    CONSTRAINT behavioral_telemetry_non_negative CHECK (
        time_since_last_shown >= 0 AND time_since_last_accepted >= 0 AND typing_speed >= 0)
);

-- One row per model that answered a query. Latency is decomposed into queue
-- wait, prefill and decode; token counts say how much of the prompt came from
-- the KV cache. confidence is NULL where the model reports none (chat).
CREATE TABLE generation (
    meta_query_id      uuid NOT NULL REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    model_id           bigint NOT NULL REFERENCES model (model_id) ON DELETE RESTRICT,
    completion         text NOT NULL,
    generation_time_ms integer NOT NULL,
    shown_at           timestamptz[] NOT NULL DEFAULT '{}',
    was_accepted       boolean NOT NULL DEFAULT false,
    feedback_at        timestamptz,
    confidence         double precision,
    logprobs           double precision[] NOT NULL DEFAULT '{}',
    stop_reason        text,
    queue_ms           double precision,
    prefill_ms         double precision,
    decode_ms          double precision,
    tokens_cached      integer,
    tokens_evaluated   integer,
    tokens_generated   integer,
    sampler            jsonb NOT NULL DEFAULT '{}',
    seed               bigint,
    template_version   text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meta_query_id, model_id),
    CONSTRAINT generation_time_non_negative CHECK (generation_time_ms >= 0),
    CONSTRAINT generation_confidence_range CHECK (confidence BETWEEN 0 AND 1),
    CONSTRAINT generation_stop_reason CHECK (stop_reason IN ('eos', 'stop', 'max_tokens', 'cancelled', 'deadline', 'error'))
);

CREATE INDEX generation_model_id_idx ON generation (model_id);
CREATE INDEX generation_was_accepted_idx ON generation (was_accepted);
CREATE INDEX generation_confidence_idx ON generation (confidence);

-- What the developer actually wrote. Any query type may have ground truth
-- (spec §11 C5); each submission is a new row.
CREATE TABLE ground_truth (
    ground_truth_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meta_query_id   uuid NOT NULL REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    model_id        bigint REFERENCES model (model_id) ON DELETE RESTRICT,
    ground_truth    text NOT NULL,
    truth_timestamp timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ground_truth_meta_query_idx ON ground_truth (meta_query_id, truth_timestamp);
CREATE INDEX ground_truth_truth_timestamp_idx ON ground_truth (truth_timestamp);

-- The (redacted) messages of a chat turn, in the order the client sent them.
-- The assistant's answers are the turn's generations.
CREATE TABLE chat_message (
    chat_message_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id         uuid NOT NULL REFERENCES chat (chat_id) ON DELETE CASCADE,
    meta_query_id   uuid NOT NULL REFERENCES meta_query (meta_query_id) ON DELETE CASCADE,
    position        integer NOT NULL,
    role            text NOT NULL,
    content         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (meta_query_id, position),
    CONSTRAINT chat_message_role CHECK (role IN ('system', 'user', 'assistant'))
);

CREATE INDEX chat_message_chat_id_idx ON chat_message (chat_id);
