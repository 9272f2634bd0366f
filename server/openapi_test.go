package server

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// openAPIMethods are the keys of an OpenAPI path item that name operations.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// fiberParam is a Fiber path parameter (":name", with an optional
// constraint and an optional "?").
var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)(<[^>]*>)?\??`)

// openAPIPath writes a Fiber route path the way OpenAPI writes it.
func openAPIPath(p string) string { return fiberParam.ReplaceAllString(p, "{$1}") }

// fetchOpenAPI returns /openapi.json as the server serves it, and its
// operations by "METHOD /path".
func fetchOpenAPI(t *testing.T, e *env) (map[string]any, map[string]map[string]any) {
	t.Helper()
	r := e.client().expect("GET", "/openapi.json", nil, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
	if r.body == nil {
		t.Fatalf("not a JSON object: %.200s", r.raw)
	}
	ops := map[string]map[string]any{}
	paths, _ := r.body["paths"].(map[string]any)
	for p, item := range paths {
		for m, op := range item.(map[string]any) {
			if slices.Contains(openAPIMethods, m) {
				ops[strings.ToUpper(m)+" "+p], _ = op.(map[string]any)
			}
		}
	}
	return r.body, ops
}

// TestOpenAPIListsEveryRoute: /openapi.json describes exactly the routes
// the app serves, so a route added without its description (or a
// description left behind by a removed route) fails here. The HEAD twin
// Fiber registers for each GET route may be left out.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	_, documented := fetchOpenAPI(t, e)

	routes := e.srv.App().GetRoutes(true)
	gets := map[string]bool{}
	for _, r := range routes {
		if r.Method == "GET" {
			gets[openAPIPath(r.Path)] = true
		}
	}
	registered := map[string]bool{}
	mounts := map[string]bool{}
	for _, r := range routes {
		p := openAPIPath(r.Path)
		if strings.HasPrefix(p, "/test/") || (r.Method == "HEAD" && gets[p]) {
			continue // newEnv's own routes; Fiber's HEAD twins
		}
		if mount, ok := strings.CutSuffix(p, "/*"); ok {
			// A wildcard route hands every path under it to an embedded
			// application (River's UI at /admin/jobs) whose paths are its
			// own: the document describes the mount point instead.
			mounts[mount] = true
			continue
		}
		registered[r.Method+" "+p] = true
	}
	for m := range mounts {
		if documented["GET "+m] == nil {
			t.Errorf("%s/* is served but /openapi.json does not describe its mount point GET %s", m, m)
		}
	}
	if len(registered) < 25 {
		t.Fatalf("only %d routes registered: %v", len(registered), registered)
	}
	var missing, extra []string
	for k := range registered {
		if documented[k] == nil {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		method, p, _ := strings.Cut(k, " ")
		if !registered[k] && !(method == "HEAD" && gets[p]) {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	for _, k := range missing {
		t.Errorf("%s is served but /openapi.json does not describe it", k)
	}
	for _, k := range extra {
		t.Errorf("/openapi.json describes %s, which no route serves", k)
	}
}

// TestOpenAPIDocument checks the document's shape: OpenAPI 3.1.0, every
// reference and security scheme defined, every operation with a summary,
// its path parameters, the error answers its route gives, and WebSocket
// routes as a GET answered 101 with their frame keys.
func TestOpenAPIDocument(t *testing.T) {
	e := newEnv(t, nil)
	doc, ops := fetchOpenAPI(t, e)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v", doc["openapi"])
	}
	raw, _ := json.Marshal(doc)
	comps, _ := doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	for _, m := range regexp.MustCompile(`"\$ref":"#/components/schemas/([^"]+)"`).FindAllStringSubmatch(string(raw), -1) {
		if schemas[m[1]] == nil {
			t.Errorf("$ref to undefined schema %s", m[1])
		}
	}
	schemes, _ := comps["securitySchemes"].(map[string]any)
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)
	for k, op := range ops {
		if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s: no summary", k)
		}
		sec, ok := op["security"].([]any)
		if !ok {
			t.Errorf("%s: no security list", k)
		}
		for _, req := range sec {
			for name := range req.(map[string]any) {
				if schemes[name] == nil {
					t.Errorf("%s: security scheme %q is not defined", k, name)
				}
			}
		}
		var inPath []string
		for _, p := range asList(op["parameters"]) {
			if p["in"] == "path" {
				inPath = append(inPath, p["name"].(string))
			}
		}
		for _, m := range pathParam.FindAllStringSubmatch(k, -1) {
			if !slices.Contains(inPath, m[1]) {
				t.Errorf("%s: path parameter %s is not described", k, m[1])
			}
		}
		resps, _ := op["responses"].(map[string]any)
		want := []string{"503"}
		if strings.Contains(k, " /api/ws/") {
			want = append(want, "101", "403", "429")
			ws, _ := op["x-websocket"].(map[string]any)
			if frames, _ := ws["client_frames"].([]any); !slices.Contains(frames, any("cancel")) || len(frames) < 2 {
				t.Errorf("%s: x-websocket client_frames = %v", k, ws["client_frames"])
			}
		} else if k != "GET /api/ping" {
			want = append(want, "429")
		}
		if len(sec) > 0 && !strings.Contains(k, " /api/ws/") {
			want = append(want, "401", "403")
		}
		if op["requestBody"] != nil || len(asList(op["parameters"])) > 0 {
			want = append(want, "422")
		}
		for _, status := range want {
			if resps[status] == nil {
				t.Errorf("%s: no %s response", k, status)
			}
		}
		for _, status := range []string{"429", "503"} {
			if r, _ := resps[status].(map[string]any); r != nil && k != "GET /api/ping" {
				if h, _ := r["headers"].(map[string]any); h["Retry-After"] == nil {
					t.Errorf("%s: %s without Retry-After", k, status)
				}
			}
		}
		if r, _ := resps["422"].(map[string]any); r != nil && !strings.Contains(string(mustMarshal(r)), "#/components/schemas/ValidationError") {
			t.Errorf("%s: 422 is not FastAPI's detail shape: %v", k, r)
		}
	}
}

