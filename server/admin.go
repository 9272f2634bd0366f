package server

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/db"
)

// MsgAdminRequired is the 403 of an admin route for a caller who is not an
// admin.
const MsgAdminRequired = "Admin privileges required"

// failDetail answers status with {"detail": msg}, the error shape of the
// admin routes (the original dashboard reads detail there).
func failDetail(status int, msg string) error {
	return &apiError{status: status, msg: msg, detail: true}
}

// internalDetail is failDetail's 500: msg is shown, cause only logged.
func internalDetail(msg string, cause error) error {
	return &apiError{status: fiber.StatusInternalServerError, msg: msg, cause: cause, detail: true}
}

// guardAdmin returns h behind the handlers that admit an admin: authentication and
// rate limit as for the account routes (guardAccount: a login, or an API
// key with the account scope, else 401 or 403 as there), then the caller's
// users.is_admin, read from Postgres on every request so that a revoked
// admin loses access at once; else 403 {"detail": "Admin privileges
// required"}. A caller whose user row is gone is answered 401.
func (s *Server) guardAdmin(h fiber.Handler) []fiber.Handler {
	return []fiber.Handler{s.guardAccount(), s.requireAdmin, h}
}

// requireAdmin is guardAdmin's check of the Principal guardAccount stored.
func (s *Server) requireAdmin(c *fiber.Ctx) error {
	p := principal(c)
	if p == nil {
		return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredAuth)
	}
	u, err := s.q.UserGetByID(c.UserContext(), s.db, p.UserID)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredAuth)
	}
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	if !u.IsAdmin {
		return failDetail(fiber.StatusForbidden, MsgAdminRequired)
	}
	return c.Next()
}
