package server

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/models"
)

// The access-control matrix: every route the app registers, sent a real
// request by each of nine principals, answers exactly the status its
// declared guard implies. The expectations come from the route's apiOp
// row (openapi.go): its auth class, the API key scope it needs, whether it
// is an admin route (its 403 is adminErrors'), and its documented answer to
// another user's resource. A route without a row, or whose expectation
// cannot be derived, fails the test with a message saying what to add.
// `go generate ./server/` writes the measured table into docs/security.md
// (TestAccessMatrix -update-access-matrix); the test fails while the
// document is stale.

//go:generate sh -c "eval \"$DOLLAR(make -s -C .. cgo-flags)\" && go test -run '^TestAccessMatrix$' -count=1 . -args -update-access-matrix"

var updateAccessMatrix = flag.Bool("update-access-matrix", false, "rewrite the access matrix in docs/security.md")

// The principals, in the matrix's column order.
const (
	pAnonymous = iota
	pUserA
	pUserB
	pMember
	pAdmin
	pDeleted
	pExpired
	pRevokedKey
	pKeyNoScope
	nPrincipals
)

var principalNames = [nPrincipals]string{"anonymous", "user A", "user B", "member of A's project", "admin",
	"deleted user", "expired session", "revoked API key", "API key without scope"}

// accessOverride replaces what the matrix derives for one route, for the
// few routes whose answer differs from their guard's rule.
type accessOverride struct {
	ok  int    // the status of a principal the guard admits, when it is not the row's OK
	why string // one line: why
}

// accessOverrides are the routes whose admitted principals do not get the
// row's success status with the matrix's request.
// None today: every route's admitted callers get its success.
var accessOverrides = map[string]accessOverride{}

// matrixReq is the request one cell sends.
type matrixReq struct {
	path string
	body any
	// owned says the request names a resource of user A ("user": a query,
	// chat, API key, export or next-edit suggestion) or of A's project
	// ("project"): user B and the admin get the route's answer to another
	// user's resource, and so does the member for a user's resource.
	owned string
	// consumes: a request that succeeds ends its caller's credentials
	// (logout, account deletion), so each admitted principal sends it
	// with credentials of its own, made for the cell.
	consumes bool
	// ws is the client frame a WebSocket route is sent once connected.
	ws map[string]any
	// after, when set, runs once the cell is answered.
	after func()
	// missing: the path names an admin resource of which the server has
	// no row, so the admin gets the route's 404.
	missing bool
}

// matrixWorld is the server, the principals and user A's resources.
type matrixWorld struct {
	t    *testing.T
	e    *pluginEnv
	addr string // a real listener, for the WebSocket routes

	principals [nPrincipals]*client
	// noScope are A's keys by the scope they lack, and the admin's under
	// "admin " and the scope: an admin route is sent the admin's key, so
	// that its scope check is what refuses it.
	noScope map[string]string

	emailA      string
	userA       uuid.UUID
	projectA    uuid.UUID
	queryA      string
	chatA       string
	exportA     string
	suggestionA string    // a next-edit suggestion
	throwaway   uuid.UUID // the user of verification and reset tokens, and of the admin grant
	throwEmail  string
	configID    string
	languageID  string
	studyID     string
	evalRunID   string
	adminMu     sync.Mutex
	adminIDs    map[string]string // adminID's answers by resource, "" for none; under adminMu
}

