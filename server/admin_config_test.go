package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/hocon"
)

// exec runs SQL on the test database: fixtures the API cannot make (an
// admin, rows of recorded queries).
func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.srv.db.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// newAdmin signs up a user, makes it an admin in Postgres and returns its
// logged-in client and id.
func (e *env) newAdmin() (*client, string) {
	e.t.Helper()
	email := "admin-" + uuid.NewString()[:8] + "@example.com"
	id := e.signup(email)
	e.exec("UPDATE users SET is_admin = true WHERE user_id = $1", id)
	return e.loggedIn(email), id
}

// newMember is newAdmin for a user who is not an admin.
func (e *env) newMember() (*client, string) {
	e.t.Helper()
	email := "member-" + uuid.NewString()[:8] + "@example.com"
	id := e.signup(email)
	return e.loggedIn(email), id
}

func detail(r resp) string { s, _ := r.body["detail"].(string); return s }

// isAdmin reads users.is_admin.
func (e *env) isAdmin(id string) bool {
	e.t.Helper()
	var admin bool
	if err := e.srv.db.QueryRow(context.Background(), "SELECT is_admin FROM users WHERE user_id = $1", id).Scan(&admin); err != nil {
		e.t.Fatal(err)
	}
	return admin
}

// adminRoutes is one request per config administration route.
var adminRoutes = []struct {
	method, path string
	body         any
}{
	{"GET", "/api/config/", nil},
	{"POST", "/api/config/", map[string]any{"config_data": "a = 1"}},
	{"GET", "/api/config/1", nil},
	{"PUT", "/api/config/1", map[string]any{"config_data": "a = 1"}},
	{"DELETE", "/api/config/1", nil},
	{"GET", "/api/config/languages", nil},
	{"POST", "/api/config/languages", map[string]any{"language_name": "Zig"}},
	{"PUT", "/api/config/languages/82", map[string]any{"language_name": "Golang"}},
	{"DELETE", "/api/config/languages/82", nil},
	{"GET", "/api/config/models", nil},
	{"DELETE", "/api/config/models/1", nil},
	{"PUT", "/api/config/users/" + uuid.NewString() + "/admin", map[string]any{"is_admin": true}},
}

// TestConfigAdminGuard: anonymous callers get 401, signed-in users who are
// not admins 403 {"detail": "Admin privileges required"} on every route
// (and nothing changes), an API key needs the account scope, and an
// admin whose privileges are revoked loses access with the next request.
func TestConfigAdminGuard(t *testing.T) {
	e := newEnv(t, nil)
	member, _ := e.newMember()
	admin, _ := e.newAdmin()
	for _, rt := range adminRoutes {
		if r := e.client().expect(rt.method, rt.path, rt.body, 401); r.msg() != MsgInvalidOrExpiredAuth {
			t.Errorf("anonymous %s %s: %s", rt.method, rt.path, r.raw)
		}
		if r := member.expect(rt.method, rt.path, rt.body, 403); detail(r) != MsgAdminRequired {
			t.Errorf("member %s %s: %s", rt.method, rt.path, r.raw)
		}
	}
	// The member's refused writes changed nothing.
	langs := admin.expect("GET", "/api/config/languages", nil, 200)
	if id := langs.body["mapping"].(map[string]any)["Go"]; id != float64(82) {
		t.Errorf("Go = %v after refused writes, want 82", id)
	}
	admin.expect("GET", "/api/config/1", nil, 200)

	// API keys: the account scope is needed, and is_admin still applies.
	keyClient := func(owner *client, scope string) *client {
		r := owner.expect("POST", "/api/user/api-keys", map[string]any{"name": scope, "scopes": []string{scope}}, 201)
		c := e.client()
		c.header["Authorization"] = "Bearer " + r.body["api_key"].(string)
		return c
	}
	if r := keyClient(admin, "completions").expect("GET", "/api/config/", nil, 403); r.msg() != MsgAPIKeyNeedsAccount {
		t.Errorf("admin's completions key: %s", r.raw)
	}
	adminKey := keyClient(admin, "account")
	adminKey.expect("GET", "/api/config/", nil, 200)
	if r := keyClient(member, "account").expect("GET", "/api/config/", nil, 403); detail(r) != MsgAdminRequired {
		t.Errorf("member's account key: %s", r.raw)
	}

	// Revocation is read from Postgres on every request.
	other, otherID := e.newAdmin()
	other.expect("GET", "/api/config/models", nil, 200)
	admin.expect("PUT", "/api/config/users/"+otherID+"/admin", map[string]any{"is_admin": false}, 200)
	if r := other.expect("GET", "/api/config/models", nil, 403); detail(r) != MsgAdminRequired {
		t.Errorf("revoked admin: %s", r.raw)
	}
}

