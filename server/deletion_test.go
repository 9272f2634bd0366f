package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
)

// seededUser is a user with rows in every table that refers to users,
// made through the server's routes (and SQL only where no route exists:
// a second project member and a config assignment).
type seededUser struct {
	c       *client
	id      uuid.UUID
	sole    uuid.UUID // a project the user alone belongs to
	shared  uuid.UUID // a project shared with other
	other   uuid.UUID // another user, member of shared
	otherP  uuid.UUID // other's own project
	apiKey  string
	study   uuid.UUID
	chatID  uuid.UUID
	queries []uuid.UUID // the user's meta queries
}

// seedUser makes the user email (who consents to storing context) and
// the other user otherEmail (who does not) with their data.
func seedUser(e *pluginEnv, email, otherEmail string) seededUser {
	t := e.t
	t.Helper()
	ctx := context.Background()
	coder, instruct := e.ids["tiny-coder"], e.ids["tiny-instruct"]
	su := seededUser{id: uuid.MustParse(e.signup(email))}
	c := e.loggedIn(email)
	su.c = c
	c.expect("PUT", "/api/user/update", map[string]any{"preference": map[string]any{"store_context": true}}, 201)
	r := c.expect("POST", "/api/project/create", map[string]any{"project_name": "sole"}, 201)
	su.sole = uuid.MustParse(r.body["project_id"].(string))

	// In each project: a multi-file context, a completion (context,
	// context files, telemetry, generation) with feedback (ground truth)
	// and a chat turn.
	work := func(c *client, file string) ([]uuid.UUID, uuid.UUID) {
		c.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{
			file: []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"def helper():", "    return 1"}}}}}, 200)
		b := completionBody([]int64{coder}, "x = ", "\n")
		b["store_context"] = true
		b["context"].(map[string]any)["context_files"] = []string{file}
		r := c.expect("POST", "/api/completion/request", b, 200)
		mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
		c.expect("POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": coder,
			"was_accepted": true, "ground_truth": "x = helper()"}, 200)
		chat := uuid.New()
		c.expect("POST", "/api/chat/request", chatBody([]int64{instruct}, chat.String(), [2]string{"user", "What does helper do?"}), 200)
		var chatMQ uuid.UUID
		if err := e.srv.db.QueryRow(ctx, `SELECT meta_query_id FROM meta_query WHERE chat_id = $1`, chat).Scan(&chatMQ); err != nil {
			t.Fatal(err)
		}
		return []uuid.UUID{uuid.MustParse(mq), chatMQ}, chat
	}
	mqs, chat := work(c, "sole.py")
	su.queries, su.chatID = append(su.queries, mqs...), chat

	r = c.expect("POST", "/api/project/create", map[string]any{"project_name": "shared"}, 201)
	su.shared = uuid.MustParse(r.body["project_id"].(string))
	mqs, _ = work(c, "shared.py")
	su.queries = append(su.queries, mqs...)

	// The other user joins the shared project (there is no route for
	// that) and works in it and in a project of their own.
	su.other = uuid.MustParse(e.signup(otherEmail))
	if _, err := e.srv.db.Exec(ctx, `INSERT INTO project_users (project_id, user_id) VALUES ($1, $2)`, su.shared, su.other); err != nil {
		t.Fatal(err)
	}
	o := e.loggedIn(otherEmail)
	r = o.expect("POST", "/api/project/create", map[string]any{"project_name": "own"}, 201)
	su.otherP = uuid.MustParse(r.body["project_id"].(string))
	work(o, "own.py")
	o.expect("PUT", "/api/project/activate", map[string]any{"project_id": su.shared.String()}, 200)
	work(o, "theirs.py")

	r = c.expect("POST", "/api/user/api-keys", map[string]any{"name": "laptop"}, 201)
	su.apiKey = r.body["api_key"].(string)
	// A config assignment each (admins and studies write them), and both
	// take part in a (draft) study.
	var study uuid.UUID
	if err := e.srv.db.QueryRow(ctx, `INSERT INTO study (name, starts_at) VALUES ('deletion', now()) RETURNING study_id`).Scan(&study); err != nil {
		t.Fatal(err)
	}
	for _, u := range []uuid.UUID{su.id, su.other} {
		if _, err := e.srv.db.Exec(ctx, `INSERT INTO config_assignment_history (user_id, assigned_config_id, reason) VALUES ($1, 1, 'admin')`, u); err != nil {
			t.Fatal(err)
		}
		if _, err := e.srv.db.Exec(ctx, `INSERT INTO study_participant (study_id, user_id) VALUES ($1, $2)`, study, u); err != nil {
			t.Fatal(err)
		}
	}
	su.study = study
	return su
}

