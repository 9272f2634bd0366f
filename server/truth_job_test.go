package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/eval"
)

// truthJobsUnfinished counts the truth_match and truth_sweep jobs of the
// test server's queue that have not finished, and those that failed
// (retryable, discarded or cancelled).
const truthJobsUnfinished = `SELECT count(*) FILTER (WHERE state IN ('available', 'pending', 'running', 'scheduled')),
	count(*) FILTER (WHERE state IN ('retryable', 'discarded', 'cancelled'))
	FROM river_job WHERE queue = $1 AND kind IN ('truth_match', 'truth_sweep')`

// awaitTruthMatch waits until every truth_match and truth_sweep job of
// the test server's queue has finished, and fails the test if one failed.
// The event awaited is the jobs' rows reaching a final state.
func (e *env) awaitTruthMatch() {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var open, failed int
		if err := e.srv.db.QueryRow(context.Background(), truthJobsUnfinished, e.srv.jobs.queue).Scan(&open, &failed); err != nil {
			e.t.Fatal(err)
		}
		if failed > 0 {
			e.t.Fatalf("%d truth jobs failed", failed)
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d truth jobs still unfinished after a minute", open)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

// truthMark is the highest ground_truth_id so far: rows a test stores
// afterwards have higher ids.
func (e *env) truthMark() int64 {
	e.t.Helper()
	var id int64
	if err := e.srv.db.QueryRow(context.Background(), `SELECT coalesce(max(ground_truth_id), 0) FROM ground_truth`).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// sweepTruths derives the figures of the ground truths after mark that
// lack them, as the periodic sweep does, and waits for it: for tests
// that store ground truths with SQL rather than through the feedback
// route.
func (e *env) sweepTruths(mark int64) {
	e.t.Helper()
	if _, err := e.srv.jobs.client.Insert(context.Background(), truthSweepArgs{AfterID: mark},
		&river.InsertOpts{Queue: e.srv.jobs.queue, MaxAttempts: 1}); err != nil {
		e.t.Fatal(err)
	}
	e.awaitTruthMatch()
}

// truthSeed is a completion query of one model with known generations.
type truthSeed struct {
	e     *env
	mq    uuid.UUID
	model int64
}

func newTruthSeed(t *testing.T, e *env, completion string) truthSeed {
	t.Helper()
	ctx := context.Background()
	s := truthSeed{e: e}
	if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ('truth-model', 'test', $1) RETURNING model_id",
		strings.Repeat("0", 32)+strings.ReplaceAll(uuid.NewString(), "-", "")).Scan(&s.model); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, config_id, server_version) VALUES ('completion', 1, 'test')
		RETURNING meta_query_id`).Scan(&s.mq); err != nil {
		t.Fatal(err)
	}
	e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted)
		VALUES ($1, $2, $3, 1, ARRAY[now()], true)`, s.mq, s.model, completion)
	return s
}

