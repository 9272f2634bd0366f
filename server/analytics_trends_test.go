package server

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/eval"
)

// The trends and models tests seed a week of queries through
// newAnalyticsSeed: most for one user, whose figures every request asks
// for (user_id), and some for another user on the same days, which must
// not show.

// trendGen is one seeded generation.
type trendGen struct {
	model           int64
	shown, accepted bool
	conf            *float64
	genMS           int
	completion      string
	stop            *string
}

// trendQuery is one seeded query with its generations.
type trendQuery struct {
	user    uuid.UUID
	at      time.Time
	chat    bool
	serving *float64
	gens    []trendGen
}

// insertTrend writes q and its generations.
func (s *analyticsSeed) insertTrend(q *trendQuery) {
	s.e.t.Helper()
	typ := "completion"
	var chat *uuid.UUID
	if q.chat {
		typ, chat = "chat", &s.chat
	}
	var id uuid.UUID
	if err := s.e.srv.db.QueryRow(context.Background(), `INSERT INTO meta_query (query_type, user_id, chat_id, project_id, config_id,
		server_version, requested_at, total_serving_ms) VALUES ($1, $2, $3, $4, 1, 'test', $5, $6) RETURNING meta_query_id`,
		typ, q.user, chat, s.project, q.at, q.serving).Scan(&id); err != nil {
		s.e.t.Fatal(err)
	}
	for _, g := range q.gens {
		shown := []time.Time{}
		if g.shown {
			shown = append(shown, q.at.Add(time.Second))
		}
		s.e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted, confidence, stop_reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, g.model, g.completion, g.genMS, shown, g.accepted, g.conf, g.stop)
	}
}

// seedTrends sets the window to seven days from s.from and writes random
// queries: for s.users[0] on every day but the fourth, for s.users[1] on
// any day; about one in seven a chat turn; zero to two generations each
// (the second model answers only some queries), with random shown,
// accepted, confidence (or none), generation time, empty completions and
// stop reasons (the second model records none). A few of s.users[0]'s
// queries sit at the window's edges and in its first and last hours.
func seedTrends(s *analyticsSeed, rng *rand.Rand) []*trendQuery {
	s.to = s.from.AddDate(0, 0, 7)
	stops := []string{"eos", "stop", "max_tokens", "error", "cancelled", "deadline"}
	random := func(user uuid.UUID, at time.Time) *trendQuery {
		q := &trendQuery{user: user, at: at, chat: rng.IntN(7) == 0}
		if rng.IntN(5) != 0 {
			v := float64(rng.IntN(200000)) / 1000
			q.serving = &v
		}
		for k, model := range s.models[:rng.IntN(3)] {
			g := trendGen{model: model, shown: rng.IntN(4) != 0, accepted: rng.IntN(2) == 0, genMS: rng.IntN(3000), completion: "x"}
			if rng.IntN(5) == 0 {
				g.completion = ""
			}
			if rng.IntN(6) != 0 {
				c := rng.Float64()
				g.conf = &c
			}
			if k == 0 && rng.IntN(4) != 0 {
				g.stop = &stops[rng.IntN(len(stops))]
			}
			q.gens = append(q.gens, g)
		}
		return q
	}
	var qs []*trendQuery
	for range 160 {
		day := rng.IntN(7)
		user := s.users[1]
		if rng.IntN(4) != 0 {
			if day == 3 {
				continue
			}
			user = s.users[0]
		}
		qs = append(qs, random(user, s.from.AddDate(0, 0, day).Add(time.Duration(rng.Int64N(int64(24*time.Hour))))))
	}
	for _, at := range []time.Time{s.from.Add(-time.Second), s.from, s.from.Add(80 * time.Minute), s.from.Add(100 * time.Minute),
		s.to.Add(-50 * time.Minute), s.to.Add(-10 * time.Minute), s.to} {
		q := random(s.users[0], at)
		q.chat = false
		qs = append(qs, q)
	}
	for _, q := range qs {
		s.insertTrend(q)
	}
	return qs
}

// trendWant is one bucket's figures computed from the seeded queries.
type trendWant struct {
	completions, shown, accepted int
	users, userDays              map[string]bool
	serving                      []float64
}

