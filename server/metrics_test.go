package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/redact"
	"github.com/code4me/code4me/internal/testenv"
)

const metricsToken = "scrape-token-0123456789"

// metricSet is one scrape of /metrics, parsed.
type metricSet map[string]*dto.MetricFamily

func parseMetrics(t *testing.T, body string) metricSet {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus' text format: %v\n%s", err, body)
	}
	return fams
}

// find returns the metric of family name whose labels include labels.
func (ms metricSet) find(name string, labels ...string) []*dto.Metric {
	var out []*dto.Metric
	f := ms[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// value sums the counters or gauges of name that carry labels (pairs).
func (ms metricSet) value(name string, labels ...string) float64 {
	v := 0.0
	for _, m := range ms.find(name, labels...) {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v
}

// hist returns the sample count and sum of the histograms of name that
// carry labels.
func (ms metricSet) hist(name string, labels ...string) (uint64, float64) {
	var n uint64
	sum := 0.0
	for _, m := range ms.find(name, labels...) {
		n += m.GetHistogram().GetSampleCount()
		sum += m.GetHistogram().GetSampleSum()
	}
	return n, sum
}

// scrape reads /metrics as a scraper with the token.
func (e *env) scrape() metricSet {
	e.t.Helper()
	c := e.client()
	c.header["Authorization"] = "Bearer " + metricsToken
	r := c.expect("GET", "/metrics", nil, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		e.t.Fatalf("/metrics Content-Type = %q", ct)
	}
	return parseMetrics(e.t, string(r.raw))
}

// TestMetricsAccess: /metrics answers a scraper with METRICS_TOKEN and an
// admin (200), a caller without credentials or with a wrong token 401, a
// user who is not an admin 403; with METRICS_LOOPBACK, a request from this
// machine without credentials 200, unless it carries a proxy header (401),
// and without it such a request is 401. A short METRICS_TOKEN stops
// start-up.
func TestMetricsAccess(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.MetricsToken = metricsToken })
	e.scrape() // counted once answered: the next scrape shows it
	if ms := e.scrape(); ms["code4me_http_requests_total"] == nil || ms["go_goroutines"] == nil {
		t.Fatalf("/metrics lacks the request counter or the Go runtime's metrics: %v", ms)
	}
	e.client().expect("GET", "/metrics", nil, 401)
	wrong := e.client()
	wrong.header["Authorization"] = "Bearer scrape-token-not-this-one"
	wrong.expect("GET", "/metrics", nil, 401)
	member, _ := e.newMember()
	if r := member.expect("GET", "/metrics", nil, 403); r.body["detail"] != MsgAdminRequired {
		t.Fatalf("a member's 403 = %s", r.raw)
	}
	admin, _ := e.newAdmin()
	if r := admin.expect("GET", "/metrics", nil, 200); !strings.Contains(string(r.raw), "code4me_http_requests_total") {
		t.Fatalf("an admin's /metrics = %s", r.raw)
	}

	get := func(addr string, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	// METRICS_LOOPBACK off: loopback is nobody in particular.
	if got := get(e.listen()); got != 401 {
		t.Errorf("from loopback without METRICS_LOOPBACK: %d, want 401", got)
	}
	lo := newEnv(t, func(c *config.Config) { c.MetricsLoopback = true })
	addr := lo.listen()
	if got := get(addr); got != 200 {
		t.Errorf("from loopback with METRICS_LOOPBACK: %d, want 200", got)
	}
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"} {
		if got := get(addr, h, "203.0.113.7"); got != 401 {
			t.Errorf("from loopback through a proxy (%s): %d, want 401", h, got)
		}
	}
	// app.Test's connection is not a loopback one.
	lo.client().expect("GET", "/metrics", nil, 401)

	_, err := config.Load(func(k string) (string, bool) {
		if k == "METRICS_TOKEN" {
			return "short-token", true
		}
		return "", false
	})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Var != "METRICS_TOKEN" {
		t.Errorf("a short METRICS_TOKEN: %v, want an error naming it", err)
	}
}

// metricsEngine loads the tiny synthetic model as "metrics-coder" and the
// slow fake model as "metrics-slow", in an engine of the test's own, so
// that its metrics count only this test's requests.
func metricsEngine(t *testing.T) *engine.Engine {
	t.Helper()
	path, eng, _ := tinyEngine(t)
	for name, p := range map[string]string{"metrics-coder": path, "metrics-slow": "slow"} {
		if _, err := eng.Load(engine.ModelSpec{Name: name, Path: p, Load: engine.LoadOptions{UseMmap: true}, Sched: testSched}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return eng
}

// TestMetricsCount: the metrics count what the server did, checked against
// what the test did and what Postgres stored: requests by route template,
// client and status; each engine request's end by reason (a superseded
// and a cancelled one included), its tokens and its stages, equal to the
// generation rows; the secrets redacted, as an independent redactor finds
// them; Postgres and Redis calls; and the engine's state.
func TestMetricsCount(t *testing.T) {
	ctx := context.Background()
	eng := metricsEngine(t)
	// A pool from db.Open, as serve's, so that its calls are timed.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, err := db.Open(ctx, testenv.DatabaseURL(t), db.Options{StatementTimeout: 5 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.DefaultRatePerHour, cfg.MetricsToken = t.TempDir(), 100000, metricsToken
	cfg.CompletionMaxTokens = 3 // the slow model's request: its prompt and 3 tokens, 1.6 s
	srv, err := New(Deps{Config: cfg, Log: log, DB: pool, Redis: testenv.Redis(t), Engine: eng, JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	e := &pluginEnv{env: &env{t: t, srv: srv}, ids: map[string]int64{}}
	for _, m := range srv.plugin.models.List() {
		e.ids[m.Name] = m.ID
	}
	coder, slow := e.ids["metrics-coder"], e.ids["metrics-slow"]
	c := e.member("metrics@example.com")
	scrapes := 0

	// Completions on the tiny model, the first with a secret in its prefix.
	// A GitHub token, made up here so that this file trips no scanner.
	rnd := rand.New(rand.NewPCG(1, 2))
	pat := []byte("ghp_")
	for range 36 {
		pat = append(pat, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rnd.IntN(62)])
	}
	prefixes := []string{"token = \"" + string(pat) + "\"\nx = ", "def add(a, b):\n    return ", "y = 1\nz = "}
	redactions := 0
	indep, err := redact.New(redact.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prefixes {
		r := c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, p, "\n"), 200)
		_, fs := indep.Text(ctx, p)
		for _, f := range fs {
			if f.RuleID == "github-pat" {
				redactions += f.Count
			}
		}
		for _, it := range r.body["data"].(map[string]any)["completions"].([]any) {
			text, _ := it.(map[string]any)["completion"].(string)
			redactions += strings.Count(text, redact.Placeholder("github-pat"))
		}
	}
	if redactions < 1 {
		t.Fatalf("the independent redactor found %d secrets in the prefixes", redactions)
	}

	// A completion on the slow model superseded by the next one for the
	// same session and file.
	var wg sync.WaitGroup
	wg.Go(func() { c.do("POST", "/api/completion/request", completionBody([]int64{slow}, "a = ", "\n")) })
	sched, _ := eng.Get("metrics-slow")
	waitBusy := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); sched.Stats().SlotsBusy != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the slow model never had %d busy slots", want)
			}
		}
	}
	waitBusy(1)
	c.expect("POST", "/api/completion/request", completionBody([]int64{slow}, "a = 1", "\n"), 200)
	wg.Wait()

	// One cancelled over the WebSocket.
	addr := e.listen()
	conn := e.wsDial(addr, "/api/ws/completion", c)
	send(t, conn, map[string]any{"request_id": "c1", "completion_request": completionBody([]int64{slow}, "b = ", "\n")})
	waitBusy(1)
	send(t, conn, map[string]any{"cancel": "c1"})
	readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "cancelled" })
	conn.Close()
	waitBusy(0)

	// Requests of other clients and routes.
	for range 2 {
		e.client().expect("GET", "/api/ping", nil, 200)
	}
	e.client().expect("GET", "/no-such-route", nil, 404)
	e.client().expect("GET", "/v1/models", nil, 401)
	e.client().expect("GET", "/v1/health", nil, 401)
	e.client().expect("GET", "/v1beta/server_setting", nil, 401)
	e.client().expect("POST", "/v1/next-edit", map[string]any{}, 401)
	key := e.client()
	key.header["Authorization"] = "Bearer not-a-key"
	key.expect("GET", "/api/session/acquire", nil, 401)

	before := e.scrape()
	scrapes++
	for range 7 {
		if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if err := srv.rdb.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Ping(ctx)
		p.Ping(ctx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ms := e.scrape()
	scrapes++

	// Requests, by route template, client and status.
	for _, w := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"method", "POST", "route", "/api/completion/request", "client", "plugin", "status", "200"}, 5},
		{[]string{"method", "GET", "route", "/api/ping", "client", "plugin", "status", "200"}, 2},
		{[]string{"method", "GET", "route", unmatchedRoute, "client", "other", "status", "404"}, 1},
		{[]string{"method", "GET", "route", "/v1/models", "client", "openai", "status", "401"}, 1},
		{[]string{"method", "GET", "route", "/v1/health", "client", "tabby", "status", "401"}, 1},
		{[]string{"method", "GET", "route", "/v1beta/server_setting", "client", "tabby", "status", "401"}, 1},
		{[]string{"method", "POST", "route", "/v1/next-edit", "client", "next-edit", "status", "401"}, 1},
		{[]string{"method", "GET", "route", "/api/session/acquire", "client", "api-key", "status", "401"}, 1},
		{[]string{"method", "GET", "route", "/api/ws/completion", "client", "plugin", "status", "101"}, 1},
		{[]string{"method", "GET", "route", "/metrics", "client", "other", "status", "200"}, float64(scrapes - 1)},
	} {
		if got := ms.value("code4me_http_requests_total", w.labels...); got != w.want {
			t.Errorf("code4me_http_requests_total%v = %v, want %v", w.labels, got, w.want)
		}
	}
	if n, _ := ms.hist("code4me_http_request_duration_milliseconds", "method", "POST", "route", "/api/completion/request"); n != 5 {
		t.Errorf("%d completion requests timed, want 5", n)
	}

	// The tiny model's requests, against its generation rows.
	var rows int
	var cached, evaluated, generated, decoding int
	var queueMS, prefillMS, decodeMS float64
	if err := pool.QueryRow(ctx, `SELECT count(*), sum(tokens_cached), sum(tokens_evaluated), sum(tokens_generated),
		count(*) FILTER (WHERE tokens_generated > 0), sum(queue_ms), sum(prefill_ms), sum(decode_ms) FILTER (WHERE tokens_generated > 0)
		FROM generation WHERE model_id = $1`, coder).Scan(&rows, &cached, &evaluated, &generated, &decoding, &queueMS, &prefillMS, &decodeMS); err != nil {
		t.Fatal(err)
	}
	if rows != len(prefixes) {
		t.Fatalf("%d generations stored, want %d", rows, len(prefixes))
	}
	m := []string{"model", "metrics-coder"}
	if got := ms.value("code4me_engine_requests_total", m...); got != float64(rows) {
		t.Errorf("engine requests of the tiny model = %v, want %d", got, rows)
	}
	stops, err := pool.Query(ctx, `SELECT stop_reason, count(*) FROM generation WHERE model_id = $1 GROUP BY 1`, coder)
	if err != nil {
		t.Fatal(err)
	}
	for stops.Next() {
		var reason string
		var n int
		if err := stops.Scan(&reason, &n); err != nil {
			t.Fatal(err)
		}
		label := map[string]string{"max_tokens": "length"}[reason]
		if label == "" {
			label = reason
		}
		if got := ms.value("code4me_engine_requests_total", append(m, "stop", label)...); got != float64(n) {
			t.Errorf("tiny model requests ended %s = %v, want %d", label, got, n)
		}
	}
	stops.Close()
	for kind, want := range map[string]int{"cached": cached, "evaluated": evaluated, "generated": generated} {
		if got := ms.value("code4me_engine_tokens_total", append(m, "kind", kind)...); got != float64(want) {
			t.Errorf("%s tokens = %v, want %d", kind, got, want)
		}
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }
	for _, h := range []struct {
		name string
		n    int
		sum  float64
	}{
		{"code4me_engine_queue_wait_milliseconds", rows, queueMS},
		{"code4me_engine_prefill_milliseconds", rows, prefillMS},
		{"code4me_engine_decode_milliseconds", decoding, decodeMS},
		{"code4me_engine_time_to_first_token_milliseconds", decoding, -1},
	} {
		n, sum := ms.hist(h.name, m...)
		if n != uint64(h.n) || (h.sum >= 0 && !near(sum, h.sum)) {
			t.Errorf("%s = %d samples summing to %v, want %d summing to %v", h.name, n, sum, h.n, h.sum)
		}
	}

	// The slow model's: one superseded, one cancelled, one run to its end.
	s := []string{"model", "metrics-slow"}
	for stop, want := range map[string]float64{"superseded": 1, "cancelled": 1, "length": 1, "eos": 0, "error": 0} {
		if got := ms.value("code4me_engine_requests_total", append(s, "stop", stop)...); got != want {
			t.Errorf("slow model requests ended %s = %v, want %v", stop, got, want)
		}
	}

	if got := ms.value("code4me_redactions_total", "rule", "github-pat"); got != float64(redactions) {
		t.Errorf("github-pat redactions = %v, want %d", got, redactions)
	}

	// Postgres and Redis: at least the calls made here between the scrapes
	// (the job queue shares the pool, and the server Redis).
	delta := func(name string, labels ...string) uint64 {
		n1, _ := ms.hist(name, labels...)
		n0, _ := before.hist(name, labels...)
		return n1 - n0
	}
	if d := delta("code4me_postgres_duration_milliseconds", "op", "query"); d < 7 {
		t.Errorf("%d Postgres queries timed, want at least 7", d)
	}
	if d := delta("code4me_postgres_duration_milliseconds", "op", "acquire"); d < 7 {
		t.Errorf("%d Postgres acquisitions timed, want at least 7", d)
	}
	if d := delta("code4me_redis_duration_milliseconds", "kind", "command"); d < 5 {
		t.Errorf("%d Redis commands timed, want at least 5", d)
	}
	if d := delta("code4me_redis_duration_milliseconds", "kind", "pipeline"); d < 1 {
		t.Errorf("%d Redis pipelines timed, want at least 1", d)
	}

	// The engine's state, as its Stats say.
	if got := ms.value("code4me_engine_models"); got != 2 {
		t.Errorf("code4me_engine_models = %v, want 2", got)
	}
	for _, st := range eng.Stats() {
		for name, want := range map[string]int{"code4me_engine_slots": st.Slots, "code4me_engine_slots_busy": st.SlotsBusy,
			"code4me_engine_queue_depth": st.QueueLen} {
			if got := ms.value(name, "model", st.Model); got != float64(want) {
				t.Errorf("%s{model=%s} = %v, want %d", name, st.Model, got, want)
			}
		}
	}
}