// TestOpenAPIRequiredFields sends each operation that takes a body or
// required query parameters a request without any fields ({} or an empty
// form), as a member with an active project, and checks that the server
// refuses exactly the fields the document says are required as missing
// (for a body of several shapes, those of the first); a body without
// required fields must not be refused for a missing one.
func TestOpenAPIRequiredFields(t *testing.T) {
	e := newEnv(t, nil)
	_, ops := fetchOpenAPI(t, e)
	email := "openapi-" + uuid.NewString()[:8] + "@example.com"
	// An admin, so that the admin routes get as far as reading the body.
	e.exec("UPDATE users SET is_admin = true WHERE user_id = $1", e.signup(email))
	member := e.loggedIn(email)
	member.expect("POST", "/api/project/create", map[string]any{"project_name": "demo"}, 201)

	tried := 0
	for k, op := range ops {
		method, p, _ := strings.Cut(k, " ")
		var want []string
		for _, prm := range asList(op["parameters"]) {
			if prm["in"] == "query" && prm["required"] == true {
				want = append(want, "query."+prm["name"].(string))
			}
		}
		var body any
		if rb, _ := op["requestBody"].(map[string]any); rb != nil {
			content, _ := rb["content"].(map[string]any)
			for ct, media := range content {
				schema, _ := media.(map[string]any)["schema"].(map[string]any)
				req := schema["required"]
				if alts := asList(schema["anyOf"]); req == nil && len(alts) > 0 {
					req = alts[0]["required"]
				}
				for _, name := range asAnyList(req) {
					want = append(want, "body."+name.(string))
				}
				body = map[string]any{}
				if ct == "application/x-www-form-urlencoded" {
					body = url.Values{}
				}
			}
		}
		if len(want) == 0 && body == nil {
			continue // nothing to leave out (and DELETE /api/user/delete would run)
		}
		tried++
		r := member.do(method, fillParams(p), body)
		if len(want) > 0 && r.status != 422 {
			t.Errorf("%s without its required fields = %d %.200s, want 422", k, r.status, r.raw)
			continue
		}
		var got []string
		for _, d := range asList(r.body["detail"]) {
			if d["type"] == "missing" {
				loc := d["loc"].([]any)
				got = append(got, loc[0].(string)+"."+loc[len(loc)-1].(string))
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the server requires %v, /openapi.json says %v", k, got, want)
		}
	}
	if tried < 10 {
		t.Fatalf("only %d operations with required fields", tried)
	}
}

// TestOpenAPISecurity checks each operation's documented authentication
// against its route: without credentials, a route that needs them answers
// 401 and one that needs none does not; with an API key that lacks the
// scope the document names, 403.
func TestOpenAPISecurity(t *testing.T) {
	e := newEnv(t, nil)
	_, ops := fetchOpenAPI(t, e)
	email := "openapi-" + uuid.NewString()[:8] + "@example.com"
	e.signup(email)
	owner := e.loggedIn(email)
	keys := map[string]string{}
	for _, scope := range []string{"completions", "account"} {
		r := owner.expect("POST", "/api/user/api-keys", map[string]any{"name": scope, "scopes": []string{scope}}, 201)
		keys[scope] = r.body["api_key"].(string)
	}

	secured := 0
	for k, op := range ops {
		method, p, _ := strings.Cut(k, " ")
		if strings.HasPrefix(p, "/api/ws/") {
			continue // authenticated on the socket, after the handshake
		}
		p = fillParams(p)
		sec, _ := op["security"].([]any)
		r := e.client().do(method, p, nil)
		if len(sec) == 0 {
			if r.status == 401 || r.status == 403 {
				t.Errorf("%s: documented without authentication, answers %d %.200s", k, r.status, r.raw)
			}
			continue
		}
		secured++
		if r.status != 401 {
			t.Errorf("%s without credentials = %d %.200s, want 401", k, r.status, r.raw)
		}
		var scopes []string
		for _, req := range sec {
			for _, s := range asAnyList(req.(map[string]any)["apiKey"]) {
				if !slices.Contains(scopes, s.(string)) {
					scopes = append(scopes, s.(string))
				}
			}
		}
		if len(scopes) != 1 {
			t.Errorf("%s: API key scopes %v, want one", k, scopes)
			continue
		}
		other := "account"
		if scopes[0] == "account" {
			other = "completions"
		}
		c := e.client()
		c.header["Authorization"] = "Bearer " + keys[other]
		if r := c.do(method, p, nil); r.status != 403 {
			t.Errorf("%s with a key of scope %s = %d %.200s, want 403 (documented scope %s)", k, other, r.status, r.raw, scopes[0])
		}
	}
	if secured < 15 {
		t.Fatalf("only %d operations need authentication", secured)
	}
}

// fillParams fills a path's parameters with a value each route accepts.
func fillParams(p string) string {
	p = strings.ReplaceAll(p, "{page_number}", "1")
	return regexp.MustCompile(`\{[^}]+\}`).ReplaceAllStringFunc(p, func(string) string { return uuid.NewString() })
}

func asAnyList(v any) []any { l, _ := v.([]any); return l }

func asList(v any) []map[string]any {
	var out []map[string]any
	for _, e := range asAnyList(v) {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func mustMarshal(v any) []byte { b, _ := json.Marshal(v); return b }