// TestAccessMatrix sends every route a request from each principal and
// checks the exact status against the route's declared guard.
func TestAccessMatrix(t *testing.T) {
	w := newMatrixWorld(t)
	e := w.e

	ops := map[string]apiOp{}
	for _, op := range openAPIOps {
		ops[op.Method+" "+op.Path] = op
	}
	routes := matrixRoutes(e.srv)
	if len(routes) < 60 {
		t.Fatalf("only %d routes registered", len(routes))
	}

	// Routes run four at a time, each route's cells in column order; the
	// study status changes run alone afterwards, since one study runs at a
	// time and a running study changes how completions are served.
	rows := make([]string, len(routes))
	missing := make([]bool, len(routes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	var serial []int
	for i, rt := range routes {
		if rt.method == "POST" && strings.HasPrefix(rt.path, "/api/analytics/studies/{study_id}/") {
			serial = append(serial, i)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rows[i], missing[i] = w.runRoute(ops, rt)
		}()
	}
	wg.Wait()
	for _, i := range serial {
		rows[i], missing[i] = w.runRoute(ops, routes[i])
	}
	var missingKeys []string
	for i, m := range missing {
		if m {
			missingKeys = append(missingKeys, routes[i].method+" "+routes[i].path)
		}
	}
	w.checkPrincipalsLive()
	if t.Failed() {
		return
	}
	writeOrCheckMatrixDoc(t, rows, missingKeys)
}

// runRoute sends rt a request from each principal, checks each status and
// returns the route's table row, and whether its path names an admin
// resource of which the server has no row.
func (w *matrixWorld) runRoute(ops map[string]apiOp, rt matrixRoute) (string, bool) {
	t := w.t
	opKey := rt.method + " " + rt.docPath
	if rt.mount {
		opKey = "GET " + rt.docPath // the mount point's row describes every method under it
	}
	op, ok := ops[opKey]
	if !ok {
		t.Errorf("%s %s has no apiOp row (openapi.go), so its access cannot be derived: add its row", rt.method, rt.path)
		return "", false
	}
	key := rt.method + " " + rt.path
	sample := w.request(rt, op, pUserB)
	cells := make([]string, nPrincipals)
	for who := range nPrincipals {
		want, err := expectedStatus(op, key, sample, who)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			cells[who] = "?"
			continue
		}
		req := sample
		if !refused(op, who) {
			req = w.request(rt, op, who) // resources of its own, where the cell may use them up
		}
		got := w.send(rt, op, req, who)
		cells[who] = fmt.Sprint(got)
		if got != want {
			t.Errorf("%s as %s = %d, want %d%s", key, principalNames[who], got, want, hint(op, who, want))
		}
	}
	return "| `" + key + "` | " + strings.Join(cells, " | ") + " |", sample.missing
}

// hint says where an unexpected status of an admitted principal comes from.
func hint(op apiOp, who, want int) string {
	switch want {
	case 401, 403:
		return ""
	}
	if who == pAnonymous && op.Auth == ClassNone || who == pUserA {
		return " (the route's success: give it a valid request in matrixFixtures, or an accessOverrides entry with the reason)"
	}
	return ""
}

// expectedStatus derives the status of who on op from its declared guard.
// sample is the cell's request, whose owned field says whether it names
// A's resources.
func expectedStatus(op apiOp, key string, sample matrixReq, who int) (int, error) {
	ok := op.OK
	if op.WS != nil {
		ok = 200 // the status of the request frame sent on the socket
	}
	if o, found := accessOverrides[key]; found && o.ok != 0 {
		ok = o.ok
	}
	if ok == 0 {
		return 0, fmt.Errorf("its row declares no success status (OK)")
	}
	if op.Auth == ClassNone {
		return ok, nil
	}
	switch who {
	case pAnonymous, pDeleted, pExpired, pRevokedKey:
		return 401, nil
	case pKeyNoScope:
		return 403, nil
	}
	if isAdminOp(op) {
		if who != pAdmin {
			return 403, nil
		}
		if sample.missing {
			if op.Errors[404] == "" {
				return 0, fmt.Errorf("it names a resource the test server has none of, and its row documents no 404")
			}
			return 404, nil
		}
		return ok, nil
	}
	foreign := sample.owned == "user" && who != pUserA || sample.owned == "project" && (who == pUserB || who == pAdmin)
	if !foreign {
		return ok, nil
	}
	return foreignStatus(op, sample.owned)
}

// refused reports whether op's guard refuses who before the handler runs.
func refused(op apiOp, who int) bool {
	if op.Auth == ClassNone {
		return false
	}
	switch who {
	case pAnonymous, pDeleted, pExpired, pRevokedKey, pKeyNoScope:
		return true
	}
	return isAdminOp(op) && who != pAdmin
}

// isAdminOp reports whether op's row declares the admin check: its 403 is
// adminErrors'.
func isAdminOp(op apiOp) bool { return strings.Contains(op.Errors[403], MsgAdminRequired) }

// foreignStatus is op's documented answer to a caller who names a resource
// of another user (owned "user") or of a project they are not a member of
// ("project").
func foreignStatus(op apiOp, owned string) (int, error) {
	if owned == "project" {
		if strings.Contains(op.Errors[401], "not a member") {
			return 401, nil
		}
		return 0, fmt.Errorf("it names a project but its row documents no answer for non-members (a 401 saying \"not a member\")")
	}
	if strings.Contains(op.Errors[403], "another user's") {
		return 403, nil
	}
	if op.Errors[404] != "" {
		return 404, nil
	}
	return 0, fmt.Errorf("it names another user's resource but its row documents neither a 403 \"another user's\" nor a 404")
}

// matrixRoute is a registered route: Fiber's path and OpenAPI's.
type matrixRoute struct {
	method, path, docPath string
	mount                 bool // a wildcard handing paths to an embedded app
}

// matrixRoutes lists the app's routes, without the HEAD twins of GET
// routes; a wildcard route is probed at a path under it and described by
// its mount point's row.
func matrixRoutes(s *Server) []matrixRoute {
	gets := map[string]bool{}
	all := s.App().GetRoutes(true)
	for _, r := range all {
		if r.Method == "GET" {
			gets[r.Path] = true
		}
	}
	seen := map[string]bool{}
	var out []matrixRoute
	for _, r := range all {
		if strings.HasPrefix(r.Path, "/test/") || r.Method == "HEAD" && gets[r.Path] || seen[r.Method+" "+r.Path] {
			continue
		}
		seen[r.Method+" "+r.Path] = true
		rt := matrixRoute{method: r.Method, path: openAPIPath(r.Path), docPath: openAPIPath(r.Path)}
		if mount, ok := strings.CutSuffix(rt.path, "/*"); ok {
			rt.docPath, rt.mount = mount, true
		}
		out = append(out, rt)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].path != out[j].path {
			return out[i].path < out[j].path
		}
		return out[i].method < out[j].method
	})
	return out
}

