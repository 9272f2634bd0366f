package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/db"
)

// The message catalogue of Code4me V2, verbatim (typos included: plugins and
// the original test-suite compare these strings).
const (
	MsgCreateUser                  = "User created successfully. Please check your email for verification."
	MsgUserAlreadyExists           = "User already exists with this email!"
	MsgInvalidOrExpiredJWT         = "Invalid or expired token!"
	MsgCreateUserError             = "Server failed to create a new user!"
	MsgAuthenticateNormal          = "User authenticated successfully via email and password."
	MsgAuthenticateOAuth           = "User authenticated successfully via OAuth."
	MsgInvalidEmailOrPassword      = "Invalid email or password!"
	MsgAuthenticateError           = "Server failed to authenticate the user!"
	MsgConfigNotFound              = "Config not found!"
	MsgDeleteUser                  = "User is deleted successfully."
	MsgDeleteUserError             = "Server failed to delete the user!"
	MsgInvalidOrExpiredSession     = "Session not found! You are not authenticated or your session has expired. Login before you can perform this action."
	MsgInvalidOrExpiredAuth        = "Authentication token not found! You are not authenticated or your token has expired. Login before you can perform this action."
	MsgUpdateUser                  = "User is updated successfully."
	MsgInvalidPreviousPassword     = "Previous password is not correct!"
	MsgUpdateUserError             = "Server failed to update the user!"
	MsgCompletion                  = "Completions generated successfully. Ready for display in your IDE."
	MsgUserNotFound                = "User not found"
	MsgGenerateCompletionsError    = "Server failed to generate completions."
	MsgCompletionFeedback          = "Feedback recorded successfully."
	MsgFeedbackRecordingError      = "Server failed to record feedback."
	MsgGenerationNotFound          = "Generation record not found"
	MsgQueryNotFound               = "Query not found"
	MsgCompletionsNotFound         = "No completions found for this query"
	MsgRetrieveCompletionsError    = "Server failed to retrieve completions."
	MsgGenerateChatError           = "Server failed to generate chat completions."
	MsgRetrieveChatError           = "Server failed to retrieve chat completions."
	MsgMultiFileContextUpdate      = "Multi-file context updated successfully."
	MsgMultiFileContextUpdateError = "Server failed to update multi-file context."
	MsgCreateProject               = "Project created successfully."
	MsgCreateProjectError          = "Server failed to create a project!"
	MsgActivateProject             = "Project activated successfully."
	MsgActivateProjectError        = "Server failed to activate the project."
	MsgInvalidOrExpiredProject     = "Invalid or expired project token. Acquire a session token first."
	MsgProjectNotFound             = "Project not found. You may need to create or activate it again."
	MsgDeactivateSession           = "Session deactivated successfully."
	MsgDeactivateSessionError      = "Server failed to deactivate session."
	MsgAcquireSession              = "Session acquired successfully"
	MsgAcquireSessionError         = "Server failed to acquire a session."
	MsgSessionNotFound             = "Session not found. You may need to log in again."
	MsgNoAccessToFeedback          = "You are not allowed to provide feedback for this query."
	MsgNoAccessToQuery             = "You do not have permission to access this query."
	MsgTooManyRequests             = "Too many requests. Please try again later."
	MsgNoWorker                    = "No worker serves the requested models right now; try again shortly."
	MsgDeleteChatError             = "Server failed to delete chat"
	MsgDeleteChat                  = "Chat deleted successfully"
	MsgResendVerification          = "Verification email sent successfully. Please check your inbox."
	MsgResendVerificationError     = "Server failed to resend verification email."
	MsgGetVerification             = "Verification get returned successfully."
	MsgGetVerificationError        = "Server failed to retrieve verification status."
	MsgVerifyUser                  = "User verified successfully."
	MsgVerifyUserError             = "Server failed to verify the user."
	MsgInvalidVerificationToken    = "Invalid or expired verification token."
	MsgPasswordResetRequest        = "Password reset email sent successfully. Check you email for instructions."
	MsgPasswordResetForm           = "Password reset form displayed successfully."
	MsgInvalidResetToken           = "Invalid or expired password reset token."
	MsgErrorShowingResetForm       = "Error showing password reset form."
	MsgPasswordResetError          = "Server failed to reset the password."
	MsgGetUserError                = "Server failed to retrieve user information."
	MsgGetUser                     = "User information retrieved successfully."
	MsgCompletionErrorItem         = "Completion for model failed"
	MsgChatCompletionErrorItem     = "Chat completion for model failed"

	// Messages of this implementation's additions (API keys).
	MsgAPIKeyCreated  = "API key created. Store it now: it is not shown again."
	MsgAPIKeyList     = "API keys retrieved successfully."
	MsgAPIKeyRevoked  = "API key revoked successfully."
	MsgAPIKeyNotFound = "API key not found"
	MsgAPIKeyError    = "Server failed to manage API keys."
	MsgOAuthDisabled  = "OAuth sign-in is not configured on this server."
)

