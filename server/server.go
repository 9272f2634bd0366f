// Package server is code4me's HTTP and WebSocket front end, built on Fiber:
//
//   - the Code4me V2 plugin API (users, sessions, projects, completions,
//     chat, multi-file context, feedback, over HTTP and WebSocket), API keys
//     with scopes, data export and account deletion;
//   - the editor-client APIs: llama.cpp's (/infill, /completion, /health,
//     /props, /slots; llamaapi.go), OpenAI's (/v1/completions with suffix,
//     /v1/chat/completions, /v1/embeddings; openaiapi.go, embeddings.go),
//     ollama's (/api/generate, /api/chat, /api/tags; ollamaapi.go), Tabby's
//     (tabbyapi.go) and next-edit suggestions (/v1/next-edit; nextedit.go);
//   - retrieval of project context: chunks embedded by a River job, the
//     nearest laid out in a stable order (retrieval.go, retrieval_layout.go);
//   - research: analytics, studies with arms and per-arm results,
//     evaluation runs, replay, exports, quality figures derived by a River
//     job (analytics*.go, study*.go, eval_job.go, truth_job.go);
//   - administration: the admin API generated from the sqlc queries with its
//     audit log (admin_api*.go), configs, River's UI at /admin/jobs, the
//     dashboard at / (webui.go, built from web/), Prometheus /metrics, and
//     /openapi.json with /docs.
//
// Every route authenticates and rate-limits its caller (auth.go); errors
// map to status codes in one place (errors.go); a dependency outage answers
// 503 and shutdown drains (drain.go).
//
// Handlers never touch llama.cpp directly: they talk to the engine package,
// in process or through the worker tier (runner.go). Fiber never cancels a
// handler when its client leaves, so every engine call gets a context that
// the handler cancels itself (WebSocket cancel or supersede, a failed write,
// a deadline).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/mail"
	"github.com/code4me/code4me/internal/oauth"
	"github.com/code4me/code4me/internal/ratelimit"
	"github.com/code4me/code4me/internal/redact"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/models"
)

// Deps are what the server needs; cmd wires them.
type Deps struct {
	Config config.Config
	Log    *slog.Logger
	DB     *pgxpool.Pool
	Redis  *redis.Client
	// Status reports extra readiness details for /api/ping (engine models,
	// whether services are private). May be nil.
	Status func() map[string]any
	// Mail sends verification and password reset emails. Nil: SMTP to
	// EMAIL_HOST, or .eml files under DATA_DIR/mail when no host is set.
	Mail mail.Sender
	// OAuth verifies Google ID tokens. Nil: built from
	// Config.GoogleClientID against Google's key set.
	OAuth *oauth.Verifier
	// Engine runs completions and chat. Nil: every requested model answers
	// with an error item.
	Engine *engine.Engine
	// Remote, instead of Engine, sends every request to the worker tier
	// (`serve --engine=remote`); the models are those live workers serve.
	Remote *remote.Client
	// Templates renders chat templates for Remote's models (the llama
	// backend). Nil: chat prompts use the fallback layout.
	Templates engine.TemplateRenderer
	// Redactor removes secrets from code before inference, storage and
	// responses. Nil: one is built from gitleaks' default rules.
	Redactor *redact.Redactor
	// Models maps the plugin's model ids to engine models. Nil: built from
	// Engine's loaded models at New (ModelUpsert), see RegisterModels.
	Models *ModelRegistry
	// Seed draws each request's sampler seed (stored with its generation).
	// Nil: random. The server benchmark sets it to give the bare engine
	// the same seed, so that both generate the same tokens.
	Seed func() uint32
	// Build names the code4me build and the llama.cpp build that run the
	// models; each generation stores it (generation.engine_build). Empty:
	// not recorded.
	Build string
	// JobQueue is the River queue this server inserts its jobs in and
	// works ("default" when empty). Tests give each server its own.
	JobQueue string
}

