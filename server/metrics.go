package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/redact"
	"github.com/code4me/code4me/internal/remote"
)

// Prometheus metrics, served at GET /metrics from a registry of the
// server's own (never the global default one, so that two servers in one
// process, as in tests, count apart). docs/metrics.md lists every metric.
//
// Counting is on the request path, so it must cost next to nothing: the
// children of each vector (the counter of one route, client and status;
// the histograms of one model) are looked up once and kept in maps that
// are read without a lock and replaced whole when a new key appears
// (cowMap). A request then costs a map lookup and a few atomic adds, and
// allocates nothing. What is a state rather than an event (slots, queues,
// models loaded) is read when /metrics is scraped.

// Histogram buckets, in milliseconds.
var (
	// requestBuckets: HTTP requests, from a cached lookup to a long chat.
	requestBuckets = []float64{0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 120000}
	// engineBuckets: the stages of an engine request, from a keystroke on
	// a GPU (a few ms) to a long generation on a CPU.
	engineBuckets = []float64{1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 120000}
	// storeBuckets: Postgres and Redis round trips, from a cached key
	// lookup (tens of microseconds) to the client's deadlines (seconds).
	storeBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 5000}
)

// metrics are the server's collectors and the children it updates on
// the request path.
type metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec   // method, route, client, status
	duration *prometheus.HistogramVec // method, route
	reqs     cowMap[requestKey, *requestMetrics]

	engineRequests *prometheus.CounterVec // model, stop
	queueWait      *prometheus.HistogramVec
	firstToken     *prometheus.HistogramVec
	prefill        *prometheus.HistogramVec
	decode         *prometheus.HistogramVec
	tokens         *prometheus.CounterVec // model, kind
	models         cowMap[string, *modelMetrics]

	redactions *prometheus.CounterVec // rule
	postgres   [db.NumOps]prometheus.Observer
	redis      [2]prometheus.Observer // a command, a pipeline
}

