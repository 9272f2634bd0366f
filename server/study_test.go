package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Study tests run one study at a time in the package's shared database and
// end it when they finish (t.Cleanup), since only one study may run.

// expectedArm computes, independently of pickArm, the arm index a unit
// gets: sha256(seed (8 bytes, big-endian) || study id || unit id), its
// first 8 bytes as a big-endian integer modulo the total weight, walked
// over the weights in arm order.
func expectedArm(seed int64, study, unit uuid.UUID, weights []int64) int {
	buf := binary.BigEndian.AppendUint64(nil, uint64(seed))
	buf = append(append(buf, study[:]...), unit[:]...)
	sum := sha256.Sum256(buf)
	var total int64
	for _, w := range weights {
		total += w
	}
	v := int64(binary.BigEndian.Uint64(sum[:8]) % uint64(total))
	for i, w := range weights {
		if v < w {
			return i
		}
		v -= w
	}
	panic("unreachable")
}

// studyEnv is a plugin server with two plugin configs for arms.
type studyEnv struct {
	*pluginEnv
	admin          *client
	cfgA, cfgB     int64
	docA, docB     string
	unknownModelID int64
}

func newStudyEnv(t *testing.T) *studyEnv {
	e := newPluginEnv(t, nil)
	admin, _ := e.newAdmin()
	se := &studyEnv{pluginEnv: e, admin: admin, unknownModelID: 987654321}
	se.docA, se.docB = `{"arm": "A `+uuid.NewString()+`"}`, `{"arm": "B `+uuid.NewString()+`"}`
	se.cfgA = int64(admin.expect("POST", "/api/config/", map[string]any{"config_data": se.docA}, 201).body["config_id"].(float64))
	se.cfgB = int64(admin.expect("POST", "/api/config/", map[string]any{"config_data": se.docB}, 201).body["config_id"].(float64))
	return se
}

// create makes a study and ends it when the test ends.
func (se *studyEnv) create(body map[string]any) (uuid.UUID, []any) {
	se.t.Helper()
	r := se.admin.expect("POST", "/api/analytics/studies/create", body, 201)
	id := uuid.MustParse(r.body["study_id"].(string))
	se.t.Cleanup(func() {
		se.exec("UPDATE study SET status = 'ended' WHERE study_id = $1 AND status <> 'ended'", id)
		se.srv.studies.invalidate()
	})
	return id, r.body["arms"].([]any)
}

// complete asks for a completion from the unknown model and returns the
// stored query's study, arm and config, and how many generations it has.
func (se *studyEnv) complete(c *client, prefix string) (mq uuid.UUID, study *uuid.UUID, arm *int64, config int64, gens int) {
	se.t.Helper()
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{se.unknownModelID}, prefix, "\n"), 200)
	mq = uuid.MustParse(r.body["data"].(map[string]any)["meta_query_id"].(string))
	if err := se.srv.db.QueryRow(context.Background(),
		"SELECT study_id, arm_id, config_id, (SELECT count(*) FROM generation g WHERE g.meta_query_id = q.meta_query_id) FROM meta_query q WHERE meta_query_id = $1",
		mq).Scan(&study, &arm, &config, &gens); err != nil {
		se.t.Fatal(err)
	}
	return
}

func TestStudyAccess(t *testing.T) {
	e := newEnv(t, nil)
	member, _ := e.newMember()
	body := map[string]any{"name": "x", "config_ids": []int{1}, "default_config_id": 1}
	if r := member.expect("POST", "/api/analytics/studies/create", body, 403); r.body["detail"] != MsgAdminRequired {
		t.Errorf("member: %s", r.raw)
	}
	member.expect("GET", "/api/analytics/studies/list", nil, 403)
	e.client().expect("GET", "/api/analytics/studies/list", nil, 401)
	e.client().expect("POST", "/api/analytics/studies/"+uuid.NewString()+"/start", nil, 401)
}

