package server

import (
	"context"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/eval"
)

// Analytics tests seed queries directly in Postgres, in a window of the
// past no other test writes to (a random day decades ago), for users they
// create, and compute each expected figure in Go from the seeded rows.

// seedGen is one seeded generation.
type seedGen struct {
	model    int64
	shown    bool
	accepted bool
	conf     *float64
}

// seedQuery is one seeded query with its generations.
type seedQuery struct {
	user  uuid.UUID
	at    time.Time
	chat  bool
	gens  []seedGen
	mqID  uuid.UUID
	model int64
}

// analyticsSeed holds a test's users, models and window.
type analyticsSeed struct {
	e        *env
	admin    *client
	users    []uuid.UUID
	models   []int64
	from, to time.Time
	project  uuid.UUID
	chat     uuid.UUID
}

// newAnalyticsSeed creates an admin, n users, two models and a project
// with a chat, and picks a three-day window at a random day of 1970-2009.
// The seeded queries are deleted when the test ends.
func newAnalyticsSeed(t *testing.T, n int) *analyticsSeed {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	s := &analyticsSeed{e: e, admin: admin}
	ctx := context.Background()
	for range n {
		id := uuid.MustParse(e.signup("analytics-" + uuid.NewString()[:8] + "@example.com"))
		s.users = append(s.users, id)
	}
	for i := range 2 {
		var id int64
		if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
			"analytics-model-"+strconv.Itoa(i), strings.Repeat("0", 32)+strings.ReplaceAll(uuid.NewString(), "-", "")).Scan(&id); err != nil {
			t.Fatal(err)
		}
		s.models = append(s.models, id)
	}
	if err := e.srv.db.QueryRow(ctx, "INSERT INTO project (project_name, created_by) VALUES ('analytics', $1) RETURNING project_id",
		s.users[0]).Scan(&s.project); err != nil {
		t.Fatal(err)
	}
	s.chat = uuid.New()
	e.exec("INSERT INTO chat (chat_id, project_id, user_id, title) VALUES ($1, $2, $3, 'c')", s.chat, s.project, s.users[0])
	s.from = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rand.IntN(40*365))
	s.to = s.from.AddDate(0, 0, 3)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, u := range s.users {
			_, _ = e.srv.db.Exec(ctx, "DELETE FROM meta_query WHERE user_id = $1", u)
		}
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM project WHERE project_id = $1", s.project)
		for _, m := range s.models {
			_, _ = e.srv.db.Exec(ctx, "DELETE FROM model WHERE model_id = $1", m)
		}
	})
	return s
}

// insert writes q and its generations.
func (s *analyticsSeed) insert(q *seedQuery) {
	s.e.t.Helper()
	ctx := context.Background()
	typ := "completion"
	var chat *uuid.UUID
	if q.chat {
		typ, chat = "chat", &s.chat
	}
	if err := s.e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, chat_id, project_id, config_id, server_version, requested_at)
		VALUES ($1, $2, $3, $4, 1, 'test', $5) RETURNING meta_query_id`, typ, q.user, chat, s.project, q.at).Scan(&q.mqID); err != nil {
		s.e.t.Fatal(err)
	}
	for _, g := range q.gens {
		shown := []time.Time{}
		if g.shown {
			shown = append(shown, q.at.Add(time.Second))
		}
		s.e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted, confidence)
			VALUES ($1, $2, 'x', 10, $3, $4, $5)`, q.mqID, g.model, shown, g.accepted, g.conf)
	}
}

// seedRandom writes n random queries in the window: about one in six a
// chat turn (whose generations are shown and accepted, so counting them
// would show), each with one or two generations, some accepted without
// ever being shown, some without a confidence.
func (s *analyticsSeed) seedRandom(rng *rand.Rand, n int) []*seedQuery {
	var qs []*seedQuery
	for range n {
		q := &seedQuery{
			user: s.users[rng.IntN(len(s.users))],
			at:   s.from.Add(time.Duration(rng.Int64N(int64(s.to.Sub(s.from))))),
			chat: rng.IntN(6) == 0,
		}
		for i := range 1 + rng.IntN(2) {
			g := seedGen{model: s.models[i], shown: rng.IntN(4) != 0, accepted: rng.IntN(2) == 0}
			if q.chat {
				g.shown, g.accepted = true, true
			}
			if rng.IntN(8) != 0 {
				c := rng.Float64()
				if rng.IntN(10) == 0 {
					c = float64(rng.IntN(11)) / 10 // bin edges, 1 included
				}
				g.conf = &c
			}
			q.gens = append(q.gens, g)
		}
		s.insert(q)
		qs = append(qs, q)
	}
	return qs
}

