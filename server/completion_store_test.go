package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/models"
)

// TestCompletionStoreOverlapped: a request's first rows are committed while
// its model runs and the rest, generations and total included, when the
// response arrives.
func TestCompletionStoreOverlapped(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("overlap@example.com")
	coder := e.ids["tiny-coder"]
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "def f(x):\n    return ", "\n"), 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
	if n := e.count(`SELECT count(*) FROM meta_query m JOIN completion_query USING (meta_query_id) JOIN generation USING (meta_query_id)
		JOIN contextual_telemetry USING (meta_query_id) JOIN behavioral_telemetry USING (meta_query_id)
		WHERE m.meta_query_id = $1 AND m.total_serving_ms > 0`, mq); n != 1 {
		t.Fatalf("committed rows = %d", n)
	}
	st := &e.srv.plugin.stored
	if st.overlapped.Load() != 1 || st.single.Load() != 0 || st.discarded.Load() != 0 {
		t.Fatalf("overlapped %d, single %d, discarded %d", st.overlapped.Load(), st.single.Load(), st.discarded.Load())
	}
	// Feedback right after the response finds the generation.
	c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": coder, "was_accepted": true}, 200)
}

// TestCompletionStoreFirstBatchFails: when the batch sent during inference
// fails, nothing of it is committed and the whole query is written after
// inference, still before the response.
func TestCompletionStoreFirstBatchFails(t *testing.T) {
	e := newPluginEnv(t, nil)
	e.srv.plugin.preStoreHook = func(b *batchTx) { b.b.Queue("SELECT 1/0") }
	c := e.member("firstfails@example.com")
	coder := e.ids["tiny-coder"]
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "x = ", "\n"), 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
	if n := e.count(`SELECT count(*) FROM meta_query JOIN generation USING (meta_query_id) JOIN contextual_telemetry USING (meta_query_id)
		WHERE meta_query_id = $1 AND total_serving_ms > 0`, mq); n != 1 {
		t.Fatalf("committed rows = %d", n)
	}
	st := &e.srv.plugin.stored
	if st.single.Load() != 1 || st.overlapped.Load() != 0 {
		t.Fatalf("overlapped %d, single %d", st.overlapped.Load(), st.single.Load())
	}
	c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": coder, "was_accepted": true}, 200)
}

// TestCompletionStoreDiscardOnCancel: a request cancelled while its model
// runs leaves no rows, though its first rows were committed during
// inference.
func TestCompletionStoreDiscardOnCancel(t *testing.T) {
	e := newPluginEnv(t, nil)
	addr := e.listen()
	c := e.member("rollback@example.com")
	conn := e.wsDial(addr, "/api/ws/completion", c)
	defer conn.Close()
	slow := e.ids["slow-coder"]
	var uid uuid.UUID
	if err := e.srv.db.QueryRow(context.Background(), `SELECT user_id FROM users WHERE email = $1`, "rollback@example.com").Scan(&uid); err != nil {
		t.Fatal(err)
	}
	send(t, conn, map[string]any{"request_id": "c1", "completion_request": completionBody([]int64{slow}, "y = 1\n", "")})
	// The first rows are committed while the model runs: unanswered, so
	// without a total serving time.
	waitCount(t, e, 1, `SELECT count(*) FROM meta_query WHERE user_id = $1 AND total_serving_ms IS NULL`, uid)
	send(t, conn, map[string]any{"cancel": "c1"})
	readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "cancelled" })
	waitCount(t, e, 0, `SELECT count(*) FROM meta_query WHERE user_id = $1`, uid)
	if n := e.srv.plugin.stored.discarded.Load(); n != 1 {
		t.Fatalf("discarded %d", n)
	}
}

