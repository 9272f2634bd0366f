-- The audit log of admin writes. Every change an admin makes through the
-- API (users, configs, languages, models, studies, jobs) appends a row in
-- the same transaction as the change, so a change is never without its
-- row and a row never describes a change that was rolled back.
--
-- actor_id: the admin; NULL once that user is deleted, as their other
--   kept rows are pseudonymised.
-- action: what was done ('update', 'delete', 'create', 'cancel', ...).
-- resource, resource_id: what it was done to ('users', '<uuid>').
-- before, after: the row as the admin API shows it, never a password,
--   token or key hash, and for users only their flags (no email or name,
--   which must go when the user is deleted); NULL where there was none (a
--   create's before, a delete's after).
CREATE TABLE admin_audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid REFERENCES users (user_id) ON DELETE SET NULL,
    action      text NOT NULL,
    resource    text NOT NULL,
    resource_id text NOT NULL,
    before      jsonb,
    after       jsonb
);

CREATE INDEX admin_audit_at_idx ON admin_audit (at DESC);
