package server

import (
	"embed"
	"io/fs"
	"mime"
	"path"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

// The dashboard: a single-page app (web/, built by `make web` into
// server/webui/dist) embedded in the binary and served by this server.
//
// Paths: GET / and everything under /app/. No API route starts with /app,
// so the dashboard never shadows one, and an unknown /api/... path keeps
// the API's JSON 404. Under /app/:
//   - a file of the build answers itself; the hashed files under
//     /app/assets/ are cached for a year;
//   - any other path answers index.html (the app routes it in the browser),
//     but only to a GET or HEAD whose Accept lists text/html, as a
//     browser's navigation does: a script or fetch asking for a missing file
//     gets the usual JSON 404, never a page. / and /app/ are the app's
//     entry and always answer index.html.
//
// The pages count against the rate limit per client IP, as /docs does.
// index.html is never cached, so a new build is picked up at once. Every
// answer carries a Content-Security-Policy that allows scripts, styles and
// connections from this origin only: no inline script or style element runs.
// Without a build (no Node.js where the binary was built), every page is a
// placeholder saying how to build it.

//go:embed all:webui
var webUIFiles embed.FS

const (
	webUIPrefix = "/app"

	// webUICSP: the app's own files only. Styles set from script through the
	// DOM (React's style props) are not style elements and need no
	// 'unsafe-inline'.
	webUICSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
		"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

// webUIBuild is the embedded build (rooted at dist) and its index.html, or
// the placeholder page when there is no build.
var webUIBuild = sync.OnceValues(func() (fs.FS, []byte) {
	dist, err := fs.Sub(webUIFiles, "webui/dist")
	if err == nil {
		if index, err := fs.ReadFile(dist, "index.html"); err == nil {
			return dist, index
		}
	}
	placeholder, _ := webUIFiles.ReadFile("webui/placeholder.html")
	return nil, placeholder
})

func (s *Server) webUIRoutes() {
	s.app.Get("/", s.guard(ClassNone), s.webUI)
	s.app.Get(webUIPrefix, s.guard(ClassNone), s.webUI)
	s.app.Get(webUIPrefix+"/*", s.guard(ClassNone), s.webUI)
}

// webUI answers a dashboard path: a file of the build, else index.html to
// a browser's navigation, else 404.
func (s *Server) webUI(c *fiber.Ctx) error {
	dist, index := webUIBuild()
	c.Set("Content-Security-Policy", webUICSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "same-origin")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	name, _ := strings.CutPrefix(c.Path(), webUIPrefix+"/")
	entry := c.Path() == "/" || c.Path() == webUIPrefix || name == ""
	if !entry && dist != nil && name != "index.html" && fs.ValidPath(name) {
		if body, err := fs.ReadFile(dist, name); err == nil {
			if strings.HasPrefix(name, "assets/") {
				c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
			} else {
				c.Set(fiber.HeaderCacheControl, "public, max-age=3600")
			}
			ct := mime.TypeByExtension(path.Ext(name))
			if ct == "" {
				ct = fiber.MIMEOctetStream
			}
			c.Set(fiber.HeaderContentType, ct)
			return c.Send(body)
		}
	}
	if !entry && !acceptsHTML(c) {
		// Answered here: the error handler would redirect to the path
		// with a slash, which /app/* matches too.
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"detail": "Not Found"})
	}
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Type("html", "utf-8")
	return c.Send(index)
}

// acceptsHTML reports whether the request's Accept header lists text/html
// (or text/*) explicitly; */* alone, as scripts and fetch send it, does not
// count.
func acceptsHTML(c *fiber.Ctx) bool {
	for _, part := range strings.Split(c.Get(fiber.HeaderAccept), ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "text/html", "application/xhtml+xml", "text/*":
			return true
		}
	}
	return false
}
