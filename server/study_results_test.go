package server

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/eval"
)

// Study results tests create a study through the API as a draft whose
// window is a random day of the past (so it never runs, and nothing else
// writes there), seed its arms' queries directly in Postgres for users
// they create, and compute every expected figure and interval in the
// test from the seeded rows.

// studyTruth is one seeded ground truth; model -1 applies to every model.
type studyTruth struct {
	text  string
	at    time.Time
	model int
}

// studyGen is one seeded generation of model index model.
type studyGen struct {
	model      int
	completion string
	shownAt    []time.Time
	accepted   bool
	feedbackAt *time.Time
	conf       *float64
	genMS      int32
	tokens     *int32
	truths     []studyTruth
}

// studyQuery is one seeded query of arm index arm.
type studyQuery struct {
	id      uuid.UUID
	arm     int
	user    int
	session *uuid.UUID
	at      time.Time
	serving *float64
	chat    bool
	lang    *int64
	trigger *int64 // trigger_type_id
	gens    []studyGen
}

// studySeed is a study with its arms, users, sessions and models.
type studySeed struct {
	e        *env
	admin    *client
	id       uuid.UUID
	seed     int64
	unit     string
	from, to time.Time
	armIDs   []int64
	armNames []string
	baseline int
	users    []uuid.UUID
	emails   []string
	sessions [][]uuid.UUID // per user
	models   []int64
	mnames   []string
	project  uuid.UUID
	chat     uuid.UUID
	queries  []*studyQuery
}

// studyMarker is text seeded into emails, prefixes and completions'
// contexts that no export may contain.
const studyMarker = "SECRETMARK"

// newStudySeed creates users (with two sessions each), two models, a
// project with a chat, and a draft study over arms (the first the baseline) in a window
// of three days at a random day of 1970–2009. Seeded rows are deleted and
// the study ended when the test ends.
func newStudySeed(t *testing.T, e *env, admin *client, unit string, users int, arms ...string) *studySeed {
	t.Helper()
	ctx := context.Background()
	s := &studySeed{e: e, admin: admin, unit: unit, armNames: arms}
	for range users {
		email := strings.ToLower(studyMarker) + "-" + uuid.NewString()[:8] + "@example.com"
		id := uuid.MustParse(e.signup(email))
		s.users, s.emails = append(s.users, id), append(s.emails, email)
		var sess []uuid.UUID
		for range 2 {
			var sid uuid.UUID
			if err := e.srv.db.QueryRow(ctx, "INSERT INTO session (user_id) VALUES ($1) RETURNING session_id", id).Scan(&sid); err != nil {
				t.Fatal(err)
			}
			sess = append(sess, sid)
		}
		s.sessions = append(s.sessions, sess)
	}
	for i := range 2 {
		var id int64
		name := fmt.Sprintf("study-model-%d-%s", i, uuid.NewString()[:6])
		if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
			name, strings.Repeat("0", 32)+strings.ReplaceAll(uuid.NewString(), "-", "")).Scan(&id); err != nil {
			t.Fatal(err)
		}
		s.models, s.mnames = append(s.models, id), append(s.mnames, name)
	}
	if err := e.srv.db.QueryRow(ctx, "INSERT INTO project (project_name) VALUES ('study') RETURNING project_id").Scan(&s.project); err != nil {
		t.Fatal(err)
	}
	s.chat = uuid.New()
	e.exec("INSERT INTO chat (chat_id, project_id, title) VALUES ($1, $2, 'c')", s.chat, s.project)
	s.from = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rand.IntN(40*365)).Add(time.Duration(rand.IntN(86400)) * time.Second)
	s.to = s.from.Add(72 * time.Hour)
	s.seed = rand.Int64N(1 << 53)
	var armSpecs []any
	for i, name := range arms {
		armSpecs = append(armSpecs, map[string]any{"name": name, "config_id": 1, "baseline": i == 0})
	}
	r := admin.expect("POST", "/api/analytics/studies/create", map[string]any{"name": "results " + uuid.NewString()[:6], "unit": unit,
		"seed": s.seed, "starts_at": s.from.Format(time.RFC3339Nano), "ends_at": s.to.Format(time.RFC3339Nano), "arms": armSpecs}, 201)
	s.id = uuid.MustParse(r.body["study_id"].(string))
	for _, a := range r.body["arms"].([]any) {
		s.armIDs = append(s.armIDs, int64(a.(map[string]any)["arm_id"].(float64)))
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, u := range s.users {
			_, _ = e.srv.db.Exec(ctx, "DELETE FROM meta_query WHERE user_id = $1", u)
			_, _ = e.srv.db.Exec(ctx, "DELETE FROM session WHERE user_id = $1", u)
		}
		_, _ = e.srv.db.Exec(ctx, "DELETE FROM project WHERE project_id = $1", s.project)
		for _, m := range s.models {
			_, _ = e.srv.db.Exec(ctx, "DELETE FROM model WHERE model_id = $1", m)
		}
		_, _ = e.srv.db.Exec(ctx, "UPDATE study SET status = 'ended' WHERE study_id = $1 AND status <> 'ended'", s.id)
	})
	return s
}