// wantTrends is the buckets of gran (their start, RFC 3339) over [from,
// to) for user's completion queries, with model set only those it
// answered and only its generations. Bucket starts come from Truncate:
// UTC hours, days and weeks line up with Go's zero time, a Monday.
func wantTrends(qs []*trendQuery, user uuid.UUID, step time.Duration, from, to time.Time, model int64) ([]string, map[string]*trendWant) {
	var keys []string
	want := map[string]*trendWant{}
	for b := from.UTC().Truncate(step); b.Before(to); b = b.Add(step) {
		keys = append(keys, b.Format(time.RFC3339))
		want[keys[len(keys)-1]] = &trendWant{users: map[string]bool{}, userDays: map[string]bool{}}
	}
	for _, q := range qs {
		if q.chat || q.user != user || q.at.Before(from) || !q.at.Before(to) {
			continue
		}
		var gens []trendGen
		for _, g := range q.gens {
			if model == 0 || g.model == model {
				gens = append(gens, g)
			}
		}
		if model != 0 && len(gens) == 0 {
			continue
		}
		w := want[q.at.UTC().Truncate(step).Format(time.RFC3339)]
		w.completions++
		w.users[q.user.String()] = true
		w.userDays[q.user.String()+q.at.UTC().Format(time.DateOnly)] = true
		if q.serving != nil {
			w.serving = append(w.serving, *q.serving)
		}
		for _, g := range gens {
			if g.shown {
				w.shown++
				if g.accepted {
					w.accepted++
				}
			}
		}
	}
	return keys, want
}

// nearOrNull checks a nullable figure: null when want is nil.
func nearOrNull(t *testing.T, what string, got any, want *float64) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Errorf("%s = %v, want null", what, got)
		}
		return
	}
	near(t, what, got, *want)
}

// fraction is num/den, or nil when den is 0.
func fraction(num, den int) *float64 {
	if den == 0 {
		return nil
	}
	return ptr(float64(num) / float64(den))
}

// checkPercentiles compares a {n, p50, p95, p99} object with xs.
func checkPercentiles(t *testing.T, what string, got map[string]any, xs []float64) {
	t.Helper()
	near(t, what+".n", got["n"], float64(len(xs)))
	for _, p := range []float64{50, 95, 99} {
		key := "p" + strconv.Itoa(int(p))
		var want *float64
		if len(xs) > 0 {
			want = ptr(eval.Percentile(xs, p))
		}
		nearOrNull(t, what+"."+key, got[key], want)
	}
}