// Server is the HTTP application.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	db      *pgxpool.Pool
	rdb     *redis.Client
	status  func() map[string]any
	app     *fiber.App
	started time.Time

	unavailable logEvery   // the 503s' log lines, at most one a second
	supersede   supersedes // completion requests in flight per session and file

	q         *models.Queries
	tokens    *auth.Store
	limiter   *ratelimit.Limiter
	trusted   []netip.Prefix
	mail      mail.Sender
	oauth     *oauth.Verifier
	redirects routeMatcher
	plugin    plugin   // completion, chat and WebSocket state (completion.go)
	jobs      jobs     // River client: mail (mailjob.go)
	ctxCache  ctxCache // projects' multi-file context (contextcache.go)
	studies   studies  // the running study (study.go)

	retr retrieval // chunks, embeddings and prompt layout of that context (retrieval.go)

	metrics *metrics // Prometheus metrics (metrics.go)

	jobFigures jobStatsCache // the job queue's figures in /api/ping (jobs_admin.go)

	open openAccess // serve --open's local user (llamaapi.go)

	stop  context.CancelFunc // ends background work (the session sweeper)
	bg    bgGroup            // background work, waited for by Drain
	drain drainState         // Drain's state (drain.go)
}

// New builds the application and registers every route.
func New(d Deps) (*Server, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.DB == nil || d.Redis == nil {
		return nil, errors.New("server: database and redis are required")
	}
	s := &Server{cfg: d.Config, log: d.Log, db: d.DB, rdb: d.Redis, status: d.Status, started: time.Now(),
		q: models.New(), mail: d.Mail, oauth: d.OAuth}
	// Redis errors that mean Redis is down answer 503 (redishook.go).
	d.Redis.AddHook(redisOutageHook{})
	trusted, err := ratelimit.ParseTrusted(d.Config.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("server: TRUSTED_PROXIES: %w", err)
	}
	s.trusted = trusted
	if s.mail == nil {
		s.mail = mailSender(d.Config, d.Log)
	}
	if s.oauth == nil {
		s.oauth = oauth.New(oauth.Options{ClientID: d.Config.GoogleClientID})
	}
	s.tokens = auth.New(d.Redis, auth.TTLs{
		Auth:         d.Config.AuthTokenTTL,
		Session:      d.Config.SessionTokenTTL,
		Verification: d.Config.VerificationTokenTTL,
		Reset:        d.Config.ResetTokenTTL,
	}, s.sessionEnded, d.Log)
	s.limiter = ratelimit.New(d.Redis, ratelimit.Options{Default: d.Config.DefaultRatePerHour, ByRoute: jobsUIRates(d.Config.RatePerHourByRoute)})
	s.app = fiber.New(fiber.Config{
		AppName:               "code4me",
		DisableStartupMessage: true,
		BodyLimit:             d.Config.MaxBodyBytes,
		ReadTimeout:           60 * time.Second,
		WriteTimeout:          10 * time.Minute,
		IdleTimeout:           2 * time.Minute,
		ErrorHandler:          s.errorHandler,
		StrictRouting:         true, // trailing-slash variants are 307s, see redirect.go
		CaseSensitive:         true,

		// The request line and headers must fit in the read buffer, else
		// fasthttp answers 431 before any handler runs.
		ReadBufferSize: d.Config.MaxHeaderBytes,
	})
	s.app.Use(s.countRequests) // first, so that it counts every answer
	s.app.Use(s.cors())
	s.app.Use(s.refuseWhileDraining)
	if err := s.initPlugin(d); err != nil {
		return nil, err
	}
	s.initRetrieval(d.Engine, d.Remote, d.Config)
	s.initMetrics(d)
	s.routes()

	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if err := s.startJobs(ctx, d.JobQueue); err != nil {
		cancel()
		return nil, err
	}
	sweep := d.Config.TokenHookActivation
	if sweep <= 0 {
		sweep = 10 * time.Second
	}
	s.bg.Go(func() { s.tokens.RunSweeper(ctx, sweep) })
	if d.Remote != nil {
		s.loadRemoteModels(ctx, d.Remote)
		s.bg.Go(func() { s.refreshRemoteModels(ctx, d.Remote) })
		s.bg.Go(func() { s.watchRemoteEmbedder(ctx) })
	}
	return s, nil
}

