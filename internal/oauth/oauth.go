// Package oauth verifies Google Sign-In ID tokens for the plugin API.
//
// A Verifier checks what Google's own libraries check: the RS256 signature
// against Google's published key set (a JWKS fetched from a configurable URL
// and cached), the audience, which must equal the configured client id, the
// issuer, and the expiry. An empty token is rejected. Claims carry the
// subject (sub, required: the Google account's stable id) and whether Google
// has verified the email (email_verified), which sign-in decisions need. Nothing is trusted from the token's
// header except the key id used to pick a key, and the algorithm must be
// RS256.
//
// The key set is cached for the max-age the server sends (CacheTTL when it
// sends none) and refetched once, at most every minute, when a token names a
// key id that the cache does not hold, so Google's key rotation needs no
// restart. A Verifier is safe for concurrent use.
package oauth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GoogleJWKSURL is where Google publishes the keys that sign its ID tokens.
const GoogleJWKSURL = "https://www.googleapis.com/oauth2/v3/certs"

// GoogleIssuers are the iss values Google puts in ID tokens.
var GoogleIssuers = []string{"accounts.google.com", "https://accounts.google.com"}

// ErrInvalidToken is wrapped by every rejection of a token (as opposed to a
// failure to fetch the key set, which is ErrKeySet).
var ErrInvalidToken = errors.New("oauth: invalid token")

// ErrKeySet is wrapped when the key set cannot be fetched or parsed.
var ErrKeySet = errors.New("oauth: key set unavailable")

// ErrDisabled is returned by Verify when no client id is configured.
var ErrDisabled = errors.New("oauth: no client id configured")

// Claims are the verified contents of an ID token.
type Claims struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Issuer        string
	Audience      string
	ExpiresAt     time.Time
}

// Options configure a Verifier. Zero values take the documented defaults.
type Options struct {
	// ClientID is the OAuth client id the token's aud must equal. Empty
	// makes every Verify fail with ErrDisabled.
	ClientID string
	// JWKSURL is where the signing keys are fetched; default GoogleJWKSURL.
	JWKSURL string
	// Issuers are the accepted iss values; default GoogleIssuers.
	Issuers []string
	// HTTPClient fetches the key set; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// CacheTTL is how long a key set is kept when the response carries no
	// Cache-Control max-age; default one hour.
	CacheTTL time.Duration
	// Leeway is the clock skew tolerated on exp, nbf and iat; default 60 s.
	Leeway time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Verifier verifies ID tokens. Build one with New and share it.
type Verifier struct {
	o Options

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	expires   time.Time
	lastFetch time.Time
}

// New returns a Verifier for o.
func New(o Options) *Verifier {
	if o.JWKSURL == "" {
		o.JWKSURL = GoogleJWKSURL
	}
	if len(o.Issuers) == 0 {
		o.Issuers = GoogleIssuers
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Hour
	}
	if o.Leeway <= 0 {
		o.Leeway = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Verifier{o: o}
}

// Enabled reports whether a client id is configured.
func (v *Verifier) Enabled() bool { return v != nil && v.o.ClientID != "" }

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, a...))
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type payload struct {
	Iss           string          `json:"iss"`
	Aud           json.RawMessage `json:"aud"`
	Sub           string          `json:"sub"`
	Exp           *json.Number    `json:"exp"`
	Iat           *json.Number    `json:"iat"`
	Nbf           *json.Number    `json:"nbf"`
	Email         string          `json:"email"`
	EmailVerified any             `json:"email_verified"`
	Name          string          `json:"name"`
}

// Verify checks token and returns its claims. Errors wrap ErrInvalidToken
// (the token is bad), ErrKeySet (the keys could not be fetched) or
// ErrDisabled. Error texts never contain the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if !v.Enabled() {
		return Claims{}, ErrDisabled
	}
	if token == "" {
		return Claims{}, invalid("empty token")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, invalid("not a compact JWS")
	}
	var h header
	if err := decodeSegment(parts[0], &h); err != nil {
		return Claims{}, invalid("header: %v", err)
	}
	if h.Alg != "RS256" {
		return Claims{}, invalid("algorithm %q is not RS256", h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return Claims{}, invalid("signature encoding")
	}
	key, err := v.key(ctx, h.Kid)
	if err != nil {
		return Claims{}, err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig); err != nil {
		return Claims{}, invalid("bad signature")
	}
	var p payload
	if err := decodeSegment(parts[1], &p); err != nil {
		return Claims{}, invalid("payload: %v", err)
	}
	return v.check(p)
}