// apiError is an error a handler returns to answer {"message": msg} with
// status. cause, when set, is logged (never shown) for 5xx answers.
type apiError struct {
	status int
	msg    string
	cause  error
	// detail: answer {"detail": msg} instead, the shape of the config
	// administration routes' errors (failDetail).
	detail bool
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *apiError) Unwrap() error { return e.cause }

// fail answers status with the catalogue message msg.
func fail(status int, msg string) error { return &apiError{status: status, msg: msg} }

// internal answers 500 with the endpoint's catalogue message and logs cause.
func internal(msg string, cause error) error {
	return &apiError{status: fiber.StatusInternalServerError, msg: msg, cause: cause}
}

// Dependencies an unavailableError names.
const (
	depDatabase = "database"
	depRedis    = "redis"
)

// retryAfterUnavailable is the Retry-After (seconds) of a 503 for an
// unavailable dependency.
const retryAfterUnavailable = 5

// unavailableError answers 503 with Retry-After: a dependency (Postgres or
// Redis) did not answer, so the request could not be served, and trying
// again shortly may succeed. cause is logged, never shown.
type unavailableError struct {
	dep   string
	cause error
}

func (e *unavailableError) Error() string { return e.dep + " unavailable: " + e.cause.Error() }
func (e *unavailableError) Unwrap() error { return e.cause }

// unavailable wraps cause as dependency dep being unavailable (503).
func unavailable(dep string, cause error) error { return &unavailableError{dep: dep, cause: cause} }

// unavailableMessage is the body's message of a 503 for dep.
func unavailableMessage(dep string) string {
	return "Service temporarily unavailable: the " + dep + " is not responding. Try again shortly."
}

// errShuttingDown answers the requests that arrive while the server drains
// (drain.go): 503 with Retry-After, like an unavailable dependency.
var errShuttingDown = errors.New("server shutting down")

// msgShuttingDown is the body's message of errShuttingDown.
const msgShuttingDown = "Service temporarily unavailable: the server is shutting down. Try again shortly."

// unavailableDep returns the dependency that err says was unavailable: an
// unavailableError's (Redis errors are made so when they happen, see
// redisOutageHook), or the database for a Postgres failure of that kind
// (db.Unavailable), found even under a handler's internal(msg, cause).
func unavailableDep(err error) (string, bool) {
	var ue *unavailableError
	switch {
	case errors.As(err, &ue):
		return ue.dep, true
	case db.Unavailable(err):
		return depDatabase, true
	}
	return "", false
}

