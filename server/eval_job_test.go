package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/eval"
)

// evalJobTree is the source tree the eval job tests cut tasks from.
var evalJobTree = map[string]string{
	"calc/calc.go": "package calc\n\n// Sum adds the numbers.\nfunc Sum(xs []int) int {\n\ttotal := 0\n\tfor _, x := range xs {\n" +
		"\t\ttotal += x\n\t}\n\treturn total\n}\n\n// Max is the largest number, or 0 for none.\nfunc Max(xs []int) int {\n" +
		"\tbest := 0\n\tfor i, x := range xs {\n\t\tif i == 0 || x > best {\n\t\t\tbest = x\n\t\t}\n\t}\n\treturn best\n}\n",
	"scripts/stats.py": "import math\n\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n\n\ndef stddev(xs):\n    m = mean(xs)\n" +
		"    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))\n\n\nif __name__ == \"__main__\":\n" +
		"    print(mean([1, 2, 3]), stddev([1, 2, 3]))\n",
}

// newEvalEnv is a plugin server whose EVAL_ROOT holds the tree "proj" and
// an empty directory "empty"; it returns the env and the root with its
// links resolved.
func newEvalEnv(t *testing.T) (*pluginEnv, string) {
	t.Helper()
	root := t.TempDir()
	for p, text := range evalJobTree {
		full := filepath.Join(root, "proj", filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	return newPluginEnv(t, func(c *config.Config) { c.EvalRoot = root }), real
}

// waitRun polls GET /api/eval/runs/{id} until the run is finished or
// failed.
func waitRun(t *testing.T, c *client, id int64) resp {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r := c.expect("GET", fmt.Sprintf("/api/eval/runs/%d", id), nil, 200)
		if st := r.body["status"]; st == eval.StatusFinished || st == eval.StatusFailed {
			return r
		}
	}
	t.Fatalf("eval run %d did not end in 3 minutes", id)
	return resp{}
}

// nearestRank is the p-th percentile by nearest rank: the smallest value
// that at least p % of xs are no larger than.
func nearestRank(xs []float64, p float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	for i, x := range s {
		if float64(i+1) >= p/100*float64(len(s))-1e-9 {
			return x
		}
	}
	return math.NaN()
}

// TestEvalJob starts a run of 20 tasks on the tiny model through the admin
// API and waits for its job: the stored results are the tasks the test
// builds itself from the same tree and seed, each scored as the scores'
// definitions say, and the run's figures, overall and per kind and
// language, follow from them. The run is listed and compared; its job,
// run again, changes nothing.
func TestEvalJob(t *testing.T) {
	e, root := newEvalEnv(t)
	admin, adminID := e.newAdmin()
	ctx := context.Background()
	model, _ := e.srv.plugin.models.Get(e.ids["tiny-coder"])

	r := admin.expect("POST", "/api/eval/runs", map[string]any{"repo": "proj", "model_id": model.ID, "arm": "job", "tasks": 20,
		"seed": 5, "max_tokens": 16}, 202)
	id, jobID := int64(r.body["eval_run_id"].(float64)), int64(r.body["job_id"].(float64))
	if r.body["status"] != "queued" || r.header.Get("Location") != fmt.Sprintf("/api/eval/runs/%d", id) {
		t.Errorf("202 = %s, Location %q", r.raw, r.header.Get("Location"))
	}
	// The admin's write is audited with the run.
	var audited int
	if err := e.srv.db.QueryRow(ctx, `SELECT count(*) FROM admin_audit WHERE actor_id::text = $1 AND action = 'create'
		AND resource = 'eval_runs' AND resource_id = $2 AND (after->>'job_id')::bigint = $3`, adminID, strconv.FormatInt(id, 10), jobID).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("%d audit rows of the run (%v), want 1", audited, err)
	}
	var kind, queue string
	var maxAttempts int
	var args []byte
	if err := e.srv.db.QueryRow(ctx, "SELECT kind, queue, max_attempts, args FROM river_job WHERE id = $1", jobID).
		Scan(&kind, &queue, &maxAttempts, &args); err != nil {
		t.Fatal(err)
	}
	var a evalArgs
	if err := json.Unmarshal(args, &a); err != nil {
		t.Fatal(err)
	}
	if kind != "eval_run" || queue != e.srv.jobs.evalQueue || maxAttempts != 2 || a != (evalArgs{RunID: id, ModelID: model.ID, Tasks: 20}) {
		t.Errorf("job %d: kind %s, queue %s, %d attempts, args %s", jobID, kind, queue, maxAttempts, args)
	}

	got := waitRun(t, admin, id).body
	repo := filepath.Join(root, "proj")
	if got["status"] != "finished" || got["error"] != nil || got["model_name"] != "tiny-coder" || got["model_sha256"] != model.SHA256 ||
		got["arm"] != "job" || got["repo"] != repo || got["seed"] != 5.0 || got["task_count"] != 20.0 || got["max_tokens"] != 16.0 ||
		got["requested_by"] != adminID || got["job_id"] != float64(jobID) || got["finished_at"] == nil {
		t.Fatalf("run = %v", got)
	}

	// The tasks, built here from the same tree and seed.
	tasks, err := eval.Build(repo, eval.Options{Tasks: 20, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.srv.q.EvalResultListByRun(ctx, e.srv.db, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 20 {
		t.Fatalf("%d stored results, want 20", len(rows))
	}
	type group struct {
		n, exact int
		sim      float64
		lat      []float64
	}
	groups := map[string]*group{}
	all := &group{}
	for i, row := range rows {
		task := tasks[i]
		if int(row.TaskIndex) != task.Index || row.FilePath != task.File || row.Kind != string(task.Kind) ||
			row.Language != task.Language || row.Expected != task.Expected {
			t.Errorf("result %d is %s %s %q, the task is %s %s %q", i, row.FilePath, row.Kind, row.Expected, task.File, task.Kind, task.Expected)
		}
		out := strings.TrimRight(row.Output, " \t\n")
		if row.Exact != (out == strings.TrimRight(row.Expected, " \t\n")) {
			t.Errorf("result %d: exact %v for %q against %q", i, row.Exact, row.Output, row.Expected)
		}
		if want := eval.EditSimilarity(row.Output, row.Expected); row.EditSimilarity != want || want < 0 || want > 1 {
			t.Errorf("result %d: edit similarity %v, want %v", i, row.EditSimilarity, want)
		}
		if row.PromptTokens <= 0 || row.GeneratedTokens < 0 || row.GeneratedTokens > 16 || row.LatencyMs <= 0 {
			t.Errorf("result %d: %d prompt tokens, %d generated, %v ms", i, row.PromptTokens, row.GeneratedTokens, row.LatencyMs)
		}
		k := row.Kind + "/" + row.Language
		if groups[k] == nil {
			groups[k] = &group{}
		}
		for _, g := range []*group{groups[k], all} {
			g.n++
			g.sim += row.EditSimilarity
			g.lat = append(g.lat, row.LatencyMs)
			if row.Exact {
				g.exact++
			}
		}
	}
	checkFigures := func(what string, f map[string]any, g *group) {
		t.Helper()
		n := float64(g.n)
		if f["tasks"] != n || f["exact_match_rate"] != float64(g.exact)/n || math.Abs(f["mean_edit_similarity"].(float64)-g.sim/n) > 1e-12 ||
			f["latency_p50_ms"] != nearestRank(g.lat, 50) || f["latency_p95_ms"] != nearestRank(g.lat, 95) || f["latency_p99_ms"] != nearestRank(g.lat, 99) {
			t.Errorf("%s: figures %v do not follow from the results (%d tasks, %d exact, similarity sum %v)", what, f, g.n, g.exact, g.sim)
		}
	}
	checkFigures("overall", got["overall"].(map[string]any), all)
	gotGroups := got["groups"].([]any)
	if len(gotGroups) != len(groups) || len(groups) != 6 { // 3 kinds × go, python
		t.Errorf("%d groups, want %d (6)", len(gotGroups), len(groups))
	}
	for _, x := range gotGroups {
		f := x.(map[string]any)
		k := fmt.Sprint(f["kind"], "/", f["language"])
		if groups[k] == nil {
			t.Errorf("group %s has no results", k)
			continue
		}
		checkFigures(k, f, groups[k])
	}

	// Listed, newest first, and compared.
	list := admin.expect("GET", "/api/eval/runs?limit=100", nil, 200).body["runs"].([]any)
	if len(list) == 0 || list[0].(map[string]any)["eval_run_id"] != float64(id) || list[0].(map[string]any)["status"] != "finished" {
		t.Errorf("runs = %v", list)
	}
	page := admin.expect("GET", "/api/eval/runs?limit=1&offset=1", nil, 200).body["runs"].([]any)
	if want := list[1:min(2, len(list))]; fmt.Sprint(page) != fmt.Sprint(want) {
		t.Errorf("runs?limit=1&offset=1 = %v, want %v", page, want)
	}
	cmp := admin.expect("GET", "/api/analytics/eval?model_name=tiny-coder&arm=job", nil, 200).body["groups"].([]any)
	if len(cmp) != 1 {
		t.Fatalf("comparison groups = %v", cmp)
	}
	g := cmp[0].(map[string]any)
	runs := g["runs"].([]any)
	if g["repo"] != repo || g["seed"] != 5.0 || g["task_count"] != 20.0 || len(runs) != 1 ||
		runs[0].(map[string]any)["eval_run_id"] != float64(id) || fmt.Sprint(runs[0].(map[string]any)["overall"]) != fmt.Sprint(got["overall"]) {
		t.Errorf("comparison = %v", g)
	}
	if cmp := admin.expect("GET", "/api/analytics/eval?arm=no-such-arm", nil, 200).body["groups"].([]any); len(cmp) != 0 {
		t.Errorf("comparison of an arm without runs = %v", cmp)
	}

	// The job again (a retry of a finished run) does nothing.
	before, err := e.srv.q.EvalRunGetByID(ctx, e.srv.db, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := work(e, evalArgs{RunID: id, ModelID: model.ID, Tasks: 20}, 2); err != nil {
		t.Fatal(err)
	}
	after, err := e.srv.q.EvalRunGetByID(ctx, e.srv.db, id)
	if err != nil {
		t.Fatal(err)
	}
	rows2, err := e.srv.q.EvalResultListByRun(ctx, e.srv.db, id)
	if err != nil {
		t.Fatal(err)
	}
	if !after.FinishedAt.Equal(*before.FinishedAt) || after.Status != "finished" || !slices.Equal(rows, rows2) {
		t.Errorf("a second run of the job changed the run: %v -> %v, %d results", before.FinishedAt, after.FinishedAt, len(rows2))
	}
}

// work runs the eval worker on args as River would at attempt.
func work(e *pluginEnv, args evalArgs, attempt int) error {
	w := &evalWorker{s: e.srv}
	return w.Work(context.Background(), &river.Job[evalArgs]{JobRow: &rivertype.JobRow{Attempt: attempt, MaxAttempts: evalAttempts}, Args: args})
}

// jobEnd waits for River to finalize job id and returns its state and
// attempts.
func jobEnd(t *testing.T, e *pluginEnv, id int64) (state string, attempt int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := e.srv.db.QueryRow(context.Background(), "SELECT state, attempt FROM river_job WHERE id = $1", id).Scan(&state, &attempt); err != nil {
			t.Fatal(err)
		}
		if state != "running" && state != "retryable" && state != "available" {
			return state, attempt
		}
	}
	t.Fatalf("job %d still %s", id, state)
	return "", 0
}

// TestEvalJobRetry: a job tried again after an attempt that stopped in the
// middle (a result stored, the run left running) deletes that result and
// stores the run's own; a model that fails every decode leaves the run
// queued for the second attempt, then failed, with the error.
func TestEvalJobRetry(t *testing.T) {
	e, root := newEvalEnv(t)
	admin, adminID := e.newAdmin()
	ctx := context.Background()
	model, _ := e.srv.plugin.models.Get(e.ids["tiny-coder"])
	info := eval.RunInfo{ModelName: model.Name, ModelSHA256: model.SHA256, Seed: 3, Repo: filepath.Join(root, "proj"), MaxTokens: 8}
	id, err := eval.Queue(ctx, e.srv.db, info, 3, uuid.MustParse(adminID))
	if err != nil {
		t.Fatal(err)
	}
	e.exec("UPDATE eval_run SET status = 'running' WHERE eval_run_id = $1", id)
	e.exec(`INSERT INTO eval_result (eval_run_id, task_index, file_path, language, kind, expected, output, exact, edit_similarity,
		latency_ms, prompt_tokens, generated_tokens) VALUES ($1, 0, 'stale.go', 'go', 'span', 'x', 'stale', false, 0, 1, 1, 1)`, id)
	if err := work(e, evalArgs{RunID: id, ModelID: model.ID, Tasks: 3}, 2); err != nil {
		t.Fatal(err)
	}
	rows, err := e.srv.q.EvalResultListByRun(ctx, e.srv.db, id)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := eval.Build(info.Repo, eval.Options{Tasks: 3, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	run := admin.expect("GET", fmt.Sprintf("/api/eval/runs/%d", id), nil, 200).body
	if run["status"] != "finished" || len(rows) != 3 {
		t.Fatalf("retried run: %v, %d results", run, len(rows))
	}
	for i, row := range rows {
		if row.FilePath != tasks[i].File || row.Expected != tasks[i].Expected {
			t.Errorf("result %d = %s %q, want the task %s %q", i, row.FilePath, row.Expected, tasks[i].File, tasks[i].Expected)
		}
	}

	// A model that fails: two attempts, then failed.
	r := admin.expect("POST", "/api/eval/runs", map[string]any{"repo": "proj", "model_id": e.ids["broken-coder"], "tasks": 1}, 202)
	fid, jobID := int64(r.body["eval_run_id"].(float64)), int64(r.body["job_id"].(float64))
	failed := waitRun(t, admin, fid).body
	state, attempt := jobEnd(t, e, jobID)
	if failed["status"] != "failed" || !strings.Contains(fmt.Sprint(failed["error"]), "decode failed") || failed["overall"] != nil ||
		attempt != 2 || state != "cancelled" {
		t.Errorf("run of a failing model = %v; job attempt %d, state %s", failed, attempt, state)
	}

	// A tree without source files fails at once, without a second try.
	r = admin.expect("POST", "/api/eval/runs", map[string]any{"repo": "empty", "model_id": model.ID, "tasks": 1}, 202)
	fid, jobID = int64(r.body["eval_run_id"].(float64)), int64(r.body["job_id"].(float64))
	failed = waitRun(t, admin, fid).body
	state, attempt = jobEnd(t, e, jobID)
	if failed["status"] != "failed" || !strings.Contains(fmt.Sprint(failed["error"]), "no source files") || attempt != 1 || state != "cancelled" {
		t.Errorf("run of an empty tree = %v; job attempt %d, state %s", failed, attempt, state)
	}
}

// TestEvalJobBadInput: the eval routes are for admins only, and refuse
// bad bodies and queries with 422, models the server does not serve and
// runs that do not exist with 404. Nothing is queued by a refused request.
func TestEvalJobBadInput(t *testing.T) {
	e, root := newEvalEnv(t)
	admin, _ := e.newAdmin()
	member, _ := e.newMember()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	coder := e.ids["tiny-coder"]
	ok := map[string]any{"repo": "proj", "model_id": coder}
	runs := e.count("SELECT count(*) FROM eval_run")

	for _, rt := range [][2]string{{"POST", "/api/eval/runs"}, {"GET", "/api/eval/runs"}, {"GET", "/api/eval/runs/1"}, {"GET", "/api/analytics/eval"}} {
		var body any
		if rt[0] == "POST" {
			body = ok
		}
		if r := e.client().do(rt[0], rt[1], body); r.status != 401 {
			t.Errorf("%s %s without credentials = %d", rt[0], rt[1], r.status)
		}
		if r := member.do(rt[0], rt[1], body); r.status != 403 || detail(r) != MsgAdminRequired {
			t.Errorf("%s %s as a member = %d %s", rt[0], rt[1], r.status, r.raw)
		}
	}

	with := func(k string, v any) map[string]any {
		b := map[string]any{"repo": "proj", "model_id": coder}
		b[k] = v
		return b
	}
	for _, c := range []struct {
		body    map[string]any
		loc     string
		typ     string
		contain string
	}{
		{map[string]any{}, "body.repo", "missing", ""},
		{map[string]any{"repo": "proj"}, "body.model_id", "missing", ""},
		{with("repo", "/etc"), "body.repo", "value_error", "outside the evaluation root"},
		{with("repo", "../x"), "body.repo", "value_error", "outside the evaluation root"},
		{with("repo", "link"), "body.repo", "value_error", "outside the evaluation root"},
		{with("repo", "nope"), "body.repo", "value_error", "does not exist"},
		{with("repo", "proj/calc/calc.go"), "body.repo", "value_error", "not a directory"},
		{with("tasks", 0), "body.tasks", "greater_than_equal", ""},
		{with("tasks", 1001), "body.tasks", "less_than_equal", ""},
		{with("seed", -1), "body.seed", "greater_than_equal", ""},
		{with("max_tokens", 0), "body.max_tokens", "greater_than_equal", ""},
		{with("languages", []string{"go", "cobol"}), "body.languages.1", "literal_error", ""},
		{with("arm", strings.Repeat("a", 101)), "body.arm", "string_too_long", ""},
		{with("model_id", e.ids["tiny-instruct"]), "body.model_id", "value_error", "chat model"},
	} {
		r := admin.expect("POST", "/api/eval/runs", c.body, 422)
		d, _ := r.body["detail"].([]any)
		found := false
		for _, x := range d {
			fe := x.(map[string]any)
			var loc []string
			for _, l := range fe["loc"].([]any) {
				loc = append(loc, fmt.Sprint(l))
			}
			if strings.Join(loc, ".") == c.loc && fe["type"] == c.typ && strings.Contains(fmt.Sprint(fe["msg"]), c.contain) {
				found = true
			}
		}
		if !found {
			t.Errorf("%v: 422 %s, want %s at %s", c.body, r.raw, c.typ, c.loc)
		}
	}
	if r := admin.expect("POST", "/api/eval/runs", with("model_id", 987654321), 404); detail(r) != MsgModelNotFound {
		t.Errorf("unknown model: %s", r.raw)
	}
	admin.expect("POST", "/api/eval/runs", "[1]", 422)
	admin.expect("GET", "/api/eval/runs/987654321", nil, 404)
	admin.expect("GET", "/api/eval/runs/abc", nil, 422)
	admin.expect("GET", "/api/eval/runs?limit=0", nil, 422)
	admin.expect("GET", "/api/eval/runs?offset=-1", nil, 422)
	admin.expect("GET", "/api/analytics/eval?model_name=", nil, 422)
	if n := e.count("SELECT count(*) FROM eval_run"); n != runs {
		t.Errorf("refused requests stored %d runs", n-runs)
	}
	if n := e.count("SELECT count(*) FROM river_job WHERE kind = 'eval_run' AND queue = $1", e.srv.jobs.evalQueue); n != 0 {
		t.Errorf("refused requests queued %d jobs", n)
	}
}
