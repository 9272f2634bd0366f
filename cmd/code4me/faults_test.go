package main

import (
	"context"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// The fault tests: `code4me serve` as a process of its own under load from
// a few plugin users, on a private Postgres and Redis, while Redis is
// restarted, Postgres is restarted, or the server is killed with SIGKILL
// and started again on the same data. Each checks what clients see during
// the fault (503, never another 5xx), that service comes back by itself,
// and that no write the server acknowledged is lost.

// faultUsers is the number of plugin users of each fault test.
const faultUsers = 4

// faultOutage is how long a stopped Redis or Postgres stays down.
const faultOutage = 3 * time.Second

// goroutineSlack is how many goroutines over its count before the load a
// server may still run once the load is over and its connections closed
// (fasthttp's idle workers and pooled connections come and go; a leak per
// failed request would be hundreds).
const goroutineSlack = 10

// TestFaultRedisRestart: Redis stops under load and comes back empty (a
// Redis without persistence, or one that lost its data): while it is
// down, every answer is a 503 (or a 401 or a success), never another 5xx
// nor a request left unanswered; once it is back, each client's tokens
// are gone, so it gets 401, signs in again and is served; every
// acknowledged write is in Postgres, and the server's goroutines return to
// their count before the load.
func TestFaultRedisRestart(t *testing.T) {
	e := newFaultEnv(t)
	l := newFaultLoad(e, faultUsers)
	baseline := e.settledGoroutines()
	l.start()
	t.Cleanup(l.stop)
	l.waitEach("before", 3, time.Minute)

	ctx := context.Background()
	l.setPhase("down")
	if err := e.redis.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"appendonlydir", "dump.rdb"} {
		if err := os.RemoveAll(filepath.Join(e.redis.Dir(), data)); err != nil {
			t.Fatal(err)
		}
	}
	l.waitOutcome("down", "/api/completion/request 503", 30*time.Second)
	time.Sleep(faultOutage) // the outage's length, not a wait for an event
	// Answers from here on count as after the outage, a 401 that the
	// restart makes included.
	l.setPhase("after")
	if err := e.redis.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	l.waitEach("after", 3, time.Minute)
	l.stop()
	t.Logf("answers: %s", l.summary())

	l.checkAnswers("before", "200", "201")
	l.checkAnswers("down", "200", "201", "401", "503")
	l.checkAnswers("after", "200", "201", "401", "503")
	for _, u := range l.users {
		if l.relogins["after"][u] == 0 {
			t.Errorf("%s did not sign in again after Redis came back empty", u.email)
		}
	}
	completions, feedbacks := l.reconcile()
	t.Logf("%d completions and %d feedbacks acknowledged, all in Postgres", completions, feedbacks)
	if !e.srv.running() {
		t.Fatal("the server exited")
	}
	e.waitGoroutines(baseline + goroutineSlack)
}

// TestFaultPostgresRestart: Postgres stops under load and comes back on
// the same data: while it is down, every answer is a 503 (or a success
// that committed before), never another 5xx nor a request left
// unanswered; the same server process serves every client again once it
// is back; every acknowledged completion and feedback is in Postgres; the
// server's goroutines return to their count before the load.
func TestFaultPostgresRestart(t *testing.T) {
	e := newFaultEnv(t)
	l := newFaultLoad(e, faultUsers)
	baseline := e.settledGoroutines()
	pid := e.srv.cmd.Process.Pid
	l.start()
	t.Cleanup(l.stop)
	l.waitEach("before", 3, time.Minute)

	ctx := context.Background()
	l.setPhase("down")
	if err := e.pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	l.waitOutcome("down", "/api/completion/request 503", 30*time.Second)
	time.Sleep(faultOutage) // the outage's length, not a wait for an event
	l.setPhase("after")
	if err := e.pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	l.waitEach("after", 3, time.Minute)
	l.stop()
	t.Logf("answers: %s", l.summary())

	l.checkAnswers("before", "200", "201")
	l.checkAnswers("down", "200", "503")
	l.checkAnswers("after", "200", "503")
	if !e.srv.running() || e.srv.cmd.Process.Pid != pid {
		t.Fatal("the server did not keep running")
	}
	completions, feedbacks := l.reconcile()
	t.Logf("%d completions and %d feedbacks acknowledged, all in Postgres", completions, feedbacks)
	e.waitGoroutines(baseline + goroutineSlack)
}

// faultMailArgs is the server's mail job (kind "mail", mailArgs), as
// another process inserts it.
type faultMailArgs struct {
	Mail   string `json:"mail"`
	UserID string `json:"user_id"`
}

func (faultMailArgs) Kind() string { return "mail" }

// faultExportArgs is the server's export job (kind "user_export",
// exportArgs).
type faultExportArgs struct {
	ExportID string `json:"export_id"`
}

func (faultExportArgs) Kind() string { return "user_export" }

