package server

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/auth"
)

func (s *Server) sessionRoutes(api fiber.Router) {
	g := api.Group("/session")
	g.Get("/acquire", s.guard(ClassA), s.sessionAcquire)
	g.Put("/deactivate/", s.guard(ClassA), s.sessionDeactivate)
}

// GET /api/session/acquire: the login's live session, or a new one. One
// session per login (not one per user shared by every device); every
// authenticated use extends it.
func (s *Server) sessionAcquire(c *fiber.Ctx) error {
	ctx := c.UserContext()
	p := principal(c)
	if _, err := s.loadUser(ctx, p.UserID, MsgAcquireSessionError); err != nil {
		return err
	}
	sess, err := s.currentOrNewSession(ctx, c, p)
	if errors.Is(err, auth.ErrNotFound) {
		return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredAuth)
	}
	if err != nil {
		return internal(MsgAcquireSessionError, err)
	}
	s.setCookie(c, cookieSession, sess.Token, time.Now().Add(s.cfg.SessionTokenTTL))
	return c.JSON(fiber.Map{"message": MsgAcquireSession, "session_token": sess.Token})
}

// PUT /api/session/deactivate/: ends the login's session and the login
// itself (an API key stays valid; only its session ends), and clears the
// cookies.
func (s *Server) sessionDeactivate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	p := principal(c)
	if _, err := s.loadUser(ctx, p.UserID, MsgDeactivateSessionError); err != nil {
		return err
	}
	sess, err := s.tokens.CurrentSession(ctx, p.parent())
	if errors.Is(err, auth.ErrNotFound) {
		return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredSession)
	}
	if err != nil {
		return internal(MsgDeactivateSessionError, err)
	}
	if err := s.tokens.EndSession(ctx, sess.Token); err != nil {
		return internal(MsgDeactivateSessionError, err)
	}
	// A session cookie of the same user naming another session ends too.
	if tok := c.Cookies(cookieSession); tok != "" && tok != sess.Token {
		if other, err := s.tokens.Session(ctx, tok); err == nil && other.UserID == p.UserID {
			if err := s.tokens.EndSession(ctx, tok); err != nil {
				return internal(MsgDeactivateSessionError, err)
			}
		}
	}
	if p.AuthToken != "" {
		if err := s.tokens.Logout(ctx, p.AuthToken); err != nil {
			return internal(MsgDeactivateSessionError, err)
		}
	}
	s.clearCookie(c, cookieAuth)
	s.clearCookie(c, cookieSession)
	s.clearCookie(c, cookieProject)
	return c.JSON(fiber.Map{"message": MsgDeactivateSession})
}