// TestAnalyticsTrends: per hour, day and week, with windows aligned and
// not, every bucket of the window is listed (an empty day with zeros and
// null rates), and completions, shown, accepted, acceptance rate, users,
// user-days, completions per user-day and the total_serving_ms
// percentiles match those computed from the seeded rows of the one user
// asked for, for all models and for one; bad input and windows of more
// than 1000 buckets are 422, non-admins 401 and 403.
func TestAnalyticsTrends(t *testing.T) {
	s := newAnalyticsSeed(t, 2)
	qs := seedTrends(s, rand.New(rand.NewPCG(11, 12)))
	me := s.users[0]
	trends := func(v url.Values) map[string]any {
		t.Helper()
		v.Set("user_id", me.String())
		return s.admin.expect("GET", "/api/analytics/trends?"+v.Encode(), nil, 200).body
	}
	cases := []struct {
		gran     string
		step     time.Duration
		from, to time.Time
		model    int64
	}{
		{"day", 24 * time.Hour, s.from, s.to, 0},
		{"", 24 * time.Hour, s.from, s.to, s.models[1]}, // the default granularity
		{"hour", time.Hour, s.from.Add(90*time.Minute + 17*time.Second), s.to.Add(-30 * time.Minute), 0},
		{"week", 7 * 24 * time.Hour, s.from.Add(5 * time.Hour), s.to, 0},
		{"week", 7 * 24 * time.Hour, s.from, s.to, s.models[0]},
	}
	for _, c := range cases {
		v := url.Values{"from": {c.from.Format(time.RFC3339)}, "to": {c.to.Format(time.RFC3339)}}
		if c.gran != "" {
			v.Set("granularity", c.gran)
		}
		if c.model != 0 {
			v.Set("model_id", strconv.FormatInt(c.model, 10))
		}
		name := c.gran + " " + v.Encode()
		r := trends(v)
		if gran := r["granularity"]; gran != c.gran && !(c.gran == "" && gran == "day") {
			t.Errorf("%s: granularity %v", name, gran)
		}
		if c.model != 0 {
			near(t, name+": model_id", r["model_id"], float64(c.model))
		} else if r["model_id"] != nil {
			t.Errorf("%s: model_id %v, want null", name, r["model_id"])
		}
		keys, want := wantTrends(qs, me, c.step, c.from, c.to, c.model)
		got := r["buckets"].([]any)
		if len(got) != len(keys) {
			t.Fatalf("%s: %d buckets, want %d", name, len(got), len(keys))
		}
		sawEmpty, sawFull := false, false
		for i, gb := range got {
			b := gb.(map[string]any)
			if b["bucket"] != keys[i] {
				t.Fatalf("%s: bucket %d starts %v, want %s", name, i, b["bucket"], keys[i])
			}
			w, what := want[keys[i]], name+" "+keys[i]
			sawEmpty = sawEmpty || w.completions == 0
			sawFull = sawFull || w.shown > 0
			near(t, what+": completions", b["completions"], float64(w.completions))
			near(t, what+": shown", b["shown"], float64(w.shown))
			near(t, what+": accepted", b["accepted"], float64(w.accepted))
			near(t, what+": users", b["users"], float64(len(w.users)))
			near(t, what+": user_days", b["user_days"], float64(len(w.userDays)))
			nearOrNull(t, what+": acceptance_rate", b["acceptance_rate"], fraction(w.accepted, w.shown))
			nearOrNull(t, what+": completions_per_user_day", b["completions_per_user_day"], fraction(w.completions, len(w.userDays)))
			checkPercentiles(t, what+": total_serving_ms", b["total_serving_ms"].(map[string]any), w.serving)
		}
		if !sawFull {
			t.Errorf("%s: no bucket with shown generations: the seed checks nothing", name)
		}
		if c.gran == "day" && (!sawEmpty || want[keys[3]].completions != 0) {
			t.Errorf("%s: the fourth day is not the empty bucket", name)
		}
	}

	// The 1000-bucket limit, on both sides of it.
	at := s.from.Add(-2000 * time.Hour)
	r := trends(url.Values{"granularity": {"hour"}, "from": {at.Format(time.RFC3339)}, "to": {at.Add(1000 * time.Hour).Format(time.RFC3339)}})
	if n := len(r["buckets"].([]any)); n != 1000 {
		t.Errorf("1000 hours: %d buckets", n)
	}
	// Weeks from a Sunday: the first bucket starts on the Monday before.
	sun := s.from.AddDate(0, 0, -7000-int(s.from.Weekday()))
	week := sun.AddDate(0, 0, 999*7+1)
	r = trends(url.Values{"granularity": {"week"}, "from": {sun.Format(time.RFC3339)}, "to": {week.Format(time.RFC3339)}})
	if b := r["buckets"].([]any); len(b) != 1000 || b[0].(map[string]any)["bucket"] != sun.AddDate(0, 0, -6).Format(time.RFC3339) {
		t.Errorf("999 weeks and a day from a Sunday: %d buckets, the first %v", len(b), b[0])
	}
	for _, v := range []url.Values{
		{"granularity": {"hour"}, "from": {at.Format(time.RFC3339)}, "to": {at.Add(1000*time.Hour + time.Second).Format(time.RFC3339)}},
		{"granularity": {"week"}, "from": {sun.Format(time.RFC3339)}, "to": {week.Add(time.Second).Format(time.RFC3339)}},
		{"from": {at.Format(time.RFC3339)}, "to": {at.AddDate(0, 0, 1001).Format(time.RFC3339)}},
		{"from": {"1970-01-01T00:00:00Z"}}, // to defaults to now
	} {
		r := s.admin.expect("GET", "/api/analytics/trends?"+v.Encode(), nil, 422)
		fe := r.body["detail"].([]any)[0].(map[string]any)
		loc := fe["loc"].([]any)
		if fe["type"] != "value_error" || len(loc) != 2 || loc[0] != "query" || loc[1] != "from" ||
			!strings.Contains(fe["msg"].(string), "more than 1000") {
			t.Errorf("%v: %s", v, r.raw)
		}
		if fe["ctx"].(map[string]any)["max_buckets"] != float64(1000) {
			t.Errorf("%v: ctx %v", v, fe["ctx"])
		}
	}
	ctx := s.admin.expect("GET", "/api/analytics/trends?granularity=hour&from="+url.QueryEscape(at.Format(time.RFC3339))+
		"&to="+url.QueryEscape(at.Add(1000*time.Hour+time.Second).Format(time.RFC3339)), nil, 422).body["detail"].([]any)[0].(map[string]any)["ctx"]
	if ctx.(map[string]any)["buckets"] != float64(1001) {
		t.Errorf("1000 hours and a second: ctx %v, want 1001 buckets", ctx)
	}

	// Bad input: one 422 entry per bad field, in the house shape.
	for query, want := range map[string]string{
		"granularity=month":   "literal_error granularity",
		"granularity=":        "literal_error granularity",
		"model_id=abc":        "int_parsing model_id",
		"model_id=0":          "greater_than_equal model_id",
		"from=yesterday":      "datetime_parsing from",
		"user_id=nobody":      "uuid_parsing user_id",
		"to=2001-02-30T00:00": "datetime_parsing to",
	} {
		r := s.admin.expect("GET", "/api/analytics/trends?"+query, nil, 422)
		errs := r.body["detail"].([]any)
		fe := errs[0].(map[string]any)
		loc := fe["loc"].([]any)
		if len(errs) != 1 || fe["type"].(string)+" "+loc[1].(string) != want || loc[0] != "query" {
			t.Errorf("%s: %s, want %s", query, r.raw, want)
		}
	}
	checkAnalyticsGuard(t, s, "/api/analytics/trends")
}

