package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
)

// adminAPIRoutes lists the registered /api/admin routes as "METHOD path",
// HEAD twins left out.
func adminAPIRouteList(e *env) []string {
	var out []string
	for _, r := range e.srv.App().GetRoutes(true) {
		if strings.HasPrefix(r.Path, "/api/admin/") && r.Method != "HEAD" {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	sort.Strings(out)
	return out
}

// adminPath fills a route's :id with a value of the resource's id type.
func adminPath(p string) string {
	id := uuid.NewString()
	for _, res := range []string{"/models/", "/arms/", "/configs/", "/jobs/", "/audit/"} {
		if strings.Contains(p, res) {
			id = "987654321"
		}
	}
	if strings.Contains(p, "/generations/") {
		id = uuid.NewString() + ":1"
	}
	return strings.Replace(p, ":id", id, 1)
}

// TestAdminAPIGuard: every registered /api/admin route answers 401 to an
// anonymous caller and 403 {"detail": "Admin privileges required"} to a
// signed-in user who is not an admin, and changes nothing for either.
func TestAdminAPIGuard(t *testing.T) {
	e := newEnv(t, nil)
	member, memberID := e.newMember()
	routes := adminAPIRouteList(e)
	// The overview, a list and a get per resource, and the writes.
	if len(routes) < 1+2*len(adminResources)+4 {
		t.Fatalf("only %d admin routes: %v", len(routes), routes)
	}
	for _, rt := range routes {
		method, p, _ := strings.Cut(rt, " ")
		p = adminPath(p)
		var body any
		if method == "PATCH" {
			body = map[string]any{"is_admin": true}
		}
		if r := e.client().do(method, p, body); r.status != 401 || r.msg() != MsgInvalidOrExpiredAuth {
			t.Errorf("anonymous %s %s = %d %s, want 401", method, p, r.status, r.raw)
		}
		if r := member.do(method, p, body); r.status != 403 || detail(r) != MsgAdminRequired {
			t.Errorf("member %s %s = %d %s, want 403 %q", method, p, r.status, r.raw, MsgAdminRequired)
		}
	}
	// The member's own PATCH of itself was refused too.
	member.expect("PATCH", "/api/admin/users/"+memberID, map[string]any{"is_admin": true}, 403)
	if e.isAdmin(memberID) {
		t.Fatal("a member made itself an admin")
	}
}

// TestAdminAPINoSecrets: no admin list or row carries a password hash, an
// API key hash, a Google subject or a token, whatever the resource.
func TestAdminAPINoSecrets(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()
	r := admin.expect("POST", "/api/user/api-keys", map[string]any{"name": "k", "scopes": []string{"account"}}, 201)
	apiKey := r.body["api_key"].(string)
	e.exec("UPDATE users SET google_sub = $1 WHERE user_id = $2", "google-sub-"+adminID, adminID)
	var hash string
	if err := e.srv.db.QueryRow(context.Background(), "SELECT password_hash FROM users WHERE user_id = $1", adminID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	admin.expect("PATCH", "/api/admin/users/"+adminID, map[string]any{"verified": true}, 200)

	secrets := []string{hash, apiKey, "google-sub-" + adminID, "password_hash", "key_hash", "google_sub", admin.cookies[cookieAuth]}
	check := func(p string, raw []byte) {
		for _, s := range secrets {
			if s != "" && strings.Contains(string(raw), s) {
				t.Errorf("%s answers %q", p, s)
			}
		}
	}
	lists := 0
	for _, rt := range adminAPIRouteList(e) {
		method, p, _ := strings.Cut(rt, " ")
		if method != "GET" || strings.Contains(p, ":id") {
			continue
		}
		lists++
		r := admin.expect("GET", p, nil, 200)
		check(p, r.raw)
	}
	if lists != len(adminResources)+1 {
		t.Errorf("%d lists, want %d", lists, len(adminResources)+1)
	}
	r = admin.expect("GET", "/api/admin/users/"+adminID, nil, 200)
	if r.body["user_id"] != adminID || r.body["google_linked"] != true {
		t.Errorf("user row = %s", r.raw)
	}
	check("/api/admin/users/{id}", r.raw)
}

// pages reads every page of a list with limit, returning the items of
// each page.
func pages(t *testing.T, c *client, base string, limit int) [][]map[string]any {
	t.Helper()
	var out [][]map[string]any
	cursor := ""
	for range 100 {
		p := fmt.Sprintf("%s&limit=%d", base, limit)
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := c.expect("GET", p, nil, 200)
		out = append(out, asList(r.body["items"]))
		next, ok := r.body["next_cursor"].(string)
		if !ok {
			if r.body["next_cursor"] != nil {
				t.Fatalf("next_cursor = %v", r.body["next_cursor"])
			}
			return out
		}
		cursor = next
	}
	t.Fatal("more than 100 pages")
	return nil
}

// TestAdminAPIUsersList: filters narrow the list, every sort key orders it
// both ways with ties broken by id, and keyset pages of a list longer
// than the limit join to the whole list with no row twice or missing.
func TestAdminAPIUsersList(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	tag := "adm" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	var ids []string
	for i := range 7 {
		ids = append(ids, e.signup(fmt.Sprintf("%s-%d@example.com", tag, (i*5)%7)))
	}
	// Ties of joined_at, broken by user_id.
	tie := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	e.exec("UPDATE users SET joined_at = $1 WHERE user_id = ANY($2::uuid[])", tie, ids[2:5])
	e.exec("UPDATE users SET is_admin = true WHERE user_id = ANY($1::uuid[])", ids[:2])

	base := "/api/admin/users?email=" + strings.ToUpper(tag)
	all := admin.expect("GET", base+"&limit=200", nil, 200)
	if items := asList(all.body["items"]); len(items) != 7 || all.body["next_cursor"] != nil {
		t.Fatalf("email filter: %d items, next %v: %s", len(items), all.body["next_cursor"], all.raw)
	}
	if items := asList(admin.expect("GET", base+"&is_admin=true", nil, 200).body["items"]); len(items) != 2 {
		t.Errorf("is_admin=true: %d items", len(items))
	}
	if items := asList(admin.expect("GET", base+"&is_admin=false&verified=false", nil, 200).body["items"]); len(items) != 5 {
		t.Errorf("is_admin=false&verified=false: %d items", len(items))
	}
	if items := asList(admin.expect("GET", base+"&verified=true", nil, 200).body["items"]); len(items) != 0 {
		t.Errorf("verified=true: %d items", len(items))
	}

	for _, sortKey := range []string{"email", "-email", "created_at", "-created_at", "name", "-name"} {
		field := map[string]string{"email": "email", "created_at": "joined_at", "name": "name"}[strings.TrimPrefix(sortKey, "-")]
		full := asList(admin.expect("GET", base+"&limit=200&sort="+sortKey, nil, 200).body["items"])
		less := func(a, b map[string]any) bool {
			va, vb := fmt.Sprint(a[field]), fmt.Sprint(b[field])
			if field == "joined_at" {
				ta, _ := time.Parse(time.RFC3339Nano, va)
				tb, _ := time.Parse(time.RFC3339Nano, vb)
				if !ta.Equal(tb) {
					return ta.Before(tb)
				}
			} else if va != vb {
				return va < vb
			}
			return a["user_id"].(string) < b["user_id"].(string)
		}
		want := slices.Clone(full)
		sort.SliceStable(want, func(i, j int) bool {
			if strings.HasPrefix(sortKey, "-") {
				return less(want[j], want[i])
			}
			return less(want[i], want[j])
		})
		if !slices.EqualFunc(full, want, func(a, b map[string]any) bool { return a["user_id"] == b["user_id"] }) {
			t.Errorf("sort=%s: order %v, want %v", sortKey, column(full, "user_id"), column(want, "user_id"))
		}
		for _, limit := range []int{1, 3} {
			ps := pages(t, admin, base+"&sort="+sortKey, limit)
			var joined []map[string]any
			for i, p := range ps {
				if len(p) > limit || (i < len(ps)-1 && len(p) != limit) {
					t.Errorf("sort=%s limit=%d: page %d has %d items", sortKey, limit, i, len(p))
				}
				joined = append(joined, p...)
			}
			if got, want := column(joined, "user_id"), column(full, "user_id"); !slices.Equal(got, want) {
				t.Errorf("sort=%s limit=%d: pages %v, want %v", sortKey, limit, got, want)
			}
		}
	}

	// Rows added between pages do not shift the next page.
	first := admin.expect("GET", base+"&sort=email&limit=3", nil, 200)
	e.signup(tag + "-0a@example.com") // sorts before the page's end
	next := admin.expect("GET", base+"&sort=email&limit=3&cursor="+url.QueryEscape(first.body["next_cursor"].(string)), nil, 200)
	if got := column(asList(next.body["items"]), "email"); got[0] != tag+"-3@example.com" {
		t.Errorf("page after an insert = %v", got)
	}
}

func column(items []map[string]any, name string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = fmt.Sprint(it[name])
	}
	return out
}

// TestAdminAPIListErrors: a malformed cursor, a cursor of another sort, an
// unknown sort key, filter or parameter, a wrong filter type and a limit
// out of range are 400 {"detail"}; an unknown id is 404.
func TestAdminAPIListErrors(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	e.signup("adm-err-a-" + uuid.NewString()[:8] + "@example.com")
	e.signup("adm-err-b-" + uuid.NewString()[:8] + "@example.com")
	r := admin.expect("GET", "/api/admin/users?email=adm-err-&sort=email&limit=1", nil, 200)
	cur := r.body["next_cursor"].(string)
	for _, p := range []string{
		"/api/admin/users?cursor=not-a-cursor",
		"/api/admin/users?cursor=" + url.QueryEscape("eyJzIjoiZW1haWwifQ"), // {"s":"email"}: no id
		"/api/admin/users?sort=-email&cursor=" + url.QueryEscape(cur),      // made for sort=email
		"/api/admin/users?sort=created_at&cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`{"s":"created_at","v":"abc","id":"x"}`)),
		"/api/admin/users?sort=password_hash",
		"/api/admin/users?sort=",
		"/api/admin/queries?sort=email",
		"/api/admin/users?limit=0",
		"/api/admin/users?limit=201",
		"/api/admin/users?limit=ten",
		"/api/admin/users?is_admin=yes",
		"/api/admin/users?password_hash=x",
		"/api/admin/queries?user_id=42",
		"/api/admin/queries?from=yesterday",
		"/api/admin/overview?window=week",
	} {
		if r := admin.do("GET", p, nil); r.status != 400 || detail(r) == "" {
			t.Errorf("%s = %d %s, want 400 with a detail", p, r.status, r.raw)
		}
	}
	if r := admin.do("GET", "/api/admin/users?sort=nope", nil); !strings.Contains(detail(r), "created_at, email, name") {
		t.Errorf("bad sort detail = %q, want the sort keys", detail(r))
	}
	for _, p := range []string{"/api/admin/users/" + uuid.NewString(), "/api/admin/users/not-a-uuid", "/api/admin/models/x",
		"/api/admin/generations/" + uuid.NewString(), "/api/admin/jobs/987654321"} {
		if r := admin.do("GET", p, nil); r.status != 404 || !strings.HasSuffix(detail(r), "not found") {
			t.Errorf("%s = %d %s, want 404", p, r.status, r.raw)
		}
	}
}

// auditRows lists the audit log's rows of one resource id, newest first.
func auditRows(c *client, resource, id string) []map[string]any {
	r := c.expect("GET", "/api/admin/audit?resource="+resource+"&resource_id="+url.QueryEscape(id), nil, 200)
	return asList(r.body["items"])
}

// TestAdminAPIPatchUser: PATCH sets is_admin and verified and appends an
// audit row with the flags before and after (no email, no name); an admin
// cannot drop their own flag; a write that fails leaves neither the
// change nor its audit row, whether the audit insert fails or the change
// fails at commit, after the audit row was written.
func TestAdminAPIPatchUser(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()
	email := "adm-patch-" + uuid.NewString()[:8] + "@example.com"
	id := e.signup(email)

	r := admin.expect("PATCH", "/api/admin/users/"+id, map[string]any{"is_admin": true, "verified": true}, 200)
	if r.body["is_admin"] != true || r.body["verified"] != true || r.body["verified_at"] == nil || r.body["email"] != email {
		t.Errorf("PATCH = %s", r.raw)
	}
	if !e.isAdmin(id) {
		t.Error("is_admin not set")
	}
	rows := auditRows(admin, "users", id)
	if len(rows) != 1 {
		t.Fatalf("%d audit rows, want 1", len(rows))
	}
	a := rows[0]
	before, _ := a["before"].(map[string]any)
	after, _ := a["after"].(map[string]any)
	if a["action"] != "update" || a["actor_id"] != adminID || before["is_admin"] != false || after["is_admin"] != true ||
		before["verified"] != false || after["verified"] != true {
		t.Errorf("audit row = %v", a)
	}
	if raw := fmt.Sprint(a); strings.Contains(raw, email) || strings.Contains(raw, "Tester") {
		t.Errorf("audit row keeps the email or name: %v", a)
	}
	// The row is also found by its id and by the actor.
	admin.expect("GET", fmt.Sprintf("/api/admin/audit/%v", a["id"]), nil, 200)
	if items := asList(admin.expect("GET", "/api/admin/audit?actor_id="+adminID, nil, 200).body["items"]); len(items) != 1 {
		t.Errorf("audit by actor: %d rows", len(items))
	}

	// Bad bodies and the own flag: refused, nothing written.
	admin.expect("PATCH", "/api/admin/users/"+id, map[string]any{"email": "x@example.com"}, 422)
	admin.expect("PATCH", "/api/admin/users/"+id, map[string]any{"is_admin": "maybe"}, 422)
	if r := admin.expect("PATCH", "/api/admin/users/"+adminID, map[string]any{"is_admin": false}, 409); detail(r) != MsgRevokeOwnAdmin {
		t.Errorf("own flag: %s", r.raw)
	}
	admin.expect("PATCH", "/api/admin/users/"+uuid.NewString(), map[string]any{"is_admin": false}, 404)
	if !e.isAdmin(adminID) || len(auditRows(admin, "users", id)) != 1 || len(auditRows(admin, "users", adminID)) != 0 {
		t.Error("a refused write changed something or left an audit row")
	}

	// The audit insert fails: the change is rolled back with it.
	fn := "adm_fail_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	e.exec(fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$`, fn))
	t.Cleanup(func() { e.exec("DROP FUNCTION " + fn + " CASCADE") })
	e.exec(fmt.Sprintf(`CREATE TRIGGER %s BEFORE INSERT ON admin_audit FOR EACH ROW WHEN (NEW.resource_id = '%s') EXECUTE FUNCTION %s()`, fn, id, fn))
	admin.expect("PATCH", "/api/admin/users/"+id, map[string]any{"is_admin": false}, 500)
	if !e.isAdmin(id) {
		t.Error("the change committed without its audit row")
	}
	e.exec(fmt.Sprintf("DROP TRIGGER %s ON admin_audit", fn))

	// The change fails at commit, after the audit row was inserted: the
	// audit row goes with it, so it was in the change's transaction.
	e.exec(fmt.Sprintf(`CREATE CONSTRAINT TRIGGER %s AFTER UPDATE ON users DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
		WHEN (NEW.user_id = '%s') EXECUTE FUNCTION %s()`, fn, id, fn))
	admin.expect("PATCH", "/api/admin/users/"+id, map[string]any{"is_admin": false}, 500)
	if !e.isAdmin(id) {
		t.Error("the change committed though its commit failed")
	}
	if n := len(auditRows(admin, "users", id)); n != 1 {
		t.Errorf("%d audit rows after a failed commit, want 1", n)
	}
	e.exec(fmt.Sprintf("DROP TRIGGER %s ON users", fn))
	admin.expect("PATCH", "/api/admin/users/"+id, map[string]any{"is_admin": false}, 200)
	if e.isAdmin(id) || len(auditRows(admin, "users", id)) != 2 {
		t.Error("the write after the triggers were dropped did not apply")
	}
}

// TestAdminAPIDeleteUser: DELETE goes through account deletion (the
// user's logins end, with delete_data their queries go) and leaves an
// audit row of the flags; an admin cannot delete themselves here.
func TestAdminAPIDeleteUser(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()
	email := "adm-del-" + uuid.NewString()[:8] + "@example.com"
	id := e.signup(email)
	victim := e.loggedIn(email)
	victim.expect("GET", "/api/user/get", nil, 200)
	var mq uuid.UUID
	if err := e.srv.db.QueryRow(context.Background(),
		"INSERT INTO meta_query (query_type, user_id, config_id, server_version) VALUES ('completion', $1, 1, 'test') RETURNING meta_query_id",
		id).Scan(&mq); err != nil {
		t.Fatal(err)
	}

	if r := admin.expect("DELETE", "/api/admin/users/"+adminID, nil, 409); detail(r) != MsgDeleteSelf {
		t.Errorf("self delete: %s", r.raw)
	}
	admin.expect("DELETE", "/api/admin/users/"+id+"?delete_data=maybe", nil, 422)
	admin.expect("DELETE", "/api/admin/users/"+id+"?delete_data=true", nil, 204)
	admin.expect("GET", "/api/admin/users/"+id, nil, 404)
	victim.expect("GET", "/api/user/get", nil, 401)
	admin.expect("GET", "/api/admin/queries/"+mq.String(), nil, 404)
	rows := auditRows(admin, "users", id)
	if len(rows) != 1 || rows[0]["action"] != "delete" || rows[0]["after"] != nil {
		t.Fatalf("audit rows = %v", rows)
	}
	if before, _ := rows[0]["before"].(map[string]any); before["user_id"] != id || strings.Contains(fmt.Sprint(rows[0]), email) {
		t.Errorf("audit row = %v", rows[0])
	}
	admin.expect("DELETE", "/api/admin/users/"+id, nil, 404)
	if n := len(auditRows(admin, "users", adminID)); n != 0 {
		t.Errorf("the refused self delete left %d audit rows", n)
	}
}

// TestAdminAPIJobs: jobs are listed with filters, and cancel and retry go
// through River's client, each with its audit row.
func TestAdminAPIJobs(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	queue := testQueue()
	ctx := context.Background()
	res, err := e.srv.jobs.client.Insert(ctx, mailArgs{Mail: mailKindVerify, UserID: uuid.New()},
		&river.InsertOpts{Queue: queue, ScheduledAt: time.Now().Add(time.Hour), MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprint(res.Job.ID)
	items := asList(admin.expect("GET", "/api/admin/jobs?kind=mail&queue="+queue, nil, 200).body["items"])
	if len(items) != 1 || fmt.Sprint(items[0]["id"]) != id || items[0]["state"] != "scheduled" || items[0]["max_attempts"] != float64(3) {
		t.Fatalf("jobs = %v", items)
	}
	if _, ok := items[0]["args"]; ok {
		t.Error("a job's arguments are shown")
	}
	r := admin.expect("POST", "/api/admin/jobs/"+id+"/cancel", nil, 200)
	if r.body["state"] != "cancelled" {
		t.Errorf("cancel = %s", r.raw)
	}
	if items := asList(admin.expect("GET", "/api/admin/jobs?state=cancelled&queue="+queue, nil, 200).body["items"]); len(items) != 1 {
		t.Errorf("state=cancelled: %v", items)
	}
	r = admin.expect("POST", "/api/admin/jobs/"+id+"/retry", nil, 200)
	if r.body["state"] != "available" {
		t.Errorf("retry = %s", r.raw)
	}
	rows := auditRows(admin, "jobs", id)
	if len(rows) != 2 || rows[0]["action"] != "retry" || rows[1]["action"] != "cancel" {
		t.Fatalf("audit rows = %v", rows)
	}
	if b, _ := rows[1]["before"].(map[string]any); b["state"] != "scheduled" {
		t.Errorf("cancel's before = %v", rows[1]["before"])
	}
	admin.expect("POST", "/api/admin/jobs/987654321/cancel", nil, 404)
}

// TestAdminAPIQueriesWorkersOverview: queries filter by user, model and
// time; a worker shows its load and models; the overview counts a
// model's requests, acceptance and latency in the hour's buckets.
func TestAdminAPIQueriesWorkersOverview(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	ctx := context.Background()
	user := e.signup("adm-q-" + uuid.NewString()[:8] + "@example.com")
	var model int64
	if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
		"adm-model-"+uuid.NewString()[:8], strings.Repeat("0", 32)+strings.ReplaceAll(uuid.NewString(), "-", "")).Scan(&model); err != nil {
		t.Fatal(err)
	}
	worker := uuid.New()
	t.Cleanup(func() {
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM engine_worker WHERE worker_id = $1", worker)
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM meta_query WHERE user_id = $1", user)
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM model WHERE model_id = $1", model)
	})
	now := time.Now().UTC()
	var mqs []string
	for i, age := range []time.Duration{2 * time.Minute, 20 * time.Minute, 3 * time.Hour} {
		var mq uuid.UUID
		// Stages: redact i+1, context 2(i+1), queue 3(i+1), prefill 4(i+1), decode 5(i+1) ms.
		k := float64(i + 1)
		if err := e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, config_id, server_version, requested_at, total_serving_ms,
				redact_ms, context_ms)
			VALUES ('completion', $1, 1, 'test', $2, $3, $4, $5) RETURNING meta_query_id`, user, now.Add(-age), 100*(i+1), k, 2*k).Scan(&mq); err != nil {
			t.Fatal(err)
		}
		e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted, queue_ms, prefill_ms, decode_ms)
			VALUES ($1, $2, 'x', $3, ARRAY[now()], $4, $5, $6, $7)`, mq, model, 10*(i+1), i == 0, 3*k, 4*k, 5*k)
		mqs = append(mqs, mq.String())
	}

	q := func(p string) []string {
		return column(asList(admin.expect("GET", p, nil, 200).body["items"]), "meta_query_id")
	}
	if got := q("/api/admin/queries?user_id=" + user); !slices.Equal(got, mqs) {
		t.Errorf("user_id: %v, want %v newest first", got, mqs)
	}
	if got := q("/api/admin/queries?sort=created_at&model_id=" + fmt.Sprint(model)); !slices.Equal(got, []string{mqs[2], mqs[1], mqs[0]}) {
		t.Errorf("model_id, oldest first: %v", got)
	}
	from, to := now.Add(-time.Hour).Format(time.RFC3339Nano), now.Add(-10*time.Minute).Format(time.RFC3339Nano)
	if got := q("/api/admin/queries?user_id=" + user + "&from=" + url.QueryEscape(from) + "&to=" + url.QueryEscape(to)); !slices.Equal(got, mqs[1:2]) {
		t.Errorf("from, to: %v", got)
	}
	gens := asList(admin.expect("GET", "/api/admin/generations?sort=generation_time_ms&user_id="+user, nil, 200).body["items"])
	if got := column(gens, "generation_time_ms"); !slices.Equal(got, []string{"10", "20", "30"}) {
		t.Errorf("generations by time: %v", got)
	}
	admin.expect("GET", "/api/admin/generations/"+mqs[0]+":"+fmt.Sprint(model), nil, 200)

	// A dead worker (its heartbeat is old, so no API node sends it work).
	e.exec("INSERT INTO engine_worker (worker_id, host, pid, heartbeat_at) VALUES ($1, 'adm-host', 42, now() - interval '10 minutes')", worker)
	e.exec("INSERT INTO engine_worker_model (worker_id, model_id, slots, slots_busy, queue_len) VALUES ($1, $2, 4, 3, 2)", worker, model)
	w := admin.expect("GET", "/api/admin/workers/"+worker.String(), nil, 200).body
	if w["slots"] != float64(4) || w["slots_busy"] != float64(3) || w["load"] != 0.75 || w["alive"] != false ||
		w["heartbeat_age_ms"].(float64) < 9*60*1000 || len(asList(w["models"])) != 1 || asList(w["models"])[0]["model_id"] != float64(model) {
		t.Errorf("worker = %v", w)
	}
	if items := asList(admin.expect("GET", "/api/admin/workers?alive=false&model_id="+fmt.Sprint(model), nil, 200).body["items"]); len(items) != 1 {
		t.Errorf("workers of the model: %v", items)
	}

	ov := admin.expect("GET", "/api/admin/overview", nil, 200)
	var m map[string]any
	for _, x := range asList(ov.body["models"]) {
		if x["model_id"] == float64(model) {
			m = x
		}
	}
	if m == nil || ov.body["bucket_s"] != float64(300) {
		t.Fatalf("overview without the model: %s", ov.raw)
	}
	buckets := asList(m["buckets"])
	totals, _ := m["totals"].(map[string]any)
	if len(buckets) != 12 || totals["requests"] != float64(2) || totals["accepted"] != float64(1) || totals["acceptance_rate"] != 0.5 {
		t.Fatalf("overview model = %v", m)
	}
	last, second := buckets[len(buckets)-1], buckets[len(buckets)-5]
	if last["requests"] != float64(1) || last["latency_p50_ms"] != float64(100) || last["generation_p95_ms"] != float64(10) ||
		last["acceptance_rate"] != 1.0 || second["requests"] != float64(1) || second["acceptance_rate"] != 0.0 {
		t.Errorf("buckets = %v ... %v", second, last)
	}
	// Each stage's percentiles in the newest bucket (the first query);
	// an empty bucket has them null.
	stages, _ := last["stages"].(map[string]any)
	for i, name := range []string{"redact_ms", "context_ms", "queue_ms", "prefill_ms", "decode_ms"} {
		st, _ := stages[name].(map[string]any)
		if st["p50"] != float64(i+1) || st["p95"] != float64(i+1) {
			t.Errorf("last bucket's %s = %v, want p50 and p95 %d", name, stages[name], i+1)
		}
	}
	first, _ := buckets[0]["stages"].(map[string]any)
	if st, _ := first["queue_ms"].(map[string]any); st == nil || st["p50"] != nil || st["p95"] != nil {
		t.Errorf("an empty bucket's queue_ms = %v, want null percentiles", buckets[0]["stages"])
	}
	if day := admin.expect("GET", "/api/admin/overview?window=day", nil, 200); day.body["bucket_s"] != float64(3600) {
		t.Errorf("day overview = %.200s", day.raw)
	}
}

// TestAdminAPIAuditsExistingWrites: the config, language, model, admin
// grant and study routes append their audit rows too, with the state
// before and after; a refused write appends none.
func TestAdminAPIAuditsExistingWrites(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()
	one := func(resource, id, action string) map[string]any {
		t.Helper()
		for _, row := range auditRows(admin, resource, id) {
			if row["action"] == action {
				if row["actor_id"] != adminID {
					t.Errorf("%s %s %s: actor %v", action, resource, id, row["actor_id"])
				}
				return row
			}
		}
		t.Fatalf("no %s row for %s %s: %v", action, resource, id, auditRows(admin, resource, id))
		return nil
	}
	field := func(row map[string]any, side, name string) any {
		m, _ := row[side].(map[string]any)
		return m[name]
	}

	r := admin.expect("POST", "/api/config/", map[string]any{"config_data": map[string]any{"a": 1}}, 201)
	cfg := fmt.Sprint(r.body["config_id"])
	if row := one("configs", cfg, "create"); row["before"] != nil || field(row, "after", "config_id") != r.body["config_id"] {
		t.Errorf("config create row = %v", row)
	}
	admin.expect("PUT", "/api/config/"+cfg, map[string]any{"config_data": map[string]any{"a": 2}}, 200)
	if row := one("configs", cfg, "update"); fmt.Sprint(field(row, "before", "config_data")) != "map[a:1]" ||
		fmt.Sprint(field(row, "after", "config_data")) != "map[a:2]" {
		t.Errorf("config update row = %v", row)
	}
	admin.expect("DELETE", "/api/config/"+cfg, nil, 200)
	if row := one("configs", cfg, "delete"); row["after"] != nil || field(row, "before", "config_id") == nil {
		t.Errorf("config delete row = %v", row)
	}
	admin.expect("DELETE", "/api/config/1", nil, 409) // in use
	if rows := auditRows(admin, "configs", "1"); len(rows) != 0 {
		t.Errorf("a refused delete left %v", rows)
	}

	name := "adm-lang-" + uuid.NewString()[:8]
	r = admin.expect("POST", "/api/config/languages", map[string]any{"language_name": name}, 201)
	lang := fmt.Sprint(r.body["language_id"])
	one("languages", lang, "create")
	admin.expect("PUT", "/api/config/languages/"+lang, map[string]any{"language_name": name + "x"}, 200)
	if row := one("languages", lang, "update"); field(row, "before", "language_name") != name || field(row, "after", "language_name") != name+"x" {
		t.Errorf("language update row = %v", row)
	}
	admin.expect("DELETE", "/api/config/languages/"+lang, nil, 200)
	one("languages", lang, "delete")

	var model int64
	if err := e.srv.db.QueryRow(context.Background(), "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
		"adm-audit-"+uuid.NewString()[:8], strings.Repeat("0", 32)+strings.ReplaceAll(uuid.NewString(), "-", "")).Scan(&model); err != nil {
		t.Fatal(err)
	}
	admin.expect("DELETE", fmt.Sprintf("/api/config/models/%d", model), nil, 200)
	if row := one("models", fmt.Sprint(model), "delete"); field(row, "before", "file_sha256") == nil {
		t.Errorf("model delete row = %v", row)
	}

	_, member := e.newMember()
	admin.expect("PUT", "/api/config/users/"+member+"/admin", map[string]any{"is_admin": true}, 200)
	if row := one("users", member, "update"); field(row, "before", "is_admin") != false || field(row, "after", "is_admin") != true ||
		field(row, "after", "email") != nil {
		t.Errorf("admin grant row = %v", row)
	}

	r = admin.expect("POST", "/api/analytics/studies", map[string]any{"name": "adm-study",
		"arms": []map[string]any{{"name": "base", "config_id": 1}}}, 201)
	study := r.body["study_id"].(string)
	if row := one("studies", study, "create"); field(row, "after", "status") != "draft" || len(asAnyList(field(row, "after", "arms"))) != 1 {
		t.Errorf("study create row = %v", row)
	}
	admin.expect("PATCH", "/api/analytics/studies/"+study, map[string]any{"description": "d"}, 200)
	if row := one("studies", study, "update"); field(row, "before", "description") != nil || field(row, "after", "description") != "d" {
		t.Errorf("study update row = %v", row)
	}
	admin.expect("POST", "/api/analytics/studies/"+study+"/end", nil, 200)
	if row := one("studies", study, "end"); field(row, "before", "status") != "draft" || field(row, "after", "status") != "ended" {
		t.Errorf("study end row = %v", row)
	}
	admin.expect("POST", "/api/analytics/studies/"+study+"/pause", nil, 409)
	if rows := auditRows(admin, "studies", study); len(rows) != 3 {
		t.Errorf("%d study rows after a refused pause, want 3", len(rows))
	}
}

// TestAdminAPIOpenAPIRows: /openapi.json describes each resource's row
// with the fields its GET /{id} answers, and never a secret's.
func TestAdminAPIOpenAPIRows(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()
	_, ops := fetchOpenAPI(t, e)
	op := ops["GET /api/admin/users/{id}"]
	if op == nil {
		t.Fatal("GET /api/admin/users/{id} is not documented")
	}
	schema := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	props := schema["properties"].(map[string]any)
	row := admin.expect("GET", "/api/admin/users/"+adminID, nil, 200).body
	for k := range row {
		if props[k] == nil {
			t.Errorf("field %s is answered but not documented", k)
		}
	}
	for k := range props {
		if _, ok := row[k]; !ok {
			t.Errorf("field %s is documented but not answered", k)
		}
	}
	if p, _ := props["joined_at"].(map[string]any); p["format"] != "date-time" {
		t.Errorf("joined_at = %v", props["joined_at"])
	}
}

// TestAdminAPIKeysetEveryResource: for every resource and every sort key,
// both ways, pages of two rows join to the list read in one page, with
// no row twice or missing, over rows seeded for it (some with equal sort
// values, so ties are broken by the id).
func TestAdminAPIKeysetEveryResource(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()
	ctx := context.Background()
	tag := "ks" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	tie := time.Date(2002, 3, 4, 5, 6, 7, 0, time.UTC)
	var users []string
	for i := range 3 {
		users = append(users, e.signup(fmt.Sprintf("%s-%d@example.com", tag, i)))
	}
	u0 := users[0]
	for range 3 {
		e.loggedIn(tag + "-0@example.com") // a session each
	}
	for i := range 3 {
		e.exec("INSERT INTO project (project_name, created_by, created_at) VALUES ($1, $2, $3)", fmt.Sprintf("%s-p%d", tag, i%2), u0, tie)
	}
	var modelIDs []int64
	for i := range 3 {
		var id int64
		if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256, registered_at) VALUES ($1, 'test', $2, $3) RETURNING model_id",
			fmt.Sprintf("%s-m%d", tag, i), strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")[:64], tie).Scan(&id); err != nil {
			t.Fatal(err)
		}
		modelIDs = append(modelIDs, id)
	}
	t.Cleanup(func() {
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM engine_worker WHERE host = $1", tag)
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM meta_query WHERE user_id = $1", u0)
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM model WHERE model_id = ANY($1)", modelIDs)
	})
	for range 3 {
		// Silent for ten minutes: not alive, and far from the hour after
		// which the retention sweep (run by other tests at the same time)
		// forgets a worker.
		w := uuid.New()
		e.exec("INSERT INTO engine_worker (worker_id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, 1, $3, now() - interval '10 minutes')", w, tag, tie)
		e.exec("INSERT INTO engine_worker_model (worker_id, model_id, slots) VALUES ($1, $2, 1)", w, modelIDs[0])
	}
	for i := range 3 {
		at := tie
		if i == 2 {
			at = tie.Add(time.Hour)
		}
		var mq uuid.UUID
		if err := e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, config_id, server_version, requested_at)
			VALUES ('completion', $1, 1, 'test', $2) RETURNING meta_query_id`, u0, at).Scan(&mq); err != nil {
			t.Fatal(err)
		}
		for j, m := range modelIDs[:2] {
			e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms) VALUES ($1, $2, 'x', $3)`, mq, m, 10*((i+j)%2))
		}
	}
	var study string
	for i := range 3 {
		r := admin.expect("POST", "/api/analytics/studies", map[string]any{"name": fmt.Sprintf("%s-s%d", tag, i),
			"arms": []map[string]any{{"name": "a", "config_id": 1}, {"name": "b", "config_id": 1}, {"name": "a2", "config_id": 1}}}, 201)
		study = r.body["study_id"].(string)
	}
	for i := range 3 {
		admin.expect("POST", "/api/config/", map[string]any{"config_data": map[string]any{"k": i}}, 201)
	}
	queue := testQueue()
	for i := range 3 {
		e.seedJob(queue, "ks_test", "available", float64(i%2), nil, nil)
	}

	filters := map[string]string{
		"users": "email=" + tag, "projects": "created_by=" + u0, "sessions": "user_id=" + u0,
		"models": "name=" + tag, "workers": "model_id=" + fmt.Sprint(modelIDs[0]), "queries": "user_id=" + u0,
		"generations": "user_id=" + u0, "studies": "name=" + tag, "arms": "study_id=" + study, "configs": "",
		"jobs": "queue=" + queue, "audit": "actor_id=" + adminID,
	}
	idField := map[string]string{"users": "user_id", "projects": "project_id", "sessions": "session_id", "models": "model_id",
		"workers": "worker_id", "queries": "meta_query_id", "generations": "generation_id", "studies": "study_id", "arms": "arm_id",
		"configs": "config_id", "jobs": "id", "audit": "id"}
	routes := map[string]bool{}
	for _, r := range adminResources {
		for _, op := range r.ops() {
			if op.Method != "GET" || strings.HasSuffix(op.Path, "}") {
				continue
			}
			name := strings.TrimPrefix(op.Path, "/api/admin/")
			routes[name] = true
			f, ok := filters[name]
			if !ok {
				t.Errorf("resource %s has no seeded rows in this test", name)
				continue
			}
			var keys []string
			for _, q := range op.Query {
				if q.Name == "sort" {
					// "one of a, b, c, \"-\" first ..."
					list, _, _ := strings.Cut(strings.TrimPrefix(q.Doc, "one of "), ", \"-\"")
					keys = strings.Split(list, ", ")
				}
			}
			if len(keys) == 0 {
				t.Fatalf("%s: no sort keys in %v", name, op.Query)
			}
			for _, key := range keys {
				for _, sort := range []string{key, "-" + key} {
					base := "/api/admin/" + name + "?sort=" + sort + "&" + f
					full := admin.expect("GET", base+"&limit=200", nil, 200)
					if full.body["next_cursor"] != nil {
						t.Fatalf("%s: more than 200 rows; narrow its filter", base)
					}
					items := asList(full.body["items"])
					if len(items) < 3 {
						t.Errorf("%s: %d rows, want at least the 3 seeded", base, len(items))
						continue
					}
					id := func(row map[string]any) string { return fmt.Sprint(row[idField[name]]) }
					var want, got []string
					for _, it := range items {
						want = append(want, id(it))
					}
					for _, p := range pages(t, admin, base, 2) {
						for _, it := range p {
							got = append(got, id(it))
						}
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s: pages of 2 give %v, one page %v", base, got, want)
					}
				}
			}
		}
	}
	if len(routes) != len(adminResources) {
		t.Errorf("%d list routes, want %d", len(routes), len(adminResources))
	}
}
