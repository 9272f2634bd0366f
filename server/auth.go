package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// Cookie names of the plugin API, as the plugins send them.
const (
	cookieAuth    = "auth_token"
	cookieSession = "session_token"
	cookieProject = "project_token"
)

// Header alternatives to the cookies, for clients without a cookie jar.
// Authorization: Bearer <api key> replaces the auth token.
const (
	headerSession = "X-Session-Token"
	headerProject = "X-Project-Token"
)

// AuthClass is what a route requires of its caller.
type AuthClass int

const (
	// ClassNone: anyone; rate-limited per client IP.
	ClassNone AuthClass = iota
	// ClassA: a live auth token (cookie) or API key (Bearer).
	ClassA
	// ClassS: a live session: the session_token cookie (or header), or the
	// session of the Bearer API key, created on first use.
	ClassS
	// ClassSP: ClassS plus a project token issued to that session.
	ClassSP
)

// Principal is the authenticated caller, stored in c.Locals by guard.
type Principal struct {
	UserID uuid.UUID
	// Gen is the user's revocation generation the credentials carry.
	Gen int64
	// AuthToken is the login (cookie auth); KeyID the API key (Bearer).
	AuthToken string
	KeyID     uuid.UUID
	// Scopes are what the caller may do: auth.AllScopes for a login, the
	// key's scopes for an API key (and for a key's session).
	Scopes auth.ScopeSet
	// SessionID is the session row (Postgres) and SessionToken its token;
	// set for ClassS and ClassSP.
	SessionID    uuid.UUID
	SessionToken string
	// ProjectID is the active project and ProjectToken its token; set for
	// ClassSP.
	ProjectID    uuid.UUID
	ProjectToken string
	// ContextVersion is the version of the project's multi-file context
	// read with the project token ("" unknown): contextcache.go.
	ContextVersion string
}

const localsPrincipal = "code4me.principal"

// principal returns the caller authenticated by guard, or nil on ClassNone
// routes.
func principal(c *fiber.Ctx) *Principal {
	p, _ := c.Locals(localsPrincipal).(*Principal)
	return p
}

func (p *Principal) parent() auth.Parent {
	return auth.Parent{UserID: p.UserID, Gen: p.Gen, AuthToken: p.AuthToken, KeyID: p.KeyID, Scopes: p.Scopes}
}

// can reports whether p holds scope.
func (p *Principal) can(scope string) bool { return p.Scopes.Has(scope) }

// Messages of a 403 for an API key that lacks the scope a route needs.
const (
	MsgAPIKeyNeedsAccount = "This API key cannot manage the account: it lacks the 'account' scope. " +
		"Sign in with your password, or use a key created with the 'account' scope."
	MsgAPIKeyNeedsCompletions = "This API key cannot be used for completions, chat, sessions or projects: " +
		"it lacks the 'completions' scope. Use a key created with the 'completions' scope."
)

// scopeError is the 403 answered to a caller without scope.
func scopeError(scope string) error {
	if scope == auth.ScopeAccount {
		return fail(fiber.StatusForbidden, MsgAPIKeyNeedsAccount)
	}
	return fail(fiber.StatusForbidden, MsgAPIKeyNeedsCompletions)
}

// guard authenticates the request for class, rate-limits it per user (or
// per client IP when it carries no valid credentials) and route template,
// and stores the Principal. An API key must hold the completions scope:
// routes of the account itself use guardAccount. The limit is checked
// before an authentication failure is answered, so guessing tokens is
// limited too. It works on WebSocket upgrade requests, whose cookies are
// sent at connect time.
func (s *Server) guard(class AuthClass) fiber.Handler {
	return s.guardRoute(class, auth.ScopeCompletions, false)
}

// guardAccount is guard(ClassA) for the routes that read or change the
// account itself (the user, its verification mail, its API keys): an API
// key needs the account scope, and gets 403 without it.
func (s *Server) guardAccount() fiber.Handler { return s.guardRoute(ClassA, auth.ScopeAccount, false) }

// guardPublic is guard(ClassNone) for the routes that take a password or
// create a credential without a login: sign-up, login and password reset.
// They are counted per client IP whatever cookies the request carries (a
// throw-away account's login must not buy a fresh budget), and when the
// count cannot be made (Redis down) the request is refused with 503
// instead of let through, so an outage never lifts the limit on password
// guessing.
func (s *Server) guardPublic() fiber.Handler { return s.guardRoute(ClassNone, "", true) }