// newMatrixWorld starts the server and makes the principals and user A's
// resources through the API.
func newMatrixWorld(t *testing.T) *matrixWorld {
	e := newPluginEnv(t, func(c *config.Config) {
		// Short answers: the matrix checks who is answered, not what.
		c.CompletionMaxTokens, c.ChatMaxTokens = 4, 4
		// An evaluation repo without source files: a run is queued (202)
		// and fails at once, without using a model.
		if err := os.MkdirAll(filepath.Join(c.DataDir, "eval", "empty"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	w := &matrixWorld{t: t, e: e, addr: e.listen(), noScope: map[string]string{}, adminIDs: map[string]string{}}
	ctx := context.Background()

	// User A: a login, its session and a project, a completion query, a
	// chat, a next-edit suggestion and a finished export.
	w.emailA = "matrix-a-" + uuid.NewString()[:8] + "@example.com"
	w.userA = uuid.MustParse(e.signup(w.emailA))
	a := e.loggedIn(w.emailA)
	w.projectA = uuid.MustParse(a.expect("POST", "/api/project/create", map[string]any{"project_name": "a"}, 201).body["project_id"].(string))
	r := a.expect("POST", "/api/completion/request", completionBody([]int64{e.ids["tiny-coder"]}, "def f():\n    ", "\n"), 200)
	w.queryA = r.body["data"].(map[string]any)["meta_query_id"].(string)
	w.chatA = uuid.NewString()
	a.expect("POST", "/api/chat/request", chatBody([]int64{e.ids["tiny-instruct"]}, w.chatA, [2]string{"user", "hi"}), 200)
	w.suggestionA = a.expect("POST", "/v1/next-edit", nextEditBody(""), 200).body["id"].(string)
	w.exportA = a.expect("GET", "/api/user/export?async=true", nil, 202).body["export_id"].(string)
	w.awaitExport(a)
	w.principals[pUserA] = a

	// A's API keys: one of each scope, for the routes needing the other,
	// and one with both that is revoked after it made a project.
	keys := map[string]string{}
	for _, scope := range []string{"completions", "account"} {
		keys[scope] = a.expect("POST", "/api/user/api-keys", map[string]any{"name": scope, "scopes": []string{scope}}, 201).body["api_key"].(string)
	}
	w.noScope["account"], w.noScope["completions"] = keys["completions"], keys["account"]
	w.principals[pKeyNoScope] = e.client()
	r = a.expect("POST", "/api/user/api-keys", map[string]any{"name": "revoked", "scopes": []string{"completions", "account"}}, 201)
	revoked := e.client()
	revoked.header["Authorization"] = "Bearer " + r.body["api_key"].(string)
	revoked.expect("GET", "/api/session/acquire", nil, 200)
	revoked.header[headerProject] = revoked.expect("POST", "/api/project/create", map[string]any{"project_name": "k"}, 201).body["project_token"].(string)
	a.expect("DELETE", "/api/user/api-keys/"+r.body["key"].(map[string]any)["api_key_id"].(string), nil, 200)
	w.principals[pRevokedKey] = revoked

	w.principals[pAnonymous] = e.client()
	w.principals[pUserB] = w.newUser("b", false)
	w.principals[pMember] = w.newMember()
	w.principals[pAdmin] = w.newUser("admin", true)
	for _, scope := range []string{"completions", "account"} {
		r := w.principals[pAdmin].expect("POST", "/api/user/api-keys", map[string]any{"name": scope, "scopes": []string{scope}}, 201)
		w.noScope["admin "+otherScope(scope)] = r.body["api_key"].(string)
	}

	// Deleted: its cookies, kept after it deleted its account.
	deleted := w.newUser("deleted", false)
	w.clone(deleted).expect("DELETE", "/api/user/delete", nil, 200)
	w.principals[pDeleted] = deleted

	// Expired: Redis lets its login, session and project tokens reach
	// their end of life (TTL), as they do when unused.
	expired := w.newUser("expired", false)
	keysOf := []string{"auth_token:" + expired.cookies[cookieAuth], "session_token:" + expired.cookies[cookieSession],
		"project_token:" + expired.cookies[cookieProject]}
	for _, k := range keysOf {
		if ok, err := e.srv.rdb.PExpire(ctx, k, time.Millisecond).Result(); err != nil || !ok {
			t.Fatalf("expire %s: %v %v", k, ok, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, err := e.srv.rdb.Exists(ctx, keysOf...).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tokens have not expired", n)
		}
	}
	w.principals[pExpired] = expired

	// Resources of the admin routes, and a user they act on.
	admin := w.principals[pAdmin]
	w.throwEmail = "matrix-t-" + uuid.NewString()[:8] + "@example.com"
	w.throwaway = uuid.MustParse(e.signup(w.throwEmail))
	w.configID = w.newConfig()
	w.languageID = w.newLanguage()
	w.studyID = w.newStudy()
	r = admin.expect("POST", "/api/eval/runs", map[string]any{"repo": "empty", "model_id": e.ids["tiny-coder"], "tasks": 1}, 202)
	w.evalRunID = fmt.Sprint(int64(r.body["eval_run_id"].(float64)))
	return w
}

// awaitExport waits for A's export job to finish: until then its route
// answers 202.
func (w *matrixWorld) awaitExport(a *client) {
	for deadline := time.Now().Add(time.Minute); ; {
		r := a.do("GET", "/api/user/export/"+w.exportA, nil)
		if r.status == 200 {
			return
		}
		if r.status != 202 || time.Now().After(deadline) {
			w.t.Fatalf("export = %d %.200s", r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond) // the job runs in River; nothing to await but the route
	}
}

// newUser signs up a user with a login, its session and a project of its
// own; an admin when admin is set.
func (w *matrixWorld) newUser(name string, admin bool) *client {
	email := "matrix-" + name + "-" + uuid.NewString()[:8] + "@example.com"
	id := w.e.signup(email)
	if admin {
		w.e.exec("UPDATE users SET is_admin = true WHERE user_id = $1", id)
	}
	c := w.e.loggedIn(email)
	c.expect("POST", "/api/project/create", map[string]any{"project_name": name}, 201)
	return c
}

// newMember makes a member of A's project. No route adds a member to a
// project: the row is added with the server's own query (role "member"),
// and the member activates the project through the API.
func (w *matrixWorld) newMember() *client {
	email := "matrix-member-" + uuid.NewString()[:8] + "@example.com"
	id := uuid.MustParse(w.e.signup(email))
	if err := w.e.srv.q.ProjectMemberAdd(context.Background(), w.e.srv.db,
		models.ProjectMemberAddParams{ProjectID: w.projectA, UserID: id, Role: "member"}); err != nil {
		w.t.Fatal(err)
	}
	c := w.e.loggedIn(email)
	c.expect("PUT", "/api/project/activate", map[string]any{"project_id": w.projectA}, 200)
	return c
}

// fresh returns credentials for who that a consuming request may end.
func (w *matrixWorld) fresh(who int) *client {
	switch who {
	case pUserA:
		return w.newUser("a2", false)
	case pUserB:
		return w.newUser("b2", false)
	case pMember:
		return w.newMember()
	case pAdmin:
		return w.newUser("admin2", true)
	}
	return w.principals[who] // refused before the handler runs
}

// clone copies a principal's credentials, so a cell's answer (a cookie it
// sets or clears) leaves the principal as it was.
func (w *matrixWorld) clone(c *client) *client {
	n := w.e.client()
	for k, v := range c.cookies {
		n.cookies[k] = v
	}
	for k, v := range c.header {
		n.header[k] = v
	}
	return n
}

func (w *matrixWorld) newConfig() string {
	r := w.principals[pAdmin].expect("POST", "/api/config/", map[string]any{"config_data": map[string]any{"matrix": true}}, 201)
	return fmt.Sprint(int64(r.body["config_id"].(float64)))
}

func (w *matrixWorld) newLanguage() string {
	r := w.principals[pAdmin].expect("POST", "/api/config/languages", map[string]any{"language_name": "matrix-" + uuid.NewString()[:8]}, 201)
	return fmt.Sprint(int64(r.body["language_id"].(float64)))
}

func (w *matrixWorld) newStudy() string {
	r := w.principals[pAdmin].expect("POST", "/api/analytics/studies/create", map[string]any{"name": "matrix",
		"arms": []any{map[string]any{"name": "a", "config_id": 1}}}, 201)
	return r.body["study_id"].(string)
}

// newChat is a chat of A's in A's project, for a cell that deletes it.
func (w *matrixWorld) newChat() string {
	id := uuid.NewString()
	w.e.exec("INSERT INTO chat (chat_id, project_id, user_id, title) VALUES ($1, $2, $3, 'matrix')", id, w.projectA, w.userA)
	return id
}

// newModel registers a model no generation uses, for a cell that deletes
// it. Models are registered when the server loads their files; none is
// loaded from this row.
func (w *matrixWorld) newModel() string {
	var id int64
	if err := w.e.srv.db.QueryRow(context.Background(), "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
		"matrix-"+uuid.NewString()[:8], strings.Repeat(strings.ReplaceAll(uuid.NewString(), "-", ""), 2)).Scan(&id); err != nil {
		w.t.Fatal(err)
	}
	return fmt.Sprint(id)
}

func (w *matrixWorld) newKeyA() string {
	r := w.principals[pUserA].expect("POST", "/api/user/api-keys", map[string]any{"name": "matrix"}, 201)
	return r.body["key"].(map[string]any)["api_key_id"].(string)
}

// runningStudy is a new study, started.
func (w *matrixWorld) runningStudy() string {
	id := w.newStudy()
	w.principals[pAdmin].expect("POST", "/api/analytics/studies/"+id+"/start", nil, 200)
	return id
}

// fill puts values into a path's parameters: A's resources, fresh ones
// for a DELETE, which removes them. owned is as matrixReq's; missing says
// the path names an admin resource of which the server has none.
func (w *matrixWorld) fill(method, path string) (out, owned string, missing bool) {
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		if !strings.HasPrefix(seg, "{") {
			continue
		}
		del := method == "DELETE"
		v := ""
		switch name := strings.Trim(seg, "{}"); {
		case name == "query_id":
			owned, v = "user", w.queryA
		case name == "chat_id" && del:
			owned, v = "user", w.newChat()
		case name == "chat_id":
			owned, v = "user", w.chatA
		case name == "id" && segs[i-1] == "api-keys":
			owned, v = "user", w.newKeyA()
		case name == "id" && strings.HasPrefix(path, "/api/admin/"):
			var ok bool
			v, ok = w.adminID(segs[i-1], del)
			missing = missing || !ok
		case name == "export_id":
			owned, v = "user", w.exportA
		case name == "page_number":
			v = "1"
		case name == "config_id" && del:
			v = w.newConfig()
		case name == "config_id":
			v = w.configID
		case name == "language_id" && del:
			v = w.newLanguage()
		case name == "language_id":
			v = w.languageID
		case name == "model_id":
			v = w.newModel()
		case name == "user_id":
			v = w.throwaway.String()
		case name == "study_id":
			v = w.studyID
		case name == "eval_run_id":
			v = w.evalRunID
		default:
			w.t.Fatalf("%s %s: the matrix cannot fill the path parameter %s: add it to matrixWorld.fill", method, path, seg)
		}
		segs[i] = v
	}
	return strings.Join(segs, "/"), owned, missing
}

// adminID is the id of a row of an admin API resource for a cell to act
// on: a fresh user for a deletion, a job of its own (River's client
// changes it), the world's rows of the resources it has, else the first
// listed row whose id the resource's GET answers. ok is false when the
// server has no row of the resource.
func (w *matrixWorld) adminID(resource string, del bool) (id string, ok bool) {
	switch {
	case resource == "users" && del:
		return w.e.signup("matrix-gone-" + uuid.NewString()[:8] + "@example.com"), true
	case resource == "users":
		return w.throwaway.String(), true
	case resource == "jobs":
		// In a queue no server works, so it stays as the cell leaves it.
		return fmt.Sprint(w.e.seedJob("matrix", "matrix", "discarded", 60, secs(50), secs(40))), true
	// Rows no cell deletes (other cells delete fresh configs and models).
	case resource == "projects":
		return w.projectA.String(), true
	case resource == "queries":
		return w.queryA, true
	case resource == "studies":
		return w.studyID, true
	case resource == "configs":
		return w.configID, true
	case resource == "models":
		return fmt.Sprint(w.e.ids["tiny-coder"]), true
	}
	w.adminMu.Lock()
	defer w.adminMu.Unlock()
	if id, ok := w.adminIDs[resource]; ok && id != "" {
		return id, true
	} else if ok {
		return uuid.NewString(), false
	}
	admin := w.principals[pAdmin]
	base := "/api/admin/" + resource
	for _, item := range asList(admin.expect("GET", base+"?limit=5", nil, 200).body["items"]) {
		keys := make([]string, 0, len(item))
		for k := range item {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var v string
			switch x := item[k].(type) {
			case string:
				v = x
			case float64:
				v = fmt.Sprint(int64(x))
			default:
				continue
			}
			if v != "" && !strings.ContainsAny(v, "/?# ") && admin.do("GET", base+"/"+url.PathEscape(v), nil).status == 200 {
				w.adminIDs[resource] = v
				return v, true
			}
		}
	}
	w.adminIDs[resource] = ""
	return uuid.NewString(), false
}

// matrixFixtures are the requests of the routes whose valid request the
// row's fields do not make; the others get genericBody's.
var matrixFixtures = map[string]func(w *matrixWorld, who int) matrixReq{
	"POST /api/user/create": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: map[string]any{"email": "matrix-new-" + uuid.NewString()[:8] + "@example.com", "name": "New",
			"password": testPassword, "config_id": 1}}
	},
	"POST /api/user/authenticate": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: map[string]any{"email": w.emailA, "password": testPassword}}
	},
	"PUT /api/user/update":         func(*matrixWorld, int) matrixReq { return matrixReq{body: map[string]any{"name": "Renamed"}} },
	"DELETE /api/user/delete":      func(*matrixWorld, int) matrixReq { return matrixReq{consumes: true} },
	"PUT /api/session/deactivate/": func(*matrixWorld, int) matrixReq { return matrixReq{consumes: true} },
	"GET /api/user/verify/": func(w *matrixWorld, _ int) matrixReq {
		tok, err := w.e.srv.tokens.IssueVerification(context.Background(), w.throwaway, w.throwEmail)
		if err != nil {
			w.t.Fatal(err)
		}
		return matrixReq{path: "/api/user/verify/?token=" + tok}
	},
	"POST /api/user/reset-password/request": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{path: "/api/user/reset-password/request?email=" + url.QueryEscape(w.throwEmail)}
	},
	"GET /api/user/reset-password/": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{path: "/api/user/reset-password/?token=" + w.resetToken()}
	},
	"POST /api/user/reset-password/change": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: url.Values{"token": {w.resetToken()}, "new_password": {testPassword}, "confirm_password": {testPassword}}}
	},
	"POST /api/user/api-keys": func(*matrixWorld, int) matrixReq { return matrixReq{body: map[string]any{"name": "matrix"}} },
	"POST /api/project/create": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"project_name": "matrix"}}
	},
	"PUT /api/project/activate": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: map[string]any{"project_id": w.projectA}, owned: "project"}
	},
	"POST /api/completion/request": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: completionBody([]int64{w.e.ids["tiny-coder"]}, "x = ", "\n")}
	},
	"POST /api/completion/feedback": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: map[string]any{"meta_query_id": w.queryA, "model_id": w.e.ids["tiny-coder"], "was_accepted": true}, owned: "user"}
	},
	"POST /api/completion/multi-file-context/update": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"context_updates": map[string]any{"matrix.py": []any{
			map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"x = 1"}}}}}}
	},
	"POST /api/chat/request": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: chatBody([]int64{w.e.ids["tiny-instruct"]}, w.chatA, [2]string{"user", "again"}), owned: "user"}
	},
	"POST /infill": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"input_prefix": "x = ", "input_suffix": "\n", "model": "tiny-coder", "n_predict": 2}}
	},
	"POST /completion": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"prompt": "x = ", "model": "tiny-coder", "n_predict": 2}}
	},
	"POST /v1/completions": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"model": "tiny-coder", "prompt": "x = ", "suffix": "\n", "max_tokens": 2}}
	},
	"POST /v1/fim/completions": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"model": "tiny-coder", "prompt": "x = ", "suffix": "\n", "max_tokens": 2}}
	},
	"POST /v1/chat/completions": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"model": "tiny-instruct", "messages": []any{map[string]any{"role": "user", "content": "hi"}},
			"max_tokens": 2}}
	},
	"POST /v1/next-edit": func(*matrixWorld, int) matrixReq { return matrixReq{body: nextEditBody("")} },
	"POST /v1/next-edit/feedback": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: map[string]any{"id": w.suggestionA, "accepted": true}, owned: "user"}
	},
	"POST /v1/embeddings": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"model": "tiny-coder", "input": "x"}}
	},
	"POST /api/generate": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"model": "tiny-coder", "prompt": "x = ", "suffix": "\n", "stream": false,
			"options": map[string]any{"num_predict": 2}}}
	},
	"POST /api/chat": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"model": "tiny-instruct", "messages": []any{map[string]any{"role": "user", "content": "hi"}},
			"stream": false, "options": map[string]any{"num_predict": 2}}}
	},
	"POST /api/show": func(*matrixWorld, int) matrixReq { return matrixReq{body: map[string]any{"model": "tiny-coder"}} },
	"POST /api/config/": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"config_data": map[string]any{"matrix": true}}}
	},
	"PUT /api/config/{config_id}": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"config_data": map[string]any{"matrix": 2}}}
	},
	"POST /api/config/languages": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"language_name": "matrix-" + uuid.NewString()[:8]}}
	},
	"PUT /api/config/languages/{language_id}": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"language_name": "matrix-" + uuid.NewString()[:8]}}
	},
	"PUT /api/config/users/{user_id}/admin": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"is_admin": true}}
	},
	"POST /api/eval/runs": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{body: map[string]any{"repo": "empty", "model_id": w.e.ids["tiny-coder"], "tasks": 1}}
	},
	"POST /api/analytics/studies/create": func(*matrixWorld, int) matrixReq { return matrixReq{body: studyBody()} },
	"POST /api/analytics/studies":        func(*matrixWorld, int) matrixReq { return matrixReq{body: studyBody()} },
	"PATCH /api/analytics/studies/{study_id}": func(*matrixWorld, int) matrixReq {
		return matrixReq{body: map[string]any{"description": "matrix"}}
	},
	// The status changes each get a study in the state they change.
	"POST /api/analytics/studies/{study_id}/start":      studyCell("start", false),
	"POST /api/analytics/studies/{study_id}/activate":   studyCell("activate", false),
	"POST /api/analytics/studies/{study_id}/pause":      studyCell("pause", true),
	"POST /api/analytics/studies/{study_id}/end":        studyCell("end", true),
	"POST /api/analytics/studies/{study_id}/deactivate": studyCell("deactivate", true),
	// River UI's own API under its mount point: a read, and changes that
	// leave the server's queue working and jobs as they were.
	"GET /admin/jobs/*": func(*matrixWorld, int) matrixReq { return matrixReq{path: "/admin/jobs/api/states"} },
	"POST /admin/jobs/*": func(w *matrixWorld, _ int) matrixReq {
		id := w.e.seedJob("matrix", "matrix", "discarded", 60, secs(50), secs(40))
		return matrixReq{path: "/admin/jobs/api/jobs/retry", body: map[string]any{"ids": []string{fmt.Sprint(id)}}}
	},
	"PUT /admin/jobs/*": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{path: "/admin/jobs/api/queues/" + w.queue() + "/resume"}
	},
	"PATCH /admin/jobs/*": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{path: "/admin/jobs/api/queues/" + w.queue(), body: map[string]any{}}
	},
	"GET /api/ws/completion": func(w *matrixWorld, _ int) matrixReq {
		return matrixReq{ws: map[string]any{"request_id": "m", "completion_request": completionBody([]int64{w.e.ids["tiny-coder"]}, "x = ", "\n")}}
	},
	"GET /api/ws/chat": func(*matrixWorld, int) matrixReq {
		return matrixReq{ws: map[string]any{"request_id": "m", "chat_get": map[string]any{"page_number": 1}}}
	},
	"GET /api/ws/completion/multi-file-context": func(*matrixWorld, int) matrixReq {
		return matrixReq{ws: map[string]any{"request_id": "m", "multi_file_context_update": map[string]any{"context_updates": map[string]any{}}}}
	},
}

