package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/eval"
	"github.com/code4me/code4me/models"
)

// Offline evaluation from the admin API: POST /api/eval/runs records a
// queued eval_run and inserts its River job in the same transaction, so a
// run never exists without the job that runs it. The job builds the tasks
// from a source tree on the server's host (under EVAL_ROOT) and completes
// them one at a time, greedily as `code4me eval` does, on the model of the
// registry the completion path uses, through the same Runner (this
// server's engine, or the worker tier); results are stored as the command
// stores them (internal/eval). Runs are read back with GET /api/eval/runs
// and compared with GET /api/analytics/eval.
//
// An eval job has its own queue with one worker, so a long run never holds
// up mail, and runs on one server take turns. A job is tried twice: the
// second attempt (after a failure, or after the server stopped in the
// middle of a run) deletes what the first stored and starts over, and a
// job whose run is already finished does nothing.

// Messages of the evaluation routes.
const (
	MsgEvalError       = "Server failed to handle the evaluation run."
	MsgEvalRunNotFound = "Evaluation run not found"
)

const (
	// evalMaxTasks bounds the tasks of one run started from the API.
	evalMaxTasks = 1000
	// evalAttempts: the first try and one more (see above).
	evalAttempts = 2
	// evalTaskTimeout bounds one task's completion, queueing included.
	evalTaskTimeout = 5 * time.Minute
)

// evalArgs is an eval job: which run, on which registered model.
type evalArgs struct {
	RunID   int64 `json:"eval_run_id"`
	ModelID int64 `json:"model_id"`
	// Tasks is the run's task count, which bounds the job's time.
	Tasks int `json:"tasks"`
}

// Kind is the River job kind.
func (evalArgs) Kind() string { return "eval_run" }

type evalWorker struct {
	river.WorkerDefaults[evalArgs]
	s *Server
}

// Timeout gives a job evalTaskTimeout per task and one more to build
// them. River takes a job up again (its next attempt) only once this has
// passed since the attempt began, so a run is never worked twice at once.
func (w *evalWorker) Timeout(job *river.Job[evalArgs]) time.Duration {
	return time.Duration(job.Args.Tasks+1) * evalTaskTimeout
}

// Work runs the job's eval run.
func (w *evalWorker) Work(ctx context.Context, job *river.Job[evalArgs]) error {
	s := w.s
	run, ok, err := eval.Claim(ctx, s.db, job.Args.RunID)
	if err != nil || !ok {
		return err // !ok: the run is finished or gone
	}
	log := s.log.With(slog.Int64("eval_run", run.EvalRunID), slog.Int("attempt", job.Attempt))
	m, tasks, err := s.evalPrepare(run, job.Args.ModelID)
	if err != nil {
		// The model, the tree or its tasks: another attempt would fail
		// the same way.
		return w.fail(ctx, job, run.EvalRunID, err, false)
	}
	log.Info("eval started", slog.String("model", m.Name), slog.Int("tasks", len(tasks)))
	results, err := eval.Run(ctx, tasks, EvalCompleter(s.plugin.runner, m.Name, int(run.MaxTokens)))
	if err == nil {
		err = eval.Finish(ctx, s.db, run.EvalRunID, results, eval.Summarize(results))
	}
	if err != nil {
		return w.fail(ctx, job, run.EvalRunID, err, true)
	}
	log.Info("eval finished")
	return nil
}

// fail records why an attempt at run id stopped: queued again when
// retryable and the job has an attempt left, else failed (and the job
// cancelled, so River does not try it again).
func (w *evalWorker) fail(ctx context.Context, job *river.Job[evalArgs], id int64, cause error, retryable bool) error {
	retry := retryable && job.Attempt < job.MaxAttempts
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := eval.Fail(ctx, w.s.db, id, cause, retry); err != nil {
		w.s.log.Warn("eval: record failure", slog.Int64("eval_run", id), slog.String("error", err.Error()))
	}
	w.s.log.Warn("eval failed", slog.Int64("eval_run", id), slog.Bool("retry", retry), slog.String("error", cause.Error()))
	if !retry {
		return river.JobCancel(cause)
	}
	return cause
}

