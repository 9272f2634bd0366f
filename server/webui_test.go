package server

import (
	"io/fs"
	"strings"
	"testing"
)

// webUIGet requests path with the given Accept header through the app.
func (e *env) webUIGet(method, path, accept string) resp {
	e.t.Helper()
	c := e.client()
	if accept != "" {
		c.header["Accept"] = accept
	}
	return c.do(method, path, nil)
}

// TestWebUIServesTheDashboard: / and the app's paths answer index.html
// with a strict Content-Security-Policy and no caching; a path under /app/
// that is no file answers index.html only to a request accepting
// text/html; API paths are never shadowed.
func TestWebUIServesTheDashboard(t *testing.T) {
	e := newEnv(t, nil)
	dist, index := webUIBuild()
	nav := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" // a browser's navigation
	for _, tc := range []struct{ path, accept string }{
		{"/", ""}, {"/", nav}, {"/app", nav}, {"/app/", "*/*"}, {"/app/usage", nav}, {"/app/admin/studies", nav}, {"/app/signin?next=%2Fusage", nav},
	} {
		r := e.webUIGet("GET", tc.path, tc.accept)
		if r.status != 200 || string(r.raw) != string(index) {
			t.Errorf("GET %s (Accept %q) = %d %.80q, want index.html", tc.path, tc.accept, r.status, r.raw)
			continue
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q", tc.path, ct)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", tc.path, cc)
		}
		csp := r.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: Content-Security-Policy %q lacks %q", tc.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("GET %s: Content-Security-Policy %q allows inline code", tc.path, csp)
		}
	}

	// Not a navigation: a script or fetch asking for something missing.
	for _, tc := range []struct{ method, path, accept string }{
		{"GET", "/app/usage", "*/*"},
		{"GET", "/app/usage", "application/json"},
		{"GET", "/app/assets/missing-0000.js", "*/*"},
		{"POST", "/app/usage", nav},
		// API paths keep the API's JSON answers, whatever they accept.
		{"GET", "/api/no-such-route", nav},
		{"GET", "/v1/no-such-route", nav},
		{"GET", "/apps", nav},
	} {
		r := e.webUIGet(tc.method, tc.path, tc.accept)
		if r.status == 200 || strings.Contains(string(r.raw), "<html") || strings.Contains(string(r.raw), "<!DOCTYPE") {
			t.Errorf("%s %s (Accept %q) = %d %.80q, want no page", tc.method, tc.path, tc.accept, r.status, r.raw)
		}
	}
	if r := e.webUIGet("GET", "/api/no-such-route", nav); r.status != 404 || r.body["detail"] != "Not Found" {
		t.Errorf("GET /api/no-such-route = %d %s, want the API's JSON 404", r.status, r.raw)
	}
	if r := e.webUIGet("GET", "/app/usage", "application/json"); r.status != 404 || r.body["detail"] != "Not Found" {
		t.Errorf("GET /app/usage as JSON = %d %s, want the JSON 404", r.status, r.raw)
	}
	// The routes above the dashboard still answer.
	if r := e.webUIGet("GET", "/api/ping", nav); r.status != 200 || r.body["Status"] != "Ok" {
		t.Errorf("GET /api/ping = %d %s", r.status, r.raw)
	}

	if dist == nil {
		t.Skip("the dashboard is not built (server/webui/dist): run make web; only the placeholder was checked")
	}
	// Every built asset is served with its type and cached for a year.
	assets, err := fs.Glob(dist, "assets/*")
	if err != nil || len(assets) == 0 {
		t.Fatalf("no assets in the build: %v", err)
	}
	for _, a := range assets {
		want, _ := fs.ReadFile(dist, a)
		r := e.webUIGet("GET", "/app/"+a, "*/*")
		if r.status != 200 || string(r.raw) != string(want) {
			t.Errorf("GET /app/%s = %d (%d bytes), want the file (%d bytes)", a, r.status, len(r.raw), len(want))
			continue
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
			t.Errorf("GET /app/%s: Cache-Control %q", a, cc)
		}
		ct := r.header.Get("Content-Type")
		switch {
		case strings.HasSuffix(a, ".js") && !strings.Contains(ct, "javascript"),
			strings.HasSuffix(a, ".css") && !strings.HasPrefix(ct, "text/css"),
			strings.HasSuffix(a, ".svg") && !strings.HasPrefix(ct, "image/svg+xml"):
			t.Errorf("GET /app/%s: Content-Type %q", a, ct)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET /app/%s: no nosniff", a)
		}
	}
	// index.html loads its scripts from files, never inline.
	if strings.Contains(string(index), "<script>") || !strings.Contains(string(index), `src="/app/assets/`) {
		t.Errorf("index.html has inline script or no asset script: %s", index)
	}
}
