package server

import (
	"reflect"
	"strings"
	"testing"
)

// TestApplyChanges is the line-edit algorithm of the context update as a table.
func TestApplyChanges(t *testing.T) {
	cases := []struct {
		name    string
		lines   []string
		exists  bool
		changes []fileChange
		want    []string
	}{
		{"spec example", nil, false, []fileChange{
			{ChangeType: "insert", StartLine: 0, EndLine: 0, NewLines: []string{"import numpy as np", "np.array([1,2,3])"}},
			{ChangeType: "update", StartLine: 0, EndLine: 1, NewLines: []string{"import numpy as npp"}},
		}, []string{"import numpy as npp", "np.array([1,2,3])", ""}},
		{"remove clamps", []string{"a", "b", "c"}, true, []fileChange{{ChangeType: "remove", StartLine: 1, EndLine: 10}}, []string{"a"}},
		{"descending order", []string{"a", "b", "c", "d"}, true, []fileChange{
			{ChangeType: "update", StartLine: 0, EndLine: 1, NewLines: []string{"A", "A2"}},
			{ChangeType: "update", StartLine: 2, EndLine: 3, NewLines: []string{"C"}},
		}, []string{"A", "A2", "b", "C", "d"}},
		{"insert past end", []string{"a"}, true, []fileChange{{ChangeType: "insert", StartLine: 5, NewLines: []string{"z"}}}, []string{"a", "z"}},
		{"remove all", []string{"a"}, true, []fileChange{{ChangeType: "remove", StartLine: 0, EndLine: 1}}, []string{}},
	}
	for _, tc := range cases {
		got := applyChanges(tc.lines, tc.exists, tc.changes)
		if len(got) == 0 && len(tc.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestMultiFileContext: updates edit lines, lines stay strings (no JSON
// coercion), secrets are redacted in the files and the change log with the
// line count kept, and a completion uses the context with its file names
// and records which state of each file it saw.
func TestMultiFileContext(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("ctx@example.com")
	const path = "/api/completion/multi-file-context/update"
	c.expect("POST", path, map[string]any{"context_updates": map[string]any{"old.py": []any{
		map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"old line"}}}}}, 200)
	r := c.expect("POST", path, map[string]any{"context_updates": map[string]any{"file1.py": []any{
		map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"import numpy as np", "np.array([1,2,3])"}},
		map[string]any{"change_type": "update", "start_line": 0, "end_line": 1, "new_lines": []string{"import numpy as npp"}},
	}}}, 200)
	if r.msg() != MsgMultiFileContextUpdate {
		t.Fatal(r.msg())
	}
	data := r.body["data"].(map[string]any)
	if !reflect.DeepEqual(data["file1.py"], []any{"import numpy as npp", "np.array([1,2,3])", ""}) || !reflect.DeepEqual(data["old.py"], []any{"old line"}) {
		t.Fatalf("data = %s", r.raw)
	}
	// JSON-looking lines stay strings, and later updates still work.
	r = c.expect("POST", path, map[string]any{"context_updates": map[string]any{"vals.txt": []any{
		map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"1", "true", "null", "{}", "[]", `"x"`}}}}}, 200)
	r = c.expect("POST", path, map[string]any{"context_updates": map[string]any{"vals.txt": []any{
		map[string]any{"change_type": "remove", "start_line": 5, "end_line": 6}}}}, 200)
	if !reflect.DeepEqual(r.body["data"].(map[string]any)["vals.txt"], []any{"1", "true", "null", "{}", "[]"}) {
		t.Fatalf("vals = %s", r.raw)
	}

	// A private key spanning lines is redacted and the line count kept.
	aws, _, pemBody, code := plantedSecrets()
	lines := strings.Split(code, "\n")
	r = c.expect("POST", path, map[string]any{"context_updates": map[string]any{"secret.py": []any{
		map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": lines}}}}, 200)
	got := r.body["data"].(map[string]any)["secret.py"].([]any)
	if len(got) != len(lines) || strings.Contains(string(r.raw), aws) || strings.Contains(string(r.raw), pemBody) {
		t.Fatalf("secret.py = %d lines (want %d): %s", len(got), len(lines), r.raw)
	}
	var stored string
	if err := e.srv.db.QueryRow(t.Context(), `SELECT concat_ws('|', (SELECT string_agg(array_to_string(lines, E'\n'), '|') FROM project_context_file),
		(SELECT string_agg(array_to_string(new_lines, E'\n'), '|') FROM project_context_change))`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, aws) || strings.Contains(stored, pemBody) || !strings.Contains(stored, "<redacted:private-key>") {
		t.Fatal("secret stored in the multi-file context or its change log")
	}

	// The completion sees the named files under their names.
	b := completionBody([]int64{e.ids["tiny-coder"]}, "x = np.", "\n")
	b["context"].(map[string]any)["context_files"] = []string{"file1.py", "missing.py"}
	r = c.expect("POST", "/api/completion/request", b, 200)
	mq := r.body["data"].(map[string]any)["meta_query_id"]
	if !strings.Contains(e.rec.all(), "file1.py") || !strings.Contains(e.rec.all(), "import numpy as npp") {
		t.Fatal("context file not in the prompt")
	}
	if n := e.count(`SELECT count(*) FROM query_context_file WHERE meta_query_id = $1 AND file_name = 'file1.py' AND change_index = 2 AND ordinal = 0 AND content IS NULL`, mq); n != 1 {
		t.Fatal("query_context_file row missing")
	}
	// "*" is every file but the current one.
	b["context"].(map[string]any)["context_files"] = []string{"*"}
	b["context"].(map[string]any)["file_name"] = "old.py"
	r = c.expect("POST", "/api/completion/request", b, 200)
	mq = r.body["data"].(map[string]any)["meta_query_id"]
	if n := e.count(`SELECT count(*) FROM query_context_file WHERE meta_query_id = $1`, mq); n != 3 {
		t.Fatalf("* selected %d files, want 3", n)
	}
	if n := e.count(`SELECT count(*) FROM query_context_file WHERE meta_query_id = $1 AND file_name = 'old.py'`, mq); n != 0 {
		t.Fatal("* included the current file")
	}
}

// TestContextCache: completion requests take the project's context from
// memory while its version in Redis is unchanged, and see every update at
// once.
func TestContextCache(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("ctxcache@example.com")
	const path = "/api/completion/multi-file-context/update"
	set := func(line string) {
		c.expect("POST", path, map[string]any{"context_updates": map[string]any{"lib.py": []any{
			map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{line}}}}}, 200)
	}
	complete := func() string {
		b := completionBody([]int64{e.ids["tiny-coder"]}, "x = ", "\n")
		b["context"].(map[string]any)["context_files"] = []string{"lib.py"}
		r := c.expect("POST", "/api/completion/request", b, 200)
		return r.body["data"].(map[string]any)["meta_query_id"].(string)
	}
	stored := func(mq string) int {
		return e.count(`SELECT count(*) FROM query_context_file WHERE meta_query_id = $1 AND file_name = 'lib.py'`, mq)
	}
	set("first_version = 1")
	mq := complete() // a miss: read from Postgres, kept under the version
	if !strings.Contains(e.rec.all(), "first_version = 1") || stored(mq) != 1 {
		t.Fatal("context file not used")
	}
	hits := e.srv.ctxCache.hits.Load()
	mq = complete()
	if e.srv.ctxCache.hits.Load() != hits+1 || stored(mq) != 1 {
		t.Fatalf("second request: hits %d → %d", hits, e.srv.ctxCache.hits.Load())
	}
	// An update gives a new version: the next request reads it.
	set("second_version = 2")
	complete()
	if !strings.Contains(e.rec.all(), "second_version = 2") {
		t.Fatal("the request after an update did not see it")
	}
	// Without a version (expired, Redis restarted) requests read Postgres
	// and give the project a version again.
	var pid string
	// This test's own project: other tests of the package share the
	// database and may have a lib.py too.
	if err := e.srv.db.QueryRow(t.Context(), `SELECT f.project_id FROM project_context_file f
		JOIN project_users pu ON pu.project_id = f.project_id JOIN users u ON u.user_id = pu.user_id
		WHERE f.file_name = 'lib.py' AND u.email = 'ctxcache@example.com'`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.rdb.Del(t.Context(), "project_ctx:"+pid).Err(); err != nil {
		t.Fatal(err)
	}
	set("third_version = 3")
	e.srv.rdb.Del(t.Context(), "project_ctx:"+pid)
	complete()
	if !strings.Contains(e.rec.all(), "third_version = 3") {
		t.Fatal("the request without a version did not read Postgres")
	}
	if n, _ := e.srv.rdb.Exists(t.Context(), "project_ctx:"+pid).Result(); n != 1 {
		t.Fatal("no version set after a request without one")
	}
}

func TestPickContextFiles(t *testing.T) {
	all := []contextFile{{name: "a.py"}, {name: "b.py"}, {name: "c.py"}}
	names := func(fs []contextFile) string {
		var out []string
		for _, f := range fs {
			out = append(out, f.name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		current string
		want    []string
		got     string
	}{
		{"b.py", nil, ""},
		{"b.py", []string{"*"}, "a.py,c.py"},
		{"x.py", []string{"*"}, "a.py,b.py,c.py"},
		{"a.py", []string{"c.py", "missing.py", "a.py", "c.py"}, "c.py,a.py"},
	} {
		if got := names(pick(all, tc.current, tc.want)); got != tc.got {
			t.Errorf("pick(%q, %v) = %s, want %s", tc.current, tc.want, got, tc.got)
		}
	}
}
