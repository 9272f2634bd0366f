package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/oauth"
	"github.com/code4me/code4me/internal/password"
	"github.com/code4me/code4me/models"
)

// defaultPreference is the preference of a new user.
var defaultPreference = map[string]any{"store_context": false, "store_contextual_telemetry": true, "store_behavioral_telemetry": true}

func (s *Server) userRoutes(api fiber.Router) {
	u := api.Group("/user")
	u.Post("/create", s.guardPublic(), s.userCreate)
	u.Post("/authenticate", s.guardPublic(), s.userAuthenticate)
	u.Get("/get", s.guardAccount(), s.userGet)
	u.Put("/update", s.guardAccount(), s.userUpdate)
	u.Delete("/delete", s.guardAccount(), s.userDelete)
	u.Get("/export", s.guardAccount(), s.userExport)
	u.Get("/export/:export_id", s.guardAccount(), s.userExportGet)
	u.Get("/verify/check", s.guardAccount(), s.userVerifyCheck)
	u.Post("/verify/resend", s.guardAccount(), s.userVerifyResend)
	u.Get("/verify/", s.guard(ClassNone), s.userVerify)
	u.Post("/reset-password/request", s.guardPublic(), s.userResetRequest)
	u.Get("/reset-password/", s.guardPublic(), s.userResetForm)
	u.Post("/reset-password/change", s.guardPublic(), s.userResetChange)
}

// Messages of Google sign-in and sign-up refusals.
const (
	MsgGoogleEmailUnverified = "Google has not verified this email address, so no account is created with it. " +
		"Verify the address with Google, or sign up with a password."
	MsgGoogleNotLinked = "An account with this email exists but is not linked to this Google account. To link them, " +
		"sign in with your email and password, verify your email address (the link in the verification email), " +
		"then sign in with Google again; Google must have verified the address too."
	MsgGoogleLinkedElsewhere = "The account with this email is linked to another Google account. " +
		"Sign in with that Google account, or with your email and password."
	MsgGoogleAccountInUse = "This Google account is already linked to another account. Sign in with Google instead."
)

// responseUser is the user as the plugins read it; the password is always
// masked.
func responseUser(u models.User, authToken *string) fiber.Map {
	var pref any = map[string]any{}
	if len(u.Preference) > 0 {
		json.Unmarshal(u.Preference, &pref)
	}
	return fiber.Map{
		"email": u.Email, "name": u.Name, "password": "**********", "config_id": u.ConfigID,
		"user_id": u.UserID, "joined_at": u.JoinedAt, "verified": u.Verified, "preference": pref,
		"auth_token": authToken, "is_admin": u.IsAdmin,
	}
}

// loadUser returns the caller's row or 404 User not found.
func (s *Server) loadUser(ctx context.Context, id uuid.UUID, errMsg string) (models.User, error) {
	u, err := s.q.UserGetByID(ctx, s.db, id)
	if err != nil {
		if errors.Is(db.Translate(err), db.ErrNotFound) {
			return models.User{}, fail(fiber.StatusNotFound, MsgUserNotFound)
		}
		return models.User{}, internal(errMsg, err)
	}
	return u, nil
}

// loadConfig returns a config's text or 404 Config not found!.
func (s *Server) loadConfig(ctx context.Context, id int64, errMsg string) (string, error) {
	cfg, err := s.q.ConfigGetByID(ctx, s.db, id)
	if err != nil {
		if errors.Is(db.Translate(err), db.ErrNotFound) {
			return "", fail(fiber.StatusNotFound, MsgConfigNotFound)
		}
		return "", internal(errMsg, err)
	}
	return cfg.ConfigData, nil
}

// loadPluginConfig returns the config document the plugin of u reads: the
// arm's when a running study randomises users and u takes part (enrolled
// now when the cap allows), else u's own.
func (s *Server) loadPluginConfig(ctx context.Context, u models.User, errMsg string) (string, error) {
	id := u.ConfigID
	asg, err := s.assign(ctx, u.UserID, uuid.Nil, uuid.Nil, true)
	if err != nil {
		return "", internal(errMsg, err)
	}
	if asg != nil {
		id = asg.arm.ConfigID
	}
	return s.loadConfig(ctx, id, errMsg)
}

