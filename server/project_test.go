package server

import (
	"testing"
)

func TestProjects(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("owner@example.com")
	e.signup("intruder@example.com")
	owner := e.loggedIn("owner@example.com")

	r := owner.expect("POST", "/api/project/create", map[string]any{"project_name": "demo"}, 201)
	pid, _ := r.body["project_id"].(string)
	ptok, _ := r.body["project_token"].(string)
	if r.msg() != MsgCreateProject || ptok == "" || ptok == pid || owner.cookies["project_token"] != ptok {
		t.Fatalf("create = %s", r.raw)
	}
	sp := owner.expect("GET", "/test/sp", nil, 200)
	if sp.body["project_id"] != pid {
		t.Fatalf("principal = %s", sp.raw)
	}
	// The trailing-slash variant redirects, keeping the method.
	if r := owner.expect("POST", "/api/project/create/", map[string]any{"project_name": "x"}, 307); r.header.Get("Location") != "/api/project/create" {
		t.Fatal(r.header.Get("Location"))
	}
	owner.expect("POST", "/api/project/create", map[string]any{"project_name": ""}, 422)

	r = owner.expect("PUT", "/api/project/activate", map[string]any{"project_id": pid}, 200)
	if r.msg() != MsgActivateProject || owner.cookies["project_token"] == "" {
		t.Fatalf("activate = %s", r.raw)
	}
	owner.expect("GET", "/test/sp", nil, 200)

	// A non-member cannot activate the project, and a made-up id gets
	// the same answer.
	intruder := e.loggedIn("intruder@example.com")
	r = intruder.expect("PUT", "/api/project/activate", map[string]any{"project_id": pid}, 401)
	if r.msg() != MsgInvalidOrExpiredProject {
		t.Fatal(r.msg())
	}
	if r2 := intruder.expect("PUT", "/api/project/activate", map[string]any{"project_id": "00000000-0000-4000-8000-000000000000"}, 401); string(r2.raw) != string(r.raw) {
		t.Fatal("unknown and foreign projects answer differently")
	}
	// Nor use the owner's project token with their own session.
	intruder.cookies["project_token"] = owner.cookies["project_token"]
	if r := intruder.expect("GET", "/test/sp", nil, 401); r.msg() != MsgInvalidOrExpiredProject {
		t.Fatal(r.msg())
	}
	intruder.expect("PUT", "/api/project/activate", map[string]any{"project_id": "not-a-uuid"}, 422)

	// Without a session: 401 session message.
	noSession := e.client()
	noSession.expect("POST", "/api/user/authenticate", map[string]any{"email": "owner@example.com", "password": testPassword}, 200)
	if r := noSession.expect("POST", "/api/project/create", map[string]any{"project_name": "p"}, 401); r.msg() != MsgInvalidOrExpiredSession {
		t.Fatal(r.msg())
	}
	e.client().expect("PUT", "/api/project/activate", map[string]any{"project_id": pid}, 401)
}
