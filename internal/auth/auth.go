package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// ErrNotFound means the token does not exist, expired or was revoked.
var ErrNotFound = errors.New("auth: token not found or expired")

// ErrNoProject means the session is valid but the project token is missing,
// expired or belongs to another session.
var ErrNoProject = errors.New("auth: project token not found or expired")

// TTLs are the lifetimes of the token kinds.
type TTLs struct {
	// Auth is the lifetime of an auth token (a login); never extended.
	Auth time.Duration
	// Session is the idle lifetime of a session and its project tokens;
	// every use extends it, up to the login's own expiry.
	Session time.Duration
	// Verification and Reset are the lifetimes of the single-use email
	// tokens.
	Verification, Reset time.Duration
}

// SessionEndFunc records that a session ended at a time (in Postgres). It
// runs exactly once per session across all processes; it must be
// idempotent anyway, because a failed call is retried by the next Sweep.
type SessionEndFunc func(ctx context.Context, sessionID uuid.UUID, at time.Time) error

// Store issues and checks tokens. It is safe for concurrent use; all state
// is in Redis.
type Store struct {
	rdb   redis.UniversalClient
	ttl   TTLs
	onEnd SessionEndFunc
	log   *slog.Logger
}

// New returns a Store over rdb. onEnd may be nil.
func New(rdb redis.UniversalClient, ttl TTLs, onEnd SessionEndFunc, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onEnd == nil {
		onEnd = func(context.Context, uuid.UUID, time.Time) error { return nil }
	}
	return &Store{rdb: rdb, ttl: ttl, onEnd: onEnd, log: log}
}

// TTL returns the configured lifetimes.
func (s *Store) TTL() TTLs { return s.ttl }

const sessionOpen = "session_open"

func newToken() string { return uuid.New().String() }

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Login is a checked auth token.
type Login struct {
	Token  string
	UserID uuid.UUID
	Gen    int64
}

type authEntry struct {
	UID uuid.UUID `json:"uid"`
	Gen int64     `json:"gen"`
}

// Gen returns the user's current revocation generation.
func (s *Store) Gen(ctx context.Context, userID uuid.UUID) (int64, error) {
	n, err := s.rdb.Get(ctx, "user_gen:"+userID.String()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("auth: read generation: %w", err)
	}
	return n, nil
}

// RevokeUser makes every auth, session and project token of the user, and
// every cached API key lookup, fail from now on, in every process. Tokens
// issued afterwards work.
func (s *Store) RevokeUser(ctx context.Context, userID uuid.UUID) error {
	if err := s.rdb.Incr(ctx, "user_gen:"+userID.String()).Err(); err != nil {
		return fmt.Errorf("auth: revoke user: %w", err)
	}
	return nil
}

// IssueAuth creates an auth token for a login of the user.
func (s *Store) IssueAuth(ctx context.Context, userID uuid.UUID) (Login, error) {
	gen, err := s.Gen(ctx, userID)
	if err != nil {
		return Login{}, err
	}
	l := Login{Token: newToken(), UserID: userID, Gen: gen}
	b, _ := json.Marshal(authEntry{UID: userID, Gen: gen})
	if err := s.rdb.Set(ctx, "auth_token:"+l.Token, b, s.ttl.Auth).Err(); err != nil {
		return Login{}, fmt.Errorf("auth: issue auth token: %w", err)
	}
	return l, nil
}

// lookupGen returns the JSON at KEYS[1] when its generation is the user's
// current one, and deletes it otherwise.
var lookupGen = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
local e = cjson.decode(v)
local g = tonumber(redis.call('GET', 'user_gen:' .. e.uid) or '0')
if g ~= tonumber(e.gen) then
  redis.call('DEL', KEYS[1])
  return false
