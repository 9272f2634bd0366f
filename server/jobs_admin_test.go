package server

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
)

// seedJob inserts a job row into queue as River stores one, with its times
// given in seconds before the database's now() (nil: NULL), and returns
// its id. No server works the test's queues, so the rows stay as seeded.
func (e *env) seedJob(queue, kind, state string, scheduledAgo float64, attemptedAgo, finalizedAgo *float64) int64 {
	e.t.Helper()
	var id int64
	err := e.srv.db.QueryRow(context.Background(), `
		INSERT INTO river_job (state, kind, queue, max_attempts, args, attempt, scheduled_at, attempted_at, finalized_at)
		VALUES ($1::river_job_state, $2, $3, 1, '{}', CASE WHEN $5::float8 IS NULL THEN 0 ELSE 1 END,
		        now() - make_interval(secs => $4::float8),
		        now() - make_interval(secs => $5::float8),
		        now() - make_interval(secs => $6::float8))
		RETURNING id`, state, kind, queue, scheduledAgo, attemptedAgo, finalizedAgo).Scan(&id)
	if err != nil {
		e.t.Fatalf("seed %s job: %v", state, err)
	}
	return id
}

func secs(s float64) *float64 { return &s }

// jobState is the state of job id, "" when the row is gone.
func (e *env) jobState(id int64) string {
	e.t.Helper()
	var state string
	err := e.srv.db.QueryRow(context.Background(), `SELECT coalesce((SELECT state::text FROM river_job WHERE id = $1), '')`, id).Scan(&state)
	if err != nil {
		e.t.Fatal(err)
	}
	return state
}

// TestJobsUIAdminOnly checks River's UI at /admin/jobs: an admin gets its
// page and its JSON API, which reads the seeded jobs and cancels one; a
// member gets 403 and an anonymous caller 401 on the page and on the API,
// and neither can cancel the job.
func TestJobsUIAdminOnly(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	member, _ := e.newMember()
	anon := e.client()
	for _, c := range []*client{admin, member, anon} {
		c.header["Accept"] = "text/html,application/json"
	}

	queue := "ui_" + uuid.NewString()
	e.exec("INSERT INTO river_queue (name, updated_at) VALUES ($1, now())", queue)
	t.Cleanup(func() {
		e.exec("DELETE FROM river_job WHERE queue = $1", queue)
		e.exec("DELETE FROM river_queue WHERE name = $1", queue)
	})
	ids := []int64{e.seedJob(queue, "ui_test", "available", 3, nil, nil), e.seedJob(queue, "ui_test", "available", 2, nil, nil),
		e.seedJob(queue, "ui_test", "running", 5, secs(4), nil)}

	for _, path := range []string{"/admin/jobs", "/admin/jobs/", "/admin/jobs/jobs"} {
		r := admin.expect("GET", path, nil, 200)
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		// The page carries the UI's configuration: its API under the mount point.
		if !strings.Contains(string(r.raw), `"apiUrl":"/admin/jobs/api"`) {
			t.Errorf("GET %s: no API URL under /admin/jobs in %.300s", path, r.raw)
		}
	}
	// The script the page loads is served under the mount point too.
	m := regexp.MustCompile(`<script type="module" src="(/admin/jobs/assets/[^"]+\.js)"`).FindSubmatch(
		admin.expect("GET", "/admin/jobs", nil, 200).raw)
	if m == nil {
		t.Fatal("the page loads no script under /admin/jobs/assets/")
	}
	if r := admin.expect("GET", string(m[1]), nil, 200); !strings.Contains(r.header.Get("Content-Type"), "javascript") || len(r.raw) < 1000 {
		t.Errorf("GET %s: %q, %d bytes", m[1], r.header.Get("Content-Type"), len(r.raw))
	}
	if r := member.do("GET", string(m[1]), nil); r.status != 403 {
		t.Errorf("member GET %s = %d, want 403", m[1], r.status)
	}

	r := admin.expect("GET", "/admin/jobs/api/queues/"+queue, nil, 200)
	if r.body["name"] != queue || r.body["count_available"] != float64(2) || r.body["count_running"] != float64(1) {
		t.Errorf("queue = %s, want %s with 2 available and 1 running", r.raw, queue)
	}
	r = admin.expect("GET", "/admin/jobs/api/jobs/"+strconv.FormatInt(ids[0], 10), nil, 200)
	if r.body["kind"] != "ui_test" || r.body["queue"] != queue || r.body["state"] != "available" {
		t.Errorf("job = %s", r.raw)
	}

	cancel := map[string]any{"ids": []string{strconv.FormatInt(ids[0], 10)}}
	for _, c := range []struct {
		who    string
		client *client
		status int
	}{{"member", member, 403}, {"anonymous", anon, 401}} {
		for _, path := range []string{"/admin/jobs", "/admin/jobs/", "/admin/jobs/api/queues/" + queue,
			"/admin/jobs/api/jobs/" + strconv.FormatInt(ids[0], 10)} {
			if r := c.client.do("GET", path, nil); r.status != c.status {
				t.Errorf("%s GET %s = %d %.200s, want %d", c.who, path, r.status, r.raw, c.status)
			}
		}
		if r := c.client.do("POST", "/admin/jobs/api/jobs/cancel", cancel); r.status != c.status {
			t.Errorf("%s cancel = %d %.200s, want %d", c.who, r.status, r.raw, c.status)
		}
		if r := c.client.do("PUT", "/admin/jobs/api/queues/"+queue+"/pause", nil); r.status != c.status {
			t.Errorf("%s pause = %d %.200s, want %d", c.who, r.status, r.raw, c.status)
		}
	}
	if got := e.jobState(ids[0]); got != "available" {
		t.Fatalf("after the refused cancels the job is %q, want available", got)
	}
	var paused bool
	e.srv.db.QueryRow(context.Background(), "SELECT paused_at IS NOT NULL FROM river_queue WHERE name = $1", queue).Scan(&paused)
	if paused {
		t.Fatal("a refused pause paused the queue")
	}

	admin.expect("POST", "/admin/jobs/api/jobs/cancel", cancel, 200)
	if got := e.jobState(ids[0]); got != "cancelled" {
		t.Fatalf("after the admin's cancel the job is %q, want cancelled", got)
	}
	if got := e.jobState(ids[1]); got != "available" {
		t.Fatalf("the other job is %q, want available", got)
	}
}

