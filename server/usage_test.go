package server

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// usageDay is one UTC day of usageFixture as GET /api/user/usage must
// answer it.
type usageDay struct {
	day                          time.Time
	completions, shown, accepted int64
	p50, p95                     float64
}

// usageFixture is the seeded usage of one user: five completion queries
// on two UTC days (two days ago and today), and what they add up to.
type usageFixture struct {
	days      []usageDay
	total     [3]int64            // completions, shown, accepted
	languages map[string][3]int64 // completions, shown, accepted
}

// seedUsage writes the fixture's queries for user, and one query of
// another user on the same day that must not count. Rows are deleted when
// the test ends.
//
//	two days ago, Go:   shown+accepted (100 ms), shown (200 ms), not shown (300 ms)
//	today, Python:      two generations, one accepted (50 ms)
//	today, no language: shown+accepted, never answered (no serving time)
func seedUsage(e *env, user uuid.UUID) usageFixture {
	e.t.Helper()
	ctx := context.Background()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	d1 := today.AddDate(0, 0, -2)
	var model int64
	if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
		"usage-model-"+uuid.NewString()[:8], strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")[:64]).Scan(&model); err != nil {
		e.t.Fatal(err)
	}
	other := uuid.MustParse(e.signup("usage-other-" + uuid.NewString()[:8] + "@example.com"))
	e.t.Cleanup(func() {
		ctx := context.Background()
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM meta_query WHERE user_id = ANY($1)", []uuid.UUID{user, other})
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM model WHERE model_id = $1", model)
	})
	type gen struct{ shown, accepted bool }
	insert := func(u uuid.UUID, at time.Time, servingMS *float64, lang string, gens ...gen) {
		e.t.Helper()
		var mq uuid.UUID
		if err := e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, config_id, server_version, requested_at, total_serving_ms)
			VALUES ('completion', $1, 1, 'test', $2, $3) RETURNING meta_query_id`, u, at, servingMS).Scan(&mq); err != nil {
			e.t.Fatal(err)
		}
		if lang != "" {
			e.exec(`INSERT INTO contextual_telemetry (meta_query_id, version_id, trigger_type_id, language_id)
				SELECT $1, 1, 1, language_id FROM programming_language WHERE language_name = $2`, mq, lang)
		}
		for i, g := range gens {
			shown := []time.Time{}
			if g.shown {
				shown = append(shown, at.Add(time.Second))
			}
			// One generation per (query, model): further ones go to
			// models made for them.
			m := model
			if i > 0 {
				if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
					"usage-model-"+uuid.NewString()[:8], strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")[:64]).Scan(&m); err != nil {
					e.t.Fatal(err)
				}
				e.t.Cleanup(func() { _, _ = e.srv.db.Exec(context.Background(), "DELETE FROM model WHERE model_id = $1", m) })
			}
			e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted)
				VALUES ($1, $2, 'x', 10, $3, $4)`, mq, m, shown, g.accepted)
		}
	}
	ms := func(v float64) *float64 { return &v }
	at1 := d1.Add(10 * time.Hour)
	insert(user, at1, ms(100), "Go", gen{true, true})
	insert(user, at1.Add(time.Minute), ms(200), "Go", gen{true, false})
	insert(user, at1.Add(2*time.Minute), ms(300), "Go", gen{false, false})
	at2 := today.Add(time.Minute)
	insert(user, at2, ms(50), "Python", gen{true, true}, gen{true, false})
	insert(user, at2.Add(time.Second), nil, "", gen{true, true})
	insert(other, at2, ms(10), "Go", gen{true, true})
	return usageFixture{
		days: []usageDay{
			{day: d1, completions: 3, shown: 2, accepted: 1, p50: 200, p95: 300},
			{day: today, completions: 2, shown: 3, accepted: 2, p50: 50, p95: 50},
		},
		total:     [3]int64{5, 5, 3},
		languages: map[string][3]int64{"Go": {3, 2, 1}, "Python": {1, 2, 1}},
	}
}

