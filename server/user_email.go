package server

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"context"
	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/mail"
	"github.com/code4me/code4me/internal/password"
	"github.com/code4me/code4me/models"
)

// Email verification and password reset. Reset requests answer the same
// 200 whether or not the email exists (the lookup runs either way; mail
// goes out in the background), verification tokens work once, and a reset
// revokes every session, login and API key.
// Both kinds of token name the address they were mailed to and work only
// while it is still the account's: a link mailed to an address the user
// has since replaced verifies nothing and resets nothing.

var mailTmpl = template.Must(template.New("").Parse(`
{{define "verify"}}<html><body><p>Hi {{.Name}},</p><p>Thank you for signing up! Please verify your email address by clicking the button below.</p>
<p><a href="{{.Link}}" style="background:#2563eb;color:#fff;padding:10px 18px;border-radius:4px;text-decoration:none">Verify Email</a></p>
<p>This link will expire in {{.Minutes}} minutes.</p></body></html>{{end}}
{{define "reset"}}<html><body><p>Hi {{.Name}},</p><p>We received a request to reset your password. Click the button below to choose a new one.</p>
<p><a href="{{.Link}}" style="background:#dc2626;color:#fff;padding:10px 18px;border-radius:4px;text-decoration:none">Reset Password</a></p>
<p>This link will expire after {{.Minutes}} minutes. If you did not ask for this, ignore this email.</p></body></html>{{end}}
`))

var pageTmpl = template.Must(template.New("").Parse(`
{{define "verified"}}<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Email Verification Successful</title></head>
<body><h1>Email Verification Successful!</h1>
<p>Your email has been verified successfully. You can now close this page and continue using the application.</p>
<a href="/">Go to Homepage</a></body></html>{{end}}
{{define "form"}}<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Reset Your Password</title>
<style>.error{color:#dc2626}</style></head>
<body><h1>Reset Your Password</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="/api/user/reset-password/change" onsubmit="return check()">
<input type="hidden" name="token" value="{{.Token}}">
<label>New password <input type="password" id="new_password" name="new_password" minlength="8" required></label>
<label>Confirm password <input type="password" id="confirm_password" name="confirm_password" minlength="8" required></label>
<button type="submit">Reset Password</button>
</form>
<script>function check(){if(document.getElementById('new_password').value!==document.getElementById('confirm_password').value){alert('Passwords do not match');return false}return true}</script>
</body></html>{{end}}
{{define "reset-done"}}<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Password Reset Successful</title></head>
<body><h1>Password Reset Successful!</h1>
<p>Your password has been updated successfully. You can now log in with your new password.</p></body></html>{{end}}
`))

func withToken(base, token string) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "token=" + url.QueryEscape(token)
}

func render(t *template.Template, name string, data any) string {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, data); err != nil {
		return ""
	}
	return b.String()
}

// mailVerification issues a verification token and mails its link
// (the mail job's work).
func (s *Server) mailVerification(ctx context.Context, u models.User) error {
	tok, err := s.tokens.IssueVerification(ctx, u.UserID, u.Email)
	if err != nil {
		return fmt.Errorf("issue verification token: %w", err)
	}
	link := withToken(s.cfg.VerificationURL, tok)
	minutes := int(s.cfg.VerificationTokenTTL / time.Minute)
	data := map[string]any{"Name": u.Name, "Link": link, "Minutes": minutes}
	m := mail.Message{To: u.Email, Subject: "Verify Your Email Address", HTML: render(mailTmpl, "verify", data),
		Text: "Hi " + u.Name + ",\n\nThank you for signing up! Verify your email address by opening this link:\n" + link +
			"\n\nThis link will expire in " + itoa(minutes) + " minutes.\n"}
	if err := s.mail.Send(ctx, m); err != nil {
		return fmt.Errorf("send verification mail: %w", err)
	}
	return nil
}

// mailReset issues a password reset token and mails its link (the mail
// job's work).
func (s *Server) mailReset(ctx context.Context, u models.User) error {
	tok, err := s.tokens.IssueReset(ctx, u.UserID, u.Email)
	if err != nil {
		return fmt.Errorf("issue reset token: %w", err)
	}
	link := withToken(s.cfg.ResetURL, tok)
	minutes := int(s.cfg.ResetTokenTTL / time.Minute)
	data := map[string]any{"Name": u.Name, "Link": link, "Minutes": minutes}
	m := mail.Message{To: u.Email, Subject: "Reset Your Password", HTML: render(mailTmpl, "reset", data),
		Text: "Hi " + u.Name + ",\n\nReset your password by opening this link:\n" + link +
			"\n\nThis link will expire after " + itoa(minutes) + " minutes.\n"}
	if err := s.mail.Send(ctx, m); err != nil {
		return fmt.Errorf("send reset mail: %w", err)
	}
	return nil
}

// mailEmailChanged tells oldEmail, the account's previous address, that
// its email is now u.Email (the mail job's work).
func (s *Server) mailEmailChanged(ctx context.Context, u models.User, oldEmail string) error {
	if oldEmail == "" || oldEmail == u.Email {
		return nil
	}
	m, err := mail.EmailChangedEmail(oldEmail, u.Name, u.Email)
	if err != nil {
		return river.JobCancel(err)
	}
	if err := s.mail.Send(ctx, m); err != nil {
		return fmt.Errorf("send email-changed notice: %w", err)
	}
	return nil
}

// GET /api/user/verify/check
func (s *Server) userVerifyCheck(c *fiber.Ctx) error {
	u, err := s.loadUser(c.UserContext(), principal(c).UserID, MsgGetVerificationError)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"message": MsgGetVerification, "user_is_verified": u.Verified})
}