// TestJobsUIRateLimit checks that the UI's paths count against their own
// limit, which is high enough for a page that polls every 2 s, and that
// MAX_REQUEST_RATE_PER_HOUR_CONFIG can set another.
func TestJobsUIRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	r := admin.expect("GET", "/admin/jobs/api/features", nil, 200)
	if got := r.header.Get("X-RateLimit-Limit"); got != strconv.Itoa(jobsUIRatePerHour) {
		t.Errorf("X-RateLimit-Limit = %q, want %d", got, jobsUIRatePerHour)
	}

	e = newEnv(t, func(c *config.Config) { c.RatePerHourByRoute = map[string]int{"/admin/jobs/*": 2} })
	admin, _ = e.newAdmin()
	admin.expect("GET", "/admin/jobs/api/features", nil, 200)
	admin.expect("GET", "/admin/jobs/api/features", nil, 200)
	admin.expect("GET", "/admin/jobs/api/features", nil, 429)
}

// pingQueue is queue's entry in /api/ping's jobs, nil when it is not
// listed, and the figures' observed_at.
func pingQueue(t *testing.T, e *env, queue string) (map[string]any, string) {
	t.Helper()
	r := e.client().expect("GET", "/api/ping", nil, 200)
	jobs, ok := r.body["jobs"].(map[string]any)
	if !ok {
		t.Fatalf("ping has no jobs: %s", r.raw)
	}
	at, _ := jobs["observed_at"].(string)
	for _, q := range asList(jobs["queues"]) {
		if q["queue"] == queue {
			return q, at
		}
	}
	return nil, at
}