// TestUserUsage: GET /api/user/usage answers the caller's own completion
// queries only, per UTC day with serving-time percentiles and per
// language; it refuses user_id, anonymous callers and API keys without
// the account scope.
func TestUserUsage(t *testing.T) {
	e := newEnv(t, nil)
	email := "usage-" + uuid.NewString()[:8] + "@example.com"
	uid := uuid.MustParse(e.signup(email))
	want := seedUsage(e, uid)
	c := e.loggedIn(email)

	today := time.Now().UTC().Truncate(24 * time.Hour)
	q := url.Values{"from": {today.AddDate(0, 0, -7).Format(time.RFC3339)}, "to": {today.AddDate(0, 0, 1).Format(time.RFC3339)}}
	r := c.expect("GET", "/api/user/usage?"+q.Encode(), nil, 200)
	total := r.body["total"].(map[string]any)
	for i, k := range []string{"completions", "shown", "accepted"} {
		if got := int64(total[k].(float64)); got != want.total[i] {
			t.Errorf("total.%s = %d, want %d", k, got, want.total[i])
		}
	}
	if got := total["acceptance_rate"].(float64); got != 3.0/5 {
		t.Errorf("total.acceptance_rate = %v, want 0.6", got)
	}
	days := r.body["days"].([]any)
	if len(days) != len(want.days) {
		t.Fatalf("days = %v, want %d days", days, len(want.days))
	}
	for i, w := range want.days {
		d := days[i].(map[string]any)
		if d["day"] != w.day.Format(time.RFC3339) {
			t.Errorf("days[%d].day = %v, want %s", i, d["day"], w.day.Format(time.RFC3339))
		}
		for k, v := range map[string]float64{"completions": float64(w.completions), "shown": float64(w.shown),
			"accepted": float64(w.accepted), "p50_ms": w.p50, "p95_ms": w.p95} {
			if d[k] != v {
				t.Errorf("days[%d].%s = %v, want %v", i, k, d[k], v)
			}
		}
	}
	langs := r.body["languages"].([]any)
	if len(langs) != len(want.languages) {
		t.Fatalf("languages = %v, want %v", langs, want.languages)
	}
	if first := langs[0].(map[string]any)["language"]; first != "Go" {
		t.Errorf("languages[0] = %v, want Go (most used first)", first)
	}
	for _, l := range langs {
		m := l.(map[string]any)
		w := want.languages[m["language"].(string)]
		got := [3]int64{int64(m["completions"].(float64)), int64(m["shown"].(float64)), int64(m["accepted"].(float64))}
		if got != w {
			t.Errorf("language %v = %v, want %v", m["language"], got, w)
		}
	}

	// A window without queries: zeros, no days, a null rate.
	empty := url.Values{"from": {"2001-01-01T00:00:00Z"}, "to": {"2001-02-01T00:00:00Z"}}
	r = c.expect("GET", "/api/user/usage?"+empty.Encode(), nil, 200)
	if d := r.body["days"].([]any); len(d) != 0 || r.body["total"].(map[string]any)["acceptance_rate"] != nil {
		t.Errorf("empty window = %s", r.raw)
	}

	// Only the caller's own usage: another user's id is refused.
	r = c.expect("GET", "/api/user/usage?user_id="+uuid.NewString(), nil, 422)
	if !strings.Contains(string(r.raw), `"user_id"`) {
		t.Errorf("user_id refusal = %s", r.raw)
	}
	e.client().expect("GET", "/api/user/usage", nil, 401)
	key := c.expect("POST", "/api/user/api-keys", map[string]any{"name": "plugin"}, 201).body["api_key"].(string)
	bearer := e.client()
	bearer.header["Authorization"] = "Bearer " + key
	bearer.expect("GET", "/api/user/usage", nil, 403)
}

// TestUserProjects: GET /api/user/projects lists the caller's projects
// with its role, and no one else's.
func TestUserProjects(t *testing.T) {
	e := newEnv(t, nil)
	a, b := "proj-a-"+uuid.NewString()[:8]+"@example.com", "proj-b-"+uuid.NewString()[:8]+"@example.com"
	e.signup(a)
	e.signup(b)
	ca, cb := e.loggedIn(a), e.loggedIn(b)
	ca.expect("POST", "/api/project/create", map[string]any{"project_name": "alpha"}, 201)
	cb.expect("POST", "/api/project/create", map[string]any{"project_name": "beta"}, 201)
	r := ca.expect("GET", "/api/user/projects", nil, 200)
	ps := r.body["projects"].([]any)
	if len(ps) != 1 || ps[0].(map[string]any)["project_name"] != "alpha" || ps[0].(map[string]any)["role"] == "" {
		t.Fatalf("projects = %s", r.raw)
	}
	e.client().expect("GET", "/api/user/projects", nil, 401)
}
