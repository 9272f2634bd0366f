package server

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/models"
)

var timeZero time.Time

// API keys for non-browser clients: `Authorization: Bearer <key>` instead
// of the auth_token cookie. Only the key's sha256 is stored; the key is
// shown once, at creation. A key holds scopes (auth.AllScopes): completions
// (the default) or account, or both; managing keys needs the account scope.
func (s *Server) apiKeyRoutes(api fiber.Router) {
	g := api.Group("/user/api-keys")
	g.Post("", s.guardAccount(), s.apiKeyCreate)
	g.Get("", s.guardAccount(), s.apiKeyList)
	g.Delete("/:id", s.guardAccount(), s.apiKeyDelete)
}

func apiKeyJSON(k models.ApiKey) fiber.Map {
	return fiber.Map{"api_key_id": k.ApiKeyID, "name": k.Name, "prefix": k.Prefix, "scopes": k.Scopes,
		"created_at": k.CreatedAt, "last_used_at": k.LastUsedAt, "expires_at": k.ExpiresAt, "revoked_at": k.RevokedAt}
}

// scopesField reads the optional list of scopes of a new key: known scopes,
// at least one (0 when absent).
func scopesField(f *fields, name string) auth.ScopeSet {
	raw, ok := f.get(name, false)
	if !ok {
		return 0
	}
	var list []any
	if err := json.Unmarshal(raw, &list); err != nil {
		f.add("list_type", name, "Input should be a valid list", rawInput(raw), nil)
		return 0
	}
	if len(list) == 0 {
		f.add("too_short", name, "List should have at least 1 item after validation, not 0", list,
			map[string]any{"field_type": "List", "min_length": 1, "actual_length": 0})
		return 0
	}
	var names []string
	for i, v := range list {
		sc, _ := v.(string)
		if !auth.KnownScope(sc) {
			*f.errs = append(*f.errs, fieldError{Type: "literal_error", Loc: append(f.at(name), i),
				Msg: "Input should be 'completions' or 'account'", Input: v, Ctx: map[string]any{"expected": "'completions' or 'account'"}})
			continue
		}
		names = append(names, sc)
	}
	return auth.ScopesOf(names)
}

// POST /api/user/api-keys {name, expires_in_days?, scopes?}. Only a caller
// with the account scope gets here (guardAccount), so only such a caller
// makes a key with it; that caller may grant any scope, since with the
// account scope it could change the password and sign in anyway.
func (s *Server) apiKeyCreate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	name, _ := f.str("name", true, 1, 100)
	// An expiry must fit a timestamp; a century is plenty.
	days, hasDays := f.integerIn("expires_in_days", false, 1, 36500)
	scopes := scopesField(f, "scopes")
	if err := f.err(); err != nil {
		return err
	}
	p := principal(c)
	var scopeNames []string // nil: the default
	if scopes != 0 {
		scopeNames = scopes.Names()
	}
	if _, err := s.loadUser(ctx, p.UserID, MsgAPIKeyError); err != nil {
		return err
	}
	key, hash, display := auth.NewAPIKey()
	arg := models.ApiKeyCreateParams{UserID: p.UserID, Name: name, KeyHash: hash, Prefix: display, Scopes: scopeNames}
	if hasDays {
		exp := time.Now().Add(time.Duration(days) * 24 * time.Hour)
		arg.ExpiresAt = &exp
	}
	k, err := s.q.ApiKeyCreate(ctx, s.db, arg)
	if err != nil {
		return internal(MsgAPIKeyError, err)
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"message": MsgAPIKeyCreated, "api_key": key, "key": apiKeyJSON(k)})
}

// GET /api/user/api-keys
func (s *Server) apiKeyList(c *fiber.Ctx) error {
	keys, err := s.q.ApiKeyListByUser(c.UserContext(), s.db, principal(c).UserID)
	if err != nil {
		return internal(MsgAPIKeyError, err)
	}
	out := make([]fiber.Map, 0, len(keys))
	for _, k := range keys {
		out = append(out, apiKeyJSON(k))
	}
	return c.JSON(fiber.Map{"message": MsgAPIKeyList, "api_keys": out})
}

// DELETE /api/user/api-keys/{id}: revokes the key at once (its cache entry
// and its session go too).
func (s *Server) apiKeyDelete(c *fiber.Ctx) error {
	ctx := c.UserContext()
	id, err := pathUUID(c, "id")
	if err != nil {
		return err
	}
	p := principal(c)
	keys, err := s.q.ApiKeyListByUser(ctx, s.db, p.UserID)
	if err != nil {
		return internal(MsgAPIKeyError, err)
	}
	var hash []byte
	for _, k := range keys {
		if k.ApiKeyID == id && k.RevokedAt == nil {
			hash = bytes.Clone(k.KeyHash)
		}
	}
	if hash == nil {
		return fail(fiber.StatusNotFound, MsgAPIKeyNotFound)
	}
	if _, err := s.q.ApiKeyRevoke(ctx, s.db, models.ApiKeyRevokeParams{ApiKeyID: id, UserID: p.UserID}); err != nil {
		return internal(MsgAPIKeyError, err)
	}
	if err := s.tokens.ForgetAPIKey(ctx, hash, id, p.UserID); err != nil {
		return internal(MsgAPIKeyError, err)
	}
	return c.JSON(fiber.Map{"message": MsgAPIKeyRevoked})
}