end
return v
`)

// Auth checks an auth token.
func (s *Store) Auth(ctx context.Context, token string) (Login, error) {
	if token == "" {
		return Login{}, ErrNotFound
	}
	v, err := lookupGen.Run(ctx, s.rdb, []string{"auth_token:" + token}).Text()
	if errors.Is(err, redis.Nil) {
		return Login{}, ErrNotFound
	}
	if err != nil {
		return Login{}, fmt.Errorf("auth: look up auth token: %w", err)
	}
	var e authEntry
	if err := json.Unmarshal([]byte(v), &e); err != nil {
		return Login{}, fmt.Errorf("auth: decode auth token: %w", err)
	}
	return Login{Token: token, UserID: e.UID, Gen: e.Gen}, nil
}

// Logout deletes an auth token and the pointer to its session. Its session
// dies with it at its next lookup; EndSession ends it at once.
func (s *Store) Logout(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	if err := s.rdb.Del(ctx, "auth_token:"+token, "auth_session:"+token).Err(); err != nil {
		return fmt.Errorf("auth: delete auth token: %w", err)
	}
	return nil
}

// Session is a checked session token.
type Session struct {
	Token  string
	ID     uuid.UUID
	UserID uuid.UUID
	Gen    int64
	// AuthToken is the login the session belongs to; KeyID the API key,
	// for sessions of key-authenticated clients. Exactly one is set.
	AuthToken string
	KeyID     uuid.UUID
	// Scopes are what the session may do: AllScopes for a login's
	// session, the key's scopes for a key's.
	Scopes ScopeSet
}

type sessionEntry struct {
	SID  uuid.UUID `json:"sid"`
	UID  uuid.UUID `json:"uid"`
	Gen  int64     `json:"gen"`
	Auth string    `json:"auth"`
	Key  string    `json:"key"`
	// Scp are a key session's scopes (empty for a login's session).
	Scp ScopeSet `json:"scp,omitempty"`
}

// scopes are the scopes of the session e describes.
func (e sessionEntry) scopes() ScopeSet {
	if e.Auth != "" {
		return AllScopes
	}
	return e.Scp.orDefault()
}

// Parent is what a session is acquired with: a login or an API key.
type Parent struct {
	UserID    uuid.UUID
	Gen       int64
	AuthToken string
	KeyID     uuid.UUID
	// Scopes are the API key's scopes (ignored for a login, which holds
	// every scope); the key's session keeps them.
	Scopes ScopeSet
}

func (p Parent) pointer() string {
	if p.AuthToken != "" {
		return "auth_session:" + p.AuthToken
	}
	return "key_session:" + p.KeyID.String()
}

// createSession writes a session and indexes it as open. KEYS: the session
// key, the parent's pointer key. ARGV: JSON, session TTL ms, session id,
// auth token ("" for key sessions), token.
var createSession = redis.NewScript(`
local ttl = tonumber(ARGV[2])
local ptr_ttl = ttl
if ARGV[4] ~= '' then
  local at = redis.call('PTTL', 'auth_token:' .. ARGV[4])
  if at <= 0 then return false end
  if at < ttl then ttl = at end
  ptr_ttl = at
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('SET', KEYS[2], ARGV[5], 'PX', ptr_ttl)
redis.call('ZADD', 'session_open', now + ttl, ARGV[3])
return ttl
`)

// CreateSession opens a new session with id sessionID (the Postgres row,
// inserted by the caller first) for parent, and makes it the parent's
// current session. It fails with ErrNotFound when the parent login expired.
func (s *Store) CreateSession(ctx context.Context, p Parent, sessionID uuid.UUID) (Session, error) {
	sess := Session{Token: newToken(), ID: sessionID, UserID: p.UserID, Gen: p.Gen, AuthToken: p.AuthToken}
	e := sessionEntry{SID: sessionID, UID: p.UserID, Gen: p.Gen, Auth: p.AuthToken}
	if p.AuthToken == "" {
		sess.KeyID = p.KeyID
		e.Key = p.KeyID.String()
		e.Scp = p.Scopes.orDefault()
	}
	sess.Scopes = e.scopes()
	b, _ := json.Marshal(e)
	err := createSession.Run(ctx, s.rdb, []string{"session_token:" + sess.Token, p.pointer()},
		string(b), ms(s.ttl.Session), sessionID.String(), p.AuthToken, sess.Token).Err()
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("auth: create session: %w", err)
	}
	return sess, nil
}

// CurrentSession returns the live session last created for parent, or
// ErrNotFound. It extends the session like any use.
func (s *Store) CurrentSession(ctx context.Context, p Parent) (Session, error) {
	tok, err := s.rdb.Get(ctx, p.pointer()).Result()
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("auth: read current session: %w", err)
	}
	sess, err := s.Session(ctx, tok)
	if err != nil {
		return Session{}, err
	}
	if sess.UserID != p.UserID || sess.AuthToken != p.AuthToken || (p.AuthToken == "" && sess.KeyID != p.KeyID) {
		return Session{}, ErrNotFound
	}
	return sess, nil
}

// lookupSession checks a session and optionally a project token, and
// extends both. KEYS: session key, project key (ignored unless ARGV[2] is
// "1"). ARGV: session TTL ms, want project.
// Returns {0, session, project?} valid; {1} no session; {2, sid} dead
// session (revoked, login gone, or ended) that the caller must end;
// {3, session} valid session without a valid project token.
// lookup() also returns the user id of a live session.
const lookupSessionLua = `
local function lookup()
  local sv = redis.call('GET', KEYS[1])
  if not sv then return {1} end
  local s = cjson.decode(sv)
  local g = tonumber(redis.call('GET', 'user_gen:' .. s.uid) or '0')
  local dead = g ~= tonumber(s.gen)
  local ttl = tonumber(ARGV[1])
  if not dead and s.auth ~= '' then
    local at = redis.call('PTTL', 'auth_token:' .. s.auth)
    if at <= 0 then dead = true elseif at < ttl then ttl = at end
  end
  if not dead and not redis.call('ZSCORE', 'session_open', s.sid) then dead = true end
  if dead then
    redis.call('DEL', KEYS[1])
    return {2, s.sid}
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', 'session_open', 'XX', now + ttl, s.sid)
  if s.key ~= '' then redis.call('PEXPIRE', 'key_session:' .. s.key, ttl) end
  if ARGV[2] ~= '1' then return {0, sv}, s.uid end
  local pv = redis.call('GET', KEYS[2])
  if not pv then return {3, sv}, s.uid end
  local p = cjson.decode(pv)
  if p.sid ~= s.sid then return {3, sv}, s.uid end
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {0, sv, pv, redis.call('GET', 'project_ctx:' .. p.pid) or ''}, s.uid
end
`

var lookupSession = redis.NewScript(lookupSessionLua + `return lookup()`)

// lookupSessionCounted is lookupSession and a rate-limit count in one
// round trip. KEYS[3] is the counter key less its subject, for a valid
// lookup (code 0): the user id is appended; KEYS[4] is the counter of
// any other outcome. ARGV[3] is the window in ms. It counts like
// ratelimit's script: the first hit starts the window, a counter that lost
// its expiry gets it back. The result gains the count and its PTTL as two
// trailing elements.
var lookupSessionCounted = redis.NewScript(lookupSessionLua + `
local r, uid = lookup()
local key = KEYS[4]
if r[1] == 0 then key = KEYS[3] .. 'u:' .. uid end
local n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, ARGV[3]) end
local ttl = redis.call('PTTL', key)
if ttl < 0 then
  redis.call('PEXPIRE', key, ARGV[3])
  ttl = tonumber(ARGV[3])
