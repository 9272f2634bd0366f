package server

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

// TestSignupMailJobOnlyWithUser checks that sign-up inserts its
// verification mail job in the user's transaction: when the commit fails
// after both inserts (a deferred trigger refuses the user at commit), no
// user and no job are left; a sign-up that commits leaves its user and
// exactly one mail job, for that user.
func TestSignupMailJobOnlyWithUser(t *testing.T) {
	e := newEnv(t, nil)
	refused := "refused-" + uuid.NewString()[:8] + "@example.com"
	fn := "test_refuse_" + uuid.NewString()[:8]
	e.exec(`CREATE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.email = '` + refused + `' THEN RAISE EXCEPTION 'commit refused by the test'; END IF;
			RETURN NULL;
		END $$`)
	t.Cleanup(func() { e.exec("DROP FUNCTION " + fn + "() CASCADE") })
	// Deferred: it runs at COMMIT, after the user and the job were inserted.
	e.exec(`CREATE CONSTRAINT TRIGGER ` + fn + ` AFTER INSERT ON users DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW EXECUTE FUNCTION ` + fn + `()`)

	jobs := func() (n int, user string) {
		t.Helper()
		err := e.srv.db.QueryRow(context.Background(),
			`SELECT count(*), coalesce(max(args->>'user_id'), '') FROM river_job WHERE queue = $1 AND kind = 'mail'`,
			e.srv.jobs.queue).Scan(&n, &user)
		if err != nil {
			t.Fatal(err)
		}
		return n, user
	}
	users := func(email string) (n int) {
		t.Helper()
		if err := e.srv.db.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE email = $1", email).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	e.client().expect("POST", "/api/user/create",
		map[string]any{"email": refused, "name": "Tester", "password": testPassword, "config_id": 1}, 500)
	if n := users(refused); n != 0 {
		t.Fatalf("%d users after the refused commit", n)
	}
	if n, _ := jobs(); n != 0 {
		t.Fatalf("%d mail jobs after the refused commit, want 0", n)
	}

	email := "committed-" + uuid.NewString()[:8] + "@example.com"
	id := e.signup(email)
	if n := users(email); n != 1 {
		t.Fatalf("%d users after the sign-up", n)
	}
	if n, user := jobs(); n != 1 || user != id {
		t.Fatalf("%d mail jobs (user %s) after the refused and the committed sign-up, want one for %s", n, user, id)
	}
}