// TestConfigAdminConfigs covers the configs: list, read, create (JSON
// object or HOCON text, validated), update and delete, with their 404,
// 409 and 422 answers.
func TestConfigAdminConfigs(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()

	list := admin.expect("GET", "/api/config/", nil, 200)
	cfgs := list.body["configs"].([]any)
	if len(cfgs) == 0 {
		t.Fatalf("no configs: %s", list.raw)
	}
	seed := admin.expect("GET", "/api/config/1", nil, 200)
	seedText, ok := seed.body["config_data"].(string)
	if !ok || !strings.HasPrefix(seedText, "config {") {
		t.Fatalf("config 1 = %.200s, want the seeded HOCON text", seed.raw)
	}
	if err := hocon.Validate(seedText); err != nil {
		t.Fatalf("the seeded config does not validate: %v", err)
	}

	// A JSON object is answered parsed; HOCON text as given.
	r := admin.expect("POST", "/api/config/", map[string]any{"config_data": map[string]any{"models": map[string]any{"default": 2}}}, 201)
	jsonID := int64(r.body["config_id"].(float64))
	if m, ok := r.body["config_data"].(map[string]any); !ok || m["models"].(map[string]any)["default"] != float64(2) {
		t.Errorf("JSON config = %s", r.raw)
	}
	text := "config {\n  models.default = 3 # the chat model\n  name = \"trial arm\"\n}\n"
	r = admin.expect("POST", "/api/config/", map[string]any{"config_data": text}, 201)
	hoconID := int64(r.body["config_id"].(float64))
	if r.body["config_data"] != text {
		t.Errorf("HOCON config = %s", r.raw)
	}
	if got := admin.expect("GET", fmt.Sprintf("/api/config/%d", hoconID), nil, 200); got.body["config_data"] != text {
		t.Errorf("GET HOCON config = %s", got.raw)
	}

	// Text that does not parse is a 422 that says where, and nothing is stored.
	r = admin.expect("POST", "/api/config/", map[string]any{"config_data": "config {\n  a = [1, 2\n}\n"}, 422)
	if !strings.Contains(string(r.raw), "config_data is not valid HOCON: line 3, column 1") {
		t.Errorf("invalid HOCON: %s", r.raw)
	}
	for _, bad := range []any{"", 5, []any{1}, nil} {
		r = admin.expect("POST", "/api/config/", map[string]any{"config_data": bad}, 422)
		if !strings.Contains(string(r.raw), `"config_data"`) {
			t.Errorf("config_data %v: %s", bad, r.raw)
		}
	}
	admin.expect("POST", "/api/config/", map[string]any{}, 422)
	if n := len(admin.expect("GET", "/api/config/", nil, 200).body["configs"].([]any)); n != len(cfgs)+2 {
		t.Errorf("%d configs, want %d", n, len(cfgs)+2)
	}
	if r := admin.expect("GET", "/api/config/abc", nil, 422); !strings.Contains(string(r.raw), "int_parsing") {
		t.Errorf("GET /api/config/abc: %s", r.raw)
	}

	// Update.
	r = admin.expect("PUT", fmt.Sprintf("/api/config/%d", hoconID), map[string]any{"config_data": "a = 2"}, 200)
	if r.body["config_data"] != "a = 2" || int64(r.body["config_id"].(float64)) != hoconID {
		t.Errorf("update = %s", r.raw)
	}
	if got := admin.expect("GET", fmt.Sprintf("/api/config/%d", hoconID), nil, 200); got.body["config_data"] != "a = 2" {
		t.Errorf("after update: %s", got.raw)
	}
	admin.expect("PUT", fmt.Sprintf("/api/config/%d", hoconID), map[string]any{"config_data": "a = "}, 422)
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		var body any
		if m == "PUT" {
			body = map[string]any{"config_data": "a = 1"}
		}
		if r := admin.expect(m, "/api/config/999999999", body, 404); detail(r) != MsgAdminConfigNotFound {
			t.Errorf("%s missing config: %s", m, r.raw)
		}
	}

	// Delete: refused while a user, a study arm or a recorded query uses the
	// config, with what uses it; then allowed.
	member, memberID := e.newMember()
	_ = member
	e.exec("UPDATE users SET config_id = $1 WHERE user_id = $2", hoconID, memberID)
	var studyID string
	if err := e.srv.db.QueryRow(context.Background(),
		"INSERT INTO study (name, starts_at) VALUES ('trial', now()) RETURNING study_id").Scan(&studyID); err != nil {
		t.Fatal(err)
	}
	e.exec("INSERT INTO study_arm (study_id, name, config_id) VALUES ($1, 'arm', $2)", studyID, hoconID)
	e.exec("INSERT INTO meta_query (query_type, config_id, server_version) VALUES ('completion', $1, 'test')", hoconID)
	path := fmt.Sprintf("/api/config/%d", hoconID)
	r = admin.expect("DELETE", path, nil, 409)
	want := fmt.Sprintf("Config %d is still used by 1 user, 1 study arm, 1 recorded query;", hoconID)
	if !strings.HasPrefix(detail(r), want) {
		t.Errorf("delete of a used config: %s, want detail starting %q", r.raw, want)
	}
	e.exec("UPDATE users SET config_id = 1 WHERE user_id = $1", memberID)
	e.exec("DELETE FROM study_arm WHERE study_id = $1", studyID)
	r = admin.expect("DELETE", path, nil, 409)
	if want := fmt.Sprintf("Config %d is still used by 1 recorded query;", hoconID); !strings.HasPrefix(detail(r), want) {
		t.Errorf("delete of a config used by a query: %s", r.raw)
	}
	admin.expect("GET", path, nil, 200)
	e.exec("DELETE FROM meta_query WHERE config_id = $1", hoconID)
	r = admin.expect("DELETE", path, nil, 200)
	if r.body["deleted"] != true || int64(r.body["config_id"].(float64)) != hoconID {
		t.Errorf("delete = %s", r.raw)
	}
	admin.expect("GET", path, nil, 404)
	admin.expect("DELETE", path, nil, 404)
	admin.expect("DELETE", fmt.Sprintf("/api/config/%d", jsonID), nil, 200)
}