// newMetrics registers every collector in a new registry. The engine
// state (slots, queues, models) is read from eng or rc when scraped.
func newMetrics(eng *engine.Engine, rc *remote.Client) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		m.reg.MustRegister(v)
		return v
	}
	m.requests = counter("code4me_http_requests_total",
		"HTTP requests answered, by method, route template, client family and status.", "method", "route", "client", "status")
	m.duration = histogram("code4me_http_request_duration_milliseconds",
		"Time from routing a request to its answer, by method and route template (a WebSocket route: its handshake).",
		requestBuckets, "method", "route")
	m.engineRequests = counter("code4me_engine_requests_total",
		"Engine requests ended, by model and how they ended (eos, stop, length, cancelled, superseded, deadline, error).",
		"model", "stop")
	m.queueWait = histogram("code4me_engine_queue_wait_milliseconds",
		"Time an engine request waited for a slot (its whole life when it ended waiting).", engineBuckets, "model")
	m.firstToken = histogram("code4me_engine_time_to_first_token_milliseconds",
		"Time from an engine request's submission to its first generated token.", engineBuckets, "model")
	m.prefill = histogram("code4me_engine_prefill_milliseconds",
		"Time an engine request spent evaluating its prompt, from getting a slot.", engineBuckets, "model")
	m.decode = histogram("code4me_engine_decode_milliseconds",
		"Time an engine request spent generating, from its evaluated prompt to its end.", engineBuckets, "model")
	m.tokens = counter("code4me_engine_tokens_total",
		"Tokens of engine requests: prompt tokens reused from the KV cache (cached) or evaluated (evaluated), and tokens generated (generated).",
		"model", "kind")
	m.redactions = counter("code4me_redactions_total",
		"Secrets replaced by a placeholder, by redaction rule (redact-incomplete: a scan cut short, the whole text replaced).", "rule")
	pg := histogram("code4me_postgres_duration_milliseconds",
		"Postgres calls of the server's pool, by kind: query, batch, copy, prepare, acquire (waiting for a connection).",
		storeBuckets, "op")
	for op := range db.NumOps {
		m.postgres[op] = pg.WithLabelValues(op.String())
	}
	rd := histogram("code4me_redis_duration_milliseconds",
		"Redis round trips of the server's client: one command, or one pipeline (a transaction or a batch).",
		storeBuckets, "kind")
	m.redis[0], m.redis[1] = rd.WithLabelValues("command"), rd.WithLabelValues("pipeline")
	m.reg.MustRegister(engineState{eng: eng, rc: rc},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// initMetrics builds the server's metrics and hooks them to what it
// counts: the engine's or the worker tier's request ends, the redactor,
// the Postgres pool (one that db.Open made) and the Redis client.
func (s *Server) initMetrics(d Deps) {
	s.metrics = newMetrics(d.Engine, d.Remote)
	if d.Engine != nil {
		d.Engine.Observe(s.metrics.engineResult)
	}
	if d.Remote != nil {
		d.Remote.Observe(s.metrics.engineResult)
	}
	s.plugin.redactor.Observe(s.metrics.redacted)
	db.Observe(d.DB, s.metrics.postgresCall)
	d.Redis.AddHook(redisTimingHook{m: s.metrics})
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cowMap is a map read without a lock and written by copying: lookups of
// keys it holds cost a map read; a new key copies it once.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

// get returns the value of k, made by mk under the write lock when new.
func (c *cowMap[K, V]) get(k K, mk func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	next := make(map[K]V, 1)
	if old != nil {
		next = make(map[K]V, len(*old)+1)
		for k, v := range *old {
			next[k] = v
		}
	}
	v := mk()
	next[k] = v
	c.m.Store(&next)
	return v
}

// requestKey is what picks a request's counter: its route (a registered
// route is one *fiber.Route for the app's life), whether it carried a
// bearer token, and its status.
type requestKey struct {
	route  *fiber.Route
	bearer bool
	status int
}

type requestMetrics struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// unmatchedRoute labels requests no route matched. The app has no route
// at "/", so a request whose last matched route is "/" matched only the
// middleware registered with Use (cors, drain, this one).
const unmatchedRoute = "unmatched"

// countRequests is the first middleware: it counts every request by
// route template, client and status once the rest of the chain has
// answered it. An error from the chain is answered here, through the
// error handler, so that its status is the one counted.
func (s *Server) countRequests(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if err := s.errorHandler(c, err); err != nil {
			c.Status(fiber.StatusInternalServerError)
		}
	}
	s.metrics.request(c.Route(), hasBearer(c), c.Response().StatusCode(), time.Since(start))
	return nil
}

// request counts one answered request.
func (m *metrics) request(route *fiber.Route, bearer bool, status int, d time.Duration) {
	key := requestKey{route: route, bearer: bearer, status: status}
	rm := m.reqs.get(key, func() *requestMetrics { return m.newRequest(key) })
	rm.count.Inc()
	rm.duration.Observe(ms(d))
}

func (m *metrics) newRequest(k requestKey) *requestMetrics {
	route := k.route.Path
	if route == "/" {
		route = unmatchedRoute
	}
	return &requestMetrics{
		count:    m.requests.WithLabelValues(k.route.Method, route, requestClient(route, k.bearer), strconv.Itoa(k.status)),
		duration: m.duration.WithLabelValues(k.route.Method, route),
	}
}

var bearerPrefix = []byte("Bearer ")

func hasBearer(c *fiber.Ctx) bool {
	return bytes.HasPrefix(c.Request().Header.Peek(fiber.HeaderAuthorization), bearerPrefix)
}

// ollamaPaths are the ollama API's routes, which live under /api
// (ollamaapi.go).
var ollamaPaths = map[string]bool{"/api/generate": true, "/api/chat": true, "/api/tags": true, "/api/show": true, "/api/version": true}

// llamaPaths are the llama.cpp server API's routes (llamaapi.go).
var llamaPaths = map[string]bool{"/infill": true, "/completion": true, "/health": true, "/props": true, "/slots": true}

// tabbyPaths are the routes only Tabby's API has (tabbyapi.go); its
// completions share /v1/completions with OpenAI's.
var tabbyPaths = map[string]bool{"/v1/events": true, "/v1/health": true, "/v1beta/server_setting": true, "/v1beta/models": true}

// requestClient names the family of client that sends requests to route,
// in meta_query.client's words where one applies: the route's API says
// which (tabby, next-edit, openai, ollama, llama.cpp-api); on the plugin
// API (/api/...) a bearer token means an API key (api-key), else the
// plugin (plugin). Anything else (/metrics, /openapi.json, /docs,
// /admin/jobs, a route that does not exist) is other. The finer names
// meta_query.client keeps (continue, llama.vim, llama.vscode, zed, and
// tabby for Tabby's body on /v1/completions) need the request's body or
// agent, which would cost every request a parse: they are left to the
// database.
func requestClient(route string, bearer bool) string {
	switch {
	case tabbyPaths[route]:
		return "tabby"
	case strings.HasPrefix(route, "/v1/next-edit"):
		return "next-edit"
	case strings.HasPrefix(route, "/v1/"):
		return "openai"
	case ollamaPaths[route]:
		return "ollama"
	case llamaPaths[route]:
		return "llama.cpp-api"
	case strings.HasPrefix(route, "/api/") && bearer:
		return "api-key"
	case strings.HasPrefix(route, "/api/"):
		return "plugin"
	}
	return "other"
}

// modelMetrics are the children of one model's engine metrics.
type modelMetrics struct {
	stops                             [numStops]prometheus.Counter
	queueWait, first, prefill, decode prometheus.Observer
	cached, evaluated, generated      prometheus.Counter
}

// How an engine request ended, as code4me_engine_requests_total's stop
// label says: the engine's stop reasons, with a superseded request told
// apart from other cancellations.
const (
	stopEOS = iota
	stopWord
	stopLength
	stopCancelled
	stopSuperseded
	stopDeadline
	stopError
	numStops
)

var stopNames = [numStops]string{"eos", "stop", "length", "cancelled", "superseded", "deadline", "error"}

func stopOf(res *engine.Result) int {
	switch res.Stop {
	case engine.StopEOS:
		return stopEOS
	case engine.StopWord:
		return stopWord
	case engine.StopLength:
		return stopLength
	case engine.StopCancelled:
		if errors.Is(res.Err, engine.ErrSuperseded) {
			return stopSuperseded
		}
		return stopCancelled
	case engine.StopDeadline:
		return stopDeadline
	}
	return stopError
}

func (m *metrics) model(name string) *modelMetrics {
	return m.models.get(name, func() *modelMetrics {
		mm := &modelMetrics{
			queueWait: m.queueWait.WithLabelValues(name),
			first:     m.firstToken.WithLabelValues(name),
			prefill:   m.prefill.WithLabelValues(name),
			decode:    m.decode.WithLabelValues(name),
			cached:    m.tokens.WithLabelValues(name, "cached"),
			evaluated: m.tokens.WithLabelValues(name, "evaluated"),
			generated: m.tokens.WithLabelValues(name, "generated"),
		}
		for i := range mm.stops {
			mm.stops[i] = m.engineRequests.WithLabelValues(name, stopNames[i])
		}
		return mm
	})
}

// engineResult counts one engine request's end (engine.Observer): it runs
// in the model's scheduler goroutine (or the worker tier client's), once
// per request. A stage is observed only when the request reached it: the
// queue wait when it was queued at all (not a request the worker tier
// cancelled before a worker answered), the prefill when it got a slot,
// the first token and the decode when it generated one.
func (m *metrics) engineResult(model string, res *engine.Result) {
	mm := m.model(model)
	mm.stops[stopOf(res)].Inc()
	t := &res.Timings
	if t.TotalMS > 0 {
		mm.queueWait.Observe(t.QueueMS)
	}
	if res.Slot >= 0 && t.TotalMS > 0 {
		mm.prefill.Observe(t.PrefillMS)
	}
	if t.GeneratedTokens > 0 {
		mm.first.Observe(t.FirstMS)
		mm.decode.Observe(t.DecodeMS)
	}
	mm.cached.Add(float64(t.CachedTokens))
	mm.evaluated.Add(float64(t.EvaluatedTokens))
	mm.generated.Add(float64(t.GeneratedTokens))
}

// redacted counts the placeholders of one redaction (redact.Observe).
func (m *metrics) redacted(findings []redact.Finding) {
	for _, f := range findings {
		m.redactions.WithLabelValues(f.RuleID).Add(float64(f.Count))
	}
}

// postgresCall times one call of the pool (db.Observe).
func (m *metrics) postgresCall(op db.Op, d time.Duration) {
	if op < db.NumOps {
		m.postgres[op].Observe(ms(d))
	}
}

// redisTimingHook times every command and pipeline of the Redis client.
type redisTimingHook struct{ m *metrics }

func (redisTimingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisTimingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.m.redis[0].Observe(ms(time.Since(start)))
		return err
	}
}