// deletionTables are the tables a user's deletion may touch, each with
// two counts: of the test's own rows (its two users, their projects and
// sessions: other tests share the database), and of those rows that the
// full deletion of the user removes. $1 is the user, $2 both users, $3
// the projects, $4 the sessions.
var deletionTables = []struct{ table, world, mine string }{
	{"users", `user_id = ANY(w.us)`, `user_id = w.u`},
	{"api_key", `user_id = ANY(w.us)`, `user_id = w.u`},
	{"session", `session_id = ANY(w.ss)`, `user_id = w.u`},
	{"session_project", `session_id = ANY(w.ss)`, `session_id IN (SELECT session_id FROM session WHERE user_id = w.u)`},
	{"project", `project_id = ANY(w.ps)`, `project_id IN (SELECT project_id FROM project_users WHERE user_id = w.u) AND NOT EXISTS (
		SELECT 1 FROM project_users o WHERE o.project_id = x.project_id AND o.user_id <> w.u)`},
	{"project_users", `project_id = ANY(w.ps)`, `user_id = w.u`},
	// The user's projects lose their multi-file context unless a
	// remaining member consents to storing context (the other does not).
	{"project_context_file", `project_id = ANY(w.ps)`, `project_id IN (SELECT project_id FROM project_users WHERE user_id = w.u)`},
	{"project_context_change", `project_id = ANY(w.ps)`, `project_id IN (SELECT project_id FROM project_users WHERE user_id = w.u)`},
	{"project_context_chunk", `project_id = ANY(w.ps)`, `project_id IN (SELECT project_id FROM project_users WHERE user_id = w.u)`},
	{"config_assignment_history", `user_id = ANY(w.us) OR assignment_id = ANY(w.asg)`, `user_id = w.u`},
	{"study_participant", `study_id = w.st`, `user_id = w.u`},
	{"chat", `project_id = ANY(w.ps)`, `user_id = w.u`},
	{"chat_message", `chat_id IN (SELECT chat_id FROM chat WHERE project_id = ANY(w.ps))`, `chat_id IN (SELECT chat_id FROM chat WHERE user_id = w.u)`},
	{"meta_query", `project_id = ANY(w.ps)`, `user_id = w.u`},
}

// queryTables hang off meta_query.
var queryTables = []string{"completion_query", "chat_query", "context", "query_context_file",
	"contextual_telemetry", "behavioral_telemetry", "generation", "ground_truth"}

type deletionWorld struct {
	u        uuid.UUID
	users    []uuid.UUID
	projects []uuid.UUID
	sessions []uuid.UUID
	assigns  []int64
	study    uuid.UUID
}

// counts returns each table's rows of the world (mine: only those a full
// deletion of the user removes).
func (w deletionWorld) counts(e *pluginEnv, mine bool) map[string]int {
	e.t.Helper()
	out := map[string]int{}
	cte := `WITH w AS (SELECT $1::uuid AS u, $2::uuid[] AS us, $3::uuid[] AS ps, $4::uuid[] AS ss, $5::bigint[] AS asg, $6::uuid AS st) `
	run := func(table, where string) {
		out[table] = e.count(cte+`SELECT count(*) FROM `+table+` x, w WHERE `+where, w.u, w.users, w.projects, w.sessions, w.assigns, w.study)
	}
	for _, tb := range deletionTables {
		if mine {
			run(tb.table, tb.mine)
		} else {
			run(tb.table, tb.world)
		}
	}
	for _, tb := range queryTables {
		where := `meta_query_id IN (SELECT meta_query_id FROM meta_query WHERE project_id = ANY(w.ps))`
		if mine {
			where = `meta_query_id IN (SELECT meta_query_id FROM meta_query WHERE user_id = w.u)`
		}
		run(tb, where)
	}
	return out
}

