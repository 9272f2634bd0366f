package auth_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/testenv"
)

// TestScopesTravelWithKeys: a cached API key and a key's session carry the
// key's scopes; a login's session holds every scope; entries written
// without scopes read as the default.
func TestScopesTravelWithKeys(t *testing.T) {
	rdb := testenv.Redis(t)
	s := auth.New(rdb, auth.TTLs{Auth: time.Hour, Session: time.Hour}, nil, nil)
	ctx := context.Background()
	uid, kid := uuid.New(), uuid.New()
	acct := auth.ScopesOf([]string{auth.ScopeAccount})

	_, hash, _ := auth.NewAPIKey()
	if err := s.CacheAPIKey(ctx, hash, auth.KeyOwner{KeyID: kid, UserID: uid, Scopes: acct}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if o, ok, err := s.CachedAPIKey(ctx, hash); err != nil || !ok || o.Scopes != acct {
		t.Fatalf("cached key = %+v %v %v", o, ok, err)
	}
	_, old, _ := auth.NewAPIKey()
	raw := `{"kid":"` + kid.String() + `","uid":"` + uid.String() + `","gen":0}`
	if err := rdb.Set(ctx, "api_key:"+hex.EncodeToString(old), raw, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if o, ok, err := s.CachedAPIKey(ctx, old); err != nil || !ok || o.Scopes != auth.DefaultScopes {
		t.Fatalf("cached key without scopes = %+v %v %v", o, ok, err)
	}

	ks, err := s.CreateSession(ctx, auth.Parent{UserID: uid, KeyID: kid, Scopes: acct}, uuid.New())
	if err != nil || ks.Scopes != acct {
		t.Fatalf("key session = %+v %v", ks, err)
	}
	if got, err := s.Session(ctx, ks.Token); err != nil || got.Scopes != acct {
		t.Fatalf("key session looked up = %+v %v", got, err)
	}
	noScopes, err := s.CreateSession(ctx, auth.Parent{UserID: uid, KeyID: uuid.New()}, uuid.New())
	if err != nil || noScopes.Scopes != auth.DefaultScopes {
		t.Fatalf("key session without scopes = %+v %v", noScopes, err)
	}
	_, ls := login(t, s, uid)
	if got, err := s.Session(ctx, ls.Token); err != nil || got.Scopes != auth.AllScopes {
		t.Fatalf("login session = %+v %v", got, err)
	}
}

func TestScopeSet(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{{"completions", true}, {"account", true}, {"admin", false}, {"", false}, {"Account", false}} {
		if got := auth.KnownScope(tc.s); got != tc.want {
			t.Errorf("KnownScope(%q) = %v", tc.s, got)
		}
	}
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{nil, []string{"completions"}},
		{[]string{"admin"}, []string{"completions"}},
		{[]string{"account"}, []string{"account"}},
		{[]string{"account", "completions", "account"}, []string{"completions", "account"}},
	} {
		set := auth.ScopesOf(tc.in)
		if got := set.Names(); !slices.Equal(got, tc.want) {
			t.Errorf("ScopesOf(%q).Names() = %q, want %q", tc.in, got, tc.want)
		}
		b, _ := json.Marshal(set)
		var back auth.ScopeSet
		if err := json.Unmarshal(b, &back); err != nil || back != set {
			t.Errorf("JSON round trip of %q: %s -> %v %v", tc.want, b, back, err)
		}
	}
	if !auth.AllScopes.Has(auth.ScopeAccount) || !auth.AllScopes.Has(auth.ScopeCompletions) ||
		auth.DefaultScopes.Has(auth.ScopeAccount) || auth.AllScopes.Has("admin") {
		t.Fatal("AllScopes or DefaultScopes hold the wrong scopes")
	}
}