// guardRoute is guard with the scope a key needs (none for ClassNone) and
// whether the rate limit fails closed.
func (s *Server) guardRoute(class AuthClass, scope string, failClosed bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ctx := c.UserContext()
		t := &stageTimes{start: time.Now()}
		lap := t.start
		c.Locals(localsTiming, t)
		var p *Principal
		var authErr error
		var counted *auth.Counted
		if class != ClassNone {
			p, counted, authErr = s.authenticate(ctx, c, class)
			if authErr == nil && !p.can(scope) {
				authErr = scopeError(scope) // counted against the user first
			}
		}
		t.lap(StageAuth, &lap)
		var err error
		if failClosed {
			err = s.rateLimitClosed(c, "ip:"+s.clientIP(c).String())
		} else {
			err = s.admit(c, class, p, counted, authErr)
		}
		t.lap(StageRateLimit, &lap)
		if err != nil {
			return err
		}
		if p != nil {
			c.Locals(localsPrincipal, p)
		}
		return c.Next()
	}
}

// admit applies the rate limit to a request authenticated as p (nil when
// authErr says why not, or on ClassNone routes) and returns the error to
// answer, if any: a spent limit (429) wins over authErr. counted is the
// count taken in the authentication's round trip; without it the request
// is counted here. A request without a Principal is counted against its
// client IP, whatever cookies it carries.
func (s *Server) admit(c *fiber.Ctx, class AuthClass, p *Principal, counted *auth.Counted, authErr error) error {
	if counted != nil {
		// Counted in the session lookup's round trip.
		if err := s.applyLimit(c, s.limiter.Result(c.Route().Path, counted.N, counted.TTL)); err != nil {
			return err
		}
	} else {
		subject := "ip:" + s.clientIP(c).String()
		if p != nil {
			subject = "u:" + p.UserID.String()
		}
		if err := s.rateLimit(c, subject); err != nil {
			return err
		}
	}
	return authErr
}

// authenticate resolves the credentials of the request for class. A
// request with a session token is counted against its rate limit in the
// same Redis round trip (its user's budget when the credentials are good,
// else its client address's), and the count is returned; otherwise the
// count is nil and the caller counts.
func (s *Server) authenticate(ctx context.Context, c *fiber.Ctx, class AuthClass) (*Principal, *auth.Counted, error) {
	if class == ClassA {
		p, err := s.authA(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		return p, nil, nil
	}
	if creds := s.sessionCredsOf(c); creds.session != "" {
		return s.authSession(ctx, creds, class)
	}
	sess, err := s.keySession(ctx, c)
	var proj auth.Project
	if err == nil && class == ClassSP {
		sess, proj, err = s.tokens.SessionProject(ctx, sess.Token, strings.Clone(cookieOrHeader(c, cookieProject, headerProject)))
	}
	p, err := sessionPrincipal(sess, proj, class, err)
	return p, nil, err
}

// sessionCreds are a request's session and project tokens and what
// counting it against its rate limit needs.
type sessionCreds struct {
	session, project string
	route            string
	ip               netip.Addr
}

func (s *Server) sessionCredsOf(c *fiber.Ctx) sessionCreds {
	// Copies: a token read from a request is a view of fasthttp's buffer,
	// which the next request on the connection overwrites, and the
	// Principal made from it outlives the request (a WebSocket connection
	// keeps it and checks its tokens again with every message).
	return sessionCreds{session: strings.Clone(cookieOrHeader(c, cookieSession, headerSession)),
		project: strings.Clone(cookieOrHeader(c, cookieProject, headerProject)), route: c.Route().Path, ip: s.clientIP(c)}
}

// authSession looks up a session (and, for ClassSP, project) token and
// counts the request in the same Redis round trip: see authenticate.
func (s *Server) authSession(ctx context.Context, in sessionCreds, class AuthClass) (*Principal, *auth.Counted, error) {
	cnt := auth.Count{UserPrefix: s.limiter.Key(in.route, ""), Fallback: s.limiter.Key(in.route, "ip:"+in.ip.String()),
		Window: s.limiter.Window()}
	sess, proj, n, err := s.tokens.SessionCounted(ctx, in.session, in.project, class == ClassSP, cnt)
	var counted *auth.Counted
	if err == nil || errors.Is(err, auth.ErrNotFound) || errors.Is(err, auth.ErrNoProject) {
		counted = &n
	}
	p, err := sessionPrincipal(sess, proj, class, err)
	return p, counted, err
}

// sessionPrincipal turns a session lookup's result into the Principal, or
// into the error to answer.
func sessionPrincipal(sess auth.Session, proj auth.Project, class AuthClass, err error) (*Principal, error) {
	switch {
	case errors.Is(err, auth.ErrNotFound):
		return nil, fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredSession)
	case errors.Is(err, auth.ErrNoProject):
		return nil, fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredProject)
	case err != nil:
		return nil, err
	}
	p := &Principal{UserID: sess.UserID, Gen: sess.Gen, AuthToken: sess.AuthToken, KeyID: sess.KeyID,
		Scopes: sess.Scopes, SessionID: sess.ID, SessionToken: sess.Token}
	if !p.can(auth.ScopeCompletions) {
		return nil, scopeError(auth.ScopeCompletions)
	}
	if class == ClassSP {
		p.ProjectID, p.ProjectToken, p.ContextVersion = proj.ProjectID, proj.Token, proj.ContextVersion
	}
	return p, nil
}