end
table.insert(r, n)
table.insert(r, ttl)
return r
`)

// Project is a checked project token.
type Project struct {
	Token     string
	ProjectID uuid.UUID
	SessionID uuid.UUID
	// ContextVersion is the version of the project's multi-file context
	// when it was looked up, "" when unknown (BumpContextVersion).
	ContextVersion string
}

type projectEntry struct {
	PID uuid.UUID `json:"pid"`
	SID uuid.UUID `json:"sid"`
}

// Session checks a session token and extends it (activity refresh).
func (s *Store) Session(ctx context.Context, token string) (Session, error) {
	sess, _, err := s.lookup(ctx, token, "", false)
	return sess, err
}

// SessionProject checks a session token and a project token issued to that
// session, and extends both. ErrNotFound: the session is invalid;
// ErrNoProject: the session is valid (and returned) but the project token
// is not.
func (s *Store) SessionProject(ctx context.Context, sessionToken, projectToken string) (Session, Project, error) {
	return s.lookup(ctx, sessionToken, projectToken, true)
}

// Count is a rate-limit counter to increment in the same round trip as a
// session lookup (SessionCounted).
type Count struct {
	// UserPrefix is the counter key less its subject: when the lookup
	// succeeds, "u:<user id>" is appended and that counter is incremented.
	UserPrefix string
	// Fallback is the counter incremented when it fails (any error).
	Fallback string
	// Window is the length of a counting window, started by the first hit.
	Window time.Duration
}

// Counted is the value of the counter a lookup incremented and the time
// left in its window.
type Counted struct {
	N   int64
	TTL time.Duration
}

// SessionCounted is Session (wantProject false) or SessionProject, and
// counts the request in c in the same Redis round trip: the user's
// counter when the lookup succeeds, c.Fallback otherwise. The count is
// valid whenever the error is ErrNotFound, ErrNoProject or nil.
func (s *Store) SessionCounted(ctx context.Context, sessionToken, projectToken string, wantProject bool, c Count) (Session, Project, Counted, error) {
	var n Counted
	sess, proj, err := s.lookupCounted(ctx, sessionToken, projectToken, wantProject, &c, &n)
	return sess, proj, n, err
}

func (s *Store) lookup(ctx context.Context, token, projectToken string, wantProject bool) (Session, Project, error) {
	return s.lookupCounted(ctx, token, projectToken, wantProject, nil, nil)
}

// lookupCounted looks up the tokens and, when c is set, counts in c and
// stores the count in n.
func (s *Store) lookupCounted(ctx context.Context, token, projectToken string, wantProject bool, c *Count, n *Counted) (Session, Project, error) {
	if projectToken == "" {
		projectToken = "-"
	}
	want := "0"
	if wantProject {
		want = "1"
	}
	var res []any
	var err error
	if c == nil {
		if token == "" {
			return Session{}, Project{}, ErrNotFound
		}
		res, err = lookupSession.Run(ctx, s.rdb, []string{"session_token:" + token, "project_token:" + projectToken},
			ms(s.ttl.Session), want).Slice()
	} else {
		// An empty token still counts; it finds no session.
		res, err = lookupSessionCounted.Run(ctx, s.rdb,
			[]string{"session_token:" + token, "project_token:" + projectToken, c.UserPrefix, c.Fallback},
			ms(s.ttl.Session), want, ms(c.Window)).Slice()
		if err == nil && len(res) >= 3 {
			cnt, _ := res[len(res)-2].(int64)
			ttl, _ := res[len(res)-1].(int64)
			*n = Counted{N: cnt, TTL: time.Duration(ttl) * time.Millisecond}
			res = res[:len(res)-2]
		} else if err == nil {
			err = errors.New("short reply")
		}
		if err == nil && token == "" {
			return Session{}, Project{}, ErrNotFound
		}
	}
	if err != nil {
		return Session{}, Project{}, fmt.Errorf("auth: look up session: %w", err)
	}
	code, _ := res[0].(int64)
	switch code {
	case 1:
		return Session{}, Project{}, ErrNotFound
	case 2:
		sid, perr := uuid.Parse(fmt.Sprint(res[1]))
		if perr == nil {
			if _, err := s.endByID(ctx, sid); err != nil {
				s.log.Warn("auth: end dead session", slog.String("error", err.Error()))
			}
		}
		return Session{}, Project{}, ErrNotFound
	}
	var e sessionEntry
	if err := json.Unmarshal([]byte(fmt.Sprint(res[1])), &e); err != nil {
		return Session{}, Project{}, fmt.Errorf("auth: decode session: %w", err)
	}
	sess := Session{Token: token, ID: e.SID, UserID: e.UID, Gen: e.Gen, AuthToken: e.Auth, Scopes: e.scopes()}
	if e.Key != "" {
		sess.KeyID, _ = uuid.Parse(e.Key)
	}
	if code == 3 {
		return sess, Project{}, ErrNoProject
	}
	if !wantProject {
		return sess, Project{}, nil
	}
	var p projectEntry
	if err := json.Unmarshal([]byte(fmt.Sprint(res[2])), &p); err != nil {
		return Session{}, Project{}, fmt.Errorf("auth: decode project token: %w", err)
	}
	proj := Project{Token: projectToken, ProjectID: p.PID, SessionID: p.SID}
	if len(res) > 3 {
		proj.ContextVersion, _ = res[3].(string)
	}
	return sess, proj, nil
}

// Context versions. A project's multi-file context (Postgres) has a
// version in Redis, "project_ctx:<project id>", a random token replaced
// after every committed change of it. SessionProject returns it with the
// project in the same round trip, so a server may keep the context in
// memory and know, at no cost, whether its copy is current. A missing
// version (never set, expired) means unknown: read Postgres.

// contextVersionTTL bounds a version's life; an expired one is unknown.
const contextVersionTTL = 24 * time.Hour

func contextVersionKey(projectID uuid.UUID) string { return "project_ctx:" + projectID.String() }

// BumpContextVersion gives the project's context a new version: call it
// after each committed change.
func (s *Store) BumpContextVersion(ctx context.Context, projectID uuid.UUID) error {
	if err := s.rdb.Set(ctx, contextVersionKey(projectID), newToken(), contextVersionTTL).Err(); err != nil {
		return fmt.Errorf("auth: bump context version: %w", err)
	}
	return nil
}

// InitContextVersion gives the project's context a version when it has
// none; one set meanwhile by BumpContextVersion is kept.
func (s *Store) InitContextVersion(ctx context.Context, projectID uuid.UUID) error {
	if err := s.rdb.SetNX(ctx, contextVersionKey(projectID), newToken(), contextVersionTTL).Err(); err != nil {
		return fmt.Errorf("auth: init context version: %w", err)
	}
	return nil
}

// endSession deletes a session and its parent pointer (when it still
// points at it) and removes it from the open set. Returns {sid, removed}.
var endSession = redis.NewScript(`
local sv = redis.call('GET', KEYS[1])
if not sv then return false end
local s = cjson.decode(sv)
redis.call('DEL', KEYS[1])
local ptr
if s.auth ~= '' then ptr = 'auth_session:' .. s.auth else ptr = 'key_session:' .. s.key end
if redis.call('GET', ptr) == ARGV[1] then redis.call('DEL', ptr) end
return {s.sid, redis.call('ZREM', 'session_open', s.sid)}
`)

// EndSession ends the session with this token now: its token and project
// tokens stop working and OnSessionEnd runs (once). Ending an unknown or
// ended session is not an error.
func (s *Store) EndSession(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	res, err := endSession.Run(ctx, s.rdb, []string{"session_token:" + token}, token).Slice()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: end session: %w", err)
	}
	sid, err := uuid.Parse(fmt.Sprint(res[0]))
	if err != nil {
		return fmt.Errorf("auth: end session: %w", err)
	}
	if n, _ := res[1].(int64); n == 1 {
		return s.onEnd(ctx, sid, time.Now())
	}
	return nil
}

// EndParentSession ends the current session of a login or API key, if any.
func (s *Store) EndParentSession(ctx context.Context, p Parent) error {
	tok, err := s.rdb.Get(ctx, p.pointer()).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: read current session: %w", err)
	}
	return s.EndSession(ctx, tok)
}

// endByID claims the end of a session by id and runs the hook if this call
// claimed it.
func (s *Store) endByID(ctx context.Context, sid uuid.UUID) (bool, error) {
	n, err := s.rdb.ZRem(ctx, sessionOpen, sid.String()).Result()
	if err != nil {
		return false, fmt.Errorf("auth: end session: %w", err)
	}
	if n != 1 {
		return false, nil
	}
	return true, s.onEnd(ctx, sid, time.Now())
}

// IssueProject creates a project token for a session (membership already
// checked by the caller). It lives as long as the session at most and is
// extended with it.
func (s *Store) IssueProject(ctx context.Context, sess Session, projectID uuid.UUID) (Project, error) {
	p := Project{Token: newToken(), ProjectID: projectID, SessionID: sess.ID}
	ttl, err := s.rdb.PTTL(ctx, "session_token:"+sess.Token).Result()
	if err != nil {
		return Project{}, fmt.Errorf("auth: issue project token: %w", err)
	}
	if ttl <= 0 {
		return Project{}, ErrNotFound
	}
	b, _ := json.Marshal(projectEntry{PID: projectID, SID: sess.ID})
	if err := s.rdb.Set(ctx, "project_token:"+p.Token, b, ttl).Err(); err != nil {
		return Project{}, fmt.Errorf("auth: issue project token: %w", err)
	}
	return p, nil
}

// sweep claims up to ARGV[1] sessions whose deadline passed. Returns a flat
// list of id, deadline ms.
var sweep = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', 'session_open', '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for i = 1, #ids, 2 do
  if redis.call('ZREM', 'session_open', ids[i]) == 1 then
    table.insert(out, ids[i])
    table.insert(out, ids[i + 1])
  end
end
return out
`)

