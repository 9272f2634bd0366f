package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// exportDoc is the part of the export document the tests read.
type exportDoc struct {
	SchemaVersion int               `json:"schema_version"`
	User          map[string]any    `json:"user"`
	APIKeys       []map[string]any  `json:"api_keys"`
	Assignments   []map[string]any  `json:"config_assignments"`
	Projects      []map[string]any  `json:"projects"`
	Sessions      []map[string]any  `json:"sessions"`
	Queries       []json.RawMessage `json:"queries"`
	Chats         []map[string]any  `json:"chats"`
}

// exportQuery is one query of the export.
type exportQuery struct {
	MetaQueryID  uuid.UUID        `json:"meta_query_id"`
	QueryType    string           `json:"query_type"`
	Context      map[string]any   `json:"context"`
	ContextFiles []map[string]any `json:"context_files"`
	Contextual   map[string]any   `json:"contextual_telemetry"`
	Behavioral   map[string]any   `json:"behavioral_telemetry"`
	Generations  []map[string]any `json:"generations"`
	GroundTruth  []map[string]any `json:"ground_truth"`
}

// TestUserExport: the export is an attachment holding every row of the
// caller's and none of another user's: the user without the password
// hash, API keys without their hashes, assignments, projects with the
// multi-file context of the sole one only, sessions, queries with their
// context, context files, telemetry, generations and ground truth, and
// chats with their messages. More queries than one page holds all come
// out, once each.
func TestUserExport(t *testing.T) {
	e := newPluginEnv(t, nil)
	su := seedUser(e, "export@example.com", "export-other@example.com")
	ctx := context.Background()
	// Queries past one page (written directly: only their number matters).
	extra := 2*exportPageSize + 7
	if _, err := e.srv.db.Exec(ctx, `INSERT INTO meta_query (query_type, user_id, project_id, config_id, server_version)
		SELECT 'completion', $1, $2, 1, 'test' FROM generate_series(1, $3::int)`, su.id, su.sole, extra); err != nil {
		t.Fatal(err)
	}

	r := su.c.expect("GET", "/api/user/export", nil, 200)
	if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, su.id.String()) {
		t.Fatalf("Content-Disposition = %q", cd)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("Content-Type = %q", r.header.Get("Content-Type"))
	}
	var doc exportDoc
	if err := json.Unmarshal(r.raw, &doc); err != nil {
		t.Fatalf("export is not JSON: %v", err)
	}
	if doc.SchemaVersion != ExportSchemaVersion || doc.User["email"] != "export@example.com" || doc.User["user_id"] != su.id.String() {
		t.Fatalf("header = %d %v", doc.SchemaVersion, doc.User)
	}
	var hash string
	if err := e.srv.db.QueryRow(ctx, `SELECT password_hash FROM users WHERE user_id = $1`, su.id).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	var keyHash []byte
	if err := e.srv.db.QueryRow(ctx, `SELECT key_hash FROM api_key WHERE user_id = $1`, su.id).Scan(&keyHash); err != nil {
		t.Fatal(err)
	}
	raw := string(r.raw)
	for _, secret := range []string{"password_hash", "key_hash", hash, su.apiKey} {
		if strings.Contains(raw, secret) {
			t.Fatalf("export holds %q", secret)
		}
	}
	if strings.Contains(raw, hex.EncodeToString(keyHash)) {
		t.Fatal("export holds the API key's hash")
	}
	if len(doc.APIKeys) != 1 || doc.APIKeys[0]["name"] != "laptop" || len(doc.Assignments) != 1 {
		t.Fatalf("api keys %v, assignments %v", doc.APIKeys, doc.Assignments)
	}

	// Projects: both, the shared one without its (shared) context.
	if len(doc.Projects) != 2 {
		t.Fatalf("projects = %v", doc.Projects)
	}
	for _, p := range doc.Projects {
		files, _ := p["context_files"].([]any)
		switch p["project_id"] {
		case su.sole.String():
			if len(files) != 1 || files[0].(map[string]any)["file_name"] != "sole.py" {
				t.Errorf("sole project's context = %v", p["context_files"])
			}
		case su.shared.String():
			if p["context_files"] != nil || p["member_count"] != float64(2) {
				t.Errorf("shared project = %v", p)
			}
		default:
			t.Errorf("foreign project %v", p["project_id"])
		}
	}

	var sessions int
	if err := e.srv.db.QueryRow(ctx, `SELECT count(*) FROM session WHERE user_id = $1`, su.id).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sessions) != sessions || sessions == 0 {
		t.Errorf("%d sessions exported, the user has %d", len(doc.Sessions), sessions)
	}

	// Queries: every one of the user's, once, with what was stored.
	if want := len(su.queries) + extra; len(doc.Queries) != want {
		t.Fatalf("%d queries exported, want %d", len(doc.Queries), want)
	}
	seen := map[uuid.UUID]exportQuery{}
	for _, q := range doc.Queries {
		var eq exportQuery
		if err := json.Unmarshal(q, &eq); err != nil {
			t.Fatal(err)
		}
		if _, dup := seen[eq.MetaQueryID]; dup {
			t.Fatalf("query %s exported twice", eq.MetaQueryID)
		}
		seen[eq.MetaQueryID] = eq
	}
	completion := seen[su.queries[0]]
	if completion.QueryType != "completion" || completion.Context["prefix"] != "x = " || len(completion.ContextFiles) != 1 ||
		completion.ContextFiles[0]["file_name"] != "sole.py" || completion.Contextual == nil || completion.Behavioral == nil ||
		len(completion.Generations) != 1 || len(completion.GroundTruth) != 1 || completion.GroundTruth[0]["ground_truth"] != "x = helper()" {
		t.Errorf("completion = %+v", completion)
	}
	if q, ok := seen[su.queries[1]]; !ok || q.QueryType != "chat" || len(q.Generations) != 1 {
		t.Errorf("chat query = %+v", q)
	}
	var otherQueries []uuid.UUID
	if err := e.srv.db.QueryRow(ctx, `SELECT array_agg(meta_query_id) FROM meta_query WHERE user_id = $1`, su.other).Scan(&otherQueries); err != nil {
		t.Fatal(err)
	}
	for _, id := range otherQueries {
		if _, ok := seen[id]; ok {
			t.Errorf("the other user's query %s was exported", id)
		}
	}

	// Chats with their messages.
	if len(doc.Chats) != 2 {
		t.Fatalf("chats = %v", doc.Chats)
	}
	for _, c := range doc.Chats {
		msgs, _ := c["messages"].([]any)
		if len(msgs) == 0 || msgs[0].(map[string]any)["content"] != "What does helper do?" {
			t.Errorf("chat %v messages = %v", c["chat_id"], msgs)
		}
	}

	// The route is account-scoped: a completions-only API key is refused.
	r = su.c.expect("POST", "/api/user/api-keys", map[string]any{"name": "ci", "scopes": []string{"completions"}}, 201)
	k := e.client()
	k.header["Authorization"] = "Bearer " + r.body["api_key"].(string)
	k.expect("GET", "/api/user/export", nil, 403)
	e.client().expect("GET", "/api/user/export", nil, 401)
}
