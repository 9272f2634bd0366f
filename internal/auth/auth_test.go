package auth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/testenv"
)

type ends struct {
	mu  sync.Mutex
	ids map[uuid.UUID]int
}

func (e *ends) hook(_ context.Context, sid uuid.UUID, _ time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ids[sid]++
	return nil
}

func (e *ends) count(sid uuid.UUID) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ids[sid]
}

func newStore(t *testing.T, ttl auth.TTLs) (*auth.Store, *ends) {
	t.Helper()
	e := &ends{ids: map[uuid.UUID]int{}}
	if ttl.Auth == 0 {
		ttl.Auth = time.Hour
	}
	if ttl.Session == 0 {
		ttl.Session = time.Hour
	}
	if ttl.Verification == 0 {
		ttl.Verification = time.Hour
	}
	if ttl.Reset == 0 {
		ttl.Reset = time.Hour
	}
	return auth.New(testenv.Redis(t), ttl, e.hook, nil), e
}

func login(t *testing.T, s *auth.Store, uid uuid.UUID) (auth.Login, auth.Session) {
	t.Helper()
	ctx := context.Background()
	l, err := s.IssueAuth(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.CreateSession(ctx, auth.Parent{UserID: uid, Gen: l.Gen, AuthToken: l.Token}, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	return l, sess
}

func TestLoginSessionProject(t *testing.T) {
	s, _ := newStore(t, auth.TTLs{})
	ctx := context.Background()
	uid := uuid.New()
	l, sess := login(t, s, uid)

	got, err := s.Auth(ctx, l.Token)
	if err != nil || got.UserID != uid {
		t.Fatalf("Auth = %+v, %v", got, err)
	}
	if _, err := s.Auth(ctx, ""); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("empty auth token: %v", err)
	}
	if _, err := s.Auth(ctx, uuid.NewString()); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown auth token: %v", err)
	}
	cur, err := s.CurrentSession(ctx, auth.Parent{UserID: uid, Gen: l.Gen, AuthToken: l.Token})
	if err != nil || cur.Token != sess.Token || cur.ID != sess.ID {
		t.Fatalf("CurrentSession = %+v, %v", cur, err)
	}
	if sess.Token == sess.ID.String() {
		t.Fatal("session token equals the session id")
	}

	pid := uuid.New()
	p, err := s.IssueProject(ctx, sess, pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Token == pid.String() {
		t.Fatal("project token equals the project id (S1)")
	}
	gs, gp, err := s.SessionProject(ctx, sess.Token, p.Token)
	if err != nil || gs.UserID != uid || gp.ProjectID != pid || gp.SessionID != sess.ID {
		t.Fatalf("SessionProject = %+v %+v %v", gs, gp, err)
	}
	if _, _, err := s.SessionProject(ctx, sess.Token, uuid.NewString()); !errors.Is(err, auth.ErrNoProject) {
		t.Fatalf("unknown project token: %v", err)
	}

	// A second login of the same user has its own session; the project
	// token of the first session is not valid with the second.
	_, sess2 := login(t, s, uid)
	if sess2.Token == sess.Token {
		t.Fatal("second login shares the session (R2)")
	}
	if _, _, err := s.SessionProject(ctx, sess2.Token, p.Token); !errors.Is(err, auth.ErrNoProject) {
		t.Fatalf("project token used with another session: %v", err)
	}
}

func TestSessionRefreshedByActivity(t *testing.T) {
	s, e := newStore(t, auth.TTLs{Session: 600 * time.Millisecond})
	ctx := context.Background()
	_, sess := login(t, s, uuid.New())
	for i := 0; i < 5; i++ {
		time.Sleep(250 * time.Millisecond)
		if _, err := s.Session(ctx, sess.Token); err != nil {
			t.Fatalf("session died after %d refreshes: %v", i, err)
		}
	}
	time.Sleep(800 * time.Millisecond)
	if _, err := s.Session(ctx, sess.Token); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("idle session still valid: %v", err)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 1 || e.count(sess.ID) != 1 {
		t.Fatalf("Sweep = %d, %v; hook ran %d times", n, err, e.count(sess.ID))
	}
	if n, _ := s.Sweep(ctx); n != 0 || e.count(sess.ID) != 1 {
		t.Fatal("session ended twice")
	}
}

func TestSessionEndsWithItsLoginOnly(t *testing.T) {
	rdb := testenv.Redis(t)
	e := &ends{ids: map[uuid.UUID]int{}}
	short := auth.New(rdb, auth.TTLs{Auth: 500 * time.Millisecond, Session: time.Hour}, e.hook, nil)
	long := auth.New(rdb, auth.TTLs{Auth: time.Hour, Session: time.Hour}, e.hook, nil)
	ctx := context.Background()
	uid := uuid.New()
	_, first := login(t, short, uid)
	_, second := login(t, long, uid)

	time.Sleep(700 * time.Millisecond)
	if _, err := long.Session(ctx, first.Token); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("session outlived its login: %v", err)
	}
	// The other login's session is unaffected.
	if _, err := long.Session(ctx, second.Token); err != nil {
		t.Fatalf("another login's session died: %v", err)
	}
	long.Sweep(ctx)
	if e.count(first.ID) != 1 || e.count(second.ID) != 0 {
		t.Fatalf("hook ran %d/%d times", e.count(first.ID), e.count(second.ID))
	}
}

