package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/internal/loadtest"
	"github.com/code4me/code4me/internal/testenv"
)

// TestLoadtestReconciles runs a short load (4 users, 15 s: half of them on
// the WebSocket, one with an API key) against `code4me serve` on the test
// environment's Postgres and Redis: no answer is a 5xx or unexpected,
// every kind of row was acknowledged, and every acknowledged row is in
// Postgres as sent. Then it deletes and changes rows behind the server's
// back, and the reconciliation must report exactly those.
func TestLoadtestReconciles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server under load for 15 s")
	}
	dbURL := testenv.DatabaseURL(t)
	base := startServe(t, dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var hooked atomic.Int64
	rep, err := loadtest.Run(ctx, loadtest.Options{BaseURL: base, Users: 4, Duration: 15 * time.Second, Seed: 7,
		OnError: func(route string, status int) { hooked.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Write(&out)
	t.Log("\n" + out.String())
	if rep.Status5xx > 0 || rep.Unexpected > 0 || rep.NoAnswer > 0 || len(rep.UserErrors) > 0 {
		t.Errorf("5xx %d, unexpected %d, no answer %d, users stopped %v", rep.Status5xx, rep.Unexpected, rep.NoAnswer, rep.UserErrors)
	}
	if n := hooked.Load(); n != int64(rep.Unavailable+rep.Limited) {
		t.Errorf("OnError called %d times, want once per 429 and 503 (%d)", n, rep.Unavailable+rep.Limited)
	}
	if rep.Routes[loadtest.RouteCompletion] == nil || rep.Routes[loadtest.RouteWSCompletion] == nil {
		t.Errorf("completions over HTTP and the WebSocket: %v", rep.Routes)
	}
	// Every completion answered with a completion is also measured from
	// the user's last keystroke, which is never before the request was sent.
	if len(rep.SinceKeystroke) == 0 || rep.Continuous {
		t.Errorf("%d latencies from the last keystroke (continuous %v), want some, with pauses", len(rep.SinceKeystroke), rep.Continuous)
	}
	if max := rep.Routes[loadtest.RouteCompletion].P99; len(rep.SinceKeystroke) > 0 && rep.SinceKeystroke[0] <= 0 {
		t.Errorf("latency from the last keystroke %v ms (HTTP p99 %v ms), want positive", rep.SinceKeystroke[0], max)
	}
	if !strings.Contains(out.String(), "from the user's last keystroke before the answer (with pauses") {
		t.Errorf("the report lacks the latency from the last keystroke:\n%s", out.String())
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rec, err := loadtest.Reconcile(ctx, pool, rep)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	rec.Write(&out)
	t.Log("\n" + out.String())
	for _, k := range loadtest.Kinds {
		r := rec.Kinds[k]
		if r.Acked == 0 {
			t.Errorf("%s: nothing acknowledged", k)
		}
		if r.Missing != 0 || r.Mismatched != 0 || r.Found != r.Acked {
			t.Errorf("%s: %+v, want every acknowledged row found", k, *r)
		}
	}
	if t.Failed() {
		return
	}

	// Behind the server's back: one generation with feedback deleted (so
	// the feedback is lost with it), one change of a context file deleted
	// (the last one, so no later change can stand in for it), one stored
	// prefix changed.
	fb := rep.Acked.Feedback[0]
	first := rep.Acked.Completions[0]
	last := rep.Acked.ContextUpdates[len(rep.Acked.ContextUpdates)-1]
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM generation WHERE meta_query_id = $1 AND model_id = $2`, []any{fb.MetaQueryID, fb.ModelID}},
		{`DELETE FROM project_context_change WHERE (project_id, file_name, seq) =
			(SELECT project_id, file_name, max(seq) FROM project_context_change WHERE project_id = $1 AND file_name = $2 GROUP BY 1, 2)`,
			[]any{last.ProjectID, last.FileName}},
		{`UPDATE context SET prefix = prefix || ' ' WHERE meta_query_id = $1`, []any{first.MetaQueryID}},
	} {
		if tag, err := pool.Exec(ctx, q.sql, q.args...); err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("%s: %v, %d rows", q.sql, err, tag.RowsAffected())
		}
	}
	rec, err = loadtest.Reconcile(ctx, pool, rep)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	rec.Write(&out)
	t.Log("\n" + out.String())
	want := map[string][2]int{loadtest.KindGeneration: {1, 0}, loadtest.KindFeedback: {1, 0}, loadtest.KindContextUpdate: {1, 0},
		loadtest.KindContext: {0, 1}}
	for _, k := range loadtest.Kinds {
		r := rec.Kinds[k]
		w := want[k]
		if r.Missing != w[0] || r.Mismatched != w[1] {
			t.Errorf("%s: %d missing, %d mismatched; want %d and %d", k, r.Missing, r.Mismatched, w[0], w[1])
		}
	}
	if rec.Lost() != 4 {
		t.Errorf("lost %d rows, want 4", rec.Lost())
	}
	if got := rec.Kinds[loadtest.KindContext].MismatchedIDs; len(got) != 1 || got[0] != first.MetaQueryID {
		t.Errorf("mismatched context %v, want [%s]", got, first.MetaQueryID)
	}
}

// TestLoadtestCommand runs `code4me loadtest`'s own setup for two users
// and 5 s: private Postgres and Redis, a `code4me serve` child (this test
// binary) whose RSS is sampled, the reconciliation against that Postgres,
// and a verdict that passes; the child is gone afterwards.
func TestLoadtestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts private Postgres, Redis and a server")
	}
	orig := serveCommand
	t.Cleanup(func() { serveCommand = orig })
	var child *exec.Cmd
	serveCommand = func() (*exec.Cmd, error) {
		child = exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), serveEnv+"=serve")
		return child, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := loadtestRun(ctx, loadtest.Options{Users: 2, Duration: 5 * time.Second, RSSEvery: time.Second}, serveSettings{threads: 1}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if err := res.verdict(); err != nil {
		t.Error(err)
	}
	if res.rec == nil || res.rec.Kinds[loadtest.KindCompletion].Found == 0 {
		t.Error("no completion reconciled against the private Postgres")
	}
	if len(res.report.RSS) < 2 || res.report.RSS[0].KiB <= 0 {
		t.Errorf("RSS samples %v, want the child's", res.report.RSS)
	}
	if !strings.Contains(out.String(), "Server RSS:") || !strings.Contains(out.String(), "| completion |") {
		t.Errorf("the output lacks the RSS line or the reconciliation:\n%s", out.String())
	}
	stored := 0
	if res.work != nil {
		for _, r := range res.work.Rows {
			stored += r.N
		}
	}
	if found := res.rec.Kinds[loadtest.KindGeneration].Found; stored < found || stored == 0 || !strings.Contains(out.String(), "prompt tokens from cache") {
		t.Errorf("the engine's work counts %d stored generations, want at least the %d reconciled (and more than none)", stored, found)
	}
	if r := res.report; len(r.SinceKeystrokeWaited)+len(r.SinceKeystrokePaused) != len(r.SinceKeystroke) || len(r.SinceKeystroke) == 0 {
		t.Errorf("answered latencies: %d waited for and %d in a pause, of %d", len(r.SinceKeystrokeWaited), len(r.SinceKeystrokePaused), len(r.SinceKeystroke))
	}
	if r := res.report; len(r.Answers) != len(r.SinceKeystroke) || !strings.Contains(out.String(), "| answered | n | p50 ms |") || !strings.Contains(out.String(), "| from 0s |") {
		t.Errorf("%d answers by when they came, of %d; the output lacks the table of one 30 s stretch", len(r.Answers), len(r.SinceKeystroke))
	}
	// The engines' counters from /api/ping: the completion model did
	// work during the typing, and the table says so.
	var engines []string
	for _, e := range res.report.Engines {
		if e.Requests > 0 && e.Prompt > 0 && e.Evaluated+e.Cached > 0 && e.DecodeMS > 0 {
			engines = append(engines, e.Model)
		}
	}
	if len(engines) == 0 || !strings.Contains(out.String(), "The engines' work during the typing") {
		t.Errorf("no engine reported its work from /api/ping: %+v", res.report.Engines)
	}
	if child == nil || child.ProcessState == nil {
		t.Error("the serve child was not waited for")
	}
}
