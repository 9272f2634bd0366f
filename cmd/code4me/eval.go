package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/code4me/code4me/internal/eval"
	"github.com/code4me/code4me/server"
)

func runEval(ctx context.Context, args []string) error {
	return evalCommand(ctx, args, os.Stdout)
}

// evalReport is what `code4me eval --json` prints.
type evalReport struct {
	RunID     int64         `json:"run_id"`
	Server    string        `json:"server,omitempty"` // with --server
	Model     string        `json:"model"`
	SHA256    string        `json:"model_sha256"`
	Arm       string        `json:"arm"`
	Seed      uint64        `json:"seed"`
	Repo      string        `json:"repo"`
	MaxTokens int           `json:"max_tokens"` // 0 with --server: the server's limit
	Summary   eval.Summary  `json:"summary"`
	Results   []eval.Result `json:"results,omitempty"` // with --json-results
}

// evalUsage is the command's synopsis.
const evalUsage = "usage: code4me eval --repo DIR [--model M | --server URL --model-id N [--api-key KEY]] [--arm A] [--tasks N] " +
	"[--seed S] [--languages L,...] [--max-tokens N] [--json]"

// evalCommand builds tasks from a source tree, completes them with one
// model, in this process or on a running code4me server (--server),
// prints the report to stdout and stores the run in the configured
// database (or the private one under DATA_DIR).
func evalCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	repo := fs.String("repo", "", "source tree to cut tasks from (required)")
	model := fs.String("model", "tiny", "model: GGUF path, added or pulled name, or synthetic shape")
	serverURL := fs.String("server", "", "base URL of a running code4me server to complete the tasks on, instead of --model in this process")
	apiKey := fs.String("api-key", "", "API key (completions scope) for --server; default $CODE4ME_API_KEY")
	modelID := fs.Int64("model-id", 0, "id of the model on --server to complete with")
	arm := fs.String("arm", "", "label stored with the run, to compare configurations of the same model")
	tasks := fs.Int("tasks", 100, "tasks to build and run")
	seed := fs.Uint64("seed", 1, "seed of the task choice; the same tree and seed give the same tasks")
	langs := fs.String("languages", "", "comma-separated languages to draw tasks from (default: every language found)")
	maxTokens := fs.Int("max-tokens", 64, "tokens generated per task at most (in this process; a server applies its own limit)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	withResults := fs.Bool("json-results", false, "print the JSON report with every task's result")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *apiKey == "" {
		*apiKey = os.Getenv("CODE4ME_API_KEY")
	}
	// The seed is stored as a Postgres bigint. A server completes with its
	// own model list and token limit, so --model and --max-tokens do not
	// apply to it, and --model-id needs one.
	bad := *repo == "" || *tasks < 1 || *maxTokens < 1 || *seed > math.MaxInt64 || fs.NArg() > 0
	if *serverURL != "" {
		bad = bad || *modelID < 1 || *apiKey == "" || set["model"] || set["max-tokens"]
	} else {
		bad = bad || set["model-id"] || set["api-key"]
	}
	if bad {
		fmt.Fprintln(os.Stderr, evalUsage)
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
	repoName, _ := filepath.Abs(*repo)
	info := eval.RunInfo{Arm: *arm, Seed: *seed, Repo: repoName, Languages: opt.Languages, MaxTokens: *maxTokens}
	label := ""
	var results []eval.Result
	if *serverURL == "" {
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
		info.ModelName, info.ModelSHA256 = ref.Name, modelStats(e, ref.Name).Info.SHA256
		if ref.Synthetic {
			label = " (synthetic model: random weights)"
		}
		log.Info("eval started", slog.String("model", ref.Name), slog.Int("tasks", len(ts)))
		info.StartedAt = time.Now()
		if results, err = eval.Run(ctx, ts, server.EvalCompleter(e, ref.Name, *maxTokens)); err != nil {
			return err
		}
	} else {
		c, err := newEvalClient(ctx, *serverURL, *apiKey, *modelID)
		if err != nil {
			return err
		}
		log.Info("eval started", slog.String("server", c.base), slog.Int64("model_id", *modelID), slog.Int("tasks", len(ts)))
		info.StartedAt = time.Now()
		if results, err = eval.Run(ctx, ts, c.complete); err != nil {
			return err
		}
		if info.ModelSHA256, err = c.modelSHA256(ctx); err != nil {
			return err
		}
		info.ModelName, info.MaxTokens = c.model, 0
		label = " on " + c.base
	}
	s := eval.Summarize(results)
	id, err := eval.Record(ctx, svc.pool, info, results, s)
	if err != nil {
		return err
	}
	if *asJSON || *withResults {
		r := evalReport{RunID: id, Server: strings.TrimRight(*serverURL, "/"), Model: info.ModelName, SHA256: info.ModelSHA256, Arm: *arm,
			Seed: *seed, Repo: repoName, MaxTokens: info.MaxTokens, Summary: s}
		if *withResults {
			r.Results = results
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	limit := fmt.Sprintf("at most %d tokens each", info.MaxTokens)
	if info.MaxTokens == 0 {
		limit = "the server's token limit"
	}
	fmt.Fprintf(stdout, "eval run %d: model %s%s, arm %q, %d tasks from %s, seed %d, %s\n\n",
		id, info.ModelName, label, *arm, len(ts), repoName, *seed, limit)
	return eval.WriteReport(stdout, s)
}

// evalClient completes tasks on a running code4me server as a plugin
// does: POST /api/completion/request, with the session and project an API
// key opens (the key's session, and a project "code4me eval" made for the
// run). Telemetry is sent as the request requires but not stored, and
// neither is the context; the query and its generation are, as the key's
// user's.
type evalClient struct {
	base    string
	key     string
	modelID int64
	hc      *http.Client
	// session and project are the tokens completions are sent with.
	session, project string
	// model is the name the server reports for modelID.
	model string
}

// evalTelemetry is the contextual telemetry every completion request
// carries: plugin version 1, trigger "manual" and language "Plain text"
// (ids of the lookup tables' fixed seed).
var evalTelemetry = map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 112}

func newEvalClient(ctx context.Context, base, key string, modelID int64) (*evalClient, error) {
	c := &evalClient{base: strings.TrimRight(base, "/"), key: key, modelID: modelID, hc: &http.Client{Timeout: 5 * time.Minute}}
	var sess struct {
		SessionToken string `json:"session_token"`
	}
	if err := c.call(ctx, "GET", "/api/session/acquire", nil, &sess); err != nil {
		return nil, err
	}
	var proj struct {
		ProjectToken string `json:"project_token"`
	}
	if err := c.call(ctx, "POST", "/api/project/create", map[string]any{"project_name": "code4me eval"}, &proj); err != nil {
		return nil, err
	}
	c.session, c.project = sess.SessionToken, proj.ProjectToken
	return c, nil
}

// call sends a JSON request and decodes the JSON answer into out; an
// answer other than 200 or 201 is an error quoting the server's message.
// Before the session is open the key authenticates; after, the session
// and project tokens do.
func (c *evalClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("eval: server URL: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.session == "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	} else {
		req.Header.Set("X-Session-Token", c.session)
		req.Header.Set("X-Project-Token", c.project)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("eval: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("eval: %s %s: %w", method, path, err)
	}
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		var e struct {
			Message string `json:"message"`
			Detail  any    `json:"detail"`
		}
		json.Unmarshal(raw, &e)
		msg := e.Message
		if msg == "" && e.Detail != nil {
			d, _ := json.Marshal(e.Detail)
			msg = string(d)
		}
		return fmt.Errorf("eval: %s %s: %s: %s", method, path, res.Status, msg)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("eval: %s %s: %w", method, path, err)
	}
	return nil
}

// complete is an eval.CompleteFunc: one completion request for the task,
// with the stop sequence "\n" for a single-line task (the server's own
// stop rule ends multi-line text). The generated tokens are the
// completion's log-probabilities, one per token; the server does not
// report the prompt's.
func (c *evalClient) complete(ctx context.Context, t eval.Task) (eval.Completion, error) {
	body := map[string]any{
		"model_ids": []int64{c.modelID},
		"context": map[string]any{"prefix": t.Prefix, "suffix": t.Suffix, "file_name": t.File, "selected_text": "",
			"context_files": []string{}},
		"contextual_telemetry": evalTelemetry, "behavioral_telemetry": map[string]any{},
		"store_context": false, "store_contextual_telemetry": false, "store_behavioral_telemetry": false,
	}
	if t.Kind == eval.SingleLine {
		body["stop_sequences"] = []string{"\n"}
	}
	var res struct {
		Data struct {
			Completions []struct {
				ModelName  string    `json:"model_name"`
				Completion *string   `json:"completion"`
				Error      string    `json:"error"`
				Logprobs   []float64 `json:"logprobs"`
			} `json:"completions"`
		} `json:"data"`
	}
	if err := c.call(ctx, "POST", "/api/completion/request", body, &res); err != nil {
		return eval.Completion{}, err
	}
	items := res.Data.Completions
	if len(items) != 1 {
		return eval.Completion{}, fmt.Errorf("eval: the server answered %d completions, want 1", len(items))
	}
	it := items[0]
	if it.Error != "" || it.Completion == nil {
		return eval.Completion{}, fmt.Errorf("eval: model %d (%s): %s", c.modelID, it.ModelName, it.Error)
	}
	if c.model == "" {
		c.model = it.ModelName
	} else if it.ModelName != c.model {
		return eval.Completion{}, fmt.Errorf("eval: model %d answered as %s, earlier as %s", c.modelID, it.ModelName, c.model)
	}
	return eval.Completion{Text: *it.Completion, GeneratedTokens: len(it.Logprobs)}, nil
}

// modelSHA256 is the sha256 of the model file the server reports for
// c.model in /api/ping.
func (c *evalClient) modelSHA256(ctx context.Context) (string, error) {
	var ping struct {
		Details struct {
			Models []struct {
				Name   string `json:"name"`
				SHA256 string `json:"sha256"`
			} `json:"models"`
		} `json:"details"`
	}
	if err := c.call(ctx, "GET", "/api/ping", nil, &ping); err != nil {
		return "", err
	}
	for _, m := range ping.Details.Models {
		if m.Name == c.model && len(m.SHA256) == 64 {
			return strings.ToLower(m.SHA256), nil
		}
	}
	return "", fmt.Errorf("eval: the server's /api/ping reports no sha256 of model %s", c.model)
}