func TestStudyValidation(t *testing.T) {
	se := newStudyEnv(t)
	a := se.admin
	for name, tc := range map[string]struct {
		body map[string]any
		loc  []any
	}{
		"no arms":       {map[string]any{"name": "s"}, []any{"body", "arms"}},
		"unknown unit":  {map[string]any{"name": "s", "unit": "team", "arms": []any{map[string]any{"name": "a", "config_id": 1}}}, []any{"body", "unit"}},
		"unknown cfg":   {map[string]any{"name": "s", "arms": []any{map[string]any{"name": "a", "config_id": 99999999}}}, []any{"body", "arms", 0.0, "config_id"}},
		"policy typo":   {map[string]any{"name": "s", "arms": []any{map[string]any{"name": "a", "config_id": 1, "policy": map[string]any{"max_token": 3}}}}, []any{"body", "arms", 0.0, "policy", "max_token"}},
		"bad context":   {map[string]any{"name": "s", "arms": []any{map[string]any{"name": "a", "config_id": 1, "policy": map[string]any{"context": "all"}}}}, []any{"body", "arms", 0.0, "policy", "context"}},
		"chat model":    {map[string]any{"name": "s", "arms": []any{map[string]any{"name": "a", "config_id": 1, "policy": map[string]any{"model_ids": []int64{se.ids["tiny-instruct"]}}}}}, []any{"body", "arms", 0.0, "policy", "model_ids", 0.0}},
		"two baselines": {map[string]any{"name": "s", "arms": []any{map[string]any{"name": "a", "config_id": 1, "baseline": true}, map[string]any{"name": "b", "config_id": 1, "baseline": true}}}, []any{"body", "arms"}},
		"same names":    {map[string]any{"name": "s", "arms": []any{map[string]any{"name": "a", "config_id": 1}, map[string]any{"name": "a", "config_id": 1}}}, []any{"body", "arms", 1.0, "name"}},
		"ends first":    {map[string]any{"name": "s", "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z", "arms": []any{map[string]any{"name": "a", "config_id": 1}}}, []any{"body", "ends_at"}},
		"zero cap":      {map[string]any{"name": "s", "max_participants": 0, "arms": []any{map[string]any{"name": "a", "config_id": 1}}}, []any{"body", "max_participants"}},
	} {
		r := a.expect("POST", "/api/analytics/studies/create", tc.body, 422)
		found := false
		for _, d := range r.body["detail"].([]any) {
			if fmt.Sprint(d.(map[string]any)["loc"]) == fmt.Sprint(tc.loc) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no error at %v in %s", name, tc.loc, r.raw)
		}
	}
	a.expect("GET", "/api/analytics/studies/not-a-uuid/details", nil, 422)
	a.expect("GET", "/api/analytics/studies/"+uuid.NewString()+"/details", nil, 404)
	a.expect("GET", "/api/analytics/studies/list?status=done", nil, 422)
}

