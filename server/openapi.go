package server

import (
	"html/template"
	"sort"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

// apiOp documents one operation for /openapi.json and /docs. Files that add
// routes append their operations in an init function.
type apiOp struct {
	Method, Path, Summary string
	Auth                  AuthClass
	// OK is the success status; Body names the request fields ("name: type").
	OK   int
	Body []string
	// Form is true for form-urlencoded bodies; Query lists query parameters.
	Form  bool
	Query []string
	// HTML is true when the success response is an HTML page.
	HTML bool
}

var openAPIOps = []apiOp{
	{Method: "HEAD", Path: "/api/ping", Summary: "Health check (GET works too)", OK: 200},
	{Method: "POST", Path: "/api/user/create", Summary: "Create a user; sends a verification email", OK: 201,
		Body: []string{"email: string", "name: string", "password: string", "config_id: integer", "token: string", "provider: string"}},
	{Method: "POST", Path: "/api/user/authenticate", Summary: "Log in with email and password or a Google ID token; sets auth_token", OK: 200,
		Body: []string{"email: string", "password: string", "provider: string", "token: string"}},
	{Method: "GET", Path: "/api/user/get", Summary: "The caller's user and config", Auth: ClassA, OK: 200},
	{Method: "PUT", Path: "/api/user/update", Summary: "Update name, email or password (both need previous_password) or preference", Auth: ClassA, OK: 201,
		Body: []string{"name: string", "email: string", "previous_password: string", "password: string", "preference: object"}},
	{Method: "DELETE", Path: "/api/user/delete", Summary: "Delete the caller; every token stops working at once", Auth: ClassA, OK: 200, Query: []string{"delete_data"}},
	{Method: "GET", Path: "/api/user/verify/check", Summary: "Whether the caller's email is verified", Auth: ClassA, OK: 200},
	{Method: "POST", Path: "/api/user/verify/resend", Summary: "Send a new verification email", Auth: ClassA, OK: 200},
	{Method: "GET", Path: "/api/user/verify/", Summary: "Verify an email (single-use link)", OK: 200, Query: []string{"token"}, HTML: true},
	{Method: "POST", Path: "/api/user/reset-password/request", Summary: "Email a password reset link (same answer for unknown emails)", OK: 200, Query: []string{"email"}},
	{Method: "GET", Path: "/api/user/reset-password/", Summary: "Password reset form", OK: 200, Query: []string{"token"}, HTML: true},
	{Method: "POST", Path: "/api/user/reset-password/change", Summary: "Set a new password; revokes every login, session and API key", OK: 200, Form: true,
		Body: []string{"token: string", "new_password: string", "confirm_password: string"}, HTML: true},
	{Method: "POST", Path: "/api/user/api-keys", Summary: "Create an API key (returned once)", Auth: ClassA, OK: 201, Body: []string{"name: string", "expires_in_days: integer", "scopes: array"}},
	{Method: "GET", Path: "/api/user/api-keys", Summary: "List the caller's API keys (no secrets)", Auth: ClassA, OK: 200},
	{Method: "DELETE", Path: "/api/user/api-keys/{id}", Summary: "Revoke an API key", Auth: ClassA, OK: 200},
	{Method: "GET", Path: "/api/session/acquire", Summary: "The login's session (created on first call); sets session_token", Auth: ClassA, OK: 200},
	{Method: "PUT", Path: "/api/session/deactivate/", Summary: "Log out: end the session and the login, clear cookies", Auth: ClassA, OK: 200},
	{Method: "POST", Path: "/api/project/create", Summary: "Create a project and activate it; sets project_token", Auth: ClassA, OK: 201, Body: []string{"project_name: string"}},
	{Method: "PUT", Path: "/api/project/activate", Summary: "Activate a project the caller is a member of; sets project_token", Auth: ClassA, OK: 200, Body: []string{"project_id: string"}},
}

func (s *Server) openAPIRoutes() {
	s.app.Get("/openapi.json", s.guard(ClassNone), s.openAPI)
	s.app.Get("/docs", s.guard(ClassNone), s.docs)
}

var (
	openAPIOnce sync.Once
	openAPIDoc  fiber.Map
)

func security(a AuthClass) []fiber.Map {
	switch a {
	case ClassA:
		return []fiber.Map{{"authToken": []string{}}, {"apiKey": []string{}}}
	case ClassS:
		return []fiber.Map{{"sessionToken": []string{}}, {"apiKey": []string{}}}
	case ClassSP:
		return []fiber.Map{{"sessionToken": []string{}, "projectToken": []string{}}, {"apiKey": []string{}, "projectToken": []string{}}}
	}
	return []fiber.Map{}
}

func buildOpenAPI() fiber.Map {
	paths := fiber.Map{}
	msg := fiber.Map{"type": "object", "properties": fiber.Map{"message": fiber.Map{"type": "string"}}}
	for _, op := range openAPIOps {
		item, _ := paths[op.Path].(fiber.Map)
		if item == nil {
			item = fiber.Map{}
			paths[op.Path] = item
		}
		content := fiber.Map{"application/json": fiber.Map{"schema": msg}}
		if op.HTML {
			content = fiber.Map{"text/html": fiber.Map{"schema": fiber.Map{"type": "string"}}}
		}
		responses := fiber.Map{
			itoa(op.OK): fiber.Map{"description": "Success", "content": content},
			"422":       fiber.Map{"description": "Validation error: {\"detail\":[{type,loc,msg,input}]}"},
			"429":       fiber.Map{"description": "Too many requests (Retry-After header)", "content": fiber.Map{"application/json": fiber.Map{"schema": msg}}},
		}
		if op.Auth != ClassNone {
			responses["401"] = fiber.Map{"description": "Not authenticated", "content": fiber.Map{"application/json": fiber.Map{"schema": msg}}}
		}
		o := fiber.Map{"summary": op.Summary, "responses": responses, "security": security(op.Auth)}
		var params []fiber.Map
		for _, q := range op.Query {
			params = append(params, fiber.Map{"name": q, "in": "query", "schema": fiber.Map{"type": "string"}})
		}
		for _, seg := range strings.Split(op.Path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, fiber.Map{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": fiber.Map{"type": "string"}})
			}
		}
		if params != nil {
			o["parameters"] = params
		}
		if len(op.Body) > 0 {
			props := fiber.Map{}
			for _, b := range op.Body {
				name, typ, _ := strings.Cut(b, ": ")
				props[name] = fiber.Map{"type": typ}
			}
			ct := "application/json"
			if op.Form {
				ct = "application/x-www-form-urlencoded"
			}
			o["requestBody"] = fiber.Map{"content": fiber.Map{ct: fiber.Map{"schema": fiber.Map{"type": "object", "properties": props}}}}
		}
		item[strings.ToLower(op.Method)] = o
	}
	return fiber.Map{
		"openapi": "3.1.0",
		"info":    fiber.Map{"title": "code4me plugin API", "version": "2"},
		"paths":   paths,
		"components": fiber.Map{"securitySchemes": fiber.Map{
			"authToken":    fiber.Map{"type": "apiKey", "in": "cookie", "name": cookieAuth},
			"sessionToken": fiber.Map{"type": "apiKey", "in": "cookie", "name": cookieSession},
			"projectToken": fiber.Map{"type": "apiKey", "in": "cookie", "name": cookieProject},
			"apiKey":       fiber.Map{"type": "http", "scheme": "bearer"},
		}},
	}
}

// GET /openapi.json
func (s *Server) openAPI(c *fiber.Ctx) error {
	openAPIOnce.Do(func() { openAPIDoc = buildOpenAPI() })
	return c.JSON(openAPIDoc)
}

var docsTmpl = template.Must(template.New("docs").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>code4me API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}code{font-size:1.05em}</style></head>
<body><h1>code4me plugin API</h1>
<p>Machine-readable schema: <a href="/openapi.json">/openapi.json</a>. Authenticate with the <code>auth_token</code>,
<code>session_token</code> and <code>project_token</code> cookies, or <code>Authorization: Bearer &lt;api key&gt;</code>.</p>
<table><tr><th>Method</th><th>Path</th><th>Auth</th><th>Summary</th></tr>
{{range .}}<tr><td>{{.Method}}</td><td><code>{{.Path}}</code></td><td>{{.AuthName}}</td><td>{{.Summary}}</td></tr>
{{end}}</table></body></html>`))

// GET /docs
func (s *Server) docs(c *fiber.Ctx) error {
	type row struct{ Method, Path, AuthName, Summary string }
	names := map[AuthClass]string{ClassNone: "none", ClassA: "auth", ClassS: "session", ClassSP: "session + project"}
	rows := make([]row, 0, len(openAPIOps))
	for _, op := range openAPIOps {
		rows = append(rows, row{op.Method, op.Path, names[op.Auth], op.Summary})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Path < rows[j].Path })
	c.Type("html", "utf-8")
	var b strings.Builder
	docsTmpl.Execute(&b, rows)
	return c.SendString(b.String())
}