// TestConfigAdminLanguagesAndModels: /api/config/languages and
// /api/config/models answer their lists (they are not taken for a config
// id), and languages and models are edited with 404 and 409 answers.
func TestConfigAdminLanguagesAndModels(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()

	r := admin.expect("GET", "/api/config/languages", nil, 200)
	langs := r.body["languages"].([]any)
	mapping := r.body["mapping"].(map[string]any)
	if len(langs) < 179 || len(mapping) != len(langs) || mapping["Go"] != float64(82) || mapping["Python"] != float64(47) {
		t.Fatalf("languages: %d, mapping %d, Go %v, Python %v", len(langs), len(mapping), mapping["Go"], mapping["Python"])
	}
	if first := langs[0].(map[string]any); first["language_id"] != float64(1) || first["language_name"] != "Oracle NetSuite" {
		t.Errorf("first language = %v", first)
	}

	name := "Zig-" + uuid.NewString()[:8]
	r = admin.expect("POST", "/api/config/languages", map[string]any{"language_name": name}, 201)
	id := int64(r.body["language_id"].(float64))
	if r.body["language_name"] != name || id <= 179 {
		t.Errorf("create language = %s", r.raw)
	}
	if r := admin.expect("POST", "/api/config/languages", map[string]any{"language_name": name}, 409); !strings.Contains(detail(r), "already exists") {
		t.Errorf("duplicate language: %s", r.raw)
	}
	admin.expect("POST", "/api/config/languages", map[string]any{"language_name": ""}, 422)
	path := fmt.Sprintf("/api/config/languages/%d", id)
	r = admin.expect("PUT", path, map[string]any{"language_name": name + "-lang"}, 200)
	if r.body["language_name"] != name+"-lang" {
		t.Errorf("rename = %s", r.raw)
	}
	admin.expect("PUT", path, map[string]any{"language_name": "Go"}, 409)
	if r := admin.expect("PUT", "/api/config/languages/999999999", map[string]any{"language_name": "x"}, 404); detail(r) != MsgLanguageNotFound {
		t.Errorf("rename missing: %s", r.raw)
	}
	admin.expect("PUT", "/api/config/languages/zig", map[string]any{"language_name": "x"}, 422)

	// Telemetry that names the language keeps it.
	var mq string
	if err := e.srv.db.QueryRow(context.Background(),
		"INSERT INTO meta_query (query_type, config_id, server_version) VALUES ('completion', 1, 'test') RETURNING meta_query_id").Scan(&mq); err != nil {
		t.Fatal(err)
	}
	e.exec("INSERT INTO contextual_telemetry (meta_query_id, version_id, trigger_type_id, language_id) VALUES ($1, 1, 1, $2)", mq, id)
	if r := admin.expect("DELETE", path, nil, 409); !strings.Contains(detail(r), "telemetry") {
		t.Errorf("delete of a used language: %s", r.raw)
	}
	e.exec("DELETE FROM contextual_telemetry WHERE meta_query_id = $1", mq)
	if r := admin.expect("DELETE", path, nil, 200); r.body["deleted"] != true {
		t.Errorf("delete language = %s", r.raw)
	}
	admin.expect("DELETE", path, nil, 404)
	if _, ok := admin.expect("GET", "/api/config/languages", nil, 200).body["mapping"].(map[string]any)[name+"-lang"]; ok {
		t.Error("deleted language still listed")
	}

	// Models: a registered model that is not loaded can be deleted once no
	// generation refers to it.
	var modelID int64
	if err := e.srv.db.QueryRow(context.Background(),
		"INSERT INTO model (name, family, file_sha256) VALUES ('old-model', 'none', $1) RETURNING model_id",
		strings.Repeat("ab", 32)).Scan(&modelID); err != nil {
		t.Fatal(err)
	}
	r = admin.expect("GET", "/api/config/models", nil, 200)
	found := false
	for _, m := range r.body["models"].([]any) {
		m := m.(map[string]any)
		if m["model_id"] == float64(modelID) {
			found = m["model_name"] == "old-model" && m["loaded"] == false
		}
	}
	if !found {
		t.Errorf("model %d not listed as unloaded old-model: %s", modelID, r.raw)
	}
	e.exec("INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms) VALUES ($1, $2, 'x', 1)", mq, modelID)
	mpath := fmt.Sprintf("/api/config/models/%d", modelID)
	if r := admin.expect("DELETE", mpath, nil, 409); !strings.Contains(detail(r), "generations") {
		t.Errorf("delete of a used model: %s", r.raw)
	}
	e.exec("DELETE FROM generation WHERE model_id = $1", modelID)
	admin.expect("DELETE", mpath, nil, 200)
	if r := admin.expect("DELETE", mpath, nil, 404); detail(r) != MsgModelNotFound {
		t.Errorf("delete missing model: %s", r.raw)
	}
}