// insert writes q, its telemetry, generations and ground truths.
func (s *studySeed) insert(q *studyQuery) {
	s.e.t.Helper()
	ctx := context.Background()
	typ := "completion"
	var chat *uuid.UUID
	if q.chat {
		typ, chat = "chat", &s.chat
	}
	if err := s.e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, session_id, chat_id, project_id, config_id,
		study_id, arm_id, server_version, requested_at, total_serving_ms) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, 'test', $8, $9)
		RETURNING meta_query_id`, typ, s.users[q.user], q.session, chat, s.project, s.id, s.armIDs[q.arm], q.at, q.serving).Scan(&q.id); err != nil {
		s.e.t.Fatal(err)
	}
	s.e.exec("INSERT INTO context (meta_query_id, prefix, suffix, file_name) VALUES ($1, $2, 'suffix "+studyMarker+"', 'x.py')",
		q.id, "def "+studyMarker+"():")
	if q.lang != nil {
		s.e.exec(`INSERT INTO contextual_telemetry (meta_query_id, version_id, trigger_type_id, language_id, file_path)
			VALUES ($1, 1, $2, $3, $4)`, q.id, *q.trigger, *q.lang, "src/"+studyMarker+".py")
	}
	for _, g := range q.gens {
		if g.shownAt == nil {
			g.shownAt = []time.Time{}
		}
		s.e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted,
			feedback_at, confidence, tokens_generated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			q.id, s.models[g.model], g.completion, g.genMS, g.shownAt, g.accepted, g.feedbackAt, g.conf, g.tokens)
		for _, tr := range g.truths {
			var model *int64
			if tr.model >= 0 {
				model = &s.models[tr.model]
			}
			s.e.exec("INSERT INTO ground_truth (meta_query_id, model_id, ground_truth, truth_timestamp) VALUES ($1, $2, $3, $4)",
				q.id, model, tr.text, tr.at)
		}
	}
	s.queries = append(s.queries, q)
}

// studyWords are the texts completions and ground truths are made of, so
// that exact matches and partial survival both occur.
var studyWords = []string{"", "x", "return x", "return x + 1", "for i in range(n):", "print(x)\n", "  pass", "café = 1"}

// randomGen is a random generation of model m for a query at at: shown
// or not, accepted or not (sometimes accepted but never shown), with 0 to
// 3 ground truths at distinct times around the acceptance, some of them
// for the other model.
func randomGen(rng *rand.Rand, m int, at time.Time) studyGen {
	g := studyGen{model: m, completion: studyWords[rng.IntN(len(studyWords))], genMS: int32(rng.IntN(400))}
	if rng.IntN(5) > 0 {
		for k := range 1 + rng.IntN(2) {
			g.shownAt = append(g.shownAt, at.Add(time.Duration(200+k*700+rng.IntN(500))*time.Millisecond))
		}
	}
	g.accepted = rng.IntN(2) == 0
	if g.accepted && rng.IntN(2) == 0 {
		fb := at.Add(time.Duration(2+rng.IntN(3)) * time.Second)
		g.feedbackAt = &fb
	}
	if rng.IntN(4) > 0 {
		g.conf = ptr(rng.Float64())
	}
	if rng.IntN(4) > 0 {
		g.tokens = ptr(int32(rng.IntN(64)))
	}
	for k := range rng.IntN(4) {
		text := studyWords[rng.IntN(len(studyWords))]
		if rng.IntN(2) == 0 {
			text = g.completion + studyWords[rng.IntN(len(studyWords))]
		}
		model := -1
		if rng.IntN(4) == 0 {
			model = 1 - m
		} else if rng.IntN(3) == 0 {
			model = m
		}
		// Distinct times from 0 to 15 minutes after the query, in steps
		// far from the horizons' edges.
		offset := time.Duration(k)*time.Second + time.Duration(rng.IntN(30))*30*time.Second + 7*time.Second
		g.truths = append(g.truths, studyTruth{text: text, at: at.Add(offset), model: model})
	}
	return g
}

// seedRandom writes n random queries over arms (indexes into the arms),
// most in the window, some at its edges or outside it, a few chat turns;
// about one query in four shares its time with the query before it.
func (s *studySeed) seedRandom(rng *rand.Rand, n int, arms []int) {
	var prev time.Time
	for i := range n {
		q := &studyQuery{arm: arms[rng.IntN(len(arms))], user: rng.IntN(len(s.users))}
		switch {
		case i == 0:
			q.at = s.from // the window's start is in it
		case i == 1:
			q.at = s.to // its end is not
		case i == 2:
			q.at = s.from.Add(-time.Millisecond)
		case i > 3 && rng.IntN(4) == 0:
			q.at = prev
		default:
			q.at = s.from.Add(time.Duration(rng.Int64N(int64(s.to.Sub(s.from)))))
		}
		q.at = q.at.Truncate(time.Microsecond)
		prev = q.at
		if rng.IntN(4) > 0 {
			q.session = &s.sessions[q.user][rng.IntN(2)]
		}
		if rng.IntN(6) > 0 {
			q.serving = ptr(math.Round(rng.ExpFloat64()*80*1000) / 1000)
		}
		if rng.IntN(3) > 0 {
			q.lang, q.trigger = ptr(int64(1+rng.IntN(179))), ptr(int64(1+rng.IntN(3)))
		}
		q.chat = i > 3 && rng.IntN(12) == 0
		for _, m := range rng.Perm(2)[:rng.IntN(3)] {
			q.gens = append(q.gens, randomGen(rng, m, q.at))
		}
		s.insert(q)
	}
}

// exposed reports whether q counts for the study: a completion query in
// the window.
func (s *studySeed) exposed(q *studyQuery) bool {
	return !q.chat && !q.at.Before(s.from) && q.at.Before(s.to)
}

// shown and acceptedGen are the analytics' definitions, written out.
func (g studyGen) shown() bool       { return len(g.shownAt) > 0 }
func (g studyGen) acceptedGen() bool { return g.shown() && g.accepted }

// applying are the ground truths of q that apply to g (whichever
// generation they were seeded with), oldest first, ties in the order they
// were inserted.
func (q *studyQuery) applying(g studyGen) []studyTruth {
	var out []studyTruth
	for _, o := range q.gens {
		for _, tr := range o.truths {
			if tr.model < 0 || tr.model == g.model {
				out = append(out, tr)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// acceptedAt is the feedback time, else the last time g was shown.
func (g studyGen) acceptedAt() time.Time {
	if g.feedbackAt != nil {
		return *g.feedbackAt
	}
	return g.shownAt[len(g.shownAt)-1]
}

// survivalWant is the survival of q's generation g at horizon h, false
// when undefined.
func (q *studyQuery) survivalWant(g studyGen, h time.Duration) (float64, bool) {
	if !g.acceptedGen() || g.completion == "" {
		return 0, false
	}
	var by *studyTruth
	for _, tr := range q.applying(g) {
		if !tr.at.After(g.acceptedAt().Add(h)) {
			by = &tr
		}
	}
	if by == nil {
		return 0, false
	}
	return float64(lcsTable([]rune(g.completion), []rune(by.text))) / float64(len([]rune(g.completion))), true
}

// Interval maths of the test's own, independent of internal/stats.

// studyZ975 is the published value of the standard normal's 0.975 quantile.
const studyZ975 = 1.959963984540054

// studyWilson is the Wilson interval of x/n as the two roots p of
// (p̂ − p)² = z² p (1 − p) / n.
func studyWilson(x, n int) (lo, hi float64) {
	ph, nf, z2 := float64(x)/float64(n), float64(n), studyZ975*studyZ975
	a, b, c := 1+z2/nf, -(2*ph + z2/nf), ph*ph
	d := math.Sqrt(b*b - 4*a*c)
	return (-b - d) / (2 * a), (-b + d) / (2 * a)
}

// studyTDensity is Student's t density with df degrees of freedom.
func studyTDensity(x, df float64) float64 {
	l1, _ := math.Lgamma((df + 1) / 2)
	l2, _ := math.Lgamma(df / 2)
	return math.Exp(l1-l2-0.5*math.Log(df*math.Pi)) * math.Pow(1+x*x/df, -(df+1)/2)
}

// studyT975 is the t with P(T ≤ t) = 0.975: the density integrated by
// Simpson's rule from 0, and the point found by bisection.
func studyT975(df float64) float64 {
	cdf := func(t float64) float64 {
		const n = 20000
		h := t / n
		sum := studyTDensity(0, df) + studyTDensity(t, df)
		for i := 1; i < n; i++ {
			w := 2.0
			if i%2 == 1 {
				w = 4
			}
			sum += w * studyTDensity(float64(i)*h, df)
		}
		return 0.5 + sum*h/3
	}
	lo, hi := 0.0, 100.0
	for range 60 {
		mid := (lo + hi) / 2
		if cdf(mid) < 0.975 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// studyRank is the smallest value that at least p of xs are at or below.
func studyRank(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[int(math.Ceil(p*float64(len(s))))-1]
}

func studyMeanSD(xs []float64) (m, sd float64) {
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	for _, x := range xs {
		sd += (x - m) * (x - m)
	}
	return m, math.Sqrt(sd / float64(len(xs)-1))
}

// armWant is one arm's expected figures.
type armWant struct {
	units, users           map[string]bool
	queries, gens          int
	shown, accepted        int
	latency                []float64
	shownM, accM           [3]float64 // n, exact matches, edit similarity sum
	survN, survSum         [4]float64
	armID                  int64
	name                   string
	baseline               bool
	accLow, accHigh, accPt float64
}

func (s *studySeed) want() []*armWant {
	out := make([]*armWant, len(s.armIDs))
	for i := range out {
		out[i] = &armWant{units: map[string]bool{}, users: map[string]bool{}, armID: s.armIDs[i], name: s.armNames[i], baseline: i == 0}
	}
	for _, q := range s.queries {
		if !s.exposed(q) {
			continue
		}
		w := out[q.arm]
		w.queries++
		w.users[s.users[q.user].String()] = true
		switch {
		case s.unit == "user":
			w.units[s.users[q.user].String()] = true
		case s.unit == "session" && q.session != nil:
			w.units[q.session.String()] = true
		case s.unit == "session":
			w.units[s.users[q.user].String()] = true
		default:
			w.units[q.id.String()] = true
		}
		if q.serving != nil {
			w.latency = append(w.latency, *q.serving)
		}
		for _, g := range q.gens {
			w.gens++
			if !g.shown() {
				continue
			}
			w.shown++
			if g.acceptedGen() {
				w.accepted++
			}
			tr := q.applying(g)
			if len(tr) == 0 {
				continue
			}
			latest := tr[len(tr)-1].text
			em := 0.0
			if eval.ExactMatch(g.completion, latest) {
				em = 1
			}
			es := eval.EditSimilarity(g.completion, latest)
			w.shownM[0]++
			w.shownM[1] += em
			w.shownM[2] += es
			if g.acceptedGen() {
				w.accM[0]++
				w.accM[1] += em
				w.accM[2] += es
			}
			for k, h := range []time.Duration{30 * time.Second, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
				if v, ok := q.survivalWant(g, h); ok {
					w.survN[k]++
					w.survSum[k] += v
				}
			}
		}
	}
	return out
}

// studyNear fails unless got (a JSON number) is within tol of want.
func studyNear(t *testing.T, what string, got any, want, tol float64) {
	t.Helper()
	g, ok := got.(float64)
	if !ok || math.Abs(g-want) > tol {
		t.Errorf("%s = %v, want %v (±%g)", what, got, want, tol)
	}
}

func studyNull(t *testing.T, what string, got any) {
	t.Helper()
	if got != nil {
		t.Errorf("%s = %v, want null", what, got)
	}
}

// checkArm compares one arm of the answer with w (and the baseline b).
func checkArm(t *testing.T, got map[string]any, w, b *armWant) {
	t.Helper()
	p := w.name + "."
	studyNear(t, p+"arm_id", got["arm_id"], float64(w.armID), 0)
	if got["name"] != w.name || got["is_baseline"] != w.baseline {
		t.Errorf("%s: name %v, is_baseline %v", w.name, got["name"], got["is_baseline"])
	}
	for k, v := range map[string]int{"units": len(w.units), "participants": len(w.users), "queries": w.queries,
		"generations": w.gens, "shown": w.shown, "accepted": w.accepted} {
		studyNear(t, p+k, got[k], float64(v), 0)
	}
	ar := got["acceptance_rate"].(map[string]any)
	if w.shown == 0 {
		studyNull(t, p+"acceptance_rate", ar["estimate"])
		studyNull(t, p+"acceptance_rate.low", ar["low"])
	} else {
		lo, hi := studyWilson(w.accepted, w.shown)
		studyNear(t, p+"acceptance_rate", ar["estimate"], float64(w.accepted)/float64(w.shown), 1e-12)
		studyNear(t, p+"acceptance_rate.low", ar["low"], lo, 1e-9)
		studyNear(t, p+"acceptance_rate.high", ar["high"], hi, 1e-9)
	}
	lat := got["total_serving_ms"].(map[string]any)
	studyNear(t, p+"latency n", lat["n"], float64(len(w.latency)), 0)
	mean := lat["mean"].(map[string]any)
	if len(w.latency) < 2 {
		studyNull(t, p+"latency.low", mean["low"])
		studyNull(t, p+"latency.sd", lat["sd"])
	}
	if len(w.latency) == 0 {
		studyNull(t, p+"latency.mean", mean["estimate"])
		studyNull(t, p+"latency.p50", lat["p50"])
	} else {
		studyNear(t, p+"latency.p50", lat["p50"], studyRank(w.latency, 0.5), 0)
		studyNear(t, p+"latency.p95", lat["p95"], studyRank(w.latency, 0.95), 0)
	}
	if len(w.latency) >= 2 {
		m, sd := studyMeanSD(w.latency)
		half := studyT975(float64(len(w.latency)-1)) * sd / math.Sqrt(float64(len(w.latency)))
		studyNear(t, p+"latency.mean", mean["estimate"], m, 1e-9)
		studyNear(t, p+"latency.sd", lat["sd"], sd, 1e-9)
		studyNear(t, p+"latency.low", mean["low"], m-half, 1e-6)
		studyNear(t, p+"latency.high", mean["high"], m+half, 1e-6)
	}
	q := got["quality"].(map[string]any)
	for name, f := range map[string][3]float64{"shown": w.shownM, "accepted": w.accM} {
		gm := q[name].(map[string]any)
		studyNear(t, p+name+".n", gm["n"], f[0], 0)
		if f[0] == 0 {
			studyNull(t, p+name+".exact_match", gm["exact_match"])
			continue
		}
		studyNear(t, p+name+".exact_match", gm["exact_match"], f[1]/f[0], 1e-12)
		studyNear(t, p+name+".edit_similarity", gm["edit_similarity"], f[2]/f[0], 1e-12)
	}
	for k, sv := range q["survival"].([]any) {
		g := sv.(map[string]any)
		studyNear(t, p+"survival n", g["n"], w.survN[k], 0)
		if w.survN[k] == 0 {
			studyNull(t, p+"survival mean", g["mean"])
		} else {
			studyNear(t, p+"survival mean", g["mean"], w.survSum[k]/w.survN[k], 1e-12)
		}
	}
	if b == nil {
		studyNull(t, p+"vs_baseline", got["vs_baseline"])
		return
	}
	vs := got["vs_baseline"].(map[string]any)
	studyNear(t, p+"baseline_arm_id", vs["baseline_arm_id"], float64(b.armID), 0)
	ad := vs["acceptance_rate_diff"].(map[string]any)
	if w.shown == 0 || b.shown == 0 {
		studyNull(t, p+"acceptance_rate_diff", ad["estimate"])
		studyNull(t, p+"acceptance_rate_diff.low", ad["low"])
	} else {
		p1, p2 := float64(w.accepted)/float64(w.shown), float64(b.accepted)/float64(b.shown)
		l1, u1 := studyWilson(w.accepted, w.shown)
		l2, u2 := studyWilson(b.accepted, b.shown)
		studyNear(t, p+"acceptance_rate_diff", ad["estimate"], p1-p2, 1e-12)
		studyNear(t, p+"acceptance_rate_diff.low", ad["low"], p1-p2-math.Sqrt((p1-l1)*(p1-l1)+(u2-p2)*(u2-p2)), 1e-9)
		studyNear(t, p+"acceptance_rate_diff.high", ad["high"], p1-p2+math.Sqrt((u1-p1)*(u1-p1)+(p2-l2)*(p2-l2)), 1e-9)
	}
	ld := vs["total_serving_ms_mean_diff"].(map[string]any)
	if len(w.latency) < 2 || len(b.latency) < 2 {
		studyNull(t, p+"latency diff.low", ld["low"])
		studyNull(t, p+"latency df", vs["total_serving_ms_df"])
		if len(w.latency) == 0 || len(b.latency) == 0 {
			studyNull(t, p+"latency diff", ld["estimate"])
		}
		return
	}
	m1, sd1 := studyMeanSD(w.latency)
	m2, sd2 := studyMeanSD(b.latency)
	v1, v2 := sd1*sd1/float64(len(w.latency)), sd2*sd2/float64(len(b.latency))
	df := (v1 + v2) * (v1 + v2) / (v1*v1/float64(len(w.latency)-1) + v2*v2/float64(len(b.latency)-1))
	half := studyT975(df) * math.Sqrt(v1+v2)
	studyNear(t, p+"latency diff", ld["estimate"], m1-m2, 1e-9)
	studyNear(t, p+"latency df", vs["total_serving_ms_df"], df, 1e-9)
	studyNear(t, p+"latency diff.low", ld["low"], m1-m2-half, 1e-6)
	studyNear(t, p+"latency diff.high", ld["high"], m1-m2+half, 1e-6)
}

// TestStudyResults seeds random queries over a study's first two arms
// (the third answers nothing), with chat turns and queries outside the
// window that must not count, and compares every figure and interval of
// each arm, and each arm's difference from the baseline, with those
// computed here from the seeded rows.
func TestStudyResults(t *testing.T) {
	for _, unit := range []string{"session", "user", "request"} {
		t.Run(unit, func(t *testing.T) {
			e := newEnv(t, nil)
			admin, _ := e.newAdmin()
			s := newStudySeed(t, e, admin, unit, 5, "control", "treatment", "empty")
			mark := e.truthMark()
			s.seedRandom(rand.New(rand.NewPCG(uint64(len(unit)), 11)), 160, []int{0, 1})
			e.sweepTruths(mark) // the quality figures are derived by jobs
			want := s.want()
			if want[0].shown < 10 || want[1].latency == nil || want[0].survN[3] == 0 || want[1].accM[1] == 0 {
				t.Fatalf("the seed covers too little: %+v", want[:2])
			}
			r := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/evaluation", nil, 200)
			if r.body["unit"] != unit || r.body["from"] != s.from.Format(time.RFC3339Nano) || r.body["to"] != s.to.Format(time.RFC3339Nano) {
				t.Errorf("unit %v, window %v to %v", r.body["unit"], r.body["from"], r.body["to"])
			}
			alias := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/results", nil, 200)
			for _, body := range []map[string]any{r.body, alias.body} {
				arms := body["arms"].([]any)
				if len(arms) != 3 {
					t.Fatalf("%d arms", len(arms))
				}
				for i, a := range arms {
					var b *armWant
					if i > 0 {
						b = want[0]
					}
					checkArm(t, a.(map[string]any), want[i], b)
				}
			}
		})
	}
}

// TestStudyResultsSmallArms: arms with one shown generation and one
// latency, or none, give their figures without intervals, never NaN.
func TestStudyResultsSmallArms(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	s := newStudySeed(t, e, admin, "user", 1, "base", "one", "none")
	at := s.from.Add(time.Hour)
	s.insert(&studyQuery{arm: 1, at: at, serving: ptr(12.5), gens: []studyGen{{model: 0, completion: "x", shownAt: []time.Time{at}, accepted: true}}})
	r := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/evaluation", nil, 200)
	if strings.Contains(string(r.raw), "NaN") {
		t.Fatalf("NaN in %s", r.raw)
	}
	want := s.want()
	for i, a := range r.body["arms"].([]any) {
		var b *armWant
		if i > 0 {
			b = want[0]
		}
		checkArm(t, a.(map[string]any), want[i], b)
	}
	one := r.body["arms"].([]any)[1].(map[string]any)
	studyNear(t, "one's mean", one["total_serving_ms"].(map[string]any)["mean"].(map[string]any)["estimate"], 12.5, 0)
	lo, hi := studyWilson(1, 1)
	studyNear(t, "one's acceptance low", one["acceptance_rate"].(map[string]any)["low"], lo, 1e-9)
	studyNear(t, "one's acceptance high", one["acceptance_rate"].(map[string]any)["high"], hi, 1e-9)
}

func TestStudyResultsAccess(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	member, _ := e.newMember()
	s := newStudySeed(t, e, admin, "user", 1, "a")
	for _, path := range []string{"/evaluation", "/results", "/export", "/export?format=csv"} {
		admin.expect("GET", "/api/analytics/studies/not-a-uuid"+path, nil, 422)
		admin.expect("GET", "/api/analytics/studies/"+uuid.NewString()+path, nil, 404)
		member.expect("GET", "/api/analytics/studies/"+s.id.String()+path, nil, 403)
		e.client().expect("GET", "/api/analytics/studies/"+s.id.String()+path, nil, 401)
	}
	r := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/export?format=xml", nil, 422)
	d := r.body["detail"].([]any)[0].(map[string]any)
	if fmt.Sprint(d["loc"]) != "[query format]" || d["type"] != "literal_error" {
		t.Errorf("format=xml: %s", r.raw)
	}
}