// TestPingJobQueue seeds jobs in two queues and checks /api/ping's figures
// against them: available and running counts, the oldest available job's
// wait, and the median wait of the jobs completed in the last five minutes
// (older, cancelled and discarded jobs left out). The figures are read
// once a second at most.
func TestPingJobQueue(t *testing.T) {
	e := newEnv(t, nil)
	busy, done, waiting := "ping_"+uuid.NewString(), "ping_"+uuid.NewString(), "ping_"+uuid.NewString()
	t.Cleanup(func() { e.exec("DELETE FROM river_job WHERE queue = ANY($1)", []string{busy, done, waiting}) })

	for _, ago := range []float64{10, 30, 20} {
		e.seedJob(busy, "ping_test", "available", ago, nil, nil)
	}
	e.seedJob(busy, "ping_test", "running", 6, secs(5), nil)
	e.seedJob(busy, "ping_test", "running", 9, secs(8), nil)
	e.seedJob(busy, "ping_test", "scheduled", -60, nil, nil) // due in a minute: not waiting yet
	// Completed 50 s ago after waiting 1, 2, 3, 4 and 100 ms: median 3 ms.
	for _, waitMs := range []float64{4, 1, 100, 3, 2} {
		e.seedJob(busy, "ping_test", "completed", 60, secs(60-waitMs/1000), secs(50))
	}
	e.seedJob(busy, "ping_test", "completed", 700, secs(699), secs(600))       // ten minutes ago
	e.seedJob(busy, "ping_test", "cancelled", 60, secs(59), secs(50))          // not completed
	e.seedJob(busy, "ping_test", "discarded", 60, secs(59.5), secs(50))        // not completed
	e.seedJob(done, "ping_test", "completed", 120, secs(120-0.010), secs(100)) // 10 ms
	e.seedJob(done, "ping_test", "completed", 120, secs(120-0.020), secs(100)) // 20 ms: median 15
	e.seedJob(waiting, "ping_test", "available", 42, nil, nil)

	start := time.Now()
	q, at := pingQueue(t, e, busy)
	if q == nil {
		t.Fatalf("queue %s is not in /api/ping", busy)
	}
	if q["available"] != float64(3) || q["running"] != float64(2) || q["completed_5m"] != float64(5) {
		t.Errorf("%s: %v, want 3 available, 2 running, 5 completed", busy, q)
	}
	if age, _ := q["oldest_available_ms"].(float64); age < 30000 || age > 30000+float64(time.Since(start).Milliseconds())+5000 {
		t.Errorf("oldest_available_ms = %v, want the 30 s the oldest job has waited", q["oldest_available_ms"])
	}
	if p50, _ := q["wait_p50_ms"].(float64); math.Abs(p50-3) > 0.01 {
		t.Errorf("wait_p50_ms = %v, want 3", q["wait_p50_ms"])
	}
	d, _ := pingQueue(t, e, done)
	if d == nil || d["available"] != float64(0) || d["running"] != float64(0) || d["oldest_available_ms"] != nil ||
		d["completed_5m"] != float64(2) || math.Abs(d["wait_p50_ms"].(float64)-15) > 0.01 {
		t.Errorf("%s: %v, want 2 completed with a median wait of 15 ms and none waiting", done, d)
	}
	w, _ := pingQueue(t, e, waiting)
	if age, _ := w["oldest_available_ms"].(float64); w == nil || w["available"] != float64(1) || w["completed_5m"] != float64(0) ||
		w["wait_p50_ms"] != nil || age < 42000 || age > 42000+float64(time.Since(start).Milliseconds())+5000 {
		t.Errorf("%s: %v, want one job waiting 42 s and none completed", waiting, w)
	}

	// A job queued now shows once the figures are a second old.
	e.seedJob(busy, "ping_test", "available", 0, nil, nil)
	if time.Since(start) < 500*time.Millisecond {
		if q, again := pingQueue(t, e, busy); again != at || q["available"] != float64(3) {
			t.Errorf("within the second: figures of %s, %v; want those of %s, 3 available", again, q, at)
		}
	} else {
		t.Logf("the second ping came %v after the first: cache not checked", time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, again := pingQueue(t, e, busy)
		if again != at {
			if q["available"] != float64(4) {
				t.Errorf("after a second: %v, want 4 available", q)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("figures of %s still served after 5 s", at)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestJobsUIBadInput sends riverui's API malformed and unknown input as an
// admin: each is refused by riverui itself (its own 4xx JSON, which its
// page reads), never a 500.
func TestJobsUIBadInput(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	admin.header["Accept"] = "application/json"
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/admin/jobs/api/jobs/abc", nil},
		{"GET", "/admin/jobs/api/jobs/9223372036854775807", nil},
		{"GET", "/admin/jobs/api/jobs?limit=-1", nil},
		{"GET", "/admin/jobs/api/jobs?state=bogus", nil},
		{"GET", "/admin/jobs/api/queues/no_such_queue_" + uuid.NewString(), nil},
		{"GET", "/admin/jobs/api/autocomplete?facet=bogus", nil},
		{"GET", "/admin/jobs/api/nothing", nil},
		{"POST", "/admin/jobs/api/jobs/cancel", `{"ids": "x"}`},
		{"POST", "/admin/jobs/api/jobs/cancel", `{"ids": [`},
		{"POST", "/admin/jobs/api/jobs/cancel", map[string]any{"ids": []string{}}},
		{"POST", "/admin/jobs/api/jobs/retry", map[string]any{"ids": []string{"9223372036854775807"}}},
		{"POST", "/admin/jobs/api/jobs/delete", map[string]any{"ids": []string{"-1"}}},
		{"PUT", "/admin/jobs/api/queues/no_such_queue_" + uuid.NewString() + "/pause", nil},
		{"PATCH", "/admin/jobs/api/queues/no_such_queue_" + uuid.NewString(), `{"concurrency": 7}`},
	} {
		r := admin.do(c.method, c.path, c.body)
		if r.status < 400 || r.status >= 500 {
			t.Errorf("%s %s = %d %.200s, want a 4xx", c.method, c.path, r.status, r.raw)
		}
	}
}

// TestJobsUIWritesAudited: the writes of River's UI append audit rows
// with the admin and the rows before and after: a cancel and a delete per
// job, a pause and resume per queue; a refused write appends none.
func TestJobsUIWritesAudited(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()
	member, _ := e.newMember()
	queue := "uiaudit_" + uuid.NewString()
	e.exec("INSERT INTO river_queue (name, updated_at) VALUES ($1, now())", queue)
	t.Cleanup(func() {
		e.exec("DELETE FROM river_job WHERE queue = $1", queue)
		e.exec("DELETE FROM river_queue WHERE name = $1", queue)
	})
	a, b := e.seedJob(queue, "ui_test", "available", 3, nil, nil), e.seedJob(queue, "ui_test", "available", 2, nil, nil)
	ids := func(n ...int64) map[string]any {
		out := []string{}
		for _, id := range n {
			out = append(out, strconv.FormatInt(id, 10))
		}
		return map[string]any{"ids": out}
	}

	member.expect("POST", "/admin/jobs/api/jobs/cancel", ids(a), 403)
	admin.expect("POST", "/admin/jobs/api/jobs/cancel", ids(a, b), 200)
	for _, id := range []int64{a, b} {
		rows := auditRows(admin, "jobs", strconv.FormatInt(id, 10))
		if len(rows) != 1 || rows[0]["action"] != "cancel" || rows[0]["actor_id"] != adminID {
			t.Fatalf("job %d: audit rows %v, want one cancel by the admin", id, rows)
		}
		before, _ := rows[0]["before"].(map[string]any)
		after, _ := rows[0]["after"].(map[string]any)
		if before["state"] != "available" || after["state"] != "cancelled" {
			t.Errorf("job %d: audit before %v, after %v", id, rows[0]["before"], rows[0]["after"])
		}
	}
	admin.expect("POST", "/admin/jobs/api/jobs/delete", ids(a), 200)
	if got := e.jobState(a); got != "" {
		t.Fatalf("deleted job is %q", got)
	}
	rows := auditRows(admin, "jobs", strconv.FormatInt(a, 10))
	if len(rows) != 2 || rows[0]["action"] != "delete" || rows[0]["after"] != nil || rows[0]["before"] == nil {
		t.Errorf("delete's audit rows = %v", rows)
	}

	admin.expect("PUT", "/admin/jobs/api/queues/"+queue+"/pause", nil, 200)
	admin.expect("PUT", "/admin/jobs/api/queues/"+queue+"/resume", nil, 200)
	rows = auditRows(admin, "queues", queue)
	if len(rows) != 2 || rows[0]["action"] != "resume" || rows[1]["action"] != "pause" {
		t.Fatalf("queue audit rows = %v", rows)
	}
	if after, _ := rows[1]["after"].(map[string]any); after["paused"] != true || after["name"] != queue {
		t.Errorf("pause's audit row = %v", rows[1])
	}
	if n := len(auditRows(admin, "jobs", strconv.FormatInt(b, 10))); n != 1 {
		t.Errorf("job %d has %d audit rows, want 1", b, n)
	}
}