// TestIsAdminOnlyByAdmin: no route lets a user make themselves an admin;
// an admin grants and revokes, but not their own.
func TestIsAdminOnlyByAdmin(t *testing.T) {
	e := newEnv(t, nil)
	admin, adminID := e.newAdmin()

	email := "climber-" + uuid.NewString()[:8] + "@example.com"
	e.client().expect("POST", "/api/user/create", map[string]any{"email": email, "name": "Climber", "password": testPassword,
		"config_id": 1, "is_admin": true}, 201)
	member := e.loggedIn(email)
	me := member.expect("GET", "/api/user/get", nil, 200).body["user"].(map[string]any)
	memberID := me["user_id"].(string)
	if me["is_admin"] != false || e.isAdmin(memberID) {
		t.Fatal("sign-up made an admin")
	}
	member.do("PUT", "/api/user/update", map[string]any{"is_admin": true, "name": "Climber Two"})
	member.expect("PUT", "/api/config/users/"+memberID+"/admin", map[string]any{"is_admin": true}, 403)
	if e.isAdmin(memberID) {
		t.Fatal("a member made themselves an admin")
	}
	member.expect("GET", "/api/config/", nil, 403)

	// An admin grants and revokes.
	r := admin.expect("PUT", "/api/config/users/"+memberID+"/admin", map[string]any{"is_admin": true}, 200)
	if r.body["is_admin"] != true || r.body["user_id"] != memberID || !e.isAdmin(memberID) {
		t.Fatalf("grant = %s", r.raw)
	}
	member.expect("GET", "/api/config/", nil, 200)
	member.expect("PUT", "/api/config/users/"+adminID+"/admin", map[string]any{"is_admin": false}, 200)
	admin.expect("GET", "/api/config/", nil, 403)
	if r := member.expect("PUT", "/api/config/users/"+memberID+"/admin", map[string]any{"is_admin": false}, 409); detail(r) != MsgRevokeOwnAdmin {
		t.Errorf("revoking one's own: %s", r.raw)
	}
	if !e.isAdmin(memberID) {
		t.Error("self-revocation went through")
	}
	if r := member.expect("PUT", "/api/config/users/"+uuid.NewString()+"/admin", map[string]any{"is_admin": true}, 404); detail(r) != MsgUserNotFound {
		t.Errorf("unknown user: %s", r.raw)
	}
	member.expect("PUT", "/api/config/users/nobody/admin", map[string]any{"is_admin": true}, 422)
	member.expect("PUT", "/api/config/users/"+adminID+"/admin", map[string]any{}, 422)
}

