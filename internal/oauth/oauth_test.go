package oauth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/code4me/code4me/internal/oauth"
	"github.com/code4me/code4me/internal/oauth/oauthtest"
)

const clientID = "client-123.apps.googleusercontent.com"

func TestVerify(t *testing.T) {
	iss := oauthtest.New(t)
	v := oauth.New(oauth.Options{ClientID: clientID, JWKSURL: iss.URL})
	ctx := context.Background()

	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	with := func(mut func(map[string]any)) string {
		c := oauthtest.Claims(clientID, "a@example.com")
		mut(c)
		return iss.Sign(t, c)
	}
	good := with(func(map[string]any) {})
	parts := strings.Split(good, ".")
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"test-key-1"}`))

	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"valid", good, true},
		{"audience list containing ours", with(func(c map[string]any) { c["aud"] = []string{"x", clientID} }), true},
		{"bare issuer", with(func(c map[string]any) { c["iss"] = "accounts.google.com" }), true},
		{"empty token", "", false},
		{"garbage", "abc", false},
		{"wrong audience", with(func(c map[string]any) { c["aud"] = "someone-else.apps.googleusercontent.com" }), false},
		{"missing audience", with(func(c map[string]any) { delete(c, "aud") }), false},
		{"wrong issuer", with(func(c map[string]any) { c["iss"] = "https://evil.example" }), false},
		{"expired", with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), false},
		{"missing exp", with(func(c map[string]any) { delete(c, "exp") }), false},
		{"issued in the future", with(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }), false},
		{"signed by another key", oauthtest.SignWith(t, otherKey, iss.Kid, oauthtest.Claims(clientID, "a@example.com")), false},
		{"unknown kid", oauthtest.SignWith(t, otherKey, "nope", oauthtest.Claims(clientID, "a@example.com")), false},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://accounts.google.com","aud":"`+clientID+`","sub":"1","email":"evil@example.com","exp":9999999999}`)) + "." + parts[2], false},
		{"alg none", noneHeader + "." + parts[1] + ".", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(ctx, tt.token)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Email != "a@example.com" || !c.EmailVerified || c.Subject == "" {
					t.Fatalf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, oauth.ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Fatal("error text contains the token")
			}
		})
	}
	// The key set is fetched once and cached (the unknown-kid case may add
	// one refetch).
	if n := iss.Fetches.Load(); n < 1 || n > 2 {
		t.Fatalf("key set fetched %d times, want 1 or 2", n)
	}
}

func TestVerifyDisabledAndUnreachable(t *testing.T) {
	ctx := context.Background()
	if _, err := oauth.New(oauth.Options{}).Verify(ctx, "x.y.z"); !errors.Is(err, oauth.ErrDisabled) {
		t.Fatalf("no client id: %v", err)
	}
	iss := oauthtest.New(t)
	tok := iss.Sign(t, oauthtest.Claims(clientID, "a@example.com"))
	v := oauth.New(oauth.Options{ClientID: clientID, JWKSURL: "http://127.0.0.1:1/certs"})
	if _, err := v.Verify(ctx, tok); !errors.Is(err, oauth.ErrKeySet) {
		t.Fatalf("unreachable key set: %v", err)
	}
}

// TestClaimsSubjectAndEmailVerified: sign-in binds accounts by sub and
// trusts an email only when email_verified says so (a bool, or the string
// Google once sent), so both must come through exactly; a token without a
// sub is refused.
func TestClaimsSubjectAndEmailVerified(t *testing.T) {
	iss := oauthtest.New(t)
	v := oauth.New(oauth.Options{ClientID: clientID, JWKSURL: iss.URL})
	for _, tc := range []struct {
		verified any
		want     bool
	}{{true, true}, {"true", true}, {false, false}, {"false", false}, {nil, false}} {
		c := oauthtest.Claims(clientID, "a@example.com")
		c["sub"] = "google-sub-42"
		if tc.verified == nil {
			delete(c, "email_verified")
		} else {
			c["email_verified"] = tc.verified
		}
		got, err := v.Verify(context.Background(), iss.Sign(t, c))
		if err != nil || got.Subject != "google-sub-42" || got.EmailVerified != tc.want {
			t.Errorf("email_verified %v: claims %+v, %v", tc.verified, got, err)
		}
	}
	c := oauthtest.Claims(clientID, "a@example.com")
	delete(c, "sub")
	if _, err := v.Verify(context.Background(), iss.Sign(t, c)); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("token without sub: %v", err)
	}
}
