package server

import "testing"

// TestConsentAtWriteTime: each of the three storage flags withholds its
// rows alone, whether the request says no or the user's preference (set
// through the account route just before) does, while the other two kinds
// are stored: store_context the context and the context files' content
// (their names stay), store_contextual_telemetry and
// store_behavioral_telemetry their telemetry rows.
func TestConsentAtWriteTime(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("consent@example.com")
	c.expect("POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{
		"lib.py": []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": []string{"def lib(): pass"}}}}}, 200)
	flags := []string{"store_context", "store_contextual_telemetry", "store_behavioral_telemetry"}
	// What each flag withholds, counted for one query.
	stored := map[string]string{
		"store_context": `SELECT (SELECT count(*) FROM context WHERE meta_query_id = $1) +
			(SELECT count(*) FROM query_context_file WHERE meta_query_id = $1 AND content IS NOT NULL)`,
		"store_contextual_telemetry": `SELECT count(*) FROM contextual_telemetry WHERE meta_query_id = $1`,
		"store_behavioral_telemetry": `SELECT count(*) FROM behavioral_telemetry WHERE meta_query_id = $1`,
	}
	want := map[string]int{"store_context": 2, "store_contextual_telemetry": 1, "store_behavioral_telemetry": 1}
	for _, off := range flags {
		for _, by := range []string{"request", "preference"} {
			t.Run(off+" off by "+by, func(t *testing.T) {
				pref := map[string]any{}
				for _, f := range flags {
					pref[f] = !(by == "preference" && f == off)
				}
				c.expect("PUT", "/api/user/update", map[string]any{"preference": pref}, 201)
				b := completionBody([]int64{e.ids["tiny-coder"]}, "y = ", "\n")
				b["context"].(map[string]any)["context_files"] = []string{"lib.py"}
				for _, f := range flags {
					b[f] = !(by == "request" && f == off)
				}
				r := c.expect("POST", "/api/completion/request", b, 200)
				mq := r.body["data"].(map[string]any)["meta_query_id"]
				if n := e.count(`SELECT count(*) FROM query_context_file WHERE meta_query_id = $1 AND file_name = 'lib.py'`, mq); n != 1 {
					t.Errorf("context file name stored %d times, want 1", n)
				}
				for _, f := range flags {
					w := want[f]
					if f == off {
						w = 0
					}
					if n := e.count(stored[f], mq); n != w {
						t.Errorf("%s: %d rows stored, want %d", f, n, w)
					}
				}
			})
		}
	}
}