func (v *Verifier) check(p payload) (Claims, error) {
	now := v.o.Now()
	okIss := false
	for _, iss := range v.o.Issuers {
		if p.Iss == iss {
			okIss = true
		}
	}
	if !okIss {
		return Claims{}, invalid("issuer %q not accepted", p.Iss)
	}
	auds, err := audiences(p.Aud)
	if err != nil {
		return Claims{}, invalid("aud: %v", err)
	}
	okAud := false
	for _, a := range auds {
		if a == v.o.ClientID {
			okAud = true
		}
	}
	if !okAud {
		return Claims{}, invalid("audience does not match the client id")
	}
	if p.Exp == nil {
		return Claims{}, invalid("no exp")
	}
	exp, err := unixTime(*p.Exp)
	if err != nil {
		return Claims{}, invalid("exp: %v", err)
	}
	if now.After(exp.Add(v.o.Leeway)) {
		return Claims{}, invalid("expired")
	}
	if p.Nbf != nil {
		nbf, err := unixTime(*p.Nbf)
		if err != nil || now.Add(v.o.Leeway).Before(nbf) {
			return Claims{}, invalid("not valid yet")
		}
	}
	if p.Iat != nil {
		iat, err := unixTime(*p.Iat)
		if err != nil || now.Add(v.o.Leeway).Before(iat) {
			return Claims{}, invalid("issued in the future")
		}
	}
	if p.Sub == "" {
		return Claims{}, invalid("no sub")
	}
	verified := false
	switch ev := p.EmailVerified.(type) {
	case bool:
		verified = ev
	case string:
		verified = ev == "true"
	}
	return Claims{
		Subject:       p.Sub,
		Email:         p.Email,
		EmailVerified: verified,
		Name:          p.Name,
		Issuer:        p.Iss,
		Audience:      v.o.ClientID,
		ExpiresAt:     exp,
	}, nil
}

func audiences(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, errors.New("missing")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("neither a string nor a list of strings")
	}
	return many, nil
}

func unixTime(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(int64(f), 0), nil
}

func decodeSegment(seg string, into any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(into); err != nil {
		return errors.New("not a JSON object")
	}
	return nil
}

// key returns the public key named kid, fetching the key set when the cache
// is stale or does not hold kid (at most once a minute for unknown kids).
func (v *Verifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.o.Now()
	if v.keys == nil || now.After(v.expires) {
		if err := v.fetchLocked(ctx, now); err != nil {
			return nil, err
		}
	}
	if k := v.pick(kid); k != nil {
		return k, nil
	}
	if now.Sub(v.lastFetch) >= time.Minute {
		if err := v.fetchLocked(ctx, now); err != nil {
			return nil, err
		}
		if k := v.pick(kid); k != nil {
			return k, nil
		}
	}
	return nil, invalid("unknown key id")
}

func (v *Verifier) pick(kid string) *rsa.PublicKey {
	if kid == "" && len(v.keys) == 1 {
		for _, k := range v.keys {
			return k
		}
	}
	return v.keys[kid]
}

type jwks struct {
	Keys []struct {
		Kty string `json:"kty"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
		N   string `json:"n"`
		E   string `json:"e"`
	} `json:"keys"`
}

func (v *Verifier) fetchLocked(ctx context.Context, now time.Time) error {
	v.lastFetch = now
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.o.JWKSURL, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	resp, err := v.o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: status %d", ErrKeySet, resp.StatusCode)
	}
	var set jwks
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("%w: decode: %v", ErrKeySet, err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			continue
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: no usable RSA keys", ErrKeySet)
	}
	v.keys = keys
	v.expires = now.Add(maxAge(resp.Header.Get("Cache-Control"), v.o.CacheTTL))
	return nil
}

func maxAge(cc string, def time.Duration) time.Duration {
	for _, part := range strings.Split(cc, ",") {
		part = strings.TrimSpace(part)
		if s, ok := strings.CutPrefix(part, "max-age="); ok {
			if n, err := strconv.Atoi(s); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return def
}