// checkAnalyticsGuard: an anonymous caller gets 401, a signed-in user who
// is not an admin 403.
func checkAnalyticsGuard(t *testing.T, s *analyticsSeed, path string) {
	t.Helper()
	if r := s.e.client().expect("GET", path, nil, 401); r.msg() != MsgInvalidOrExpiredAuth {
		t.Errorf("anonymous %s: %s", path, r.raw)
	}
	member, _ := s.e.newMember()
	if r := member.expect("GET", path, nil, 403); detail(r) != MsgAdminRequired {
		t.Errorf("member %s: %s", path, r.raw)
	}
}

// TestAnalyticsModels: per model, generations, shown, accepted,
// acceptance rate, mean confidence, the generation time percentiles and
// the counts and shares of empty and failed generations match those
// computed from the seeded rows of the one user asked for (chat turns and
// the other user's queries left out); a model that records no stop
// reason has a null failed share.
func TestAnalyticsModels(t *testing.T) {
	s := newAnalyticsSeed(t, 2)
	qs := seedTrends(s, rand.New(rand.NewPCG(13, 14)))
	me := s.users[0]

	type model struct {
		gens, shown, accepted, confN, empty, withStop, failed int
		confSum                                               float64
		genMS                                                 []float64
	}
	want := map[int64]*model{}
	for _, q := range qs {
		if q.chat || q.user != me || q.at.Before(s.from) || !q.at.Before(s.to) {
			continue
		}
		for _, g := range q.gens {
			m := want[g.model]
			if m == nil {
				m = &model{}
				want[g.model] = m
			}
			m.gens++
			m.genMS = append(m.genMS, float64(g.genMS))
			if g.shown {
				m.shown++
				if g.accepted {
					m.accepted++
				}
			}
			if g.conf != nil {
				m.confN++
				m.confSum += *g.conf
			}
			if g.completion == "" {
				m.empty++
			}
			if g.stop != nil {
				m.withStop++
				if *g.stop == "error" || *g.stop == "cancelled" || *g.stop == "deadline" {
					m.failed++
				}
			}
		}
	}

	v := url.Values{"from": {s.from.Format(time.RFC3339)}, "to": {s.to.Format(time.RFC3339)}, "user_id": {me.String()}}
	got := s.admin.expect("GET", "/api/analytics/models?"+v.Encode(), nil, 200).body["models"].([]any)
	if len(got) != 2 {
		t.Fatalf("%d models, want 2: %v", len(got), got)
	}
	for i, gm := range got {
		gm := gm.(map[string]any)
		id := int64(gm["model_id"].(float64))
		m, what := want[id], "model "+strconv.FormatInt(id, 10)
		if id != s.models[i] || m == nil {
			t.Fatalf("models %v, want %v in order", got, s.models)
		}
		if gm["model_name"] != "analytics-model-"+strconv.Itoa(i) {
			t.Errorf("%s: model_name %v", what, gm["model_name"])
		}
		near(t, what+": generations", gm["generations"], float64(m.gens))
		near(t, what+": shown", gm["shown"], float64(m.shown))
		near(t, what+": accepted", gm["accepted"], float64(m.accepted))
		nearOrNull(t, what+": acceptance_rate", gm["acceptance_rate"], fraction(m.accepted, m.shown))
		conf := gm["confidence"].(map[string]any)
		near(t, what+": confidence.n", conf["n"], float64(m.confN))
		near(t, what+": confidence.mean", conf["mean"], m.confSum/float64(m.confN))
		checkPercentiles(t, what+": generation_time_ms", gm["generation_time_ms"].(map[string]any), m.genMS)
		near(t, what+": empty", gm["empty"], float64(m.empty))
		nearOrNull(t, what+": empty_share", gm["empty_share"], fraction(m.empty, m.gens))
		near(t, what+": with_stop_reason", gm["with_stop_reason"], float64(m.withStop))
		near(t, what+": failed", gm["failed"], float64(m.failed))
		nearOrNull(t, what+": failed_share", gm["failed_share"], fraction(m.failed, m.withStop))
		if m.empty == 0 || (i == 0 && (m.failed == 0 || m.failed == m.withStop)) || (i == 1 && m.withStop != 0) {
			t.Errorf("%s: the seed lacks a case: %+v", what, m)
		}
	}

	s.admin.expect("GET", "/api/analytics/models?from=yesterday", nil, 422)
	s.admin.expect("GET", "/api/analytics/models?user_id=nobody", nil, 422)
	checkAnalyticsGuard(t, s, "/api/analytics/models")
}
