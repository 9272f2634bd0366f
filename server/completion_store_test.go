package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/models"
)

func TestEarlyLenderReserve(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max, held int32
		idle      int32
		want      bool
	}{
		{"idle connection, slot free", 2, 0, 1, true},
		{"no idle connection", 2, 0, 0, false},
		{"every slot lent", 2, 2, 3, false},
		{"lending disabled (pool of one)", 0, 0, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &earlyLender{max: tc.max}
			l.held.Store(tc.held)
			if got := l.reserve(tc.idle); got != tc.want {
				t.Fatalf("reserve = %v, want %v", got, tc.want)
			}
			if tc.want && l.held.Load() != tc.held+1 {
				t.Fatalf("held = %d", l.held.Load())
			}
		})
	}
}

// waitReturned waits until no connection is lent.
func waitReturned(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.plugin.early.held.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("lent connection not returned")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCompletionStoreOverlapped: a request is written while its model runs
// and is committed, generations and total included, when the response
// arrives.
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
	if e.srv.plugin.early.lent.Load() != 1 || e.srv.plugin.early.fellBack.Load() != 0 {
		t.Fatalf("lent %d, fell back %d", e.srv.plugin.early.lent.Load(), e.srv.plugin.early.fellBack.Load())
	}
	waitReturned(t, e.srv)
}

// TestCompletionStoreNoConnectionToLend: with no connection to lend (a
// pool too small, or none idle), the query is written after inference and
// still committed before the response.
func TestCompletionStoreNoConnectionToLend(t *testing.T) {
	e := newPluginEnv(t, nil)
	e.srv.plugin.early = &earlyLender{} // lends nothing
	c := e.member("nolend@example.com")
	coder := e.ids["tiny-coder"]
	r := c.expect("POST", "/api/completion/request", completionBody([]int64{coder}, "x = ", "\n"), 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
	if n := e.count(`SELECT count(*) FROM meta_query JOIN generation USING (meta_query_id) WHERE meta_query_id = $1 AND total_serving_ms > 0`, mq); n != 1 {
		t.Fatalf("committed rows = %d", n)
	}
	if e.srv.plugin.early.fellBack.Load() != 1 || e.srv.plugin.early.lent.Load() != 0 {
		t.Fatalf("lent %d, fell back %d", e.srv.plugin.early.lent.Load(), e.srv.plugin.early.fellBack.Load())
	}
	// Feedback right after the response finds the generation (T6).
	c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": coder, "was_accepted": true}, 200)
}

// TestCompletionStoreRollbackOnCancel: a request cancelled while its model
// runs leaves no rows, though its first rows were sent during inference,
// and gives its connection back.
func TestCompletionStoreRollbackOnCancel(t *testing.T) {
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
	// The transaction is open and its first rows written while the model runs.
	deadline := time.Now().Add(5 * time.Second)
	for e.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no transaction open during inference")
		}
		time.Sleep(10 * time.Millisecond)
	}
	send(t, conn, map[string]any{"cancel": "c1"})
	readUntil(t, conn, func(f map[string]any) bool { return f["type"] == "cancelled" })
	waitReturned(t, e.srv)
	if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1`, uid); n != 0 {
		t.Fatalf("%d rows of a cancelled request", n)
	}
	if n := e.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`); n != 0 {
		t.Fatalf("%d transactions left open", n)
	}
}

// TestEarlyStoreFailureLeavesNothing: a transaction whose closing batch
// fails, or that is aborted, stores none of its rows.
func TestEarlyStoreFailureLeavesNothing(t *testing.T) {
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

	// A failing statement in the closing batch: the commit never happens.
	es := e.srv.startEarlyStore(ctx, insert(uuid.New()))
	if es == nil {
		t.Fatal("no connection lent")
	}
	var b pgx.Batch
	b.Queue("SELECT 1/0")
	b.Queue("COMMIT")
	if err := es.finish(&b); err == nil {
		t.Fatal("finish of a failing batch succeeded")
	}

	// Aborted (cancellation, every model overloaded).
	es = e.srv.startEarlyStore(ctx, insert(uuid.New()))
	if es == nil {
		t.Fatal("no connection lent")
	}
	es.abort()

	// A failing first batch: finish reports it and stores nothing.
	es = e.srv.startEarlyStore(ctx, func(ctx context.Context, b *batchTx) error {
		if err := insert(uuid.New())(ctx, b); err != nil {
			return err
		}
		b.b.Queue("SELECT 1/0")
		return nil
	})
	var ok pgx.Batch
	ok.Queue("COMMIT")
	if err := es.finish(&ok); err == nil || errors.Is(err, errEarlyAborted) {
		t.Fatalf("finish after a failed first batch = %v", err)
	}

	waitReturned(t, e.srv)
	if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1`, uid); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
	if n := e.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`); n != 0 {
		t.Fatalf("%d transactions left open", n)
	}
}
