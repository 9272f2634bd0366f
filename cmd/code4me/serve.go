package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/server"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
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

	svc, err := startServices(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer svc.stop(log)

	refs, err := serveModels(ctx, cfg, log)
	if err != nil {
		return err
	}
	eng, err := newEngine(cfg, log, refs)
	if err != nil {
		return err
	}
	defer eng.Close()

	srv, err := server.New(server.Deps{
		Config: cfg,
		Log:    log,
		DB:     svc.pool,
		Redis:  svc.rdb,
		Engine: eng,
		Status: func() map[string]any {
			return map[string]any{
				"version":          buildVersion(),
				"private_postgres": svc.privatePG != nil,
				"private_redis":    svc.privateRedis != nil,
				"models":           modelStatus(eng, refs),
			}
		},
	})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", slog.String("addr", cfg.ListenAddr()))
	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", slog.String("error", err.Error()))
	}
	return nil
}

// modelStatus describes the loaded models for /api/ping: the effective
// parallelism and context per slot (which llama.cpp may have reduced), and
// whether the weights are synthetic.
func modelStatus(e *engine.Engine, refs []modelRef) []map[string]any {
	synthetic := map[string]bool{}
	for _, r := range refs {
		synthetic[r.Name] = r.Synthetic
	}
	var out []map[string]any
	for _, st := range e.Stats() {
		out = append(out, map[string]any{
			"name":          st.Model,
			"family":        string(st.Family),
			"synthetic":     synthetic[st.Model],
			"sha256":        st.Info.SHA256,
			"arch":          st.Info.Arch,
			"parameters":    st.Info.NParams,
			"slots":         st.Slots,
			"slots_busy":    st.SlotsBusy,
			"n_ctx_slot":    st.NCtxPerSlot,
			"queue":         st.QueueLen,
			"queue_cap":     st.QueueCap,
			"requests":      st.Requests,
			"cached_tokens": st.CachedTokens,
			"decodes":       st.Decodes,
			"decode_tokens": st.DecodeTokens,
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
