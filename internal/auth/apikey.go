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

// KeyOwner is a checked API key: the key and its user.
type KeyOwner struct {
	KeyID  uuid.UUID `json:"kid"`
	UserID uuid.UUID `json:"uid"`
	Gen    int64     `json:"gen"`
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
	return o, true, nil
}

// lookupCached is lookupGen for cache entries, whose user field is "uid".
var lookupCached = lookupGen

// CacheAPIKey remembers a key checked against Postgres for ttl. gen must be
// the user's generation read before the Postgres check, so a revocation
// racing with the check still wins.
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