// POST /api/user/create
func (s *Server) userCreate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	email, _ := f.email("email", true)
	if email != "" && (len(email) < 3 || len(email) > 50) {
		f.add("value_error", "email", "Value error, email must be 3 to 50 characters", email, nil)
	}
	name, _ := f.str("name", true, 3, 50)
	pw, _ := f.password("password", true, 50)
	configID, _ := f.integer("config_id", true, 0)
	isOAuth := f.has("token") || f.has("provider")
	token, _ := f.str("token", false, 0, 0)
	if prov, ok := f.str("provider", false, 0, 0); ok && prov != "google" && prov != "no_provider" {
		f.add("literal_error", "provider", "Input should be 'google' or 'no_provider'", prov, map[string]any{"expected": "'google' or 'no_provider'"})
	}
	f.secret("password", "token")
	if err := f.err(); err != nil {
		return err
	}
	taken, err := s.q.UserEmailTaken(ctx, s.db, models.UserEmailTakenParams{Email: email, UserID: uuid.Nil})
	if err != nil {
		return internal(MsgCreateUserError, err)
	}
	if taken {
		return fail(fiber.StatusConflict, MsgUserAlreadyExists)
	}
	var googleSub *string
	if isOAuth {
		// An OAuth signup must carry a valid token for this email, which
		// Google has verified; the account is bound to the Google account.
		claims, err := s.oauth.Verify(ctx, token)
		if err != nil || claims.Email != email {
			s.logOAuthFailure(err)
			return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredJWT)
		}
		if !claims.EmailVerified {
			return fail(fiber.StatusForbidden, MsgGoogleEmailUnverified)
		}
		googleSub = &claims.Subject
	}
	if ok, err := s.q.ConfigExists(ctx, s.db, configID); err != nil {
		return internal(MsgCreateUserError, err)
	} else if !ok {
		return fail(fiber.StatusNotFound, MsgConfigNotFound)
	}
	hash, err := password.Hash(ctx, pw)
	if err != nil {
		return internal(MsgCreateUserError, err)
	}
	pref, _ := json.Marshal(defaultPreference)
	// The user and its verification mail job commit together.
	var u models.User
	err = db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		u, err = s.q.UserCreate(ctx, tx, models.UserCreateParams{Email: email, Name: name, PasswordHash: hash,
			IsOauthSignup: isOAuth, ConfigID: configID, Preference: pref, GoogleSub: googleSub})
		if err != nil {
			return err
		}
		return s.queueMailTx(ctx, tx, mailKindVerify, u.UserID)
	})
	if err != nil {
		if db.IsUniqueViolation(err, "users_google_sub_key") {
			return fail(fiber.StatusConflict, MsgGoogleAccountInUse)
		}
		if db.IsUniqueViolation(err, "") {
			return fail(fiber.StatusConflict, MsgUserAlreadyExists)
		}
		return internal(MsgCreateUserError, err)
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"message": MsgCreateUser, "user_id": u.UserID})
}

func (s *Server) logOAuthFailure(err error) {
	if err != nil && !errors.Is(err, oauth.ErrInvalidToken) {
		s.log.Warn("oauth: verification unavailable", slog.String("error", err.Error()))
	}
}

// dummyHash is verified against when no user matches, so a login attempt
// takes as long whether or not the email exists.
var dummyHash = sync.OnceValue(func() string {
	h, _ := password.Hash(context.Background(), "not-a-real-password-1A")
	return h
})