func (h redisTimingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.m.redis[1].Observe(ms(time.Since(start)))
		return err
	}
}

// engineState reports the engine's state when scraped: the models loaded
// and, per model, its slots, the busy ones and the requests waiting for
// one. In the worker tier (rc) they are summed over the live workers that
// serve each model, from the worker registry (read at most every half
// second), with the number of live workers.
type engineState struct {
	eng *engine.Engine
	rc  *remote.Client
}

var (
	descModels    = prometheus.NewDesc("code4me_engine_models", "Models loaded (the worker tier: models live workers serve).", nil, nil)
	descSlots     = prometheus.NewDesc("code4me_engine_slots", "Slots (parallel sequences) of a model.", []string{"model"}, nil)
	descSlotsBusy = prometheus.NewDesc("code4me_engine_slots_busy", "Slots of a model running a request.", []string{"model"}, nil)
	descQueue     = prometheus.NewDesc("code4me_engine_queue_depth", "Requests of a model waiting for a slot.", []string{"model"}, nil)
	descWorkers   = prometheus.NewDesc("code4me_engine_workers", "Live workers of the worker tier (API nodes only).", nil, nil)
)

func (engineState) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descModels, descSlots, descSlotsBusy, descQueue, descWorkers} {
		ch <- d
	}
}

