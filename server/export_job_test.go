package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/internal/config"
)

// exportFields parses an export document without exported_at, the one
// field two exports of the same data differ in.
func exportFields(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("export is not JSON: %v: %.200s", err, raw)
	}
	if _, ok := doc["exported_at"]; !ok {
		t.Fatalf("export without exported_at: %.200s", raw)
	}
	delete(doc, "exported_at")
	return doc
}

// sameExport fails unless the two documents hold the same fields.
func sameExport(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			g, _ := json.Marshal(got[k])
			wj, _ := json.Marshal(w)
			t.Errorf("%s differs:\n got %.400s\nwant %.400s", k, g, wj)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("field %s only in the job's export", k)
		}
	}
}

// awaitExport asks for the export at url until it is no longer 202 and
// returns that answer.
func awaitExport(t *testing.T, c *client, url string) resp {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := c.do("GET", url, nil)
		if r.status != 202 {
			return r
		}
		if s := r.body["status"]; s != "queued" && s != "running" {
			t.Fatalf("pending export's status = %v", s)
		}
		if time.Now().After(deadline) {
			t.Fatalf("export %s still %v after 60 s", url, r.body["status"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runJob inserts a job on the server's queue and waits until River has
// completed it.
func runJob(t *testing.T, e *pluginEnv, args river.JobArgs) {
	t.Helper()
	ctx := context.Background()
	res, err := e.srv.jobs.client.Insert(ctx, args, &river.InsertOpts{Queue: e.srv.jobs.queue})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var state string
		if err := e.srv.db.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, res.Job.ID).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state == "completed" {
			return
		}
		if state != "available" && state != "running" && state != "scheduled" || time.Now().After(deadline) {
			t.Fatalf("%s job is %s", args.Kind(), state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUserExportJob: with async=true the export is a job. Its 202 names
// the export; polling it gives 202 until the document is ready, then the
// same document as the streamed export of the same data (the stored size
// and sha256 are the document's), gzip to a client that accepts it. It is
// the owner's alone (404 for another user, 401 without credentials); a job
// run again for a ready export changes nothing; an expired export answers
// 410 and the cleanup job deletes it; a failed one answers 500; deleting
// the user deletes their exports.
func TestUserExportJob(t *testing.T) {
	e := newPluginEnv(t, nil)
	su := seedUser(e, "export-job@example.com", "export-job-other@example.com")
	ctx := context.Background()

	r := su.c.expect("GET", "/api/user/export?async=true", nil, 202)
	id, err := uuid.Parse(fmt.Sprint(r.body["export_id"]))
	if err != nil {
		t.Fatalf("202 = %s", r.raw)
	}
	url := "/api/user/export/" + id.String()
	if r.body["status"] != "queued" || r.body["status_url"] != url || r.header.Get("Location") != url {
		t.Fatalf("202 = %s, Location %q", r.raw, r.header.Get("Location"))
	}
	ready := awaitExport(t, su.c, url)
	if ready.status != 200 {
		t.Fatalf("GET %s = %d %s", url, ready.status, ready.raw)
	}
	if cd := ready.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, su.id.String()) {
		t.Fatalf("Content-Disposition = %q", cd)
	}
	if ce := ready.header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("Content-Encoding = %q without Accept-Encoding", ce)
	}
	sync := su.c.expect("GET", "/api/user/export", nil, 200)
	sameExport(t, exportFields(t, ready.raw), exportFields(t, sync.raw))

	var size int64
	var sum []byte
	var finished time.Time
	if err := e.srv.db.QueryRow(ctx, `SELECT bytes, sha256, finished_at FROM user_export WHERE export_id = $1`, id).
		Scan(&size, &sum, &finished); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(ready.raw); size != int64(len(ready.raw)) || !bytes.Equal(sum, want[:]) {
		t.Errorf("stored %d bytes, sha256 %x; the document has %d, %x", size, sum, len(ready.raw), want)
	}

	// gzip as stored, to a client that accepts it.
	su.c.header["Accept-Encoding"] = "br;q=1.0, gzip;q=0.5"
	gz := su.c.expect("GET", url, nil, 200)
	delete(su.c.header, "Accept-Encoding")
	if gz.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding = %q with Accept-Encoding gzip", gz.header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz.raw))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, ready.raw) {
		t.Fatalf("gzip body: %v, equal to the plain one: %v", err, bytes.Equal(plain, ready.raw))
	}

	// The owner's alone.
	other := e.loggedIn("export-job-other@example.com")
	if r := other.expect("GET", url, nil, 404); r.msg() != MsgExportNotFound {
		t.Fatalf("another user's GET = %s", r.raw)
	}
	su.c.expect("GET", "/api/user/export/"+uuid.NewString(), nil, 404)
	su.c.expect("GET", "/api/user/export/not-a-uuid", nil, 422)
	su.c.expect("GET", "/api/user/export?async=maybe", nil, 422)
	e.client().expect("GET", url, nil, 401)

	// A job run again for a ready export leaves it as it is.
	runJob(t, e, exportArgs{ExportID: id})
	var again time.Time
	if err := e.srv.db.QueryRow(ctx, `SELECT finished_at FROM user_export WHERE export_id = $1 AND status = 'ready'`, id).
		Scan(&again); err != nil || !again.Equal(finished) {
		t.Fatalf("after a second job: finished_at %v (was %v), %v", again, finished, err)
	}

	// Expired: 410, until the cleanup job deletes it. Every server the
	// package's tests start runs that job once when it starts, so the row
	// is locked against deletion (FOR KEY SHARE still lets it be updated)
	// while the test looks at it expired.
	lock, err := e.srv.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx) // when a check below fails first
	if _, err := lock.Exec(ctx, `SELECT 1 FROM user_export WHERE export_id = $1 FOR KEY SHARE`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.db.Exec(ctx, `UPDATE user_export SET expires_at = now() - interval '1 minute' WHERE export_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	expired := su.c.expect("GET", url, nil, 410)
	lock.Rollback(ctx)
	if expired.msg() != MsgExportExpired {
		t.Fatalf("expired = %s", expired.raw)
	}
	runJob(t, e, exportCleanupArgs{})
	if n := e.count(`SELECT count(*) FROM user_export WHERE export_id = $1`, id); n != 0 {
		t.Fatalf("the cleanup job left the expired export (%d rows)", n)
	}
	su.c.expect("GET", url, nil, 404)

	// Failed: 500 with a message that says what to do.
	r = other.expect("GET", "/api/user/export?async=true", nil, 202)
	otherURL := r.body["status_url"].(string)
	awaitExport(t, other, otherURL)
	if _, err := e.srv.db.Exec(ctx, `UPDATE user_export SET status = 'failed', content = NULL, error = 'test' WHERE user_id = $1`, su.other); err != nil {
		t.Fatal(err)
	}
	if r := other.expect("GET", otherURL, nil, 500); r.msg() != MsgExportFailed {
		t.Fatalf("failed = %s", r.raw)
	}

	// Deleting the user deletes their exports.
	other.expect("DELETE", "/api/user/delete", nil, 200)
	if n := e.count(`SELECT count(*) FROM user_export WHERE user_id = $1`, su.other); n != 0 {
		t.Fatalf("%d exports of a deleted user", n)
	}
}

// TestUserExportThreshold: a user with EXPORT_SYNC_MAX_QUERIES queries
// gets the streamed export, one with more gets 202 without asking for it;
// while an export of theirs is in progress, another request answers that
// one instead of queuing a second.
func TestUserExportThreshold(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) { c.ExportSyncMaxQueries = 3 })
	c := e.member("export-threshold@example.com")
	ctx := context.Background()
	var uid, pid uuid.UUID
	if err := e.srv.db.QueryRow(ctx, `SELECT u.user_id, pu.project_id FROM users u JOIN project_users pu USING (user_id)
		WHERE u.email = 'export-threshold@example.com'`).Scan(&uid, &pid); err != nil {
		t.Fatal(err)
	}
	addQueries := func(n int) {
		if _, err := e.srv.db.Exec(ctx, `INSERT INTO meta_query (query_type, user_id, project_id, config_id, server_version)
			SELECT 'completion', $1, $2, 1, 'test' FROM generate_series(1, $3::int)`, uid, pid, n); err != nil {
			t.Fatal(err)
		}
	}

	addQueries(3)
	r := c.expect("GET", "/api/user/export", nil, 200)
	if doc := exportFields(t, r.raw); len(doc["queries"].([]any)) != 3 {
		t.Fatalf("%d queries exported, want 3", len(doc["queries"].([]any)))
	}
	addQueries(1)
	r = c.expect("GET", "/api/user/export", nil, 202)
	ready := awaitExport(t, c, r.body["status_url"].(string))
	if doc := exportFields(t, ready.raw); ready.status != 200 || len(doc["queries"].([]any)) != 4 {
		t.Fatalf("job's export = %d with %d queries, want 200 with 4", ready.status, len(doc["queries"].([]any)))
	}

	// An export in progress (a row without a job: it stays running) is
	// answered again.
	var running uuid.UUID
	if err := e.srv.db.QueryRow(ctx, `INSERT INTO user_export (user_id, status, expires_at) VALUES ($1, 'running', now() + interval '1 hour')
		RETURNING export_id`, uid).Scan(&running); err != nil {
		t.Fatal(err)
	}
	r = c.expect("GET", "/api/user/export?async=true", nil, 202)
	if r.body["export_id"] != running.String() || r.body["status"] != "running" {
		t.Fatalf("202 = %s, want the running export %s", r.raw, running)
	}
	if n := e.count(`SELECT count(*) FROM user_export WHERE user_id = $1`, uid); n != 2 {
		t.Fatalf("%d exports, want 2 (the ready one and the running one)", n)
	}
}