// Sweep ends the sessions whose deadline passed (their Redis keys have
// expired) and returns how many it ended. Safe to run in several processes
// at once: each session is claimed by one of them. A session whose hook
// fails is put back for the next sweep.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	ended := 0
	for {
		res, err := sweep.Run(ctx, s.rdb, []string{sessionOpen}, 500).StringSlice()
		if err != nil {
			return ended, fmt.Errorf("auth: sweep: %w", err)
		}
		for i := 0; i+1 < len(res); i += 2 {
			sid, err := uuid.Parse(res[i])
			if err != nil {
				continue
			}
			deadline, _ := strconv.ParseFloat(res[i+1], 64)
			at := time.UnixMilli(int64(deadline))
			if err := s.onEnd(ctx, sid, at); err != nil {
				s.log.Warn("auth: record session end", slog.String("session_id", sid.String()), slog.String("error", err.Error()))
				s.rdb.ZAdd(ctx, sessionOpen, redis.Z{Score: deadline, Member: res[i]})
				continue
			}
			ended++
		}
		if len(res) < 1000 {
			return ended, nil
		}
	}
}

// RunSweeper calls Sweep every interval until ctx ends.
func (s *Store) RunSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("auth: session sweep failed", slog.String("error", err.Error()))
			}
		}
	}
}
