package server

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/oauth/oauthtest"
)

func TestUserCreateAndAuthenticate(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	r := c.expect("POST", "/api/user/create", map[string]any{"email": " Alice@Example.com ", "name": "Alice", "password": testPassword, "config_id": 1}, 201)
	if r.msg() != MsgCreateUser || r.body["user_id"] == "" {
		t.Fatalf("create = %s", r.raw)
	}
	if len(c.cookies) != 0 {
		t.Fatal("create logged the user in")
	}
	e.mailToken(1, "alice@example.com") // verification mail over SMTP

	r = c.expect("POST", "/api/user/create", map[string]any{"email": "alice@example.com", "name": "Alice", "password": testPassword, "config_id": 1}, 409)
	if r.msg() != MsgUserAlreadyExists {
		t.Fatal(r.msg())
	}
	r = c.expect("POST", "/api/user/create", map[string]any{"email": "bob@example.com", "name": "Bob", "password": testPassword, "config_id": 999}, 404)
	if r.msg() != MsgConfigNotFound {
		t.Fatal(r.msg())
	}

	r = c.expect("POST", "/api/user/authenticate", map[string]any{"email": "alice@example.com", "password": "Wrong1234"}, 401)
	if r.msg() != MsgInvalidEmailOrPassword {
		t.Fatal(r.msg())
	}
	r = c.expect("POST", "/api/user/authenticate", map[string]any{"email": "nobody@example.com", "password": testPassword}, 401)
	if r.msg() != MsgInvalidEmailOrPassword {
		t.Fatal(r.msg())
	}
	r = c.expect("POST", "/api/user/authenticate", map[string]any{"email": "ALICE@example.com", "password": testPassword}, 200)
	user := r.body["user"].(map[string]any)
	if r.msg() != MsgAuthenticateNormal || user["password"] != "**********" || user["auth_token"] != c.cookies["auth_token"] ||
		!strings.Contains(r.body["config"].(string), "config") || user["verified"] != false {
		t.Fatalf("authenticate = %s", r.raw)
	}
	setCookie := r.header.Get("Set-Cookie")
	for _, attr := range []string{"auth_token=", "HttpOnly", "SameSite=Lax", "path=/", "expires="} {
		if !strings.Contains(strings.ToLower(setCookie), strings.ToLower(attr)) {
			t.Fatalf("cookie %q lacks %s", setCookie, attr)
		}
	}
	if strings.Contains(setCookie, "secure") {
		t.Fatal("Secure set without COOKIE_SECURE")
	}

	r = c.expect("GET", "/api/user/get", nil, 200)
	if r.msg() != MsgGetUser || r.body["user"].(map[string]any)["email"] != "alice@example.com" {
		t.Fatalf("get = %s", r.raw)
	}
	r = e.client().expect("GET", "/api/user/get", nil, 401)
	if r.msg() != MsgInvalidOrExpiredAuth {
		t.Fatal(r.msg())
	}
}

func TestCookieSecureWhenConfigured(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.CookieSecure = true })
	e.signup("sec@example.com")
	r := e.client().expect("POST", "/api/user/authenticate", map[string]any{"email": "sec@example.com", "password": testPassword}, 200)
	if !strings.Contains(r.header.Get("Set-Cookie"), "secure") {
		t.Fatalf("cookie %q is not Secure", r.header.Get("Set-Cookie"))
	}
}

func TestUserUpdate(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("up@example.com")
	e.signup("taken@example.com")
	c := e.loggedIn("up@example.com")

	// verified and config_id cannot be set by the user.
	r := c.expect("PUT", "/api/user/update", map[string]any{"name": "Renamed", "verified": true, "config_id": 2, "preference": map[string]any{"store_context": true}}, 201)
	u := r.body["user"].(map[string]any)
	if r.msg() != MsgUpdateUser || u["name"] != "Renamed" || u["verified"] != false || u["config_id"] != float64(1) ||
		u["preference"].(map[string]any)["store_context"] != true {
		t.Fatalf("update = %s", r.raw)
	}
	r = c.expect("PUT", "/api/user/update", map[string]any{"email": "taken@example.com"}, 409)
	if r.msg() != MsgUserAlreadyExists {
		t.Fatal(r.msg())
	}
	// A password change needs the previous password.
	r = c.expect("PUT", "/api/user/update", map[string]any{"password": "NewPass123"}, 401)
	if r.msg() != MsgInvalidPreviousPassword {
		t.Fatal(r.msg())
	}
	c.expect("PUT", "/api/user/update", map[string]any{"password": "NewPass123", "previous_password": "Wrong1234"}, 401)
	c.expect("PUT", "/api/user/update", map[string]any{"password": "NewPass123", "previous_password": testPassword}, 201)
	e.client().expect("POST", "/api/user/authenticate", map[string]any{"email": "up@example.com", "password": "NewPass123"}, 200)
	// A weak password is a 422 that does not echo it.
	r = c.expect("PUT", "/api/user/update", map[string]any{"password": "weakpass", "previous_password": "NewPass123"}, 422)
	if strings.Contains(string(r.raw), "weakpass") || strings.Contains(string(r.raw), "NewPass123") {
		t.Fatalf("422 echoes a password: %s", r.raw)
	}
}

func TestUserDeleteRevokesEverythingAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("del@example.com")
	c := e.loggedIn("del@example.com")
	other := e.loggedIn("del@example.com") // a second login of the same user
	c.expect("POST", "/api/project/create", map[string]any{"project_name": "p"}, 201)
	key := c.expect("POST", "/api/user/api-keys", map[string]any{"name": "ci", "scopes": []string{"completions", "account"}}, 201).body["api_key"].(string)
	bearer := e.client()
	bearer.header["Authorization"] = "Bearer " + key
	bearer.expect("GET", "/api/user/get", nil, 200)

	r := c.expect("DELETE", "/api/user/delete?delete_data=true", nil, 200)
	if r.msg() != MsgDeleteUser {
		t.Fatal(r.msg())
	}
	// Every token of the user is dead: both logins, sessions, API keys.
	other.expect("GET", "/api/user/get", nil, 401)
	other.expect("GET", "/api/session/acquire", nil, 401)
	bearer.expect("GET", "/api/user/get", nil, 401)
	c.cookies = other.cookies
	r = c.expect("GET", "/test/sp", nil, 401)
	if r.msg() != MsgInvalidOrExpiredSession {
		t.Fatal(r.msg())
	}
	bearer.expect("GET", "/test/s", nil, 401)
}

func TestUserDeleteQueryValidation(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("dq@example.com")
	c := e.loggedIn("dq@example.com")
	r := c.expect("DELETE", "/api/user/delete?delete_data=maybe", nil, 422)
	d := r.body["detail"].([]any)[0].(map[string]any)
	if d["type"] != "bool_parsing" || d["loc"].([]any)[0] != "query" || d["loc"].([]any)[1] != "delete_data" {
		t.Fatalf("422 = %s", r.raw)
	}
}

func TestVerification(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("ver@example.com")
	tok := e.mailToken(1, "ver@example.com")
	c := e.loggedIn("ver@example.com")
	if r := c.expect("GET", "/api/user/verify/check", nil, 200); r.body["user_is_verified"] != false || r.msg() != MsgGetVerification {
		t.Fatalf("check = %s", r.raw)
	}
	// The link without a trailing slash is a 307 to the canonical path.
	r := e.client().expect("GET", "/api/user/verify?token="+tok, nil, 307)
	if loc := r.header.Get("Location"); loc != "/api/user/verify/?token="+tok {
		t.Fatalf("Location = %q", loc)
	}
	r = e.client().expect("GET", "/api/user/verify/?token="+tok, nil, 200)
	if !strings.Contains(string(r.raw), "Email Verification Successful!") || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("verify page = %s", r.raw)
	}
	// Single use.
	r = e.client().expect("GET", "/api/user/verify/?token="+tok, nil, 401)
	if r.msg() != MsgInvalidVerificationToken {
		t.Fatal(r.msg())
	}
	e.client().expect("GET", "/api/user/verify/", nil, 422)
	if r := c.expect("GET", "/api/user/verify/check", nil, 200); r.body["user_is_verified"] != true {
		t.Fatalf("check after verify = %s", r.raw)
	}
	if r := c.expect("POST", "/api/user/verify/resend", nil, 200); r.msg() != MsgResendVerification {
		t.Fatal(r.msg())
	}
	e.mailToken(2, "ver@example.com")
}