// TestStudyUserUnits runs a study randomising users over two arms with a
// cap of six participants: arm A answers with a real model in place of the
// unknown one the plugin asks for, arm B answers nothing (its minimum
// prefix is longer than any request's). Every query records its arm, the
// arm is the one the seeded hash gives, the plugin reads its arm's config,
// the cap turns the seventh and eighth users away, pause stops exposure
// and a resumed study keeps every user's arm.
func TestStudyUserUnits(t *testing.T) {
	se := newStudyEnv(t)
	coder := se.ids["tiny-coder"]
	const seed = 424242
	id, arms := se.create(map[string]any{
		"name": "user units " + uuid.NewString()[:6], "unit": "user", "seed": seed, "max_participants": 6,
		"arms": []any{
			map[string]any{"name": "A", "config_id": se.cfgA, "weight": 1, "baseline": true,
				"policy": map[string]any{"model_ids": []int64{coder}, "max_tokens": 2}},
			map[string]any{"name": "B", "config_id": se.cfgB, "weight": 2, "policy": map[string]any{"min_prefix_chars": 100000}},
		},
	})
	armIDs := []int64{int64(arms[0].(map[string]any)["arm_id"].(float64)), int64(arms[1].(map[string]any)["arm_id"].(float64))}

	// A draft study exposes nobody.
	first := se.member("study-" + uuid.NewString()[:8] + "@example.com")
	if _, study, _, _, gens := se.complete(first, "def f():\n    return "); study != nil || gens != 0 {
		t.Errorf("draft study: study %v, %d generations", study, gens)
	}
	r := se.admin.expect("POST", "/api/analytics/studies/"+id.String()+"/start", nil, 200)
	if r.body["study"].(map[string]any)["status"] != "running" {
		t.Fatalf("start: %s", r.raw)
	}
	// A second study cannot run beside it.
	other, _ := se.create(map[string]any{"name": "other", "arms": []any{map[string]any{"name": "a", "config_id": 1}}})
	if r := se.admin.expect("POST", "/api/analytics/studies/"+other.String()+"/start", nil, 409); r.body["detail"] != MsgStudyOtherRuns {
		t.Errorf("second start: %s", r.raw)
	}

	type user struct {
		c   *client
		id  uuid.UUID
		arm int // expected arm index; -1 when turned away by the cap
	}
	var users []user
	for i := range 8 {
		email := fmt.Sprintf("study-%d-%s@example.com", i, uuid.NewString()[:8])
		uid := uuid.MustParse(se.signup(email))
		c := se.loggedIn(email) // sign-in enrols: this study randomises users
		c.expect("POST", "/api/project/create", map[string]any{"project_name": "demo"}, 201)
		u := user{c: c, id: uid, arm: -1}
		if i < 6 {
			u.arm = expectedArm(seed, id, uid, []int64{1, 2})
		}
		users = append(users, u)
	}
	perArm := map[int]int{}
	for i, u := range users {
		_, study, arm, config, gens := se.complete(u.c, "def add(a, b):\n    return ")
		wantConfig := map[int]int64{-1: 1, 0: se.cfgA, 1: se.cfgB}[u.arm]
		doc := u.c.expect("GET", "/api/user/get", nil, 200).body["config"]
		switch {
		case u.arm < 0:
			if study != nil || arm != nil || config != 1 || gens != 0 || doc == se.docA || doc == se.docB {
				t.Errorf("user %d past the cap: study %v arm %v config %d, %d generations, config doc %v", i, study, arm, config, gens, doc)
			}
		default:
			perArm[u.arm]++
			wantGens := map[int]int{0: 1, 1: 0}[u.arm]
			wantDoc := map[int]string{0: se.docA, 1: se.docB}[u.arm]
			if study == nil || *study != id || arm == nil || *arm != armIDs[u.arm] || config != wantConfig || gens != wantGens || doc != wantDoc {
				t.Errorf("user %d (arm %d): study %v arm %v config %d, %d generations, config doc %v; want arm %d config %d, %d generations",
					i, u.arm, study, arm, config, gens, doc, armIDs[u.arm], wantConfig, wantGens)
			}
		}
	}
	if perArm[0] == 0 || perArm[1] == 0 {
		t.Logf("the seed put every participant in one arm: %v", perArm)
	}
	// Arm A's token budget is in force and recorded for replay.
	var maxGen int
	var sampledMax int
	if err := se.srv.db.QueryRow(context.Background(), `SELECT coalesce(max(g.tokens_generated), 0), coalesce(max((g.sampler->>'max_tokens')::int), 0)
		FROM generation g JOIN meta_query q USING (meta_query_id) WHERE q.arm_id = $1`, armIDs[0]).Scan(&maxGen, &sampledMax); err != nil {
		t.Fatal(err)
	}
	if perArm[0] > 0 && (maxGen > 2 || sampledMax != 2) {
		t.Errorf("arm A: up to %d tokens generated, sampler max_tokens %d; want at most 2 and 2", maxGen, sampledMax)
	}
	// One logged assignment per participant, in its arm.
	if n := se.count("SELECT count(*) FROM config_assignment_history WHERE study_id = $1", id); n != 6 {
		t.Errorf("%d assignments logged, want 6", n)
	}
	for _, u := range users[:6] {
		if n := se.count("SELECT count(*) FROM config_assignment_history WHERE study_id = $1 AND user_id = $2 AND arm_id = $3 AND reason = 'enrol'",
			id, u.id, armIDs[u.arm]); n != 1 {
			t.Errorf("user %v: %d assignment rows for arm %d", u.id, n, armIDs[u.arm])
		}
	}
	d := se.admin.expect("GET", "/api/analytics/studies/"+id.String()+"/details", nil, 200)
	if d.body["participants"] != 6.0 {
		t.Errorf("details participants = %v", d.body["participants"])
	}
	for i, a := range d.body["arms"].([]any) {
		m := a.(map[string]any)
		if m["assigned_units"] != float64(perArm[i]) || m["exposed_queries"] != float64(perArm[i]) {
			t.Errorf("details arm %d: %v units, %v queries; want %d", i, m["assigned_units"], m["exposed_queries"], perArm[i])
		}
	}

	// Paused: nobody is exposed. Resumed: every participant has their arm.
	se.admin.expect("POST", "/api/analytics/studies/"+id.String()+"/pause", nil, 200)
	if _, study, _, config, _ := se.complete(users[0].c, "x = "); study != nil || config != 1 {
		t.Errorf("paused: study %v config %d", study, config)
	}
	se.admin.expect("POST", "/api/analytics/studies/"+id.String()+"/pause", nil, 409)
	se.admin.expect("POST", "/api/analytics/studies/"+id.String()+"/start", nil, 200)
	for i, u := range users[:6] {
		if _, _, arm, _, _ := se.complete(u.c, "y = "); arm == nil || *arm != armIDs[u.arm] {
			t.Errorf("user %d after resume: arm %v, want %d", i, arm, armIDs[u.arm])
		}
	}
	// Raising the cap lets the users turned away in.
	se.admin.expect("PATCH", "/api/analytics/studies/"+id.String(), map[string]any{"max_participants": 5}, 422)
	se.admin.expect("PATCH", "/api/analytics/studies/"+id.String(), map[string]any{"max_participants": 8}, 200)
	if _, study, arm, _, _ := se.complete(users[7].c, "z = "); study == nil || arm == nil ||
		*arm != armIDs[expectedArm(seed, id, users[7].id, []int64{1, 2})] {
		t.Errorf("after raising the cap: study %v arm %v", study, arm)
	}

	r = se.admin.expect("POST", "/api/analytics/studies/"+id.String()+"/end", nil, 200)
	if r.body["study"].(map[string]any)["status"] != "ended" {
		t.Errorf("end: %s", r.raw)
	}
	if r := se.admin.expect("POST", "/api/analytics/studies/"+id.String()+"/start", nil, 409); r.body["detail"] != MsgStudyEnded {
		t.Errorf("restart an ended study: %s", r.raw)
	}
	if _, study, _, _, _ := se.complete(users[0].c, "w = "); study != nil {
		t.Errorf("ended study still exposes: %v", study)
	}
	list := se.admin.expect("GET", "/api/analytics/studies/list?status=ended", nil, 200)
	found := false
	for _, s := range list.body["studies"].([]any) {
		if s.(map[string]any)["study_id"] == id.String() {
			found = s.(map[string]any)["participants"] == 7.0
		}
	}
	if !found {
		t.Errorf("the ended study with 7 participants (six, then one after the cap was raised) is not listed: %s", list.raw)
	}
}