// TestMetricsAllocateNothing: counting a request, an engine request's end
// and a Postgres call allocates nothing once their labels have been seen.
func TestMetricsAllocateNothing(t *testing.T) {
	m := newMetrics(nil, nil)
	route := &fiber.Route{Method: "POST", Path: "/api/completion/request"}
	res := &engine.Result{Stop: engine.StopCancelled, Err: engine.ErrSuperseded, Slot: 1,
		Timings: engine.Timings{QueueMS: 1, PrefillMS: 2, DecodeMS: 3, FirstMS: 4, TotalMS: 6, CachedTokens: 5, GeneratedTokens: 2}}
	count := func() {
		m.request(route, false, 200, 3*time.Millisecond)
		m.engineResult("tiny", res)
		m.postgresCall(db.OpQuery, time.Millisecond)
	}
	count() // the first sight of each label makes its children
	// AllocsPerRun counts once more, before it measures.
	if n := testing.AllocsPerRun(1000, count); n != 0 {
		t.Errorf("%v allocations per count, want 0", n)
	}
	var ms metricSet
	func() {
		fams, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		ms = metricSet{}
		for _, f := range fams {
			ms[f.GetName()] = f
		}
	}()
	if got := ms.value("code4me_engine_requests_total", "model", "tiny", "stop", "superseded"); got != 1002 {
		t.Errorf("superseded = %v, want 1002", got)
	}
	if got := ms.value("code4me_http_requests_total", "route", "/api/completion/request", "client", "plugin", "status", "200"); got != 1002 {
		t.Errorf("requests = %v, want 1002", got)
	}
	if n, sum := ms.hist("code4me_engine_prefill_milliseconds", "model", "tiny"); n != 1002 || sum != 2004 {
		t.Errorf("prefill = %d samples, sum %v; want 1002, 2004", n, sum)
	}
}

// BenchmarkMetricsCount is what counting costs a completion: its request,
// its engine request's end, and three Postgres calls.
func BenchmarkMetricsCount(b *testing.B) {
	m := newMetrics(nil, nil)
	route := &fiber.Route{Method: "POST", Path: "/api/completion/request"}
	res := &engine.Result{Stop: engine.StopLength, Slot: 0,
		Timings: engine.Timings{QueueMS: 0.1, PrefillMS: 2, DecodeMS: 30, FirstMS: 3, TotalMS: 33, CachedTokens: 900, EvaluatedTokens: 4, GeneratedTokens: 16}}
	b.ReportAllocs()
	for b.Loop() {
		m.request(route, false, 200, 40*time.Millisecond)
		m.engineResult("tiny", res)
		for range 3 {
			m.postgresCall(db.OpQuery, time.Millisecond)
		}
	}
}
