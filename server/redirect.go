package server

import (
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

// Trailing slashes: every route has one canonical path, as Code4me V2 listed
// them (most without a trailing slash; /api/user/verify/,
// /api/user/reset-password/ and /api/session/deactivate/ with one). The app
// routes strictly, so the other variant finds no route, and the error
// handler answers it with 307 to the canonical path, query string kept, so
// clients repeat the method and body. Routes added by any file of this
// package are covered without registering anything.

type routeMatcher struct {
	once     sync.Once
	patterns [][]string
}

// slashRedirect returns the canonical location for a request whose path,
// with its trailing slash toggled, matches a registered route.
func (s *Server) slashRedirect(c *fiber.Ctx) (string, bool) {
	s.redirects.once.Do(func() {
		for _, r := range s.app.GetRoutes(true) {
			s.redirects.patterns = append(s.redirects.patterns, strings.Split(r.Path, "/"))
		}
	})
	p := c.Path()
	if p == "/" || p == "" {
		return "", false
	}
	var alt string
	if strings.HasSuffix(p, "/") {
		alt = strings.TrimSuffix(p, "/")
	} else {
		alt = p + "/"
	}
	segs := strings.Split(alt, "/")
	for _, pat := range s.redirects.patterns {
		if matchRoute(pat, segs) {
			if q := c.Context().QueryArgs().QueryString(); len(q) > 0 {
				alt += "?" + string(q)
			}
			return alt, true
		}
	}
	return "", false
}

// matchRoute matches path segments against a Fiber route pattern: ":name"
// (with optional constraints) matches one non-empty segment, "*" or "+"
// the rest.
func matchRoute(pat, segs []string) bool {
	for i, p := range pat {
		if p == "*" || p == "+" {
			return true
		}
		if i >= len(segs) {
			return false
		}
		if strings.HasPrefix(p, ":") {
			if segs[i] == "" {
				return false
			}
			continue
		}
		if p != segs[i] {
			return false
		}
	}
	return len(pat) == len(segs)
}
