// Package auth is the token model of the plugin API, kept in Redis: auth
// tokens (one per login), session tokens (one per login, refreshed by
// activity), project tokens (random, distinct from project ids), email
// verification and password reset tokens, and the revocation of everything
// a user holds at once.
//
// # Keys
//
//	auth_token:<t>        {"uid","gen"}                       TTL_AUTH, never refreshed
//	auth_session:<t>      session token acquired with auth <t> expires with the auth token
//	key_session:<keyid>   session token of an API key         TTL_SESSION, refreshed
//	session_token:<t>     {"sid","uid","gen","auth","key","scp"} TTL_SESSION, refreshed by use
//	project_token:<t>     {"pid","sid"}                       TTL_SESSION, refreshed by use
//	user_gen:<uid>        revocation generation of the user   no TTL
//	session_open          sorted set: session id -> deadline (ms)
//	email_verification:<t> {"uid","email"}                    TTL_VERIFY, deleted on use
//	api_key:<sha256 hex>  {"kid","uid","gen","scp"}           a checked API key, five minutes
//	password_reset:<t>    {"uid","email"}                     TTL_RESET, deleted on use
//
// Tokens are UUIDv4 strings from crypto/rand (122 random bits), the shape
// plugins already expect. The session id stored in Postgres is a different
// UUID from the session token, and a project token is not the project id, so
// neither can be derived from what other users see.
//
// # Revocation
//
// Every token records the user's generation when it was issued. RevokeUser
// increments the generation, so every auth, session, project and cached API
// key token of that user fails its next lookup at once, on every server
// process, without listing them. Lookups delete a stale token they find.
//
// # Expiry and cascading, without keyspace notifications
//
// Validity is decided at lookup, atomically in a Lua script: the key exists,
// its generation is current, its parent lives (a session's auth token; a
// project token's session) and, for a session, its id is still in the
// session_open set. Redis TTLs remove the data; nothing depends on receiving
// expiry events. A session's TTL is extended by every authenticated
// request that uses it, capped at its auth token's remaining life, so a
// login's session ends when its login ends and never takes another login's
// session with it.
//
// The session_open set records each open session's deadline. Sessions end in
// Postgres (session.end_time) exactly once: whoever removes the id from the
// set (ZREM answers 1 to one caller only) runs the OnSessionEnd hook. That is
// EndSession for explicit ends (deactivate, API key revocation), and Sweep
// for sessions whose deadline passed; Sweep may run in every server process
// at once. A lookup that finds its session's id gone from the set treats the
// session as ended. Nothing is flushed at shutdown: tokens survive a
// restart.
//
// # Scopes
//
// A login holds every scope; an API key holds the scopes it was created
// with (a ScopeSet), and its cache entry and its session carry
// them, so a route can require one without asking Postgres. An entry
// written before keys had scopes reads as DefaultScopes.
//
// Project membership lives in Postgres (checked by the server before a
// project token is issued, S3); project context lives in Postgres too, so a
// project token carries only ids.
package auth
