package server

import (
	"log/slog"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/ratelimit"
)

var ratelimitClientIP = ratelimit.ClientIP

// rateLimit counts the request against subject's budget on the route
// template and answers 429 {"message": ...} with Retry-After when it is
// spent. A Redis failure lets the request through and is logged: on these
// routes the limit protects capacity, it is not an authorisation check
// (rateLimitClosed is for the routes where it is).
func (s *Server) rateLimit(c *fiber.Ctx, subject string) error {
	route := c.Route().Path
	res, err := s.limiter.Allow(c.UserContext(), subject, route)
	if err != nil {
		s.log.Warn("rate limit unavailable", slog.String("route", route), slog.String("error", err.Error()))
		return nil
	}
	return s.applyLimit(c, res)
}

// rateLimitClosed is rateLimit for the routes of guardPublic: when Redis
// cannot count, the request is refused with 503 (the dependency named,
// Retry-After set) instead of let through, so that a Redis outage never
// turns login into an unlimited password-guessing oracle.
func (s *Server) rateLimitClosed(c *fiber.Ctx, subject string) error {
	res, err := s.limiter.Allow(c.UserContext(), subject, c.Route().Path)
	if err != nil {
		return unavailable(depRedis, err)
	}
	return s.applyLimit(c, res)
}

// applyLimit sets the rate-limit headers of res and answers 429 with
// Retry-After when it refuses the request.
func (s *Server) applyLimit(c *fiber.Ctx, res ratelimit.Result) error {
	c.Set("X-RateLimit-Limit", itoa(res.Limit))
	c.Set("X-RateLimit-Remaining", itoa(res.Remaining))
	if !res.Allowed {
		c.Set(fiber.HeaderRetryAfter, itoa(res.RetryAfterSeconds()))
		return fail(fiber.StatusTooManyRequests, MsgTooManyRequests)
	}
	return nil
}