// truth stores a ground truth for the seed's model with its job, in one
// transaction as recordFeedback does, and returns its id.
func (s truthSeed) truth(text string) int64 {
	s.e.t.Helper()
	var id int64
	ctx := context.Background()
	if err := db.WithTx(ctx, s.e.srv.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO ground_truth (meta_query_id, model_id, ground_truth) VALUES ($1, $2, $3)
			RETURNING ground_truth_id`, s.mq, s.model, text).Scan(&id); err != nil {
			return err
		}
		return s.e.srv.queueTruthMatchTx(ctx, tx, id)
	}); err != nil {
		s.e.t.Fatal(err)
	}
	return id
}

// truthRow is one stored figure row.
type truthRow struct {
	exact      bool
	es         float64
	survival   *float64
	truthAt    time.Time
	computedAt time.Time
}

func (s truthSeed) row(gt int64) (truthRow, bool) {
	s.e.t.Helper()
	var r truthRow
	err := s.e.srv.db.QueryRow(context.Background(), `SELECT exact_match, edit_similarity, survival, truth_at, computed_at
		FROM generation_truth_match WHERE meta_query_id = $1 AND model_id = $2 AND ground_truth_id = $3`, s.mq, s.model, gt).
		Scan(&r.exact, &r.es, &r.survival, &r.truthAt, &r.computedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false
	} else if err != nil {
		s.e.t.Fatal(err)
	}
	return r, true
}

func (e *env) countRows(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.srv.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestTruthMatchFigures: the job stores the figures internal/eval gives,
// with the exact numbers worked out by hand: trailing whitespace is
// ignored by exact match and edit similarity; survival is the longest
// common subsequence over the completion's length; an empty completion
// has no survival.
func TestTruthMatchFigures(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		completion, truth string
		exact             bool
		es                float64
		survival          *float64
	}{
		// Levenshtein 2 over 12 runes; 10 of 12 characters survive.
		{"return x + 1", "return x+1\n", false, 1 - 2.0/12, ptr(10.0 / 12)},
		{"x = 1", "x = 1  \n", true, 1, ptr(1.0)},
		// é is one character: 1 edit over 4; "caf" survives (3 of 4).
		{"café", "cafe", false, 0.75, ptr(0.75)},
		{"", "print(x)", false, 0, nil},
	}
	for _, c := range cases {
		s := newTruthSeed(t, e, c.completion)
		gt := s.truth(c.truth)
		e.awaitTruthMatch()
		r, ok := s.row(gt)
		if !ok {
			t.Fatalf("%q/%q: no figures", c.completion, c.truth)
		}
		if r.exact != c.exact || r.exact != eval.ExactMatch(c.completion, c.truth) {
			t.Errorf("%q/%q: exact_match %v, want %v", c.completion, c.truth, r.exact, c.exact)
		}
		if r.es != c.es || r.es != eval.EditSimilarity(c.completion, c.truth) {
			t.Errorf("%q/%q: edit_similarity %v, want %v", c.completion, c.truth, r.es, c.es)
		}
		if (r.survival == nil) != (c.survival == nil) || (r.survival != nil && *r.survival != *c.survival) {
			t.Errorf("%q/%q: survival %v, want %v", c.completion, c.truth, r.survival, c.survival)
		}
	}
}

// TestTruthMatchInsertedWithTruth: the feedback transaction stores the
// job with its ground truth; a transaction that rolls back leaves
// neither.
func TestTruthMatchInsertedWithTruth(t *testing.T) {
	e := newEnv(t, nil)
	s := newTruthSeed(t, e, "x")
	ctx := context.Background()
	jobsOf := func(gt int64) int {
		return e.countRows(`SELECT count(*) FROM river_job WHERE kind = 'truth_match' AND (args->>'ground_truth_id')::bigint = $1`, gt)
	}

	var gt int64
	errRollback := errors.New("roll back")
	err := db.WithTx(ctx, e.srv.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO ground_truth (meta_query_id, model_id, ground_truth) VALUES ($1, $2, 'y')
			RETURNING ground_truth_id`, s.mq, s.model).Scan(&gt); err != nil {
			return err
		}
		if err := e.srv.queueTruthMatchTx(ctx, tx, gt); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	if n := e.countRows(`SELECT count(*) FROM ground_truth WHERE ground_truth_id = $1`, gt); n != 0 || jobsOf(gt) != 0 {
		t.Fatalf("after a rollback: %d ground truths, %d jobs", n, jobsOf(gt))
	}

	gt = s.truth("y")
	if n := jobsOf(gt); n != 1 {
		t.Fatalf("%d jobs stored with the ground truth, want 1", n)
	}
	e.awaitTruthMatch()
	if _, ok := s.row(gt); !ok {
		t.Fatal("no figures after the job")
	}
}