// POST /api/user/authenticate
func (s *Server) userAuthenticate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	var u models.User
	msg := MsgAuthenticateNormal
	if f.has("token") || (f.has("provider") && !f.has("email")) {
		token, _ := f.str("token", true, 0, 0)
		f.str("provider", false, 0, 0)
		f.secret("token", "password")
		if err := f.err(); err != nil {
			return err
		}
		claims, err := s.oauth.Verify(ctx, token)
		if err != nil {
			s.logOAuthFailure(err)
			return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredJWT)
		}
		if u, err = s.googleAccount(ctx, claims); err != nil {
			return err
		}
		msg = MsgAuthenticateOAuth
	} else {
		email, _ := f.email("email", true)
		pw, _ := f.str("password", true, 0, 0)
		f.secret("password")
		if err := f.err(); err != nil {
			return err
		}
		u, err = s.q.UserGetByEmail(ctx, s.db, email)
		hash := u.PasswordHash
		found := err == nil
		if err != nil && !errors.Is(db.Translate(err), db.ErrNotFound) {
			return internal(MsgAuthenticateError, err)
		}
		if !found {
			hash = dummyHash()
		}
		ok, verr := password.Verify(ctx, pw, hash)
		if verr != nil && found {
			return internal(MsgAuthenticateError, verr)
		}
		if !found || !ok {
			return fail(fiber.StatusUnauthorized, MsgInvalidEmailOrPassword)
		}
	}
	cfgText, err := s.loadPluginConfig(ctx, u, MsgAuthenticateError)
	if err != nil {
		return err
	}
	l, err := s.tokens.IssueAuth(ctx, u.UserID)
	if err != nil {
		return internal(MsgAuthenticateError, err)
	}
	s.setCookie(c, cookieAuth, l.Token, time.Now().Add(s.cfg.AuthTokenTTL))
	return c.JSON(fiber.Map{"message": msg, "user": responseUser(u, &l.Token), "config": cfgText})
}

// googleAccount returns the account that a verified Google ID token signs
// in to. A Google account is bound to one user by its subject (sub, which
// never changes): the first sign-in binds it, and every later one finds the
// user by the subject alone, whatever the Google account's email is now.
// A first sign-in reaches an existing account by its email only when Google
// has verified that email and the account's own email is verified too;
// otherwise whoever controls a Google account with that address (one Google
// has not verified, or one the account holder never proved was theirs)
// would take the account over: 409 says how to link instead. No account
// has the email: 401, as for a bad token (sign up first).
func (s *Server) googleAccount(ctx context.Context, claims oauth.Claims) (models.User, error) {
	u, err := s.q.UserGetByGoogleSub(ctx, s.db, claims.Subject)
	if err == nil {
		return u, nil
	}
	if !errors.Is(db.Translate(err), db.ErrNotFound) {
		return models.User{}, internal(MsgAuthenticateError, err)
	}
	u, err = s.q.UserGetByEmail(ctx, s.db, claims.Email)
	if err != nil {
		if errors.Is(db.Translate(err), db.ErrNotFound) {
			return models.User{}, fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredJWT)
		}
		return models.User{}, internal(MsgAuthenticateError, err)
	}
	if u.GoogleSub != nil {
		return models.User{}, fail(fiber.StatusConflict, MsgGoogleLinkedElsewhere)
	}
	if !claims.EmailVerified || !u.Verified {
		return models.User{}, fail(fiber.StatusConflict, MsgGoogleNotLinked)
	}
	n, err := s.q.UserLinkGoogle(ctx, s.db, models.UserLinkGoogleParams{GoogleSub: claims.Subject, UserID: u.UserID})
	switch {
	case db.IsUniqueViolation(err, "users_google_sub_key"):
		// Bound to another account meanwhile.
		return models.User{}, fail(fiber.StatusConflict, MsgGoogleAccountInUse)
	case err != nil:
		return models.User{}, internal(MsgAuthenticateError, err)
	case n == 0:
		// The account was bound to another Google account meanwhile.
		return models.User{}, fail(fiber.StatusConflict, MsgGoogleLinkedElsewhere)
	}
	s.log.Info("oauth: google account linked", slog.String("user_id", u.UserID.String()))
	u.GoogleSub = &claims.Subject
	return u, nil
}

// GET /api/user/get
func (s *Server) userGet(c *fiber.Ctx) error {
	ctx := c.UserContext()
	u, err := s.loadUser(ctx, principal(c).UserID, MsgGetUserError)
	if err != nil {
		return err
	}
	cfgText, err := s.loadPluginConfig(ctx, u, MsgGetUserError)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"message": MsgGetUser, "user": responseUser(u, nil), "config": cfgText})
}