// TestStudyRequestUnits randomises each request on its own: a request's
// arm follows from its query id, and both arms answer one user.
func TestStudyRequestUnits(t *testing.T) {
	se := newStudyEnv(t)
	const seed = 7
	id, arms := se.create(map[string]any{
		"name": "request units", "unit": "request", "seed": seed, "start": true,
		"arms": []any{
			map[string]any{"name": "A", "config_id": se.cfgA, "policy": map[string]any{"model_ids": []int64{se.ids["tiny-coder"]}}},
			map[string]any{"name": "B", "config_id": se.cfgB, "policy": map[string]any{"min_prefix_chars": 100000}},
		},
	})
	armIDs := []int64{int64(arms[0].(map[string]any)["arm_id"].(float64)), int64(arms[1].(map[string]any)["arm_id"].(float64))}
	c := se.member("request-units-" + uuid.NewString()[:8] + "@example.com")
	seen := map[int64]int{}
	for range 12 {
		mq, study, arm, _, gens := se.complete(c, "print(")
		want := expectedArm(seed, id, mq, []int64{1, 1})
		if study == nil || arm == nil || *arm != armIDs[want] || gens != 1-want {
			t.Errorf("query %v: arm %v, %d generations; want arm %d", mq, arm, gens, armIDs[want])
		}
		if arm != nil {
			seen[*arm]++
		}
	}
	if len(seen) != 2 {
		t.Errorf("12 requests reached arms %v, want both", seen)
	}
	// Request units log no assignment rows: the queries are the log.
	if n := se.count("SELECT count(*) FROM config_assignment_history WHERE study_id = $1", id); n != 0 {
		t.Errorf("%d assignment rows for a request-unit study", n)
	}
}