// mailSender is SMTP when EMAIL_HOST is set, else .eml files under
// DATA_DIR/mail.
func mailSender(cfg config.Config, log *slog.Logger) mail.Sender {
	if cfg.EmailHost == "" {
		return &mail.Dir{Path: filepath.Join(cfg.DataDir, "mail"), From: cfg.EmailFrom, Logger: log}
	}
	return &mail.SMTP{Host: cfg.EmailHost, Port: cfg.EmailPort, Username: cfg.EmailUsername, Password: cfg.EmailPassword,
		From: cfg.EmailFrom, StartTLS: cfg.EmailUseTLS}
}

// sessionEnded records a session's end in Postgres (auth.SessionEndFunc).
func (s *Server) sessionEnded(ctx context.Context, sid uuid.UUID, _ time.Time) error {
	_, err := s.q.SessionEnd(ctx, s.db, sid)
	return err
}

// cors allows the configured origins (CORS_ALLOWED_ORIGINS) with
// credentials, so a browser page on one of them can use the cookies.
// Wildcard origins cannot carry credentials, so "*" is served without them.
func (s *Server) cors() fiber.Handler {
	origins := slices.DeleteFunc(slices.Clone(s.cfg.CORSOrigins), func(o string) bool { return strings.TrimSpace(o) == "" })
	if len(origins) == 0 {
		return func(c *fiber.Ctx) error { return c.Next() }
	}
	wildcard := slices.Contains(origins, "*")
	cfg := cors.Config{
		AllowOrigins:     strings.Join(origins, ","),
		AllowCredentials: !wildcard,
		AllowMethods:     "GET,POST,HEAD,PUT,DELETE,PATCH,OPTIONS",
		ExposeHeaders:    "Retry-After,X-RateLimit-Limit,X-RateLimit-Remaining,Server-Timing",
		MaxAge:           600,
	}
	if wildcard {
		cfg.AllowOrigins = "*"
	}
	return cors.New(cfg)
}

// background runs fn in a goroutine that Drain waits for, with a context
// of its own (one minute).
func (s *Server) background(fn func(ctx context.Context)) {
	s.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fn(ctx)
	})
}

// App exposes the Fiber app, for tests (app.Test) and for embedding.
func (s *Server) App() *fiber.App { return s.app }

// Serve accepts connections on ln until Drain or Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown drains the server (Drain, unless that was done) and then stops
// the job queue, letting its running jobs finish, all up to ctx's
// deadline. Queued jobs stay in Postgres for the next start. Tokens are
// left in Redis: a restart logs nobody out. The engine and the pools are
// the caller's: close the engine between Drain and Shutdown, the pools
// after Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.Drain(ctx)
	return errors.Join(err, s.stopJobs(ctx))
}

// routes registers every route. Each feature has its own register method
// in its own file; guard(class) on a route authenticates and rate-limits.
func (s *Server) routes() {
	api := s.app.Group("/api")
	api.Get("/ping", s.ping) // Fiber answers HEAD from GET routes.
	s.userRoutes(api)
	s.sessionRoutes(api)
	s.projectRoutes(api)
	s.apiKeyRoutes(api)
	s.pluginRoutes(api)
	s.llamaRoutes()
	s.clientAPIRoutes(api)
	s.configAdminRoutes(api)
	s.adminAPIRoutes(api)
	s.analyticsRoutes(api)
	s.evalRoutes(api)
	s.studyRoutes(api)
	s.jobsAdminRoutes()
	s.metricsRoutes()
	s.openAPIRoutes()
	s.usageRoutes(api)
	s.webUIRoutes() // last: the dashboard's pages never shadow a route above
}

// ping answers 200 once Postgres and Redis respond; details say what runs.
func (s *Server) ping(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	body := fiber.Map{"Status": "Ok"}
	if err := s.db.Ping(ctx); err != nil {
		s.log.Warn("ping: database unavailable", slog.String("error", err.Error()))
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"Status": "Unavailable", "message": "database unavailable"})
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.log.Warn("ping: redis unavailable", slog.String("error", err.Error()))
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"Status": "Unavailable", "message": "redis unavailable"})
	}
	if s.status != nil {
		body["details"] = s.status()
	}
	body["uptime_s"] = int(time.Since(s.started).Seconds())
	body["jobs"] = s.pingJobs(ctx)
	return c.JSON(body)
}