// POST /api/user/verify/resend
func (s *Server) userVerifyResend(c *fiber.Ctx) error {
	u, err := s.loadUser(c.UserContext(), principal(c).UserID, MsgResendVerificationError)
	if err != nil {
		return err
	}
	s.queueMail(mailKindVerify, u.UserID)
	return c.JSON(fiber.Map{"message": MsgResendVerification})
}

// GET /api/user/verify/?token=
func (s *Server) userVerify(c *fiber.Ctx) error {
	ctx := c.UserContext()
	q := queryFields(c)
	tok, _ := q.str("token", true, 0, 0)
	q.secret("token")
	if err := q.err(); err != nil {
		return err
	}
	uid, email, err := s.tokens.ConsumeVerification(ctx, tok)
	if errors.Is(err, auth.ErrNotFound) {
		return fail(fiber.StatusUnauthorized, MsgInvalidVerificationToken)
	}
	if err != nil {
		return internal(MsgVerifyUserError, err)
	}
	u, err := s.loadUser(ctx, uid, MsgVerifyUserError)
	if err != nil {
		return err
	}
	if u.Email != email {
		// Mailed to an address the account no longer has.
		return fail(fiber.StatusUnauthorized, MsgInvalidVerificationToken)
	}
	if err := s.q.UserSetVerified(ctx, s.db, uid); err != nil {
		return internal(MsgVerifyUserError, err)
	}
	c.Type("html", "utf-8")
	return c.SendString(render(pageTmpl, "verified", nil))
}

// POST /api/user/reset-password/request?email=
func (s *Server) userResetRequest(c *fiber.Ctx) error {
	ctx := c.UserContext()
	q := queryFields(c)
	email, _ := q.str("email", true, 0, 0)
	if err := q.err(); err != nil {
		return err
	}
	if norm, err := normalizeEmail(email); err == nil {
		u, err := s.q.UserGetByEmail(ctx, s.db, norm)
		switch {
		case err == nil:
			s.queueMail(mailKindReset, u.UserID)
		case !errors.Is(db.Translate(err), db.ErrNotFound):
			return internal(MsgPasswordResetError, err)
		}
	}
	return c.JSON(fiber.Map{"message": MsgPasswordResetRequest})
}

func (s *Server) resetPage(c *fiber.Ctx, status int, token, msg string) error {
	c.Type("html", "utf-8")
	return c.Status(status).SendString(render(pageTmpl, "form", map[string]any{"Token": token, "Error": msg}))
}

// GET /api/user/reset-password/?token=
func (s *Server) userResetForm(c *fiber.Ctx) error {
	q := queryFields(c)
	tok, _ := q.str("token", true, 0, 0)
	q.secret("token")
	if err := q.err(); err != nil {
		return err
	}
	_, _, err := s.tokens.PeekReset(c.UserContext(), tok)
	if errors.Is(err, auth.ErrNotFound) {
		return s.resetPage(c, fiber.StatusUnauthorized, "", MsgInvalidResetToken)
	}
	if err != nil {
		s.log.Error("reset form failed", slog.String("error", err.Error()))
		return s.resetPage(c, fiber.StatusInternalServerError, "", MsgErrorShowingResetForm)
	}
	return s.resetPage(c, fiber.StatusOK, tok, "")
}

// POST /api/user/reset-password/change (form: token, new_password,
// confirm_password ignored). The token is used up only by a successful
// change; every session, login and API key of the user is revoked.
func (s *Server) userResetChange(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f := formFields(c)
	tok, _ := f.str("token", true, 0, 0)
	pw, _ := f.str("new_password", true, 8, 0)
	f.secret("token", "new_password", "confirm_password")
	if err := f.err(); err != nil {
		return err
	}
	uid, email, err := s.tokens.PeekReset(ctx, tok)
	if errors.Is(err, auth.ErrNotFound) {
		return s.resetPage(c, fiber.StatusUnauthorized, "", MsgInvalidResetToken)
	}
	if err != nil {
		return s.resetFailed(c, err)
	}
	if u, err := s.q.UserGetByID(ctx, s.db, uid); err != nil {
		if errors.Is(db.Translate(err), db.ErrNotFound) {
			return s.resetPage(c, fiber.StatusNotFound, "", MsgUserNotFound)
		}
		return s.resetFailed(c, err)
	} else if u.Email != email {
		// Mailed to an address the account no longer has.
		return s.resetPage(c, fiber.StatusUnauthorized, "", MsgInvalidResetToken)
	}
	if !passwordOK(pw) {
		return s.resetPage(c, fiber.StatusUnprocessableEntity, tok, PasswordRuleMsg)
	}
	hash, err := password.Hash(ctx, pw)
	if err != nil {
		return s.resetFailed(c, err)
	}
	if _, _, err := s.tokens.ConsumeReset(ctx, tok); errors.Is(err, auth.ErrNotFound) {
		return s.resetPage(c, fiber.StatusUnauthorized, "", MsgInvalidResetToken)
	} else if err != nil {
		return s.resetFailed(c, err)
	}
	err = db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		if err := s.q.UserUpdatePassword(ctx, tx, models.UserUpdatePasswordParams{PasswordHash: hash, UserID: uid}); err != nil {
			return err
		}
		_, err := s.q.ApiKeyRevokeAllForUser(ctx, tx, uid)
		return err
	})
	if err != nil {
		return s.resetFailed(c, err)
	}
	if err := s.revokeUser(ctx, uid); err != nil {
		return s.resetFailed(c, err)
	}
	c.Type("html", "utf-8")
	return c.SendString(render(pageTmpl, "reset-done", nil))
}

func (s *Server) resetFailed(c *fiber.Ctx, err error) error {
	s.log.Error("password reset failed", slog.String("error", err.Error()))
	return s.resetPage(c, fiber.StatusInternalServerError, "", MsgPasswordResetError)
}