// get asks path with the window and extra query parameters.
func (s *analyticsSeed) get(path string, extra url.Values) map[string]any {
	s.e.t.Helper()
	v := url.Values{"from": {s.from.Format(time.RFC3339)}, "to": {s.to.Format(time.RFC3339)}}
	for k, x := range extra {
		v[k] = x
	}
	return s.admin.expect("GET", path+"?"+v.Encode(), nil, 200).body
}

// near fails unless got (a JSON number) is within 1e-9 of want.
func near(t *testing.T, what string, got any, want float64) {
	t.Helper()
	g, ok := got.(float64)
	if !ok || math.Abs(g-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// usageWant is the usage figures computed from seeded queries.
type usageWant struct {
	completions, shown, accepted int
	users, userDays              map[string]bool
}

func (w *usageWant) add(q *seedQuery) {
	if q.chat {
		return
	}
	w.completions++
	w.users[q.user.String()] = true
	w.userDays[q.user.String()+q.at.UTC().Format(time.DateOnly)] = true
	for _, g := range q.gens {
		if g.shown {
			w.shown++
			if g.accepted {
				w.accepted++
			}
		}
	}
}

func (w *usageWant) check(t *testing.T, what string, got map[string]any) {
	t.Helper()
	near(t, what+".completions", got["completions"], float64(w.completions))
	near(t, what+".shown", got["shown"], float64(w.shown))
	near(t, what+".accepted", got["accepted"], float64(w.accepted))
	near(t, what+".users", got["users"], float64(len(w.users)))
	near(t, what+".user_days", got["user_days"], float64(len(w.userDays)))
	near(t, what+".acceptance_rate", got["acceptance_rate"], float64(w.accepted)/float64(w.shown))
	near(t, what+".completions_per_user_day", got["completions_per_user_day"], float64(w.completions)/float64(len(w.userDays)))
}

func newUsageWant() *usageWant {
	return &usageWant{users: map[string]bool{}, userDays: map[string]bool{}}
}

// TestAnalyticsUsage: completions, shown, accepted, acceptance rate,
// users and completions per user per day, in total, per day and per hour
// and for one user, match the figures computed from the seeded rows; chat
// turns and generations accepted but never shown are not counted, and a
// query with two generations is one completion.
func TestAnalyticsUsage(t *testing.T) {
	s := newAnalyticsSeed(t, 3)
	rng := rand.New(rand.NewPCG(1, 2))
	qs := s.seedRandom(rng, 120)

	total, byDay, byHour, one := newUsageWant(), map[string]*usageWant{}, map[string]*usageWant{}, newUsageWant()
	for _, q := range qs {
		total.add(q)
		if q.user == s.users[1] {
			one.add(q)
		}
		if q.chat {
			continue
		}
		for _, b := range []struct {
			m map[string]*usageWant
			d time.Duration
		}{{byDay, 24 * time.Hour}, {byHour, time.Hour}} {
			m, key := b.m, q.at.UTC().Truncate(b.d).Format(time.RFC3339)
			if m[key] == nil {
				m[key] = newUsageWant()
			}
			m[key].add(q)
		}
	}

	r := s.get("/api/analytics/usage", nil)
	total.check(t, "total", r["total"].(map[string]any))
	for gran, want := range map[string]map[string]*usageWant{"day": byDay, "hour": byHour} {
		r := s.get("/api/analytics/usage", url.Values{"granularity": {gran}})
		buckets := r["buckets"].([]any)
		if len(buckets) != len(want) {
			t.Fatalf("%s: %d buckets, want %d", gran, len(buckets), len(want))
		}
		for _, b := range buckets {
			b := b.(map[string]any)
			w := want[b["bucket"].(string)]
			if w == nil {
				t.Fatalf("%s: unexpected bucket %v", gran, b["bucket"])
			}
			if w.shown > 0 {
				w.check(t, gran+" "+b["bucket"].(string), b)
			} else if b["acceptance_rate"] != nil {
				t.Errorf("%s: acceptance_rate %v with nothing shown", gran, b["acceptance_rate"])
			}
		}
	}
	r = s.get("/api/analytics/usage", url.Values{"user_id": {s.users[1].String()}})
	one.check(t, "user", r["total"].(map[string]any))

	// Validation and access.
	s.admin.expect("GET", "/api/analytics/usage?granularity=week", nil, 422)
	s.admin.expect("GET", "/api/analytics/usage?from=yesterday", nil, 422)
	member, _ := s.e.newMember()
	if r := member.expect("GET", "/api/analytics/usage", nil, 403); detail(r) != MsgAdminRequired {
		t.Fatalf("member: %v", r.body)
	}
}

// TestAnalyticsCalibration: per model, the reliability bins, ECE and
// Brier score match those computed from the seeded confidences of shown
// completion generations (chat turns, unshown generations and those
// without a confidence left out), for 10 and for 4 bins.
func TestAnalyticsCalibration(t *testing.T) {
	s := newAnalyticsSeed(t, 2)
	rng := rand.New(rand.NewPCG(3, 4))
	qs := s.seedRandom(rng, 150)

	for _, bins := range []int{10, 4} {
		type bin struct {
			n             int
			conf, accepts float64
		}
		type model struct {
			n     int
			brier float64
			bins  map[int]*bin
		}
		want := map[int64]*model{}
		for _, q := range qs {
			for _, g := range q.gens {
				if q.chat || !g.shown || g.conf == nil {
					continue
				}
				m := want[g.model]
				if m == nil {
					m = &model{bins: map[int]*bin{}}
					want[g.model] = m
				}
				acc := 0.0
				if g.accepted {
					acc = 1
				}
				m.n++
				m.brier += (*g.conf - acc) * (*g.conf - acc)
				k := min(int(*g.conf*float64(bins)), bins-1)
				if m.bins[k] == nil {
					m.bins[k] = &bin{}
				}
				m.bins[k].n++
				m.bins[k].conf += *g.conf
				m.bins[k].accepts += acc
			}
		}

		q := url.Values{"bins": {strconv.Itoa(bins)}}
		if bins == 10 {
			q = nil // the default
		}
		r := s.get("/api/analytics/calibration", q)
		got := r["models"].([]any)
		if len(got) != len(want) {
			t.Fatalf("bins %d: %d models, want %d", bins, len(got), len(want))
		}
		for _, gm := range got {
			gm := gm.(map[string]any)
			m := want[int64(gm["model_id"].(float64))]
			if m == nil {
				t.Fatalf("unexpected model %v", gm["model_id"])
			}
			ece := 0.0
			for _, b := range m.bins {
				ece += float64(b.n) / float64(m.n) * math.Abs(b.accepts/float64(b.n)-b.conf/float64(b.n))
			}
			near(t, "n", gm["n"], float64(m.n))
			near(t, "ece", gm["ece"], ece)
			near(t, "brier", gm["brier"], m.brier/float64(m.n))
			gb := gm["bins"].([]any)
			if len(gb) != len(m.bins) {
				t.Fatalf("bins %d: %d bins, want %d", bins, len(gb), len(m.bins))
			}
			for _, b := range gb {
				b := b.(map[string]any)
				w := m.bins[int(b["bin"].(float64))]
				if w == nil {
					t.Fatalf("unexpected bin %v", b)
				}
				near(t, "bin n", b["n"], float64(w.n))
				near(t, "bin mean_confidence", b["mean_confidence"], w.conf/float64(w.n))
				near(t, "bin accept_rate", b["accept_rate"], w.accepts/float64(w.n))
			}
		}
	}
	s.admin.expect("GET", "/api/analytics/calibration?bins=0", nil, 422)
}

// TestAnalyticsLatency: per model, n and the nearest-rank p50, p95 and
// p99 of every stage equal eval.Percentile over the seeded values (NULLs
// left out, a stage nobody recorded has null percentiles); chat turns,
// whose times are far larger, are left out.
func TestAnalyticsLatency(t *testing.T) {
	s := newAnalyticsSeed(t, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	ctx := context.Background()
	stages := []string{"generation_time_ms", "queue_ms", "prefill_ms", "decode_ms", "total_serving_ms", "redact_ms", "context_ms"}
	want := map[int64]map[string][]float64{s.models[0]: {}, s.models[1]: {}}
	// opt is a random value, or NULL when i is a multiple of every.
	opt := func(i, every int) *float64 {
		if every > 0 && i%every == 0 {
			return nil
		}
		v := math.Round(rng.Float64()*1e6) / 1e3
		return &v
	}
	for i := range 42 {
		chat := i >= 37
		mq := []*float64{opt(i, 4), opt(i, 6), nil} // total_serving, redact, context
		var chatID *uuid.UUID
		typ := "completion"
		if chat {
			typ, chatID = "chat", &s.chat
			big := 1e9
			mq = []*float64{&big, &big, &big}
		}
		var id uuid.UUID
		if err := s.e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, chat_id, project_id, config_id, server_version,
			requested_at, total_serving_ms, redact_ms, context_ms) VALUES ($1, $2, $3, $4, 1, 'test', $5, $6, $7, $8) RETURNING meta_query_id`,
			typ, s.users[0], chatID, s.project, s.from.Add(time.Duration(i)*time.Minute), mq[0], mq[1], mq[2]).Scan(&id); err != nil {
			t.Fatal(err)
		}
		for k, model := range s.models {
			if k == 1 && i%2 == 1 { // the second model answers about half
				continue
			}
			gt := rng.IntN(2000)
			g := []*float64{opt(i, 5+k), opt(i, 7), opt(i, 3)} // queue, prefill, decode
			if chat {
				gt = 1e9
			}
			s.e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, queue_ms, prefill_ms, decode_ms)
				VALUES ($1, $2, 'x', $3, $4, $5, $6)`, id, model, gt, g[0], g[1], g[2])
			if chat {
				continue
			}
			for j, v := range append([]*float64{ptr(float64(gt))}, append(g, mq...)...) {
				if v != nil {
					want[model][stages[j]] = append(want[model][stages[j]], *v)
				}
			}
		}
	}

	r := s.get("/api/analytics/latency", nil)
	got := r["models"].([]any)
	if len(got) != 2 {
		t.Fatalf("%d models, want 2: %v", len(got), r)
	}
	for _, gm := range got {
		gm := gm.(map[string]any)
		w := want[int64(gm["model_id"].(float64))]
		st := gm["stages"].(map[string]any)
		for _, name := range stages {
			g := st[name].(map[string]any)
			xs := w[name]
			near(t, name+".n", g["n"], float64(len(xs)))
			for _, p := range []struct {
				key string
				p   float64
			}{{"p50", 50}, {"p95", 95}, {"p99", 99}} {
				if len(xs) == 0 {
					if g[p.key] != nil {
						t.Errorf("%s.%s = %v with no values", name, p.key, g[p.key])
					}
					continue
				}
				near(t, name+"."+p.key, g[p.key], eval.Percentile(xs, p.p))
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// lcsTable is the length of the longest common subsequence of a and b,
// from the full dynamic-programming table.
func lcsTable(a, b []rune) int {
	t := make([][]int, len(a)+1)
	for i := range t {
		t[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = 1 + t[i+1][j+1]
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	return t[0][0]
}

// TestAnalyticsQuality: per model, exact match and edit similarity of
// shown and accepted completions against their latest applicable ground
// truth, and the survival of accepted code at each horizon against the
// latest ground truth reported by then, match figures computed from the
// seeded rows. Ground truths of the other model, generations never shown
// and chat turns do not count.
func TestAnalyticsQuality(t *testing.T) {
	s := newAnalyticsSeed(t, 1)
	rng := rand.New(rand.NewPCG(7, 8))
	ctx := context.Background()
	text := func() string {
		r := make([]rune, rng.IntN(10))
		for i := range r {
			r[i] = []rune("abcé\n ")[rng.IntN(6)]
		}
		return string(r)
	}
	type fig struct{ n, em, es float64 }
	type want struct {
		shown, accepted fig
		surv            [4]fig
	}
	horizons := []time.Duration{30 * time.Second, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute}
	wants := map[int64]*want{s.models[0]: {}, s.models[1]: {}}
	mark := s.e.truthMark()
	for i := range 80 {
		chat := i%10 == 9
		at := s.from.Add(time.Duration(i) * time.Minute)
		var chatID *uuid.UUID
		typ := "completion"
		if chat {
			typ, chatID = "chat", &s.chat
		}
		var id uuid.UUID
		if err := s.e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, chat_id, project_id, config_id, server_version,
			requested_at) VALUES ($1, $2, $3, $4, 1, 'test', $5) RETURNING meta_query_id`,
			typ, s.users[0], chatID, s.project, at).Scan(&id); err != nil {
			t.Fatal(err)
		}
		type gen struct {
			model           int64
			completion      string
			shown, accepted bool
			acceptedAt      time.Time
			truths          []string
			truthTimes      []time.Time
		}
		var gens []*gen
		for _, model := range s.models {
			g := &gen{model: model, completion: text(), shown: rng.IntN(5) != 0, accepted: rng.IntN(3) != 0,
				acceptedAt: at.Add(time.Duration(1+rng.IntN(5)) * time.Second)}
			shown := []time.Time{}
			if g.shown {
				shown = append(shown, g.acceptedAt.Add(-time.Second))
			}
			s.e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted, feedback_at)
				VALUES ($1, $2, $3, 10, $4, $5, $6)`, id, model, g.completion, shown, g.accepted, g.acceptedAt)
			gens = append(gens, g)
		}
		// Ground truths: for no model (both), or for one model; at times
		// around the horizons, in random order of insertion.
		for range rng.IntN(4) {
			truth := text()
			if rng.IntN(3) == 0 {
				truth = gens[0].completion // an exact match now and then
			}
			when := gens[0].acceptedAt.Add(time.Duration(rng.IntN(800)) * time.Second)
			var model *int64
			switch rng.IntN(3) {
			case 1:
				model = &s.models[0]
			case 2:
				model = &s.models[1]
			}
			s.e.exec(`INSERT INTO ground_truth (meta_query_id, model_id, ground_truth, truth_timestamp) VALUES ($1, $2, $3, $4)`,
				id, model, truth, when)
			for _, g := range gens {
				if model == nil || *model == g.model {
					// Keep each generation's truths in time order.
					k := len(g.truthTimes)
					for k > 0 && g.truthTimes[k-1].After(when) {
						k--
					}
					g.truths = append(g.truths[:k], append([]string{truth}, g.truths[k:]...)...)
					g.truthTimes = append(g.truthTimes[:k], append([]time.Time{when}, g.truthTimes[k:]...)...)
				}
			}
		}
		if chat {
			continue
		}
		for _, g := range gens {
			if !g.shown || len(g.truths) == 0 {
				continue
			}
			w := wants[g.model]
			latest := g.truths[len(g.truths)-1]
			add := func(f *fig) {
				f.n++
				if eval.ExactMatch(g.completion, latest) {
					f.em++
				}
				f.es += eval.EditSimilarity(g.completion, latest)
			}
			add(&w.shown)
			if !g.accepted {
				continue
			}
			add(&w.accepted)
			if g.completion == "" {
				continue
			}
			for k, h := range horizons {
				last := -1
				for j, tt := range g.truthTimes {
					if !tt.After(g.acceptedAt.Add(h)) {
						last = j
					}
				}
				if last >= 0 {
					w.surv[k].n++
					w.surv[k].es += float64(lcsTable([]rune(g.completion), []rune(g.truths[last]))) / float64(len([]rune(g.completion)))
				}
			}
		}
	}

	s.e.sweepTruths(mark) // the quality figures are derived by jobs
	r := s.get("/api/analytics/quality", nil)
	got := r["models"].([]any)
	if len(got) != 2 {
		t.Fatalf("%d models, want 2: %v", len(got), r)
	}
	for _, gm := range got {
		gm := gm.(map[string]any)
		w := wants[int64(gm["model_id"].(float64))]
		for name, f := range map[string]fig{"shown": w.shown, "accepted": w.accepted} {
			g := gm[name].(map[string]any)
			near(t, name+".n", g["n"], f.n)
			near(t, name+".exact_match", g["exact_match"], f.em/f.n)
			near(t, name+".edit_similarity", g["edit_similarity"], f.es/f.n)
		}
		sv := gm["survival"].([]any)
		for k, h := range horizons {
			g := sv[k].(map[string]any)
			near(t, "survival horizon_s", g["horizon_s"], h.Seconds())
			near(t, "survival n", g["n"], w.surv[k].n)
			near(t, "survival mean", g["mean"], w.surv[k].es/w.surv[k].n)
		}
		if w.surv[0].n == 0 || w.surv[0].n >= w.surv[3].n {
			t.Errorf("survival counts %v do not grow with the horizon", w.surv)
		}
	}
}