// evalPrepare finds the run's model among those this server serves (the
// same file as when the run was queued) and builds its tasks. The tree is
// checked against EVAL_ROOT again: a link in its path may have changed
// since the run was queued.
func (s *Server) evalPrepare(run models.EvalRun, modelID int64) (RegisteredModel, []eval.Task, error) {
	m, ok := s.plugin.models.Get(modelID)
	if !ok || s.plugin.runner == nil || m.SHA256 != run.ModelSha256 {
		return m, nil, fmt.Errorf("model %d (%s) is not loaded by this server", modelID, run.ModelName)
	}
	repo, err := resolveEvalRepo(s.evalRoot(), run.Repo)
	if err != nil {
		return m, nil, err
	}
	if repo != run.Repo {
		return m, nil, fmt.Errorf("%s now resolves to %s", run.Repo, repo)
	}
	tasks, err := eval.Build(repo, eval.Options{Tasks: int(run.TaskCount), Seed: uint64(run.Seed), Languages: run.Languages})
	return m, tasks, err
}

// Completer runs one engine request on a named model: an *engine.Engine,
// or a server's Runner.
type Completer interface {
	Complete(ctx context.Context, model string, req engine.Request) (*engine.Result, error)
}

// EvalCompleter completes evaluation tasks with model on e: greedy
// sampling, so a run is reproducible; a single-line task stops at the end
// of the line. When the model's queue is full (ErrOverloaded: it serves
// users too), the task is asked again every 100 ms: that wait counts in
// its latency, as queueing does. A task gets evalTaskTimeout.
func EvalCompleter(e Completer, model string, maxTokens int) eval.CompleteFunc {
	return func(ctx context.Context, t eval.Task) (eval.Completion, error) {
		mode := engine.ModeMultiLine
		if t.Kind == eval.SingleLine {
			mode = engine.ModeSingleLine
		}
		ctx, cancel := context.WithTimeout(ctx, evalTaskTimeout)
		defer cancel()
		req := engine.Request{
			Prefix: t.Prefix, Suffix: t.Suffix, FilePath: t.File,
			MaxTokens: maxTokens, Mode: mode, CachePrompt: true,
			Sampling: engine.SamplingParams{Temperature: 0},
		}
		for {
			res, err := e.Complete(ctx, model, req)
			if errors.Is(err, engine.ErrOverloaded) {
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case <-ctx.Done():
					return eval.Completion{}, fmt.Errorf("%w (the model stayed overloaded)", ctx.Err())
				}
			}
			if err != nil {
				return eval.Completion{}, err
			}
			if res.Stop == engine.StopError || res.Stop == engine.StopCancelled || res.Stop == engine.StopDeadline {
				return eval.Completion{}, fmt.Errorf("completion stopped (%s): %w", res.Stop, errors.Join(res.Err, ctx.Err()))
			}
			return eval.Completion{Text: res.Text, PromptTokens: res.Timings.PromptTokens, GeneratedTokens: res.Timings.GeneratedTokens}, nil
		}
	}
}

// evalRoot is EVAL_ROOT, or DATA_DIR/eval: the directory whose trees
// evaluation runs may read. A default under DATA_DIR holds nothing until an
// operator puts (or links) source trees there, so no admin can have the
// server read files it was not given for that.
func (s *Server) evalRoot() string {
	if s.cfg.EvalRoot != "" {
		return s.cfg.EvalRoot
	}
	return filepath.Join(s.cfg.DataDir, "eval")
}

// resolveEvalRepo returns the source tree repo (absolute, or relative to
// root) as an absolute path with every symbolic link resolved, once it is
// a readable directory inside root. The path is checked as written before
// anything is looked up, so nothing outside root is probed, and again once
// resolved, so a link cannot lead out. Inside the tree, the task builder
// follows no links (eval.SourceFiles).
func resolveEvalRepo(root, repo string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	p := repo
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	p = filepath.Clean(p)
	outside := fmt.Errorf("%s is outside the evaluation root %s (EVAL_ROOT)", repo, root)
	if !inDir(root, p) {
		return "", outside
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("the evaluation root %s (EVAL_ROOT) does not exist", root)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%s does not exist", repo)
	}
	if !inDir(realRoot, real) {
		return "", outside
	}
	f, err := os.Open(real)
	if err != nil {
		return "", fmt.Errorf("%s cannot be read", repo)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", repo)
	}
	if _, err := f.ReadDir(1); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("%s cannot be read", repo)
	}
	return real, nil
}