// waitCount polls query until it counts want rows, failing after 5 s.
func waitCount(t *testing.T, e *pluginEnv, want int, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := e.count(query, args...)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows, want %d: %s", n, want, query)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPreStoreFailureLeavesNothing: a first batch that fails stores none
// of its rows, and discarding it deletes nothing else.
func TestPreStoreFailureLeavesNothing(t *testing.T) {
	e := newPluginEnv(t, nil)
	e.member("early-fail@example.com")
	var uid uuid.UUID
	var cfg int64
	if err := e.srv.db.QueryRow(context.Background(), `SELECT user_id, config_id FROM users WHERE email = $1`, "early-fail@example.com").Scan(&uid, &cfg); err != nil {
		t.Fatal(err)
	}
	insert := func(mq uuid.UUID) func(context.Context, *batchTx) error {
		return func(ctx context.Context, b *batchTx) error {
			return e.srv.q.MetaQueryInsert(ctx, b, models.MetaQueryInsertParams{MetaQueryID: mq, QueryType: "completion", UserID: uid,
				ConfigID: cfg, Client: "plugin", ServerVersion: "test", RequestedAt: time.Now()})
		}
	}
	ctx := context.Background()

	// A failing statement after the insert: the batch commits nothing.
	ps := e.srv.startPreStore(ctx, uuid.New(), func(ctx context.Context, b *batchTx) error {
		if err := insert(uuid.New())(ctx, b); err != nil {
			return err
		}
		b.b.Queue("SELECT 1/0")
		return nil
	})
	if err := ps.wait(); err == nil {
		t.Fatal("a failing first batch succeeded")
	}
	e.srv.discard(ps)

	// A queue function that fails sends nothing.
	boom := errors.New("boom")
	ps = e.srv.startPreStore(ctx, uuid.New(), func(context.Context, *batchTx) error { return boom })
	if err := ps.wait(); !errors.Is(err, boom) {
		t.Fatalf("wait = %v", err)
	}

	// A committed first batch, discarded: its rows are deleted.
	mq := uuid.New()
	ps = e.srv.startPreStore(ctx, mq, insert(mq))
	if err := ps.wait(); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count(*) FROM meta_query WHERE meta_query_id = $1`, mq); n != 1 {
		t.Fatalf("%d rows after the first commit", n)
	}
	e.srv.discard(ps)
	waitCount(t, e, 0, `SELECT count(*) FROM meta_query WHERE user_id = $1`, uid)
}

// TestCompletionRefusedStateCancelsModels: the models start before the
// telemetry ids are checked; a request with an unknown id gets its 422
// without waiting for the (slow) model to finish, and stores nothing.
func TestCompletionRefusedStateCancelsModels(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("refused@example.com")
	body := completionBody([]int64{e.ids["slow-coder"]}, "z = ", "\n")
	body["contextual_telemetry"].(map[string]any)["language_id"] = 100000
	t0 := time.Now()
	c.expect("POST", "/api/completion/request", body, 422)
	// Uncancelled, the slow model needs its prompt step and 64 token
	// steps of 400 ms each (26 s); cancelled, at most the step it is in.
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("422 after %v: the model was not cancelled", d)
	}
	if n := e.count(`SELECT count(*) FROM meta_query m JOIN users u USING (user_id) WHERE u.email = 'refused@example.com'`); n != 0 {
		t.Fatalf("%d queries stored", n)
	}
}

// TestStoredContextCompression: the stored context is compressed with lz4
// where the database has it (migration 0010), with the default elsewhere.
func TestStoredContextCompression(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("lz4@example.com")
	if _, err := e.srv.db.Exec(t.Context(), `UPDATE users SET preference = '{"store_context": true}' WHERE email = 'lz4@example.com'`); err != nil {
		t.Fatal(err)
	}
	prefix := strings.Repeat("def f(x):\n    return x + 1\n\n", 600) // 16 KiB, compressible
	b := completionBody([]int64{e.ids["tiny-coder"]}, prefix, "\n")
	b["store_context"] = true
	r := c.expect("POST", "/api/completion/request", b, 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
	var method, stored string
	var lz4 bool
	if err := e.srv.db.QueryRow(t.Context(), `SELECT pg_column_compression(prefix), prefix,
		(SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression')
		FROM context WHERE meta_query_id = $1`, mq).Scan(&method, &stored, &lz4); err != nil {
		t.Fatal(err)
	}
	want := "pglz"
	if lz4 {
		want = "lz4"
	}
	if method != want || stored != prefix {
		t.Fatalf("prefix stored with %q (want %q), intact: %v", method, want, stored == prefix)
	}
}
