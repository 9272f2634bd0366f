package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// APIKeyPrefix starts every API key, so leaked keys are recognisable (and
// secret scanners can match them).
const APIKeyPrefix = "c4m_"

// NewAPIKey returns a fresh key (prefix plus 32 random bytes, base64url),
// its sha256 (what Postgres stores) and a short display prefix.
func NewAPIKey() (key string, hash []byte, display string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := HashAPIKey(key)
	return key, h, key[:len(APIKeyPrefix)+6]
}

// HashAPIKey returns the sha256 of a key.
func HashAPIKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// LooksLikeAPIKey reports whether s has the shape of one of our keys.
func LooksLikeAPIKey(s string) bool {
	return strings.HasPrefix(s, APIKeyPrefix) && len(s) > len(APIKeyPrefix)+20
}

// Scopes say what an API key may do. A login (auth token) holds every
// scope; a key holds those it was created with, which never change.
const (
	// ScopeCompletions: completion, chat, multi-file context, feedback,
	// sessions and projects.
	ScopeCompletions = "completions"
	// ScopeAccount: the account itself: read, change or delete it, its
	// verification mail and its API keys.
	ScopeAccount = "account"
)

// scopeNames are the scopes in canonical order; scope i is bit i of a
// ScopeSet.
var scopeNames = [...]string{ScopeCompletions, ScopeAccount}

// ScopeSet is a set of scopes. It is comparable and cheap to copy; its
// JSON is the list of its scopes' names.
type ScopeSet uint8

const (
	// AllScopes is every scope: what a login holds.
	AllScopes ScopeSet = 1<<len(scopeNames) - 1
	// DefaultScopes are the scopes of a key created without naming any,
	// and of a key (or cached key, or key session) stored before keys had
	// scopes.
	DefaultScopes ScopeSet = 1 << 0 // completions
)

// KnownScope reports whether name is a scope.
func KnownScope(name string) bool { _, ok := scopeBit(name); return ok }

func scopeBit(name string) (ScopeSet, bool) {
	for i, n := range scopeNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// ScopesOf is the set of the named scopes; unknown names are ignored, and
// no known name at all gives DefaultScopes.
func ScopesOf(names []string) ScopeSet {
	var s ScopeSet
	for _, n := range names {
		b, _ := scopeBit(n)
		s |= b
	}
	return s.orDefault()
}

// Has reports whether the set holds the scope name.
func (s ScopeSet) Has(name string) bool {
	b, ok := scopeBit(name)
	return ok && s&b != 0
}

// Names lists the set's scopes in canonical order.
func (s ScopeSet) Names() []string {
	out := []string{}
	for i, n := range scopeNames {
		if s&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// MarshalJSON writes the set as the list of its names.
func (s ScopeSet) MarshalJSON() ([]byte, error) { return json.Marshal(s.Names()) }

// UnmarshalJSON reads a list of names; unknown names are ignored.
func (s *ScopeSet) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	*s = 0
	for _, n := range names {
		bit, _ := scopeBit(n)
		*s |= bit
	}
	return nil
}

// orDefault is s, or DefaultScopes when s is empty (an entry written
// before scopes existed).
func (s ScopeSet) orDefault() ScopeSet {
	if s == 0 {
		return DefaultScopes
	}
	return s
}

// KeyOwner is a checked API key: the key, its user and its scopes.
type KeyOwner struct {
	KeyID  uuid.UUID `json:"kid"`
	UserID uuid.UUID `json:"uid"`
	Gen    int64     `json:"gen"`
	Scopes ScopeSet  `json:"scp,omitempty"`
}

func keyCacheKey(hash []byte) string { return "api_key:" + hex.EncodeToString(hash) }

// CachedAPIKey returns the owner of a key from the cache, when the cache
// holds it and the user's generation has not moved since.
func (s *Store) CachedAPIKey(ctx context.Context, hash []byte) (KeyOwner, bool, error) {
	v, err := lookupCached.Run(ctx, s.rdb, []string{keyCacheKey(hash)}).Text()
	if errors.Is(err, redis.Nil) {
		return KeyOwner{}, false, nil
	}
	if err != nil {
		return KeyOwner{}, false, fmt.Errorf("auth: look up api key cache: %w", err)
	}
	var o KeyOwner
	if err := json.Unmarshal([]byte(v), &o); err != nil {
		return KeyOwner{}, false, nil
	}
	o.Scopes = o.Scopes.orDefault()
	return o, true, nil
}

// lookupCached is lookupGen for cache entries, whose user field is "uid".
var lookupCached = lookupGen

// CacheAPIKey remembers a key checked against Postgres for ttl, with its
// scopes. o.Gen must be the user's generation read before the check that
// found the key live, so a revocation racing with the check (Postgres
// first, then RevokeUser) still wins.
func (s *Store) CacheAPIKey(ctx context.Context, hash []byte, o KeyOwner, ttl time.Duration) error {
	b, _ := json.Marshal(o)
	if err := s.rdb.Set(ctx, keyCacheKey(hash), b, ttl).Err(); err != nil {
		return fmt.Errorf("auth: cache api key: %w", err)
	}
	return nil
}

// ForgetAPIKey drops a revoked key from the cache and ends its session.
func (s *Store) ForgetAPIKey(ctx context.Context, hash []byte, keyID uuid.UUID, userID uuid.UUID) error {
	if err := s.rdb.Del(ctx, keyCacheKey(hash)).Err(); err != nil {
		return fmt.Errorf("auth: forget api key: %w", err)
	}
	return s.EndParentSession(ctx, Parent{UserID: userID, KeyID: keyID})
}