// namingUser counts, per uuid column of the schema, the rows whose value
// is id.
func namingUser(e *pluginEnv, id uuid.UUID) (map[string]int, int) {
	e.t.Helper()
	ctx := context.Background()
	rows, err := e.srv.db.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns c
		JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.data_type = 'uuid'
		ORDER BY 1, 2`)
	if err != nil {
		e.t.Fatal(err)
	}
	var cols [][2]string
	for rows.Next() {
		var tb, col string
		if err := rows.Scan(&tb, &col); err != nil {
			e.t.Fatal(err)
		}
		cols = append(cols, [2]string{tb, col})
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	userCols := 0
	found := map[string]int{}
	for _, tc := range cols {
		if tc[1] == "user_id" || strings.HasSuffix(tc[1], "_user_id") {
			userCols++
		}
		q := fmt.Sprintf(`SELECT count(*) FROM %q WHERE %q = $1`, tc[0], tc[1])
		if n := e.count(q, id); n > 0 {
			found[tc[0]+"."+tc[1]] = n
		}
	}
	return found, userCols
}

// TestUserDeletionCounts deletes a user with rows in every table that
// refers to users, keeping the data (pseudonymised) and deleting it, and
// compares each table's row count with the count the rules give:
// without delete_data only the user, their API keys and memberships go
// and every other row stays with user_id NULL; with it every query,
// chat, session and assignment of the user goes with what hangs off
// them, and so do the projects the user alone belonged to and the
// multi-file context of their projects where no remaining member
// consents to storing context. Afterwards no uuid column anywhere names
// the user, the other user's rows are untouched, and the API key no
// longer works.
func TestUserDeletionCounts(t *testing.T) {
	for _, deleteData := range []bool{false, true} {
		t.Run(fmt.Sprintf("delete_data=%v", deleteData), func(t *testing.T) {
			// Retrieval on: the consenting user's context is chunked too.
			e := newPluginEnv(t, func(c *config.Config) { c.EmbeddingModel = "tiny-coder" })
			su := seedUser(e, fmt.Sprintf("gone-%v@example.com", deleteData), fmt.Sprintf("stays-%v@example.com", deleteData))
			w := deletionWorld{u: su.id, users: []uuid.UUID{su.id, su.other}, projects: []uuid.UUID{su.sole, su.shared, su.otherP}, study: su.study}
			ctx := context.Background()
			if err := e.srv.db.QueryRow(ctx, `SELECT array_agg(session_id) FROM session WHERE user_id = ANY($1)`, w.users).Scan(&w.sessions); err != nil {
				t.Fatal(err)
			}
			if err := e.srv.db.QueryRow(ctx, `SELECT array_agg(assignment_id) FROM config_assignment_history WHERE user_id = ANY($1)`, w.users).Scan(&w.assigns); err != nil {
				t.Fatal(err)
			}
			before, mine := w.counts(e, false), w.counts(e, true)
			for table, n := range mine {
				if n == 0 {
					t.Fatalf("the seed left %s without a row of the user", table)
				}
			}
			want := map[string]int{}
			for table, n := range before {
				want[table] = n
			}
			if deleteData {
				for table, n := range mine {
					want[table] -= n
				}
			} else {
				for _, table := range []string{"users", "api_key", "project_users"} {
					want[table] -= mine[table]
				}
			}
			otherRows := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1`, su.other)
			otherGens := e.count(`SELECT count(*) FROM generation g JOIN meta_query m USING (meta_query_id) WHERE m.user_id = $1`, su.other)

			r := su.c.expect("DELETE", fmt.Sprintf("/api/user/delete?delete_data=%v", deleteData), nil, 200)
			if r.msg() != MsgDeleteUser {
				t.Fatalf("delete = %s", r.raw)
			}

			after := w.counts(e, false)
			for table, n := range want {
				if after[table] != n {
					t.Errorf("%s: %d rows after, want %d (before %d, the user's %d)", table, after[table], n, before[table], mine[table])
				}
			}
			found, userCols := namingUser(e, su.id)
			if userCols < 5 {
				t.Fatalf("only %d user_id columns found: the schema query is wrong", userCols)
			}
			if len(found) > 0 {
				t.Errorf("rows still name the user: %v", found)
			}
			if !deleteData {
				// Pseudonymised: the rows stay, without the user.
				if n := e.count(`SELECT count(*) FROM meta_query WHERE meta_query_id = ANY($1) AND user_id IS NULL`, su.queries); n != len(su.queries) {
					t.Errorf("%d of the user's %d queries kept pseudonymised", n, len(su.queries))
				}
			}
			if n := e.count(`SELECT count(*) FROM meta_query WHERE user_id = $1`, su.other); n != otherRows {
				t.Errorf("the other user has %d queries, had %d", n, otherRows)
			}
			if n := e.count(`SELECT count(*) FROM generation g JOIN meta_query m USING (meta_query_id) WHERE m.user_id = $1`, su.other); n != otherGens || n == 0 {
				t.Errorf("the other user has %d generations, had %d", n, otherGens)
			}
			k := e.client()
			k.header["Authorization"] = "Bearer " + su.apiKey
			k.expect("GET", "/api/user/get", nil, 401)
		})
	}
}