func studyBody() map[string]any {
	return map[string]any{"name": "matrix", "arms": []any{map[string]any{"name": "a", "config_id": 1}}}
}

// studyCell is the fixture of a study status change: the admin's cell gets
// a study of its own in a state the change applies to (running, or a
// draft), and a study it leaves running or paused is ended after it, since
// one study runs at a time; the others, refused before the handler, name
// the shared draft.
func studyCell(action string, running bool) func(w *matrixWorld, who int) matrixReq {
	return func(w *matrixWorld, who int) matrixReq {
		id := w.studyID
		var after func()
		if who == pAdmin {
			if running {
				id = w.runningStudy()
			} else {
				id = w.newStudy()
			}
			if action != "end" && action != "deactivate" {
				after = func() { w.principals[pAdmin].expect("POST", "/api/analytics/studies/"+id+"/end", nil, 200) }
			}
		}
		return matrixReq{path: "/api/analytics/studies/" + id + "/" + action, after: after}
	}
}

// otherScope is the scope of the two that is not scope.
func otherScope(scope string) string {
	if scope == "account" {
		return "completions"
	}
	return "account"
}

// queue is the River queue of the server's own jobs.
func (w *matrixWorld) queue() string {
	var q string
	if err := w.e.srv.db.QueryRow(context.Background(), "SELECT name FROM river_queue ORDER BY name LIMIT 1").Scan(&q); err != nil {
		w.t.Fatal(err)
	}
	return q
}