// TestConfigModelsEngineState: GET /api/config/models shows a model the
// server's engine has loaded with its slots, the busy ones while a
// request runs, its weights' bytes and KV cells; a model it has not
// loaded has them null.
func TestConfigModelsEngineState(t *testing.T) {
	e := newPluginEnv(t, nil)
	admin, _ := e.newAdmin()
	var old int64
	if err := e.srv.db.QueryRow(context.Background(), "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'none', $2) RETURNING model_id",
		"unloaded-"+uuid.NewString()[:8], strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")[:64]).Scan(&old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.exec("DELETE FROM model WHERE model_id = $1", old) })
	byID := func() map[float64]map[string]any {
		out := map[float64]map[string]any{}
		for _, m := range asList(admin.expect("GET", "/api/config/models", nil, 200).body["models"]) {
			out[m["model_id"].(float64)] = m
		}
		return out
	}
	slow := float64(e.ids["slow-coder"])
	ms := byID()
	m := ms[float64(e.ids["tiny-coder"])]
	if m["loaded"] != true || m["slots"] != float64(testSched.NParallel) || m["kv_cells"] != float64(testSched.NCtx) ||
		m["weights_bytes"] == nil || m["weights_bytes"].(float64) <= 0 || m["queue_len"] == nil || m["slots_busy"] == nil {
		t.Errorf("loaded model = %v", m)
	}
	u := ms[float64(old)]
	for _, k := range []string{"slots", "slots_busy", "queue_len", "weights_bytes", "kv_cells"} {
		if v, ok := u[k]; !ok || v != nil {
			t.Errorf("unloaded model's %s = %v (present %v), want null", k, v, ok)
		}
	}

	// A request runs on slow-coder (400 ms a token) until cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.srv.plugin.engine.Complete(ctx, "slow-coder", engine.Request{Prefix: "z = ", MaxTokens: 64})
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for byID()[slow]["slots_busy"] != float64(1) {
		if time.Now().After(deadline) {
			t.Fatalf("slow-coder never showed a busy slot: %v", byID()[slow])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