// TestFaultServerKill: the server is killed with SIGKILL under load, with
// at least one completion between its two commits, and started again on
// the same Postgres, Redis and DATA_DIR. Clients see their requests fail
// (no answer, never a 5xx other than 503) and are served again by the new
// process with the tokens they had; every acknowledged write is in
// Postgres; each query that was received but never answered stays with
// total_serving_ms NULL and no generation, which marks it so; mail jobs
// and an export queued before the kill run after the restart, each
// exactly once, each user has exactly the mails queued for it, and the
// export can be downloaded.
func TestFaultServerKill(t *testing.T) {
	e := newFaultEnv(t)
	l := newFaultLoad(e, faultUsers)
	l.start()
	t.Cleanup(l.stop)
	l.waitEach("before", 3, time.Minute)
	conn := e.conn()
	ctx := context.Background()

	// The sign-ups' verification mails have gone out.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var sent, all int
		if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM river_job WHERE kind = 'mail'`).Scan(&sent, &all); err != nil {
			t.Fatal(err)
		}
		if sent == faultUsers && all == faultUsers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sign-up mail jobs completed after 30 s", sent, all)
		}
	}

	// A moment when a query is between its commits: the server is stopped
	// (SIGSTOP) and Postgres read once the server's last statements have
	// landed; if no query is open, the server goes on and a later moment
	// is tried.
	pid := e.srv.cmd.Process.Pid
	var open []string // meta_query_ids received and not answered
	unanswered := func() []string {
		t.Helper()
		var ids []string
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(meta_query_id::text ORDER BY meta_query_id), '{}') FROM meta_query WHERE total_serving_ms IS NULL`).Scan(&ids); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for try := 1; len(open) == 0; try++ {
		if try > 100 {
			t.Fatal("no query between its two commits in 100 tries")
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		// Statements the server had sent before it stopped are done once
		// two readings 100 ms apart agree.
		prev := unanswered()
		for {
			time.Sleep(100 * time.Millisecond)
			cur := unanswered()
			if slices.Equal(cur, prev) {
				break
			}
			prev = cur
		}
		if open = prev; len(open) == 0 {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Mail jobs and an export queued while the server cannot take them,
	// as another process would just before the kill.
	pool, err := pgxpool.New(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var queued []int64
	for _, u := range l.users {
		var id uuid.UUID
		if err := conn.QueryRow(ctx, `SELECT user_id FROM users WHERE email = $1`, u.email).Scan(&id); err != nil {
			t.Fatal(err)
		}
		res, err := rc.Insert(ctx, faultMailArgs{Mail: "verify", UserID: id.String()}, &river.InsertOpts{Queue: river.QueueDefault, MaxAttempts: 10})
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, res.Job.ID)
	}
	// The export: its row and its job in one transaction, as GET
	// /api/user/export queues them.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var exportID string
	if err := tx.QueryRow(ctx, `INSERT INTO user_export (user_id, expires_at)
		SELECT user_id, now() + interval '1 hour' FROM users WHERE email = $1 RETURNING export_id::text`, l.users[0].email).Scan(&exportID); err != nil {
		t.Fatal(err)
	}
	res, err := rc.InsertTx(ctx, tx, faultExportArgs{ExportID: exportID}, &river.InsertOpts{Queue: river.QueueDefault, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	queued = append(queued, res.Job.ID)

	l.setPhase("killed")
	if err := e.srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-e.srv.exited
	killed := e.srv
	t.Logf("killed with %d queries open", len(open))
	e.startServer()
	l.setPhase("after")
	l.waitEach("after", 3, time.Minute)

	// The queued jobs ran once each, on the new process.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var done int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'`, queued).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done == len(queued) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs queued before the kill completed a minute after the restart", done, len(queued))
		}
	}
	rows, err := conn.Query(ctx, `SELECT id, attempt, cardinality(attempted_by) FROM river_job WHERE id = ANY($1)`, queued)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([3]int64, error) {
		var j [3]int64
		err := r.Scan(&j[0], &j[1], &j[2])
		return j, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j[1] != 1 || j[2] != 1 {
			t.Errorf("job %d: attempt %d, attempted by %d clients; want one attempt", j[0], j[1], j[2])
		}
	}
	// The export's owner downloads it.
	if status, _, err := l.do(l.users[0], "GET", "/api/user/export/"+exportID, nil); status != 200 {
		t.Errorf("GET /api/user/export/{id} after the restart: %d %v", status, err)
	}
	l.stop()
	t.Logf("answers: %s", l.summary())
	if t.Failed() {
		t.Logf("killed process's output:\n%s", killed.out.String())
	}

	// Each user got two mails, the sign-up's and the queued one: none lost,
	// none sent twice.
	mails := map[string]int{}
	files, err := filepath.Glob(filepath.Join(e.dataDir, "mail", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(fh)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		mails[strings.Trim(m.Header.Get("To"), "<>")]++
		fh.Close()
	}
	for _, u := range l.users {
		if mails[u.email] != 2 {
			t.Errorf("%s got %d mails, want 2", u.email, mails[u.email])
		}
	}

	l.checkAnswers("before", "200", "201")
	l.checkAnswers("killed", "200", "201", "503", "error")
	l.checkAnswers("after", "200", "201")
	completions, feedbacks := l.reconcile()
	t.Logf("%d completions and %d feedbacks acknowledged, all in Postgres", completions, feedbacks)

	// The queries open at the kill are still there, unanswered: NULL
	// total_serving_ms, no generation.
	for _, id := range open {
		var total *float64
		var gens int
		if err := conn.QueryRow(ctx, `SELECT total_serving_ms, (SELECT count(*) FROM generation g WHERE g.meta_query_id = mq.meta_query_id)
			FROM meta_query mq WHERE meta_query_id = $1`, id).Scan(&total, &gens); err != nil {
			t.Fatalf("query %s open at the kill: %v", id, err)
		}
		if total != nil || gens != 0 {
			t.Errorf("query %s open at the kill: total_serving_ms set %v, %d generations; want NULL and none", id, total != nil, gens)
		}
		if slices.ContainsFunc(l.acks, func(a faultAck) bool { return a.mq == id }) {
			t.Errorf("query %s open at the kill was acknowledged", id)
		}
	}
}
