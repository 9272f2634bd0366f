package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/eval"
)

func runEval(ctx context.Context, args []string) error {
	return evalCommand(ctx, args, os.Stdout)
}

// evalReport is what `code4me eval --json` prints.
type evalReport struct {
	RunID     int64         `json:"run_id"`
	Model     string        `json:"model"`
	SHA256    string        `json:"model_sha256"`
	Arm       string        `json:"arm"`
	Seed      uint64        `json:"seed"`
	Repo      string        `json:"repo"`
	MaxTokens int           `json:"max_tokens"`
	Summary   eval.Summary  `json:"summary"`
	Results   []eval.Result `json:"results,omitempty"` // with --json-results
}

// evalCommand builds tasks from a source tree, completes them with one
// model in this process, prints the report to stdout and stores the run
// in the configured database (or the private one under DATA_DIR).
func evalCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	repo := fs.String("repo", "", "source tree to cut tasks from (required)")
	model := fs.String("model", "tiny", "model: GGUF path, added or pulled name, or synthetic shape")
	arm := fs.String("arm", "", "label stored with the run, to compare configurations of the same model")
	tasks := fs.Int("tasks", 100, "tasks to build and run")
	seed := fs.Uint64("seed", 1, "seed of the task choice; the same tree and seed give the same tasks")
	langs := fs.String("languages", "", "comma-separated languages to draw tasks from (default: every language found)")
	maxTokens := fs.Int("max-tokens", 64, "tokens generated per task at most")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	withResults := fs.Bool("json-results", false, "print the JSON report with every task's result")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	// The seed is stored as a Postgres bigint.
	if *repo == "" || *tasks < 1 || *maxTokens < 1 || *seed > math.MaxInt64 || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: code4me eval --repo DIR [--model M] [--arm A] [--tasks N] [--seed S] [--languages L,...] [--max-tokens N] [--json]")
		return errUsage
	}
	opt := eval.Options{Tasks: *tasks, Seed: *seed}
	if *langs != "" {
		opt.Languages = strings.Split(*langs, ",")
	}
	ts, err := eval.Build(*repo, opt)
	if err != nil {
		return err
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	if err := cfg.CheckDataDir(); err != nil {
		return err
	}
	// The database first: a wrong URL is reported before the model runs.
	svc, err := startServices(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer svc.stop(log)
	ref, err := resolveModel(ctx, cfg, *model)
	if err != nil {
		return err
	}
	// One slot: tasks run one at a time, each latency its own.
	cfg.NParallel = 1
	e, err := newEngine(cfg, log, []modelRef{ref})
	if err != nil {
		return err
	}
	defer e.Close()
	sum := modelStats(e, ref.Name).Info.SHA256
	repoName, _ := filepath.Abs(*repo)
	info := eval.RunInfo{ModelName: ref.Name, ModelSHA256: sum, Arm: *arm, Seed: *seed, Repo: repoName, MaxTokens: *maxTokens}
	id, err := eval.Begin(ctx, svc.pool, info, len(ts))
	if err != nil {
		return err
	}
	log.Info("eval started", slog.Int64("run", id), slog.String("model", ref.Name), slog.Int("tasks", len(ts)))
	results, err := eval.Run(ctx, ts, engineCompleter(e, ref.Name, *maxTokens))
	if err != nil {
		return err
	}
	s := eval.Summarize(results)
	if err := eval.Finish(ctx, svc.pool, id, results, s); err != nil {
		return err
	}
	if *asJSON || *withResults {
		r := evalReport{RunID: id, Model: ref.Name, SHA256: sum, Arm: *arm, Seed: *seed, Repo: repoName, MaxTokens: *maxTokens, Summary: s}
		if *withResults {
			r.Results = results
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	label := ""
	if ref.Synthetic {
		label = " (synthetic model: random weights)"
	}
	fmt.Fprintf(stdout, "eval run %d: model %s%s, arm %q, %d tasks from %s, seed %d, at most %d tokens each\n\n",
		id, ref.Name, label, *arm, len(ts), repoName, *seed, *maxTokens)
	return eval.WriteReport(stdout, s)
}

// engineCompleter completes tasks with model on e: greedy sampling, so a
// run is reproducible; a single-line task stops at the end of the line.
func engineCompleter(e *engine.Engine, model string, maxTokens int) eval.CompleteFunc {
	return func(ctx context.Context, t eval.Task) (eval.Completion, error) {
		mode := engine.ModeMultiLine
		if t.Kind == eval.SingleLine {
			mode = engine.ModeSingleLine
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		res, err := e.Complete(ctx, model, engine.Request{
			Prefix: t.Prefix, Suffix: t.Suffix, FilePath: t.File,
			MaxTokens: maxTokens, Mode: mode, CachePrompt: true,
			Sampling: engine.SamplingParams{Temperature: 0},
		})
		if err != nil {
			return eval.Completion{}, err
		}
		if res.Stop == engine.StopError || res.Stop == engine.StopCancelled || res.Stop == engine.StopDeadline {
			return eval.Completion{}, fmt.Errorf("completion stopped (%s): %w", res.Stop, errors.Join(res.Err, ctx.Err()))
		}
		return eval.Completion{Text: res.Text, PromptTokens: res.Timings.PromptTokens, GeneratedTokens: res.Timings.GeneratedTokens}, nil
	}
}