// authA checks the auth_token cookie, or else a Bearer API key.
func (s *Server) authA(ctx context.Context, c *fiber.Ctx) (*Principal, error) {
	if tok := c.Cookies(cookieAuth); tok != "" {
		l, err := s.tokens.Auth(ctx, tok)
		if err == nil {
			return &Principal{UserID: l.UserID, Gen: l.Gen, AuthToken: strings.Clone(l.Token), Scopes: auth.AllScopes}, nil
		}
		if !errors.Is(err, auth.ErrNotFound) {
			return nil, err
		}
	}
	if key := bearer(c); key != "" {
		o, err := s.apiKeyOwner(ctx, key)
		if err == nil {
			return &Principal{UserID: o.UserID, Gen: o.Gen, KeyID: o.KeyID, Scopes: o.Scopes}, nil
		}
		if !errors.Is(err, auth.ErrNotFound) {
			return nil, err
		}
	}
	return nil, fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredAuth)
}

func bearer(c *fiber.Ctx) string {
	h := c.Get(fiber.HeaderAuthorization)
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// apiKeyCacheTTL bounds how long a checked key is trusted without asking
// Postgres; revocation and user deletion clear it at once regardless.
const apiKeyCacheTTL = 5 * time.Minute

// apiKeyOwner checks an API key: the Redis cache, else Postgres. Whoever
// revokes keys (revokeUser, userDelete) changes Postgres first and bumps
// the user's generation after; this reads the key, then the generation,
// then checks the key is still live (ApiKeyTouch), and caches it only
// then. So a revocation is either seen by that check, or its bump comes
// after the generation read here and makes the cache entry stale.
func (s *Server) apiKeyOwner(ctx context.Context, key string) (auth.KeyOwner, error) {
	if !auth.LooksLikeAPIKey(key) {
		return auth.KeyOwner{}, auth.ErrNotFound
	}
	hash := auth.HashAPIKey(key)
	if o, ok, err := s.tokens.CachedAPIKey(ctx, hash); err != nil {
		return auth.KeyOwner{}, err
	} else if ok {
		return o, nil
	}
	row, err := s.q.ApiKeyGetByHash(ctx, s.db, hash)
	if err != nil {
		if errors.Is(db.Translate(err), db.ErrNotFound) {
			return auth.KeyOwner{}, auth.ErrNotFound
		}
		return auth.KeyOwner{}, err
	}
	gen, err := s.tokens.Gen(ctx, row.User.UserID)
	if err != nil {
		return auth.KeyOwner{}, err
	}
	if n, err := s.q.ApiKeyTouch(ctx, s.db, row.ApiKey.ApiKeyID); err != nil {
		return auth.KeyOwner{}, err
	} else if n == 0 {
		return auth.KeyOwner{}, auth.ErrNotFound // revoked since the read
	}
	o := auth.KeyOwner{KeyID: row.ApiKey.ApiKeyID, UserID: row.User.UserID, Gen: gen, Scopes: auth.ScopesOf(row.ApiKey.Scopes)}
	if err := s.tokens.CacheAPIKey(ctx, hash, o, apiKeyCacheTTL); err != nil {
		return auth.KeyOwner{}, err
	}
	return o, nil
}

// keySession returns the session of a Bearer API key, creating it on first
// use; ErrNotFound without a valid key, 403 for a key without the
// completions scope (which no session is made for).
func (s *Server) keySession(ctx context.Context, c *fiber.Ctx) (auth.Session, error) {
	key := bearer(c)
	if key == "" {
		return auth.Session{}, auth.ErrNotFound
	}
	o, err := s.apiKeyOwner(ctx, key)
	if err != nil {
		return auth.Session{}, err
	}
	p := &Principal{UserID: o.UserID, Gen: o.Gen, KeyID: o.KeyID, Scopes: o.Scopes}
	if !p.can(auth.ScopeCompletions) {
		return auth.Session{}, scopeError(auth.ScopeCompletions)
	}
	return s.currentOrNewSession(ctx, c, p)
}

// currentOrNewSession returns the caller's login's (or key's) live session
// or opens a new one, with its row in Postgres first.
func (s *Server) currentOrNewSession(ctx context.Context, c *fiber.Ctx, p *Principal) (auth.Session, error) {
	sess, err := s.tokens.CurrentSession(ctx, p.parent())
	if err == nil || !errors.Is(err, auth.ErrNotFound) {
		return sess, err
	}
	sid := uuid.New()
	ua := c.Get(fiber.HeaderUserAgent)
	if len(ua) > 256 {
		ua = ua[:256]
	}
	ip := s.clientIP(c)
	if _, err := s.q.SessionCreate(ctx, s.db, models.SessionCreateParams{SessionID: sid, UserID: p.UserID, UserAgent: &ua, Ip: &ip}); err != nil {
		if db.IsForeignKeyViolation(err, "") {
			return auth.Session{}, auth.ErrNotFound // the user is gone
		}
		return auth.Session{}, err
	}
	sess, err = s.tokens.CreateSession(ctx, p.parent(), sid)
	if err != nil {
		if _, endErr := s.q.SessionEnd(context.WithoutCancel(ctx), s.db, sid); endErr != nil {
			s.log.Warn("session: end orphan row", slog.String("error", endErr.Error()))
		}
		return auth.Session{}, err
	}
	return sess, nil
}

// clientIP is the request's client address: X-Forwarded-For is believed
// only from TRUSTED_PROXIES.
func (s *Server) clientIP(c *fiber.Ctx) netip.Addr {
	peer, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	return ratelimitClientIP(peer, c.Get(fiber.HeaderXForwardedFor), s.trusted)
}

// setCookie sets an HttpOnly, SameSite=Lax cookie on path /, Secure when
// configured. A zero expires makes a browser-session cookie.
func (s *Server) setCookie(c *fiber.Ctx, name, value string, expires time.Time) {
	ck := &fiber.Cookie{Name: name, Value: value, Path: "/", HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, Secure: s.cfg.CookieSecure}
	if !expires.IsZero() {
		ck.Expires = expires
	}
	c.Cookie(ck)
}

// clearCookie expires a cookie.
func (s *Server) clearCookie(c *fiber.Ctx, name string) {
	c.Cookie(&fiber.Cookie{Name: name, Value: "", Path: "/", HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode,
		Secure: s.cfg.CookieSecure, Expires: time.Unix(0, 0)})
}

func itoa(n int) string { return strconv.Itoa(n) }

// bodyWork is work on a request's body that needs no caller: parsing,
// validation, redaction. It must have no side effects, since its result
// is thrown away when authentication fails.
type bodyWork func(ctx context.Context, body []byte) any

const localsOverlapped = "code4me.overlapped"

// guardOverlap is guard(class) with work started on a copy of the body
// before authentication, so that it runs during authentication's Redis
// round trip instead of after it; the handler takes its result with
// overlapped. A request that carries no credentials at all is refused
// without it. Authentication and the rate limit are decided exactly as by
// guard, and their errors win over the work's.
func (s *Server) guardOverlap(class AuthClass, work bodyWork) fiber.Handler {
	inner := s.guard(class)
	return func(c *fiber.Ctx) error {
		if !hasCredentials(c) {
			return inner(c)
		}
		// The copy outlives the handler if authentication fails first.
		body := bytes.Clone(c.Body())
		ctx, cancel := context.WithCancel(c.UserContext())
		defer cancel()
		res := make(chan any, 1)
		go func() { res <- work(ctx, body) }()
		c.Locals(localsOverlapped, sync.OnceValue(func() any { return <-res }))
		return inner(c)
	}
}

// overlapped waits for and returns the result of guardOverlap's work.
func overlapped(c *fiber.Ctx) any { return c.Locals(localsOverlapped).(func() any)() }

// hasCredentials reports whether the request carries any session, project
// or auth credential, good or not.
func hasCredentials(c *fiber.Ctx) bool {
	return cookieOrHeader(c, cookieSession, headerSession) != "" || c.Cookies(cookieAuth) != "" ||
		c.Get(fiber.HeaderAuthorization) != ""
}

// cookieOrHeader is the cookie's value, else the header's.
func cookieOrHeader(c *fiber.Ctx, cookie, header string) string {
	if v := c.Cookies(cookie); v != "" {
		return v
	}
	return c.Get(header)
}
