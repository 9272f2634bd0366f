// Package oauthtest is a local stand-in for Google's token issuer in tests:
// an RSA key pair, a JWKS served over httptest, and a signer for ID tokens.
package oauthtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Issuer signs ID tokens with its own key and serves the matching key set.
type Issuer struct {
	// URL is the JWKS endpoint.
	URL string
	// Kid is the key id put in token headers.
	Kid string
	// Fetches counts key-set requests served.
	Fetches atomic.Int64

	key *rsa.PrivateKey
}

// New starts an Issuer whose server is closed when t ends.
func New(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{Kid: "test-key-1", key: key}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss.Fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "alg": "RS256", "use": "sig", "kid": iss.Kid,
			"n": b64(key.N.Bytes()),
			"e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	}))
	t.Cleanup(srv.Close)
	iss.URL = srv.URL
	return iss
}

// Claims returns a valid Google-style claim set for aud and email, expiring
// in an hour.
func Claims(aud, email string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":            "https://accounts.google.com",
		"aud":            aud,
		"sub":            "1234567890",
		"email":          email,
		"email_verified": true,
		"name":           "Test User",
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
	}
}

// Sign returns a compact RS256 JWS of claims signed by the issuer's key.
func (i *Issuer) Sign(t testing.TB, claims map[string]any) string {
	return SignWith(t, i.key, i.Kid, claims)
}

// SignWith signs claims with an arbitrary key (for wrong-key tests).
func SignWith(t testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signing := b64(h) + "." + b64(p)
	d := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
