// Package server is code4me's HTTP and WebSocket front end, built on Fiber:
// the Code4me V2 plugin API, the compatibility APIs (llama.cpp /infill,
// OpenAI, ollama, Tabby), the admin API and the dashboard's static files.
//
// Handlers never touch llama.cpp directly: they talk to the engine package.
// Fiber never cancels a handler when its client leaves, so every engine call
// gets a context that the handler cancels itself (WebSocket cancel or
// supersede, a failed write, a deadline).
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/code4me/code4me/internal/config"
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
}

// New builds the application and registers every route.
func New(d Deps) (*Server, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.DB == nil || d.Redis == nil {
		return nil, errors.New("server: database and redis are required")
	}
	s := &Server{cfg: d.Config, log: d.Log, db: d.DB, rdb: d.Redis, status: d.Status, started: time.Now()}
	s.app = fiber.New(fiber.Config{
		AppName:               "code4me",
		DisableStartupMessage: true,
		BodyLimit:             d.Config.MaxBodyBytes,
		ReadTimeout:           60 * time.Second,
		WriteTimeout:          10 * time.Minute,
		IdleTimeout:           2 * time.Minute,
		ErrorHandler:          s.errorHandler,
	})
	s.routes()
	return s, nil
}

// App exposes the Fiber app, for tests (app.Test) and for embedding.
func (s *Server) App() *fiber.App { return s.app }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops accepting connections and waits for handlers to finish, up
// to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error { return s.app.ShutdownWithContext(ctx) }

func (s *Server) routes() {
	api := s.app.Group("/api")
	api.Get("/ping", s.ping) // Fiber answers HEAD from GET routes.
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
	return c.JSON(body)
}

// errorHandler maps errors that escape handlers to the original platform's
// shapes: framework errors use {"detail": ...}.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusNotFound:
			return c.Status(fe.Code).JSON(fiber.Map{"detail": "Not Found"})
		case fiber.StatusMethodNotAllowed:
			return c.Status(fe.Code).JSON(fiber.Map{"detail": "Method Not Allowed"})
		case fiber.StatusRequestEntityTooLarge:
			return c.Status(fe.Code).JSON(fiber.Map{"detail": "Request body too large"})
		}
		return c.Status(fe.Code).JSON(fiber.Map{"detail": fe.Message})
	}
	s.log.Error("request failed", slog.String("route", c.Route().Path), slog.String("error", err.Error()))
	return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"detail": "Internal Server Error"})
}