func TestRevokeUserKillsEverythingAtOnce(t *testing.T) {
	s, e := newStore(t, auth.TTLs{})
	ctx := context.Background()
	uid, other := uuid.New(), uuid.New()
	l1, s1 := login(t, s, uid)
	l2, s2 := login(t, s, uid)
	lo, so := login(t, s, other)
	p1, _ := s.IssueProject(ctx, s1, uuid.New())
	hash := auth.HashAPIKey("c4m_example")
	gen, _ := s.Gen(ctx, uid)
	if err := s.CacheAPIKey(ctx, hash, auth.KeyOwner{KeyID: uuid.New(), UserID: uid, Gen: gen}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.CachedAPIKey(ctx, hash); !ok {
		t.Fatal("cache miss before revocation")
	}

	if err := s.RevokeUser(ctx, uid); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{l1.Token, l2.Token} {
		if _, err := s.Auth(ctx, tok); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("auth token survived revocation: %v", err)
		}
	}
	for _, tok := range []string{s1.Token, s2.Token} {
		if _, err := s.Session(ctx, tok); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("session survived revocation: %v", err)
		}
	}
	if _, _, err := s.SessionProject(ctx, s1.Token, p1.Token); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("project survived revocation: %v", err)
	}
	if _, ok, _ := s.CachedAPIKey(ctx, hash); ok {
		t.Fatal("cached api key survived revocation")
	}
	if e.count(s1.ID) != 1 || e.count(s2.ID) != 1 {
		t.Fatalf("revoked sessions not ended once: %d %d", e.count(s1.ID), e.count(s2.ID))
	}
	// Others are untouched; new logins of the user work.
	if _, err := s.Auth(ctx, lo.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, so.Token); err != nil {
		t.Fatal(err)
	}
	l3, s3 := login(t, s, uid)
	if _, err := s.Auth(ctx, l3.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, s3.Token); err != nil {
		t.Fatal(err)
	}
}

func TestEndSessionAndLogout(t *testing.T) {
	s, e := newStore(t, auth.TTLs{})
	ctx := context.Background()
	uid := uuid.New()
	l, sess := login(t, s, uid)
	p, _ := s.IssueProject(ctx, sess, uuid.New())
	if err := s.EndSession(ctx, sess.Token); err != nil {
		t.Fatal(err)
	}
	if err := s.EndSession(ctx, sess.Token); err != nil {
		t.Fatal(err)
	}
	if e.count(sess.ID) != 1 {
		t.Fatalf("hook ran %d times", e.count(sess.ID))
	}
	if _, _, err := s.SessionProject(ctx, sess.Token, p.Token); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("ended session still valid")
	}
	if _, err := s.CurrentSession(ctx, auth.Parent{UserID: uid, AuthToken: l.Token}); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("ended session still current")
	}
	_, sess2 := login(t, s, uid)
	_ = sess2
	if err := s.Logout(ctx, l.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Auth(ctx, l.Token); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("logged-out token valid")
	}
	if _, err := s.CreateSession(ctx, auth.Parent{UserID: uid, AuthToken: l.Token}, uuid.New()); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("session created for a dead login: %v", err)
	}
}