// PUT /api/user/update. verified and config_id are applied only for
// admins. A new password or a new email needs the previous password: with
// a stolen login or API key alone, neither can be changed, so neither can
// the account be taken over for good. A new email is unverified: a
// verification mail goes to it and a notice to the previous address. A new
// password revokes every API key, every session and every login of the
// user; a caller signed in with a login gets a new one in its place (the
// auth_token cookie and the answer's user.auth_token), a caller using an
// API key has to sign in again.
func (s *Server) userUpdate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	name, hasName := f.str("name", false, 3, 50)
	email, hasEmail := f.email("email", false)
	prev, hasPrev := f.str("previous_password", false, 0, 0)
	pw, hasPw := f.password("password", false, 0)
	prefObj := f.object("preference", false)
	configID, hasConfig := f.integer("config_id", false, 1)
	verified, hasVerified := f.boolean("verified", false)
	f.secret("password", "previous_password")
	if err := f.err(); err != nil {
		return err
	}
	p := principal(c)
	u, err := s.loadUser(ctx, p.UserID, MsgUpdateUserError)
	if err != nil {
		return err
	}
	newEmail := hasEmail && email != u.Email
	if newEmail {
		taken, err := s.q.UserEmailTaken(ctx, s.db, models.UserEmailTakenParams{Email: email, UserID: u.UserID})
		if err != nil {
			return internal(MsgUpdateUserError, err)
		}
		if taken {
			return fail(fiber.StatusConflict, MsgUserAlreadyExists)
		}
	}
	if hasPw || newEmail {
		ok := false
		if hasPrev {
			if ok, err = password.Verify(ctx, prev, u.PasswordHash); err != nil {
				return internal(MsgUpdateUserError, err)
			}
		}
		if !ok {
			return fail(fiber.StatusUnauthorized, MsgInvalidPreviousPassword)
		}
	}
	var newHash string
	if hasPw {
		if newHash, err = password.Hash(ctx, pw); err != nil {
			return internal(MsgUpdateUserError, err)
		}
	}
	if hasConfig && u.IsAdmin {
		if ok, err := s.q.ConfigExists(ctx, s.db, configID); err != nil {
			return internal(MsgUpdateUserError, err)
		} else if !ok {
			return fail(fiber.StatusNotFound, MsgConfigNotFound)
		}
	}
	err = db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		var np, ne *string
		if hasName {
			np = &name
		}
		if newEmail {
			ne = &email
		}
		if hasName || newEmail {
			// A new email clears verified (the query's rule).
			if _, err := s.q.UserUpdateProfile(ctx, tx, models.UserUpdateProfileParams{Name: np, Email: ne, UserID: u.UserID}); err != nil {
				return err
			}
		}
		if newEmail {
			if err := s.queueMailTx(ctx, tx, mailKindVerify, u.UserID); err != nil {
				return err
			}
			if err := s.queueMailArgsTx(ctx, tx, mailArgs{Mail: mailKindEmailChanged, UserID: u.UserID, OldEmail: u.Email}); err != nil {
				return err
			}
		}
		if newHash != "" {
			if err := s.q.UserUpdatePassword(ctx, tx, models.UserUpdatePasswordParams{PasswordHash: newHash, UserID: u.UserID}); err != nil {
				return err
			}
			// With the password, in one commit; revokeUser below ends
			// the rest once it has committed.
			if _, err := s.q.ApiKeyRevokeAllForUser(ctx, tx, u.UserID); err != nil {
				return err
			}
		}
		if prefObj != nil {
			merged := map[string]any{}
			for k, v := range defaultPreference {
				merged[k] = v
			}
			for k, v := range prefObj.raw {
				merged[k] = v
			}
			b, _ := json.Marshal(merged)
			if _, err := s.q.UserUpdatePreference(ctx, tx, models.UserUpdatePreferenceParams{Preference: b, UserID: u.UserID}); err != nil {
				return err
			}
		}
		if u.IsAdmin && hasConfig {
			if err := s.q.UserSetConfig(ctx, tx, models.UserSetConfigParams{ConfigID: configID, UserID: u.UserID}); err != nil {
				return err
			}
		}
		if u.IsAdmin && hasVerified && verified {
			if err := s.q.UserSetVerified(ctx, tx, u.UserID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if db.IsUniqueViolation(err, "") {
			return fail(fiber.StatusConflict, MsgUserAlreadyExists)
		}
		return internal(MsgUpdateUserError, err)
	}
	var authToken *string
	if newHash != "" {
		if err := s.revokeUser(ctx, u.UserID); err != nil {
			return internal(MsgUpdateUserError, err)
		}
		if p.AuthToken != "" {
			l, err := s.tokens.IssueAuth(ctx, u.UserID)
			if err != nil {
				return internal(MsgUpdateUserError, err)
			}
			s.setCookie(c, cookieAuth, l.Token, time.Now().Add(s.cfg.AuthTokenTTL))
			authToken = &l.Token
		}
		s.clearCookie(c, cookieSession)
		s.clearCookie(c, cookieProject)
	}
	u, err = s.loadUser(ctx, u.UserID, MsgUpdateUserError)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"message": MsgUpdateUser, "user": responseUser(u, authToken)})
}

