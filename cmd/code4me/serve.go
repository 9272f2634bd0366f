package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/llama"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/server"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	engineMode := fs.String("engine", "local", "local: load the models in this process; remote: load none and send "+
		"every request to `code4me worker` processes")
	open := fs.Bool("open", false, "requests from this machine without credentials act as OPEN_USER (docs/clients.md); "+
		"needs SERVER_HOST and LLAMA_LISTEN on loopback addresses")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *engineMode != "local" && *engineMode != "remote" {
		fmt.Fprintln(os.Stderr, "usage: code4me serve [--engine local|remote] [--open]")
		return errUsage
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if *open {
		if err := checkOpen(cfg); err != nil {
			return err
		}
	}
	log := newLogger(cfg)
	if err := cfg.CheckDataDir(); err != nil {
		return err
	}
	// Bind first: a busy port is reported before anything is started.
	ln, err := net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("cannot listen on %s: address already in use (set SERVER_PORT to a free port or stop the process using it)", cfg.ListenAddr())
		}
		return fmt.Errorf("cannot listen on %s: %s (check SERVER_HOST and SERVER_PORT)", cfg.ListenAddr(), shortNetErr(err))
	}
	defer ln.Close()
	if ln, err = withLlamaListener(cfg, ln); err != nil {
		return err
	}
	defer ln.Close() // with LLAMA_LISTEN, both listeners

	svc, err := startServices(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	// Closed by shutdown once serving has begun; on an error before, here.
	defer svc.stop(log)

	deps := server.Deps{Config: cfg, Log: log, DB: svc.pool, Redis: svc.rdb, Build: engineBuild()}
	var eng *engine.Engine
	var rc *remote.Client
	if *engineMode == "remote" {
		// An API node: the models run in `code4me worker` processes.
		if rc, err = remote.NewClient(ctx, svc.pool, svc.rdb, log); err != nil {
			return err
		}
		defer rc.Close()
		deps.Remote = rc
		// Chat prompts are rendered here with the workers' templates.
		if deps.Templates, err = llama.New(llama.Config{}); err != nil {
			return err
		}
		deps.Status = func() map[string]any {
			return map[string]any{"version": buildVersion(), "engine": "remote", "private_postgres": svc.privatePG != nil,
				"private_redis": svc.privateRedis != nil, "workers": workerStatus(rc)}
		}
	} else {
		refs, err := serveModels(ctx, cfg, log)
		if err != nil {
			return err
		}
		if eng, err = newEngine(cfg, log, refs); err != nil {
			return err
		}
		defer eng.Close()
		deps.Engine = eng
		deps.Status = func() map[string]any {
			return map[string]any{
				"version":          buildVersion(),
				"engine":           "local",
				"private_postgres": svc.privatePG != nil,
				"private_redis":    svc.privateRedis != nil,
				"models":           modelStatus(eng),
			}
		}
	}
	srv, err := server.New(deps)
	if err != nil {
		return err
	}
	if *open {
		if err := srv.OpenLocal(ctx, cfg.OpenUser); err != nil {
			return err
		}
		log.Info("open access: requests from this machine without credentials act as OPEN_USER", slog.String("user", cfg.OpenUser))
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", slog.String("addr", cfg.ListenAddr()), slog.String("llama_listen", cfg.LlamaListen))
	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	shutdown(cfg, log, srv, eng, svc)
	return nil
}

// shutdownMargin is how long shutdown waits, after the grace period, for
// background work (a completion's first commit, bounded by its own 30 s
// deadline at most) and the job queue's running jobs.
const shutdownMargin = 15 * time.Second

// shutdown ends serve after SIGTERM or SIGINT: the server drains (new
// requests get 503, WebSockets the close frame 1001, requests in flight
// finish within SHUTDOWN_GRACE, background goroutines end), then the
// engine, the job queue (River) and the pools close, in that order, each
// after everything that uses it has stopped. Errors are logged: the
// process still exits 0, having stopped as asked.
func shutdown(cfg config.Config, log *slog.Logger, srv *server.Server, eng *engine.Engine, svc *services) {
	log.Info("shutting down", slog.Duration("grace", cfg.ShutdownGrace))
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace+shutdownMargin)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		log.Warn("shutdown: drain", slog.String("error", err.Error()))
	}
	if eng != nil {
		if err := eng.Close(); err != nil {
			log.Warn("shutdown: engine", slog.String("error", err.Error()))
		}
	}
	if err := srv.Shutdown(ctx); err != nil { // the job queue; the drain is done
		log.Warn("shutdown: job queue", slog.String("error", err.Error()))
	}
	svc.stop(log)
	log.Info("stopped")
}

// modelStatus describes the loaded models for /api/ping: the effective
// parallelism and context per slot (which llama.cpp may have reduced), and
// whether the weights are synthetic, as the file's general.synthetic says
// (however it was named: a synthetic file loaded by its path is one too).
func modelStatus(e *engine.Engine) []map[string]any {
	var out []map[string]any
	for _, st := range e.Stats() {
		out = append(out, map[string]any{
			"name":             st.Model,
			"family":           string(st.Family),
			"synthetic":        st.Info.Synthetic,
			"sha256":           st.Info.SHA256,
			"arch":             st.Info.Arch,
			"parameters":       st.Info.NParams,
			"slots":            st.Slots,
			"slots_busy":       st.SlotsBusy,
			"n_ctx_slot":       st.NCtxPerSlot,
			"queue":            st.QueueLen,
			"queue_cap":        st.QueueCap,
			"requests":         st.Requests,
			"prompt_tokens":    st.PromptTokens,
			"cached_tokens":    st.CachedTokens,
			"evaluated_tokens": st.EvaluatedTokens,
			"generated_tokens": st.GeneratedTokens,
			"decodes":          st.Decodes,
			"decode_tokens":    st.DecodeTokens,
			"decode_ms":        st.DecodeMS,
			"prompt_cache": map[string]any{"prompts": st.PromptCache.Prompts, "bytes": st.PromptCache.Bytes,
				"saves": st.PromptCache.Saves, "restores": st.PromptCache.Restores, "restored_tokens": st.PromptCache.RestoredTokens},
		})
	}
	return out
}

func runMigrate(ctx context.Context, args []string) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	if err := cfg.CheckDataDir(); err != nil {
		return err
	}
	svc, err := startServices(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	svc.stop(log)
	log.Info("migrations applied")
	return nil
}

// engineBuild is what each generation records of the build that ran it
// (generation.engine_build): this binary's version, the ollama module whose
// llama.cpp it compiles, and the CPU features llama.cpp was built with, all
// of which can change a model's numerics.
func engineBuild() string {
	b := "code4me " + buildVersion()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/ollama/ollama" {
				b += "; llama.cpp from github.com/ollama/ollama " + d.Version
			}
		}
	}
	return b + "; " + llama.SystemInfo()
}