// TestStudyDebounce: with an arm's 400 ms debounce, a request followed
// 100 ms later by another for the same session and file is answered as
// superseded and only the newer one reaches the model.
func TestStudyDebounce(t *testing.T) {
	se := newStudyEnv(t)
	se.create(map[string]any{
		"name": "debounce", "start": true,
		"arms": []any{map[string]any{"name": "A", "config_id": se.cfgA,
			"policy": map[string]any{"model_ids": []int64{se.ids["tiny-coder"]}, "debounce_ms": 400}}},
	})
	c := se.member("debounce-" + uuid.NewString()[:8] + "@example.com")
	var wg sync.WaitGroup
	var older resp
	wg.Go(func() {
		older = c.do("POST", "/api/completion/request", completionBody([]int64{1}, "def f(", ")\n"))
	})
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	newer := c.expect("POST", "/api/completion/request", completionBody([]int64{1}, "def fo(", ")\n"), 200)
	wg.Wait()
	if older.status != 200 {
		t.Fatalf("older request: %d %s", older.status, older.raw)
	}
	item := func(r resp) map[string]any {
		return r.body["data"].(map[string]any)["completions"].([]any)[0].(map[string]any)
	}
	if item(older)["error"] != "superseded" {
		t.Errorf("older request: %s, want superseded", older.raw)
	}
	if _, ok := item(newer)["completion"]; !ok {
		t.Errorf("newer request: %s, want a completion", newer.raw)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("the newer request was answered after %v, before its debounce", waited)
	}
}

// TestStudySessionUnits randomises sessions: each of one user's sessions
// gets the arm its session id hashes to, logged once per session.
func TestStudySessionUnits(t *testing.T) {
	se := newStudyEnv(t)
	const seed = 99
	id, arms := se.create(map[string]any{
		"name": "session units", "unit": "session", "seed": seed, "start": true,
		"arms": []any{
			map[string]any{"name": "A", "config_id": se.cfgA, "policy": map[string]any{"model_ids": []int64{se.ids["tiny-coder"]}}},
			map[string]any{"name": "B", "config_id": se.cfgB, "policy": map[string]any{"min_prefix_chars": 100000}},
		},
	})
	armIDs := []int64{int64(arms[0].(map[string]any)["arm_id"].(float64)), int64(arms[1].(map[string]any)["arm_id"].(float64))}
	email := "session-units-" + uuid.NewString()[:8] + "@example.com"
	se.signup(email)
	var userID uuid.UUID
	for i := range 6 {
		c := se.loggedIn(email) // a new session each time
		c.expect("POST", "/api/project/create", map[string]any{"project_name": "demo"}, 201)
		for range 2 {
			mq, study, arm, _, gens := se.complete(c, "print(")
			var session uuid.UUID
			if err := se.srv.db.QueryRow(context.Background(), "SELECT session_id, user_id FROM meta_query WHERE meta_query_id = $1",
				mq).Scan(&session, &userID); err != nil {
				t.Fatal(err)
			}
			want := expectedArm(seed, id, session, []int64{1, 1})
			if study == nil || arm == nil || *arm != armIDs[want] || gens != 1-want {
				t.Errorf("session %d (%v): arm %v, %d generations; want arm %d", i, session, arm, gens, armIDs[want])
			}
		}
	}
	// One logged assignment per session, none for the user as such.
	if n := se.count("SELECT count(*) FROM config_assignment_history WHERE study_id = $1 AND user_id = $2 AND session_id IS NOT NULL", id, userID); n != 6 {
		t.Errorf("%d session assignments logged, want 6", n)
	}
	if n := se.count("SELECT count(*) FROM config_assignment_history WHERE study_id = $1 AND session_id IS NULL", id); n != 0 {
		t.Errorf("%d assignments without a session", n)
	}
}
