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

// defaultPreference is the preference of a new user (spec §3.1).
var defaultPreference = map[string]any{"store_context": false, "store_contextual_telemetry": true, "store_behavioral_telemetry": true}

func (s *Server) userRoutes(api fiber.Router) {
	u := api.Group("/user")
	u.Post("/create", s.guard(ClassNone), s.userCreate)
	u.Post("/authenticate", s.guard(ClassNone), s.userAuthenticate)
	u.Get("/get", s.guard(ClassA), s.userGet)
	u.Put("/update", s.guard(ClassA), s.userUpdate)
	u.Delete("/delete", s.guard(ClassA), s.userDelete)
	u.Get("/verify/check", s.guard(ClassA), s.userVerifyCheck)
	u.Post("/verify/resend", s.guard(ClassA), s.userVerifyResend)
	u.Get("/verify/", s.guard(ClassNone), s.userVerify)
	u.Post("/reset-password/request", s.guard(ClassNone), s.userResetRequest)
	u.Get("/reset-password/", s.guard(ClassNone), s.userResetForm)
	u.Post("/reset-password/change", s.guard(ClassNone), s.userResetChange)
}

// responseUser is ResponseUser of spec §3.0; the password is always
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
	if isOAuth {
		// S4: an OAuth signup must carry a valid token for this email.
		claims, err := s.oauth.Verify(ctx, token)
		if err != nil || claims.Email != email {
			s.logOAuthFailure(err)
			return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredJWT)
		}
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
			IsOauthSignup: isOAuth, ConfigID: configID, Preference: pref})
		if err != nil {
			return err
		}
		return s.queueMailTx(ctx, tx, mailKindVerify, u.UserID)
	})
	if err != nil {
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
		if err != nil || !claims.EmailVerified {
			s.logOAuthFailure(err)
			return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredJWT)
		}
		u, err = s.q.UserGetByEmail(ctx, s.db, claims.Email)
		if err != nil {
			if errors.Is(db.Translate(err), db.ErrNotFound) {
				return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredJWT)
			}
			return internal(MsgAuthenticateError, err)
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
	cfgText, err := s.loadConfig(ctx, u.ConfigID, MsgAuthenticateError)
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

// GET /api/user/get
func (s *Server) userGet(c *fiber.Ctx) error {
	ctx := c.UserContext()
	u, err := s.loadUser(ctx, principal(c).UserID, MsgGetUserError)
	if err != nil {
		return err
	}
	cfgText, err := s.loadConfig(ctx, u.ConfigID, MsgGetUserError)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"message": MsgGetUser, "user": responseUser(u, nil), "config": cfgText})
}

// PUT /api/user/update. S2 fixed: verified and config_id are applied only
// for admins, and a new password needs the previous one.
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
	if hasEmail {
		taken, err := s.q.UserEmailTaken(ctx, s.db, models.UserEmailTakenParams{Email: email, UserID: u.UserID})
		if err != nil {
			return internal(MsgUpdateUserError, err)
		}
		if taken {
			return fail(fiber.StatusConflict, MsgUserAlreadyExists)
		}
	}
	var newHash string
	if hasPw {
		ok := false
		if hasPrev {
			if ok, err = password.Verify(ctx, prev, u.PasswordHash); err != nil {
				return internal(MsgUpdateUserError, err)
			}
		}
		if !ok {
			return fail(fiber.StatusUnauthorized, MsgInvalidPreviousPassword)
		}
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
		if hasEmail {
			ne = &email
		}
		if hasName || hasEmail {
			if _, err := s.q.UserUpdateProfile(ctx, tx, models.UserUpdateProfileParams{Name: np, Email: ne, UserID: u.UserID}); err != nil {
				return err
			}
		}
		if newHash != "" {
			if err := s.q.UserUpdatePassword(ctx, tx, models.UserUpdatePasswordParams{PasswordHash: newHash, UserID: u.UserID}); err != nil {
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
	u, err = s.loadUser(ctx, u.UserID, MsgUpdateUserError)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"message": MsgUpdateUser, "user": responseUser(u, nil)})
}

// DELETE /api/user/delete?delete_data=. R1 fixed: every token of the user
// is revoked (one generation bump) before the rows go.
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
	if err := s.tokens.RevokeUser(ctx, p.UserID); err != nil {
		return internal(MsgDeleteUserError, err)
	}
	if _, err := s.q.SessionEndAllForUser(ctx, s.db, p.UserID); err != nil {
		return internal(MsgDeleteUserError, err)
	}
	if err := db.DeleteUser(ctx, s.db, p.UserID, deleteData); err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return fail(fiber.StatusNotFound, MsgUserNotFound)
		}
		return internal(MsgDeleteUserError, err)
	}
	s.clearCookie(c, cookieAuth)
	s.clearCookie(c, cookieSession)
	s.clearCookie(c, cookieProject)
	return c.JSON(fiber.Map{"message": MsgDeleteUser})
}

// revokeUser ends every session and token of the user (password reset).
func (s *Server) revokeUser(ctx context.Context, uid uuid.UUID) error {
	if err := s.tokens.RevokeUser(ctx, uid); err != nil {
		return err
	}
	_, err := s.q.SessionEndAllForUser(ctx, s.db, uid)
	return err
}
