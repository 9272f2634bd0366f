package server

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestSessionAcquireAndDeactivate(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("s@example.com")
	c := e.client()
	c.expect("POST", "/api/user/authenticate", map[string]any{"email": "s@example.com", "password": testPassword}, 200)
	r := c.expect("GET", "/api/session/acquire", nil, 200)
	tok, _ := r.body["session_token"].(string)
	if r.msg() != MsgAcquireSession || tok == "" || c.cookies["session_token"] != tok {
		t.Fatalf("acquire = %s", r.raw)
	}
	// The same login gets the same session; another login its own.
	if again := c.expect("GET", "/api/session/acquire", nil, 200).body["session_token"]; again != tok {
		t.Fatal("acquire made a second session for one login")
	}
	other := e.loggedIn("s@example.com")
	if other.cookies["session_token"] == tok {
		t.Fatal("two logins share a session")
	}
	// The session row exists and is open.
	var open bool
	sp := c.expect("GET", "/test/s", nil, 200)
	sid := uuid.MustParse(sp.body["session_id"].(string))
	if sid.String() == tok {
		t.Fatal("session token equals the session id")
	}
	if err := e.srv.db.QueryRow(context.Background(), "SELECT end_time IS NULL FROM session WHERE session_id = $1", sid).Scan(&open); err != nil || !open {
		t.Fatalf("session row: open=%v %v", open, err)
	}

	// Deactivate without the trailing slash: 307 to the canonical path.
	r = c.expect("PUT", "/api/session/deactivate", nil, 307)
	if r.header.Get("Location") != "/api/session/deactivate/" {
		t.Fatal(r.header.Get("Location"))
	}
	r = c.expect("PUT", "/api/session/deactivate/", nil, 200)
	if r.msg() != MsgDeactivateSession || !strings.Contains(r.header.Get("Set-Cookie"), "expires=Thu, 01 Jan 1970") {
		t.Fatalf("deactivate = %s %v", r.raw, r.header)
	}
	if err := e.srv.db.QueryRow(context.Background(), "SELECT end_time IS NULL FROM session WHERE session_id = $1", sid).Scan(&open); err != nil || open {
		t.Fatalf("session row still open: %v", err)
	}
	if len(c.cookies) != 0 {
		t.Fatalf("cookies left: %v", c.cookies)
	}
	// The old tokens are dead; the other login is untouched.
	c.cookies["session_token"] = tok
	c.expect("GET", "/test/s", nil, 401)
	other.expect("GET", "/test/s", nil, 200)
	e.client().expect("PUT", "/api/session/deactivate/", nil, 401)

	// An auth token without a session cannot deactivate one.
	fresh := e.client()
	fresh.expect("POST", "/api/user/authenticate", map[string]any{"email": "s@example.com", "password": testPassword}, 200)
	if r := fresh.expect("PUT", "/api/session/deactivate/", nil, 401); r.msg() != MsgInvalidOrExpiredSession {
		t.Fatal(r.msg())
	}
}