func TestPasswordReset(t *testing.T) {
	e := newEnv(t, nil)
	e.signup("reset@example.com")
	e.mailToken(1, "reset@example.com")
	c := e.loggedIn("reset@example.com")

	// The same answer whether or not the email exists.
	known := e.client().expect("POST", "/api/user/reset-password/request?email=reset@example.com", nil, 200)
	unknown := e.client().expect("POST", "/api/user/reset-password/request?email=ghost@example.com", nil, 200)
	if string(known.raw) != string(unknown.raw) || known.msg() != MsgPasswordResetRequest {
		t.Fatalf("known %s vs unknown %s", known.raw, unknown.raw)
	}
	e.client().expect("POST", "/api/user/reset-password/request", nil, 422)
	tok := e.mailToken(2, "reset@example.com")
	time.Sleep(200 * time.Millisecond)
	if n := len(e.smtp.Messages()); n != 2 {
		t.Fatalf("%d messages; the unknown email got one", n)
	}

	r := e.client().expect("GET", "/api/user/reset-password/?token="+tok, nil, 200)
	if !strings.Contains(string(r.raw), "Reset Your Password") || !strings.Contains(string(r.raw), tok) {
		t.Fatalf("form = %s", r.raw)
	}
	r = e.client().expect("GET", "/api/user/reset-password/?token=00000000-0000-4000-8000-000000000000", nil, 401)
	if !strings.Contains(string(r.raw), `<p class="error">`+MsgInvalidResetToken+`</p>`) {
		t.Fatalf("bad token form = %s", r.raw)
	}
	form := func(pw string) url.Values {
		return url.Values{"token": {tok}, "new_password": {pw}, "confirm_password": {pw}}
	}
	e.client().expect("POST", "/api/user/reset-password/change", form("short"), 422)
	r = e.client().expect("POST", "/api/user/reset-password/change", form("alllowercase"), 422)
	if strings.Contains(string(r.raw), "alllowercase") {
		t.Fatal("rule failure echoes the password")
	}
	r = e.client().expect("POST", "/api/user/reset-password/change", form("Changed123"), 200)
	if !strings.Contains(string(r.raw), "Password Reset Successful!") {
		t.Fatalf("change = %s", r.raw)
	}
	e.client().expect("POST", "/api/user/reset-password/change", form("Changed456"), 401) // single use
	// Sessions and logins are revoked; the new password works.
	c.expect("GET", "/api/user/get", nil, 401)
	e.client().expect("POST", "/api/user/authenticate", map[string]any{"email": "reset@example.com", "password": testPassword}, 401)
	e.client().expect("POST", "/api/user/authenticate", map[string]any{"email": "reset@example.com", "password": "Changed123"}, 200)
}

func TestOAuth(t *testing.T) {
	e := newEnv(t, nil)
	good := e.iss.Sign(t, oauthtest.Claims(testClientID, "g@example.com"))
	wrongAud := e.iss.Sign(t, oauthtest.Claims("someone-else", "g@example.com"))
	body := func(tok string) map[string]any {
		return map[string]any{"email": "g@example.com", "name": "Gina", "password": testPassword, "config_id": 1, "provider": "google", "token": tok}
	}
	for _, tok := range []string{"", "garbage", wrongAud} {
		r := e.client().expect("POST", "/api/user/create", body(tok), 401)
		if r.msg() != MsgInvalidOrExpiredJWT {
			t.Fatal(r.msg())
		}
	}
	other := e.iss.Sign(t, oauthtest.Claims(testClientID, "other@example.com"))
	e.client().expect("POST", "/api/user/create", body(other), 401) // email mismatch
	e.client().expect("POST", "/api/user/create", body(good), 201)

	c := e.client()
	r := c.expect("POST", "/api/user/authenticate", map[string]any{"provider": "google", "token": good}, 200)
	if r.msg() != MsgAuthenticateOAuth || c.cookies["auth_token"] == "" {
		t.Fatalf("oauth login = %s", r.raw)
	}
	r = e.client().expect("POST", "/api/user/authenticate", map[string]any{"provider": "google", "token": wrongAud}, 401)
	if r.msg() != MsgInvalidOrExpiredJWT {
		t.Fatal(r.msg())
	}
	// Another Google account (its own subject) without an account: 401.
	nobodyClaims := oauthtest.Claims(testClientID, "nobody@example.com")
	nobodyClaims["sub"] = "nobody-sub"
	nobody := e.iss.Sign(t, nobodyClaims)
	e.client().expect("POST", "/api/user/authenticate", map[string]any{"provider": "google", "token": nobody}, 401)
}