// inDir reports whether path p is dir or lies under it (both clean and
// absolute).
func inDir(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func (s *Server) evalRoutes(api fiber.Router) {
	g := api.Group("/eval")
	g.Post("/runs", s.guardAdmin(s.evalRunCreate)...)
	g.Get("/runs", s.guardAdmin(s.evalRunList)...)
	g.Get("/runs/:eval_run_id", s.guardAdmin(s.evalRunGet)...)
	api.Get("/analytics/eval", s.guardAdmin(s.analyticsEval)...)
}

// POST /api/eval/runs {repo, model_id, arm, tasks, seed, max_tokens,
// languages}: 202 {eval_run_id, job_id, status} once the run and its job
// are stored. Body errors are 422; a model this server does not serve is
// 404.
func (s *Server) evalRunCreate(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	repoIn, _ := f.str("repo", true, 1, 4096)
	modelID, _ := f.integer("model_id", true, 1)
	arm, _ := f.str("arm", false, 0, 100)
	tasks := int64(100)
	if n, ok := f.integerIn("tasks", false, 1, evalMaxTasks); ok {
		tasks = n
	}
	var seed int64 = 1
	if n, ok := f.integer("seed", false, 0); ok {
		seed = n
	}
	maxTokens := int64(64)
	if n, ok := f.integerIn("max_tokens", false, 1, 4096); ok {
		maxTokens = n
	}
	langs := evalLanguages(f)
	var repo string
	if repoIn != "" {
		var err error
		if repo, err = resolveEvalRepo(s.evalRoot(), repoIn); err != nil {
			f.add("value_error", "repo", "Value error, "+err.Error(), repoIn, nil)
		}
	}
	if err := f.err(); err != nil {
		return err
	}
	m, ok := s.plugin.models.Get(modelID)
	if !ok || s.plugin.runner == nil {
		return failDetail(fiber.StatusNotFound, MsgModelNotFound)
	}
	if !m.Completion() {
		return invalid("value_error", []any{"body", "model_id"}, "Value error, the model is a chat model, not a completion model", modelID)
	}
	ctx := c.UserContext()
	info := eval.RunInfo{ModelName: m.Name, ModelSHA256: m.SHA256, Arm: arm, Seed: uint64(seed), Repo: repo,
		Languages: langs, MaxTokens: int(maxTokens)}
	var id, jobID int64
	// The run, its job and the audit row commit together.
	err = s.auditedTx(c, "create", "eval_runs", func(tx pgx.Tx) (string, any, any, error) {
		var err error
		if id, err = eval.Queue(ctx, tx, info, int(tasks), principal(c).UserID); err != nil {
			return "", nil, nil, err
		}
		job, err := s.jobs.client.InsertTx(ctx, tx, evalArgs{RunID: id, ModelID: m.ID, Tasks: int(tasks)},
			&river.InsertOpts{Queue: s.jobs.evalQueue, MaxAttempts: evalAttempts})
		if err != nil {
			return "", nil, nil, err
		}
		jobID = job.Job.ID
		err = s.q.EvalRunSetJob(ctx, tx, models.EvalRunSetJobParams{EvalRunID: id, JobID: &jobID})
		after := fiber.Map{"model_id": m.ID, "arm": arm, "tasks": tasks, "seed": seed, "max_tokens": maxTokens, "repo": repo,
			"languages": langs, "job_id": jobID}
		return strconv.FormatInt(id, 10), nil, after, err
	})
	if err != nil {
		return internalDetail(MsgEvalError, err)
	}
	c.Set(fiber.HeaderLocation, "/api/eval/runs/"+strconv.FormatInt(id, 10))
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"eval_run_id": id, "job_id": jobID, "status": eval.StatusQueued})
}

