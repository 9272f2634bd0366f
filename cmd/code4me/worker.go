package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/server"
)

// runWorker is `code4me worker`: it loads models and runs the requests
// API nodes (`serve --engine=remote`) send them through the job queue,
// until SIGTERM or SIGINT, then drains: it takes no new request and
// finishes those it runs within SHUTDOWN_GRACE.
func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	modelList := fs.String("models", "", "comma-separated models to serve (names as for MODELS); default: as serve")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: code4me worker [--models m1,m2]")
		return errUsage
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg).With(slog.String("role", "worker"))
	// A worker joins a deployment: it shares the API nodes' Postgres and
	// Redis and never starts private ones.
	if cfg.ManagedPostgres() || cfg.ManagedRedis() {
		return errors.New("a worker needs the deployment's Postgres and Redis: set DATABASE_URL (or DB_HOST) and REDIS_URL (or REDIS_HOST)")
	}
	if err := cfg.CheckDataDir(); err != nil {
		return err
	}
	if *modelList != "" {
		cfg.Models = strings.Split(*modelList, ",")
	}
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
	reg, err := server.RegisterModels(ctx, svc.pool, eng, nil, server.LimitsOf(cfg))
	if err != nil {
		return err
	}
	ids := map[string]int64{}
	for _, m := range reg.List() {
		ids[m.Name] = m.ID
	}
	w, err := remote.StartWorker(ctx, remote.WorkerConfig{DB: svc.pool, Redis: svc.rdb, Engine: eng, Models: ids,
		Version: buildVersion(), Log: log})
	if err != nil {
		return err
	}
	log.Info("worker serving", slog.String("worker_id", w.ID().String()), slog.Any("models", eng.Names()))
	<-ctx.Done()
	log.Info("worker draining", slog.Duration("grace", cfg.ShutdownGrace))
	// Running requests get SHUTDOWN_GRACE; Drain then cancels what is left.
	dctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := w.Drain(dctx); err != nil {
		log.Warn("worker drain", slog.String("error", err.Error()))
	}
	log.Info("worker stopped")
	return nil
}

// workerStatus lists the live workers and their models, with each model's
// load and memory (weights_bytes, kv_cells; null when not reported), for
// /api/ping.
func workerStatus(c *remote.Client) []map[string]any {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rows, err := c.Registry(ctx)
	if err != nil {
		return nil
	}
	byWorker := map[string]map[string]any{}
	var out []map[string]any
	for _, r := range rows {
		if !r.Alive {
			continue
		}
		id := r.WorkerID.String()
		w, ok := byWorker[id]
		if !ok {
			w = map[string]any{"worker_id": id, "host": r.Host, "pid": r.Pid, "version": r.Version, "draining": r.Draining,
				"heartbeat_at": r.HeartbeatAt, "models": []map[string]any{}}
			byWorker[id] = w
			out = append(out, w)
		}
		w["models"] = append(w["models"].([]map[string]any), map[string]any{"model": r.ModelName, "model_id": r.ModelID,
			"slots": r.Slots, "slots_busy": r.SlotsBusy, "queue": r.QueueLen, "weights_bytes": r.WeightsBytes, "kv_cells": r.KvCells})
	}
	return out
}
