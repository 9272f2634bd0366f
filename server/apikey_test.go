package server

import (
	"strings"
	"testing"
)

func TestAPIKeys(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("k@example.com")
	c := e.loggedIn("k@example.com")
	r := c.expect("POST", "/api/user/api-keys", map[string]any{"name": "laptop", "scopes": []string{"account", "completions"}}, 201)
	key, _ := r.body["api_key"].(string)
	id := r.body["key"].(map[string]any)["api_key_id"].(string)
	if !strings.HasPrefix(key, "c4m_") {
		t.Fatalf("create = %s", r.raw)
	}
	list := c.expect("GET", "/api/user/api-keys", nil, 200)
	if strings.Contains(string(list.raw), key) || len(list.body["api_keys"].([]any)) != 1 {
		t.Fatalf("list = %s", list.raw)
	}

	b := e.client()
	b.header["Authorization"] = "Bearer " + key
	b.expect("GET", "/api/user/get", nil, 200)
	// A key client gets a session on first use and can pick a project with
	// the X-Project-Token header.
	b.expect("GET", "/test/s", nil, 200)
	pr := b.expect("POST", "/api/project/create", map[string]any{"project_name": "ci"}, 201)
	b.cookies = map[string]string{}
	b.header["X-Project-Token"] = pr.body["project_token"].(string)
	b.expect("GET", "/test/sp", nil, 200)

	bad := e.client()
	bad.header["Authorization"] = "Bearer c4m_" + strings.Repeat("x", 43)
	bad.expect("GET", "/api/user/get", nil, 401)

	c.expect("DELETE", "/api/user/api-keys/not-a-uuid", nil, 422)
	c.expect("DELETE", "/api/user/api-keys/00000000-0000-4000-8000-000000000000", nil, 404)
	if r := c.expect("DELETE", "/api/user/api-keys/"+id, nil, 200); r.msg() != MsgAPIKeyRevoked {
		t.Fatal(r.msg())
	}
	// Revoked at once, cache and session included.
	b.expect("GET", "/api/user/get", nil, 401)
	b.expect("GET", "/test/s", nil, 401)
}