// errorResponse is the one mapping from errors to HTTP status and body:
// handler errors are {"message"}, framework errors {"detail"}, as Code4me V2's
// FastAPI answered them.
// What a 422 echoes is redacted first (redactInputs). An unavailable
// dependency and a drain answer 503 (the caller adds Retry-After).
func (s *Server) errorResponse(ctx context.Context, err error) (int, any) {
	s.redactInputs(ctx, err)
	if errors.Is(err, errShuttingDown) {
		return fiber.StatusServiceUnavailable, fiber.Map{"message": msgShuttingDown}
	}
	if dep, ok := unavailableDep(err); ok {
		return fiber.StatusServiceUnavailable, fiber.Map{"message": unavailableMessage(dep)}
	}
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.detail {
			return ae.status, fiber.Map{"detail": ae.msg}
		}
		return ae.status, fiber.Map{"message": ae.msg}
	}
	var ve *validationError
	if errors.As(err, &ve) {
		return fiber.StatusUnprocessableEntity, fiber.Map{"detail": ve.errs}
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusNotFound:
			return fe.Code, fiber.Map{"detail": "Not Found"}
		case fiber.StatusMethodNotAllowed:
			return fe.Code, fiber.Map{"detail": "Method Not Allowed"}
		case fiber.StatusRequestEntityTooLarge:
			return fe.Code, fiber.Map{"detail": "Request body too large"}
		case fiber.StatusTooManyRequests:
			return fe.Code, fiber.Map{"message": MsgTooManyRequests}
		}
		return fe.Code, fiber.Map{"detail": fe.Message}
	}
	return fiber.StatusInternalServerError, fiber.Map{"detail": "Internal Server Error"}
}

// errorHandler writes errors that escape handlers. Unknown paths whose
// trailing-slash twin exists are redirected first (307, as FastAPI does). Only the
// route template and the error text are logged, never the request.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) && fe.Code == fiber.StatusNotFound {
		if loc, ok := s.slashRedirect(c); ok {
			c.Set(fiber.HeaderLocation, loc)
			return c.SendStatus(fiber.StatusTemporaryRedirect)
		}
	}
	status, body := s.errorResponse(c.UserContext(), err)
	if status == fiber.StatusServiceUnavailable {
		c.Set(fiber.HeaderRetryAfter, itoa(retryAfterUnavailable))
	}
	switch {
	case errors.Is(err, errShuttingDown):
	case status == fiber.StatusServiceUnavailable:
		// While Postgres or Redis is down every request answers 503: one
		// line a second says so, with the number of 503s it stands for.
		if n, ok := s.unavailable.tick(time.Now()); ok {
			s.log.Warn("request failed: service unavailable", slog.String("method", c.Method()), slog.String("route", c.Route().Path),
				slog.String("error", err.Error()), slog.Int("requests", n))
		}
	case status >= 500:
		s.log.Error("request failed", slog.String("method", c.Method()), slog.String("route", c.Route().Path),
			slog.Int("status", status), slog.String("error", err.Error()))
	}
	return c.Status(status).JSON(body)
}

// logEvery lets one log line through a second and counts the events in
// between, so that an outage's 503s do not flood the log.
type logEvery struct {
	mu      sync.Mutex
	last    time.Time
	pending int
}

// tick counts one event; ok says to log now, n is how many events the line
// stands for (this one and those not logged since the last line).
func (l *logEvery) tick(now time.Time) (n int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending++
	if now.Sub(l.last) < time.Second {
		return 0, false
	}
	n, l.pending, l.last = l.pending, 0, now
	return n, true
}

// redactInputs redacts the text a 422 echoes back (each error's input, as
// FastAPI gives it) with the same rules as the model's input: a body
// rejected for a missing field must not return the credentials in its
// prefix verbatim. Passwords and tokens are masked earlier (fields.secret).
func (s *Server) redactInputs(ctx context.Context, err error) {
	var ve *validationError
	if !errors.As(err, &ve) || s.plugin.redactor == nil {
		return
	}
	for i := range ve.errs {
		ve.errs[i].Input = s.redactValue(ctx, ve.errs[i].Input)
	}
}

// redactValue returns v with every string in it redacted; maps and slices
// are copied, not changed in place.
func (s *Server) redactValue(ctx context.Context, v any) any {
	switch v := v.(type) {
	case string:
		out, _ := s.plugin.redactor.Text(ctx, v)
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = s.redactValue(ctx, e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = s.redactValue(ctx, e)
		}
		return out
	}
	return v
}