func TestAPIKeySession(t *testing.T) {
	s, e := newStore(t, auth.TTLs{})
	ctx := context.Background()
	uid, kid := uuid.New(), uuid.New()
	key, hash, display := auth.NewAPIKey()
	if !auth.LooksLikeAPIKey(key) || len(hash) != 32 || len(display) >= len(key) {
		t.Fatalf("key %q display %q", key, display)
	}
	p := auth.Parent{UserID: uid, KeyID: kid}
	sess, err := s.CreateSession(ctx, p, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.CurrentSession(ctx, p)
	if err != nil || cur.Token != sess.Token || cur.KeyID != kid {
		t.Fatalf("CurrentSession = %+v %v", cur, err)
	}
	if err := s.ForgetAPIKey(ctx, hash, kid, uid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, sess.Token); !errors.Is(err, auth.ErrNotFound) || e.count(sess.ID) != 1 {
		t.Fatalf("key session survived revocation: %v", err)
	}
}

func TestEmailTokensAreSingleUse(t *testing.T) {
	s, _ := newStore(t, auth.TTLs{Reset: 300 * time.Millisecond})
	ctx := context.Background()
	uid := uuid.New()
	v, err := s.IssueVerification(ctx, uid, "v@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got, email, err := s.ConsumeVerification(ctx, v); err != nil || got != uid || email != "v@example.com" {
		t.Fatalf("first use: %v %q %v", got, email, err)
	}
	if _, _, err := s.ConsumeVerification(ctx, v); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("verification token used twice")
	}
	r, _ := s.IssueReset(ctx, uid, "a@example.com")
	if got, email, err := s.PeekReset(ctx, r); err != nil || got != uid || email != "a@example.com" {
		t.Fatal("peek failed")
	}
	if _, _, err := s.ConsumeReset(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PeekReset(ctx, r); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("reset token used twice")
	}
	r2, _ := s.IssueReset(ctx, uid, "a@example.com")
	time.Sleep(400 * time.Millisecond)
	if _, _, err := s.ConsumeReset(ctx, r2); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("expired reset token accepted")
	}
}

// TestSessionCounted: the lookup answers as SessionProject does and counts
// in the user's counter on success, in the fallback otherwise.
func TestSessionCounted(t *testing.T) {
	s, _ := newStore(t, auth.TTLs{})
	ctx := context.Background()
	uid := uuid.New()
	_, sess := login(t, s, uid)
	proj, err := s.IssueProject(ctx, sess, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	pre := "test-counted:" + uuid.NewString() + "|"
	c := auth.Count{UserPrefix: pre, Fallback: pre + "ip:192.0.2.1", Window: time.Minute}
	for i := int64(1); i <= 2; i++ {
		got, p, n, err := s.SessionCounted(ctx, sess.Token, proj.Token, true, c)
		if err != nil || got.ID != sess.ID || p.ProjectID != proj.ProjectID {
			t.Fatalf("lookup = %+v %+v %v", got, p, err)
		}
		if n.N != i || n.TTL <= 0 || n.TTL > time.Minute {
			t.Fatalf("count %d = %+v", i, n)
		}
	}
	// Without the project: ErrNoProject, counted in the fallback.
	if _, _, n, err := s.SessionCounted(ctx, sess.Token, "", true, c); !errors.Is(err, auth.ErrNoProject) || n.N != 1 {
		t.Fatalf("no project = %+v %v", n, err)
	}
	// An unknown session, an empty token: ErrNotFound, counted in the fallback.
	if _, _, n, err := s.SessionCounted(ctx, uuid.NewString(), "", false, c); !errors.Is(err, auth.ErrNotFound) || n.N != 2 {
		t.Fatalf("unknown session = %+v %v", n, err)
	}
	if _, _, n, err := s.SessionCounted(ctx, "", "", false, c); !errors.Is(err, auth.ErrNotFound) || n.N != 3 {
		t.Fatalf("empty token = %+v %v", n, err)
	}
	// The session only: the user's counter.
	if got, _, n, err := s.SessionCounted(ctx, sess.Token, "", false, c); err != nil || got.UserID != uid || n.N != 3 {
		t.Fatalf("session only = %+v %v", n, err)
	}
}
