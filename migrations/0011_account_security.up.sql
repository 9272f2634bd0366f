-- API key scopes and Google account binding.
--
-- scopes says what a key may do: "completions" (completion, chat, context,
-- feedback, sessions and projects) and "account" (the account itself: read,
-- change or delete it, verification mail, API keys). A cookie login may do
-- everything. Keys made before scopes existed keep the narrower default.
--
-- google_sub is the subject (the stable account id) of the Google account
-- bound to the user: a Google sign-in finds its account by it, so a Google
-- account whose email changes keeps its code4me account, and one email can
-- never reach an account that another Google account is bound to.
ALTER TABLE api_key
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{completions}',
    ADD CONSTRAINT api_key_scopes_known CHECK (
        cardinality(scopes) >= 1 AND scopes <@ ARRAY['completions', 'account']::text[]);

ALTER TABLE users ADD COLUMN google_sub text;
CREATE UNIQUE INDEX users_google_sub_key ON users (google_sub);