// DELETE /api/user/delete?delete_data=. Every token of the user is revoked
// (one generation bump) before the rows go.
func (s *Server) userDelete(c *fiber.Ctx) error {
	ctx := c.UserContext()
	q := queryFields(c)
	deleteData, _ := q.boolean("delete_data", false)
	if err := q.err(); err != nil {
		return err
	}
	p := principal(c)
	if _, err := s.loadUser(ctx, p.UserID, MsgDeleteUserError); err != nil {
		return err
	}
	done, err := s.deleteAccount(ctx, s.db, p.UserID, deleteData)
	if err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return fail(fiber.StatusNotFound, MsgUserNotFound)
		}
		return internal(MsgDeleteUserError, err)
	}
	if err := done(ctx); err != nil {
		return internal(MsgDeleteUserError, err)
	}
	s.clearCookie(c, cookieAuth)
	s.clearCookie(c, cookieSession)
	s.clearCookie(c, cookieProject)
	return c.JSON(fiber.Map{"message": MsgDeleteUser})
}

// accountConn is where deleteAccount deletes: the pool, or a transaction
// of the caller's.
type accountConn interface {
	models.DBTX
	db.Beginner
}

// deleteAccount deletes the user's account on conn, as DELETE
// /api/user/delete describes: every token of the user is revoked (one
// generation bump) and their sessions ended before the rows go. On a
// transaction of the caller's the deletion commits with it. The caller
// runs done once the deletion has committed: it drops the cached copies
// of the project contexts the deletion cleared (a failure there is only
// logged: the user is gone either way) and revokes the tokens again.
func (s *Server) deleteAccount(ctx context.Context, conn accountConn, uid uuid.UUID, deleteData bool) (done func(context.Context) error, err error) {
	if err := s.tokens.RevokeUser(ctx, uid); err != nil {
		return nil, err
	}
	if _, err := s.q.SessionEndAllForUser(ctx, conn, uid); err != nil {
		return nil, err
	}
	cleared, err := db.DeleteUser(ctx, conn, uid, deleteData)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		for _, pid := range cleared {
			if err := s.tokens.BumpContextVersion(ctx, pid); err != nil {
				s.log.Warn("delete user: drop cached context", slog.String("project_id", pid.String()), slog.String("error", err.Error()))
			}
		}
		// Again now that the keys are gone, as apiKeyOwner requires: a key
		// lookup that read the generation between the first bump and the
		// delete must not leave a cache entry that outlives the user.
		return s.tokens.RevokeUser(ctx, uid)
	}, nil
}

// revokeUser ends every login, session and API key of the user (a
// password reset or change). The keys are revoked in Postgres before the
// generation is bumped, as apiKeyOwner requires.
func (s *Server) revokeUser(ctx context.Context, uid uuid.UUID) error {
	if _, err := s.q.ApiKeyRevokeAllForUser(ctx, s.db, uid); err != nil {
		return err
	}
	if err := s.tokens.RevokeUser(ctx, uid); err != nil {
		return err
	}
	_, err := s.q.SessionEndAllForUser(ctx, s.db, uid)
	return err
}