// TestTruthMatchFeedbackRoute: POST /api/completion/feedback with a
// ground truth stores its job, the job stores the figures of the
// completion against it, and deleting the account with its data deletes
// the figures too.
func TestTruthMatchFeedbackRoute(t *testing.T) {
	e := newPluginEnv(t, nil)
	coder := e.ids["tiny-coder"]
	email := "truth-feedback@example.com"
	e.signup(email)
	c := e.loggedIn(email)
	c.expect("POST", "/api/project/create", map[string]any{"project_name": "truths"}, 201)
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "x = ", "\n"), 200)
	mq := uuid.MustParse(r.body["data"].(map[string]any)["meta_query_id"].(string))
	c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": coder,
		"was_accepted": true, "ground_truth": "x = helper()"}, 200)

	var gt int64
	var completion string
	if err := e.srv.db.QueryRow(context.Background(), `SELECT gt.ground_truth_id, g.completion FROM ground_truth gt
		JOIN generation g USING (meta_query_id) WHERE gt.meta_query_id = $1`, mq).Scan(&gt, &completion); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count(*) FROM river_job WHERE queue = $1 AND kind = 'truth_match' AND (args->>'ground_truth_id')::bigint = $2`,
		e.srv.jobs.queue, gt); n != 1 {
		t.Fatalf("%d jobs stored with the ground truth, want 1", n)
	}
	e.awaitTruthMatch()
	s := truthSeed{e: e.env, mq: mq, model: coder}
	row, ok := s.row(gt)
	if !ok {
		t.Fatal("no figures after the job")
	}
	if row.exact != eval.ExactMatch(completion, "x = helper()") || row.es != eval.EditSimilarity(completion, "x = helper()") {
		t.Errorf("figures %+v for %q", row, completion)
	}

	c.expect("DELETE", "/api/user/delete?delete_data=true", nil, 200)
	if n := e.count(`SELECT count(*) FROM generation_truth_match WHERE meta_query_id = $1 OR ground_truth_id = $2`, mq, gt); n != 0 {
		t.Fatalf("%d figure rows left after the account's deletion", n)
	}
}

// TestTruthMatchIdempotent: running the job again, or for a ground truth
// that has its figures, leaves the same rows.
func TestTruthMatchIdempotent(t *testing.T) {
	e := newEnv(t, nil)
	s := newTruthSeed(t, e, "for i in range(n):")
	gt := s.truth("for i in range(m):\n")
	e.awaitTruthMatch()
	first, ok := s.row(gt)
	if !ok {
		t.Fatal("no figures")
	}
	for range 2 {
		if err := e.srv.deriveTruthMatch(context.Background(), gt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.srv.jobs.client.Insert(context.Background(), truthMatchArgs{GroundTruthID: gt}, e.srv.truthMatchOpts()); err != nil {
		t.Fatal(err)
	}
	e.awaitTruthMatch()
	again, _ := s.row(gt)
	if again.exact != first.exact || again.es != first.es || *again.survival != *first.survival ||
		!again.truthAt.Equal(first.truthAt) || !again.computedAt.Equal(first.computedAt) {
		t.Fatalf("rows differ: %+v then %+v", first, again)
	}
	if n := e.countRows(`SELECT count(*) FROM generation_truth_match WHERE ground_truth_id = $1`, gt); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}

// TestTruthSweep: a ground truth stored without its job (before figures
// were derived, or its job discarded) gets its figures from the sweep;
// one that has them is not queued again.
func TestTruthSweep(t *testing.T) {
	e := newEnv(t, nil)
	s := newTruthSeed(t, e, "print(x)")
	done := s.truth("print(x)")
	e.awaitTruthMatch()
	mark := done - 1
	var bare int64
	if err := e.srv.db.QueryRow(context.Background(), `INSERT INTO ground_truth (meta_query_id, model_id, ground_truth)
		VALUES ($1, $2, 'print(y)') RETURNING ground_truth_id`, s.mq, s.model).Scan(&bare); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.row(bare); ok {
		t.Fatal("figures before the sweep")
	}
	e.sweepTruths(mark)
	r, ok := s.row(bare)
	if !ok {
		t.Fatal("the sweep did not derive the figures")
	}
	if r.exact || r.es != 1-1.0/8 {
		t.Errorf("figures %+v", r)
	}
	if n := e.countRows(`SELECT count(*) FROM river_job WHERE queue = $1 AND kind = 'truth_match' AND (args->>'ground_truth_id')::bigint = $2`,
		e.srv.jobs.queue, done); n != 1 {
		t.Errorf("the ground truth with figures has %d jobs, want 1 (its own)", n)
	}
}

// TestTruthMatchDeletedTruth: the job of a ground truth deleted before it
// runs ends without error and stores nothing.
func TestTruthMatchDeletedTruth(t *testing.T) {
	e := newEnv(t, nil)
	s := newTruthSeed(t, e, "x")
	var gt int64
	if err := e.srv.db.QueryRow(context.Background(), `INSERT INTO ground_truth (meta_query_id, model_id, ground_truth)
		VALUES ($1, $2, 'x') RETURNING ground_truth_id`, s.mq, s.model).Scan(&gt); err != nil {
		t.Fatal(err)
	}
	e.exec(`DELETE FROM ground_truth WHERE ground_truth_id = $1`, gt)
	res, err := e.srv.jobs.client.Insert(context.Background(), truthMatchArgs{GroundTruthID: gt}, e.srv.truthMatchOpts())
	if err != nil {
		t.Fatal(err)
	}
	e.awaitTruthMatch()
	var state string
	if err := e.srv.db.QueryRow(context.Background(), `SELECT state FROM river_job WHERE id = $1`, res.Job.ID).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if state != "completed" {
		t.Fatalf("job %s", state)
	}
	if n := e.countRows(`SELECT count(*) FROM generation_truth_match WHERE ground_truth_id = $1`, gt); n != 0 {
		t.Fatalf("%d rows of a deleted ground truth", n)
	}
}