func (e engineState) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	switch {
	case e.eng != nil:
		stats := e.eng.Stats()
		gauge(descModels, len(stats))
		for _, st := range stats {
			gauge(descSlots, st.Slots, st.Model)
			gauge(descSlotsBusy, st.SlotsBusy, st.Model)
			gauge(descQueue, st.QueueLen, st.Model)
		}
	case e.rc != nil:
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rows, err := e.rc.Registry(ctx)
		if err != nil {
			return
		}
		type load struct{ slots, busy, queue int }
		byModel := map[string]*load{}
		var names []string
		workers := map[string]bool{}
		for _, r := range rows {
			if !r.Alive {
				continue
			}
			workers[r.WorkerID.String()] = true
			l := byModel[r.ModelName]
			if l == nil {
				l = &load{}
				byModel[r.ModelName] = l
				names = append(names, r.ModelName)
			}
			l.slots += int(r.Slots)
			l.busy += int(r.SlotsBusy)
			l.queue += int(r.QueueLen)
		}
		gauge(descModels, len(names))
		gauge(descWorkers, len(workers))
		for _, n := range names {
			gauge(descSlots, byModel[n].slots, n)
			gauge(descSlotsBusy, byModel[n].busy, n)
			gauge(descQueue, byModel[n].queue, n)
		}
	default:
		gauge(descModels, 0)
	}
}

// metricsRoutes registers GET /metrics. Who may read it, in order:
//
//   - a scraper whose Authorization: Bearer carries METRICS_TOKEN
//     (compared in constant time), when that is set;
//   - with METRICS_LOOPBACK, any request from this machine: its TCP peer
//     is a loopback address (never X-Forwarded-For) and it carries no
//     proxy header (X-Forwarded-For, Forwarded, X-Real-IP), since through
//     a reverse proxy on the same machine every outside request comes
//     from loopback;
//   - an admin, exactly as on the admin routes (guardAdmin): a login or an
//     API key with the account scope, rate-limited per user, 401 without
//     valid credentials (a wrong token included, taken for an unknown API
//     key) and 403 for a user who is not an admin.
//
// The first two need neither Redis nor Postgres, so a scraper still reads
// the metrics during an outage of either; nor are they rate-limited.
func (s *Server) metricsRoutes() {
	s.app.Get("/metrics", append([]fiber.Handler{s.metricsScraper}, s.guardAdmin(s.serveMetrics)...)...)
}

// metricsScraper serves the metrics to a scraper admitted by token or by
// loopback, and hands everyone else on to the admin check.
func (s *Server) metricsScraper(c *fiber.Ctx) error {
	if s.metricsToken(c) || s.metricsLoopback(c) {
		return s.serveMetrics(c)
	}
	return c.Next()
}

func (s *Server) metricsToken(c *fiber.Ctx) bool {
	want := s.cfg.MetricsToken
	got, ok := bytes.CutPrefix(c.Request().Header.Peek(fiber.HeaderAuthorization), bearerPrefix)
	return want != "" && ok && subtle.ConstantTimeCompare(bytes.TrimSpace(got), []byte(want)) == 1
}

func (s *Server) metricsLoopback(c *fiber.Ctx) bool {
	if !s.cfg.MetricsLoopback || !c.Context().RemoteIP().IsLoopback() {
		return false
	}
	h := &c.Request().Header
	for _, name := range []string{fiber.HeaderXForwardedFor, fiber.HeaderForwarded, "X-Real-Ip"} {
		if len(h.Peek(name)) > 0 {
			return false
		}
	}
	return true
}

// serveMetrics writes every metric in Prometheus' text format.
func (s *Server) serveMetrics(c *fiber.Ctx) error {
	families, err := s.metrics.reg.Gather()
	if err != nil {
		// A collector failed; the others are still worth serving.
		s.log.Warn("metrics: gather", slog.String("error", err.Error()))
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	c.Set(fiber.HeaderContentType, string(format))
	c.Set(fiber.HeaderCacheControl, "no-store")
	enc := expfmt.NewEncoder(c.Response().BodyWriter(), format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return err
		}
	}
	return nil
}