func (w *matrixWorld) resetToken() string {
	tok, err := w.e.srv.tokens.IssueReset(context.Background(), w.throwaway, w.throwEmail)
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

// request builds who's request to rt.
func (w *matrixWorld) request(rt matrixRoute, op apiOp, who int) matrixReq {
	key := rt.method + " " + rt.path
	var req matrixReq
	if f, ok := matrixFixtures[key]; ok {
		req = f(w, who)
	} else if rt.mount {
		req.path = strings.TrimSuffix(rt.path, "*") // the mounted app's own root
	} else {
		req.body = genericBody(op)
	}
	if req.path == "" {
		path, owned, missing := w.fill(rt.method, rt.path)
		if req.owned == "" {
			req.owned = owned
		}
		req.path, req.missing = path, missing
	}
	return req
}

// genericBody is a body of op's required fields with values of their types.
func genericBody(op apiOp) any {
	if len(op.Body) == 0 {
		return nil
	}
	if op.Form {
		v := url.Values{}
		for _, f := range op.Body {
			if f.Required {
				v.Set(f.Name, "matrix")
			}
		}
		return v
	}
	m := map[string]any{}
	for _, f := range op.Body {
		if !f.Required {
			continue
		}
		switch {
		case strings.HasPrefix(f.Type, "[]"):
			m[f.Name] = []any{}
		case f.Type == "integer", f.Type == "number":
			m[f.Name] = 1
		case f.Type == "boolean":
			m[f.Name] = true
		case f.Type == "object":
			m[f.Name] = map[string]any{}
		case f.Type == "uuid":
			m[f.Name] = uuid.NewString()
		default:
			m[f.Name] = "matrix"
		}
	}
	return m
}

// send sends who's request and returns the status: for a WebSocket route,
// the status the socket answers once open (the request frame's, or the
// authentication error it closes with).
func (w *matrixWorld) send(rt matrixRoute, op apiOp, req matrixReq, who int) int {
	c := w.principals[who]
	if req.consumes {
		c = w.fresh(who)
	}
	c = w.clone(c)
	if who == pKeyNoScope {
		k := scopeOf(op)
		if isAdminOp(op) {
			k = "admin " + k
		}
		c.header["Authorization"] = "Bearer " + w.noScope[k]
	}
	if op.WS != nil {
		return w.sendWS(rt.path, c, req.ws)
	}
	r := c.do(rt.method, req.path, req.body)
	if req.after != nil {
		req.after()
	}
	return r.status
}

// sendWS opens the socket with c's credentials, sends frame and returns
// the status of the first answer.
func (w *matrixWorld) sendWS(path string, c *client, frame map[string]any) int {
	w.t.Helper()
	h := http.Header{}
	var cookies []string
	for k, v := range c.cookies {
		cookies = append(cookies, k+"="+v)
	}
	if cookies != nil {
		h.Set("Cookie", strings.Join(cookies, "; "))
	}
	for k, v := range c.header {
		h.Set(k, v)
	}
	conn, res, err := websocket.DefaultDialer.Dial("ws://"+w.addr+path, h)
	if err != nil {
		if res != nil {
			return res.StatusCode
		}
		w.t.Fatalf("dial %s: %v", path, err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(frame); err != nil {
		w.t.Fatalf("%s: write: %v", path, err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			w.t.Fatalf("%s: read: %v", path, err)
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			w.t.Fatalf("%s: frame %q", path, data)
		}
		if msg, ok := f["error"].(string); ok && f["type"] == nil {
			switch msg {
			case MsgInvalidOrExpiredSession, MsgInvalidOrExpiredProject, MsgInvalidOrExpiredAuth:
				return 401
			case MsgAPIKeyNeedsCompletions, MsgAPIKeyNeedsAccount:
				return 403
			}
			w.t.Fatalf("%s: unknown authentication error %q", path, msg)
		}
		typ, _ := f["type"].(string)
		if typ == "error" || strings.HasSuffix(typ, "_result") {
			status, _ := f["status_code"].(float64)
			return int(status)
		}
	}
}

// checkPrincipalsLive checks that no cell ended a shared principal's
// credentials: a route that does must mark its request consumes.
func (w *matrixWorld) checkPrincipalsLive() {
	for _, who := range []int{pUserA, pUserB, pMember, pAdmin} {
		c := w.clone(w.principals[who])
		if r := c.do("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{}}); r.status != 200 {
			w.t.Errorf("after the matrix, %s's credentials answer %d: a route ended them; mark its request consumes", principalNames[who], r.status)
		}
	}
}

// Markers of the generated section of docs/security.md.
const (
	matrixBegin = "<!-- access-matrix:begin -->"
	matrixEnd   = "<!-- access-matrix:end -->"
	matrixDoc   = "../docs/security.md"
)

// writeOrCheckMatrixDoc writes the table between the markers with
// -update-access-matrix, and otherwise fails when the document differs.
func writeOrCheckMatrixDoc(t *testing.T, rows, missing []string) {
	var b strings.Builder
	b.WriteString(matrixBegin + "\n")
	b.WriteString("Generated by `go generate ./server/` (TestAccessMatrix in server/access_matrix_test.go, which fails when\n" +
		"this table is stale). Each cell is the status the route answered a real request from that principal, on\n" +
		"real Postgres and Redis; the test derives each expected status from the route's declared guard and checks it.\n\n" +
		"- **anonymous**: no credentials. **user A**: a login, its session and A's project; a route that names a\n" +
		"  query, chat, API key, export, next-edit suggestion or project is sent A's. **user B** and **admin**\n" +
		"  (users.is_admin): their own login, session and project, naming A's resources. **member of A's project**: a user who is a member\n" +
		"  (project_users, role member) of A's project and activated it; no route adds members, so the test adds\n" +
		"  the row. **deleted user**: the cookies of a user who deleted the account. **expired session**: a login whose\n" +
		"  login, session and project tokens reached their TTL. **revoked API key**: a key of A's with both scopes and\n" +
		"  a project token of its session, revoked. **API key without scope**: a key holding only the scope the route\n" +
		"  does not need: the admin's on admin routes, else A's.\n" +
		"- Rules: a route without authentication answers everyone alike. Otherwise anonymous, deleted, expired and\n" +
		"  revoked callers get 401 and a key without the route's scope 403; an admin route answers 403 to everyone\n" +
		"  else; a caller naming another user's resource gets the route's documented answer (403 or 404), and a\n" +
		"  non-member naming A's project 401.\n" +
		"- WebSocket routes (`/api/ws/...`) always complete the handshake (101); their cell is what the socket then\n" +
		"  answers: the status of the request frame sent, or of the authentication error it closes with.\n" +
		"- Under `/admin/jobs/*` the paths are River UI's own; the matrix sends its states read, a job retry and a\n" +
		"  queue resume and update.\n\n")
	if len(accessOverrides) > 0 {
		b.WriteString("Routes whose admitted callers do not get the route's usual success:\n\n")
		var keys []string
		for k := range accessOverrides {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "- `%s`: %d, %s.\n", k, accessOverrides[k].ok, accessOverrides[k].why)
		}
		b.WriteString("\n")
	}
	if len(missing) > 0 {
		b.WriteString("Routes naming a resource of which the test server has no row, answered the admin with their 404: `" +
			strings.Join(missing, "`, `") + "`.\n\n")
	}
	b.WriteString("| Route | " + strings.Join(principalNames[:], " | ") + " |\n")
	b.WriteString("|---" + strings.Repeat("|---", nPrincipals) + "|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString(matrixEnd)
	section := b.String()

	raw, err := os.ReadFile(matrixDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, matrixBegin), strings.Index(doc, matrixEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no %s ... %s section", matrixDoc, matrixBegin, matrixEnd)
	}
	updated := doc[:i] + section + doc[j+len(matrixEnd):]
	if *updateAccessMatrix {
		if err := os.WriteFile(matrixDoc, []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if updated != doc {
		t.Fatal("the access matrix in docs/security.md is stale: run go generate ./server/")
	}
}

// TestAccessMatrixRules checks the derivation itself on rows of each kind,
// and that a row the rules cannot read is refused rather than guessed.
func TestAccessMatrixRules(t *testing.T) {
	admin := apiOp{Auth: ClassA, Account: true, OK: 200, Errors: adminErrors(nil)}
	plugin := apiOp{Auth: ClassSP, OK: 200, Errors: map[int]string{403: "Also when the chat is another user's."}}
	keyed := apiOp{Auth: ClassA, Account: true, OK: 200, Errors: map[int]string{404: "No live key of the caller has this id"}}
	project := apiOp{Auth: ClassA, OK: 200, Errors: map[int]string{401: "Also when the caller is not a member of the project."}}
	for _, tc := range []struct {
		name   string
		op     apiOp
		owned  string
		want   [nPrincipals]int
		errors bool
	}{
		{"public", apiOp{OK: 201, Public: true}, "", [nPrincipals]int{201, 201, 201, 201, 201, 201, 201, 201, 201}, false},
		{"admin", admin, "", [nPrincipals]int{401, 403, 403, 403, 200, 401, 401, 401, 403}, false},
		{"own resource", plugin, "", [nPrincipals]int{401, 200, 200, 200, 200, 401, 401, 401, 403}, false},
		{"A's chat", plugin, "user", [nPrincipals]int{401, 200, 403, 403, 403, 401, 401, 401, 403}, false},
		{"A's key", keyed, "user", [nPrincipals]int{401, 200, 404, 404, 404, 401, 401, 401, 403}, false},
		{"A's project", project, "project", [nPrincipals]int{401, 200, 401, 200, 401, 401, 401, 401, 403}, false},
		{"no documented answer", apiOp{Auth: ClassS, OK: 200}, "user", [nPrincipals]int{}, true},
		{"no success status", apiOp{Auth: ClassS}, "", [nPrincipals]int{}, true},
	} {
		var got [nPrincipals]int
		failed := false
		for who := range nPrincipals {
			s, err := expectedStatus(tc.op, "X /x", matrixReq{owned: tc.owned}, who)
			failed = failed || err != nil
			got[who] = s
		}
		if tc.errors {
			if !failed {
				t.Errorf("%s: derived %v, want an error", tc.name, got)
			}
			continue
		}
		if failed || got != tc.want {
			t.Errorf("%s: %v (error %v), want %v", tc.name, got, failed, tc.want)
		}
	}
}