// evalLanguages reads the optional list of languages, each one that
// eval.Language names; nil when absent or empty.
func evalLanguages(f *fields) []string {
	list := f.strList("languages", false)
	known := eval.LanguageNames()
	var out []string
	for i, l := range list {
		if !slices.Contains(known, l) {
			*f.errs = append(*f.errs, fieldError{Type: "literal_error", Loc: append(f.at("languages"), i),
				Msg: "Input should be one of " + strings.Join(known, ", "), Input: l,
				Ctx: map[string]any{"expected": strings.Join(known, ", ")}})
			continue
		}
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// evalFigures are a finished run's overall figures (nil before).
func evalFigures(r models.EvalRun) fiber.Map {
	if r.Status != eval.StatusFinished || r.ExactMatchRate == nil {
		return nil
	}
	return fiber.Map{"tasks": r.TaskCount, "exact_match_rate": *r.ExactMatchRate, "mean_edit_similarity": *r.MeanEditSimilarity,
		"latency_p50_ms": *r.LatencyP50Ms, "latency_p95_ms": *r.LatencyP95Ms, "latency_p99_ms": *r.LatencyP99Ms}
}

// evalRunJSON is a run as the routes answer it.
func evalRunJSON(r models.EvalRun) fiber.Map {
	return fiber.Map{
		"eval_run_id": r.EvalRunID, "status": r.Status, "error": r.Error,
		"model_name": r.ModelName, "model_sha256": r.ModelSha256, "arm": r.Arm,
		"repo": r.Repo, "seed": r.Seed, "task_count": r.TaskCount, "languages": r.Languages, "max_tokens": r.MaxTokens,
		"requested_by": r.RequestedBy, "job_id": r.JobID, "started_at": r.StartedAt, "finished_at": r.FinishedAt,
		"overall": evalFigures(r),
	}
}

// GET /api/eval/runs?limit=&offset=: runs, newest first (limit 1 to 100,
// default 20).
func (s *Server) evalRunList(c *fiber.Ctx) error {
	q := queryFields(c)
	limit, offset := int64(20), int64(0)
	if n, ok := q.integerIn("limit", false, 1, 100); ok {
		limit = n
	}
	if n, ok := q.integerIn("offset", false, 0, 1<<31-1); ok {
		offset = n
	}
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.EvalRunPage(c.UserContext(), s.db, models.EvalRunPageParams{MaxRows: int32(limit), SkipRows: int32(offset)})
	if err != nil {
		return internalDetail(MsgEvalError, err)
	}
	out := make([]fiber.Map, len(rows))
	for i, r := range rows {
		out[i] = evalRunJSON(r)
	}
	return c.JSON(fiber.Map{"runs": out, "limit": limit, "offset": offset})
}

// GET /api/eval/runs/{eval_run_id}: the run, and once it is finished its
// figures per task kind and language (groups), computed from its results.
func (s *Server) evalRunGet(c *fiber.Ctx) error {
	id, err := pathInt(c, "eval_run_id", nil)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	run, err := s.q.EvalRunGetByID(ctx, s.db, id)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return failDetail(fiber.StatusNotFound, MsgEvalRunNotFound)
	}
	if err != nil {
		return internalDetail(MsgEvalError, err)
	}
	out := evalRunJSON(run)
	groups := []eval.Figures{}
	if run.Status == eval.StatusFinished {
		results, err := eval.Stored(ctx, s.db, id)
		if err != nil {
			return internalDetail(MsgEvalError, err)
		}
		groups = eval.Summarize(results).Groups
	}
	out["groups"] = groups
	return c.JSON(out)
}

// GET /api/analytics/eval?model_name=&arm=: finished runs (of that model
// name and arm, when given) grouped by the tasks they ran: runs with the
// same repo, seed, task count and languages had the same tasks, so their
// figures compare side by side.
func (s *Server) analyticsEval(c *fiber.Ctx) error {
	q := queryFields(c)
	var p models.EvalRunComparableParams
	if v, ok := q.str("model_name", false, 1, 200); ok {
		p.ModelName = &v
	}
	if v, ok := q.str("arm", false, 0, 100); ok {
		p.Arm = &v
	}
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.EvalRunComparable(c.UserContext(), s.db, p)
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	groups := []fiber.Map{}
	var runs []fiber.Map
	for i, r := range rows {
		if i == 0 || !sameTasks(rows[i-1], r) {
			runs = []fiber.Map{}
			groups = append(groups, fiber.Map{"repo": r.Repo, "seed": r.Seed, "task_count": r.TaskCount, "languages": r.Languages})
		}
		runs = append(runs, fiber.Map{"eval_run_id": r.EvalRunID, "model_name": r.ModelName, "model_sha256": r.ModelSha256,
			"arm": r.Arm, "max_tokens": r.MaxTokens, "started_at": r.StartedAt, "finished_at": r.FinishedAt, "overall": evalFigures(r)})
		groups[len(groups)-1]["runs"] = runs
	}
	return c.JSON(fiber.Map{"groups": groups})
}

// sameTasks reports whether two runs ran the same tasks.
func sameTasks(a, b models.EvalRun) bool {
	return a.Repo == b.Repo && a.Seed == b.Seed && a.TaskCount == b.TaskCount && slices.Equal(a.Languages, b.Languages)
}
