-- Accounts, their API keys and their login sessions.
--
-- preference is the object the plugin reads and writes; the consent flags
-- inside it are mirrored into generated columns so queries (project context
-- persistence, telemetry storage) can filter on them without JSON parsing.
-- There is no auth_token column: auth tokens live in Redis only (spec §11 R4).

CREATE TABLE users (
    user_id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email                      text NOT NULL,
    name                       text NOT NULL,
    password_hash              text NOT NULL,
    joined_at                  timestamptz NOT NULL DEFAULT now(),
    is_oauth_signup            boolean NOT NULL DEFAULT false,
    verified                   boolean NOT NULL DEFAULT false,
    verified_at                timestamptz,
    is_admin                   boolean NOT NULL DEFAULT false,
    config_id                  bigint NOT NULL DEFAULT 1 REFERENCES config (config_id) ON DELETE RESTRICT,
    preference                 jsonb NOT NULL DEFAULT '{"store_context": false, "store_contextual_telemetry": true, "store_behavioral_telemetry": true}',
    store_context              boolean NOT NULL GENERATED ALWAYS AS (coalesce(preference -> 'store_context' = 'true'::jsonb, false)) STORED,
    store_contextual_telemetry boolean NOT NULL GENERATED ALWAYS AS (NOT coalesce(preference -> 'store_contextual_telemetry' = 'false'::jsonb, false)) STORED,
    store_behavioral_telemetry boolean NOT NULL GENERATED ALWAYS AS (NOT coalesce(preference -> 'store_behavioral_telemetry' = 'false'::jsonb, false)) STORED,
    consent_updated_at         timestamptz,
    password_changed_at        timestamptz,
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_lower CHECK (email = lower(email)),
    CONSTRAINT users_preference_object CHECK (jsonb_typeof(preference) = 'object')
);

CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_config_id_idx ON users (config_id);

-- API keys for non-browser clients. Only the sha256 of the key is stored;
-- prefix is the first characters of the key, shown so users can tell keys
-- apart.
CREATE TABLE api_key (
    api_key_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name         text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_key_hash_sha256 CHECK (octet_length(key_hash) = 32)
);

CREATE INDEX api_key_user_id_idx ON api_key (user_id);

-- One row per login session (the session token's id). Without delete_data a
-- deleted user's sessions stay, pseudonymised.
CREATE TABLE session (
    session_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid REFERENCES users (user_id) ON DELETE SET NULL,
    start_time   timestamptz NOT NULL DEFAULT now(),
    end_time     timestamptz,
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    user_agent   text,
    ip           inet,
    CONSTRAINT session_end_after_start CHECK (end_time IS NULL OR end_time >= start_time)
);

CREATE INDEX session_user_id_idx ON session (user_id);
CREATE INDEX session_open_idx ON session (user_id) WHERE end_time IS NULL;
