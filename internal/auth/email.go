package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

type emailEntry struct {
	UID   uuid.UUID `json:"uid"`
	Email string    `json:"email,omitempty"`
}

// IssueVerification creates a single-use token that verifies email as the
// user's address.
func (s *Store) IssueVerification(ctx context.Context, userID uuid.UUID, email string) (string, error) {
	return s.issueEmail(ctx, "email_verification:", emailEntry{UID: userID, Email: email}, s.ttl.Verification)
}

// ConsumeVerification returns the user and the address of a verification
// token and deletes the token, so a link works once. The caller verifies
// the user only while the address is still the user's: a link mailed to an
// address the user has since replaced must not verify the new one.
func (s *Store) ConsumeVerification(ctx context.Context, token string) (uuid.UUID, string, error) {
	e, err := s.readEmail(ctx, "email_verification:", token, true)
	return e.UID, e.Email, err
}

// IssueReset creates a single-use password reset token.
func (s *Store) IssueReset(ctx context.Context, userID uuid.UUID, email string) (string, error) {
	return s.issueEmail(ctx, "password_reset:", emailEntry{UID: userID, Email: email}, s.ttl.Reset)
}

// PeekReset returns the user and email of a reset token without using it
// (to show the form).
func (s *Store) PeekReset(ctx context.Context, token string) (uuid.UUID, string, error) {
	e, err := s.readEmail(ctx, "password_reset:", token, false)
	return e.UID, e.Email, err
}

// ConsumeReset returns the user and email of a reset token and deletes it.
func (s *Store) ConsumeReset(ctx context.Context, token string) (uuid.UUID, string, error) {
	e, err := s.readEmail(ctx, "password_reset:", token, true)
	return e.UID, e.Email, err
}

func (s *Store) issueEmail(ctx context.Context, prefix string, e emailEntry, ttl time.Duration) (string, error) {
	tok := newToken()
	b, _ := json.Marshal(e)
	if err := s.rdb.Set(ctx, prefix+tok, b, ttl).Err(); err != nil {
		return "", fmt.Errorf("auth: issue %s token: %w", prefix[:len(prefix)-1], err)
	}
	return tok, nil
}

func (s *Store) readEmail(ctx context.Context, prefix, token string, consume bool) (emailEntry, error) {
	if token == "" {
		return emailEntry{}, ErrNotFound
	}
	var cmd *redis.StringCmd
	if consume {
		cmd = s.rdb.GetDel(ctx, prefix+token)
	} else {
		cmd = s.rdb.Get(ctx, prefix+token)
	}
	v, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return emailEntry{}, ErrNotFound
	}
	if err != nil {
		return emailEntry{}, fmt.Errorf("auth: read %s token: %w", prefix[:len(prefix)-1], err)
	}
	var e emailEntry
	if err := json.Unmarshal([]byte(v), &e); err != nil || e.UID == uuid.Nil {
		return emailEntry{}, ErrNotFound
	}
	return e, nil
}
