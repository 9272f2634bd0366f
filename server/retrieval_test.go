package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/internal/config"
)

// The retrieval tests run the real server on real Postgres and Redis, with
// the tiny synthetic model ("tiny-coder") as the embedding model and River
// running the embedding jobs.

const ctxPath = "/api/completion/multi-file-context/update"

// codeLines is n distinct lines of Python, tagged so that no other test
// sends the same text to the shared engine.
func codeLines(tag string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("def %s%d(): return %d", tag, i, i*7%13)
	}
	return out
}

// retrievalEnv is a plugin server that retrieves with tiny-coder, and a
// member of a new project who consents to storing context.
func retrievalEnv(t *testing.T, mut func(*config.Config)) (*pluginEnv, *client, string) {
	t.Helper()
	e := newPluginEnv(t, func(c *config.Config) {
		c.EmbeddingModel = "tiny-coder"
		c.RetrievalQueryLines = 64 // a whole chunk is the query
		if mut != nil {
			mut(c)
		}
	})
	if got := e.srv.retr.embedder(); got != "tiny-coder" {
		t.Fatalf("embedder %q, want tiny-coder", got)
	}
	email := "retrieval-" + uuid.NewString()[:8] + "@example.com"
	c := e.member(email)
	c.expect("PUT", "/api/user/update", map[string]any{"preference": map[string]any{
		"store_context": true, "store_contextual_telemetry": true, "store_behavioral_telemetry": true}}, 201)
	return e, c, e.projectOf(email)
}

// projectOf returns the id of the (only) project of a user.
func (e *pluginEnv) projectOf(email string) string {
	e.t.Helper()
	var id string
	if err := e.srv.db.QueryRow(context.Background(), `SELECT pu.project_id::text FROM project_users pu
		JOIN users u USING (user_id) WHERE u.email = $1`, email).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// embedJobs returns a function that waits for the server's next finished
// context_embed job and fails the test unless it completed.
func (e *pluginEnv) embedJobs() func() {
	e.t.Helper()
	ch, cancel := e.srv.jobs.client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	e.t.Cleanup(cancel)
	return func() {
		e.t.Helper()
		timeout := time.After(2 * time.Minute)
		for {
			select {
			case ev := <-ch:
				if ev.Job.Kind != (contextEmbedArgs{}).Kind() {
					continue
				}
				if ev.Kind != river.EventKindJobCompleted {
					e.t.Fatalf("embedding job %s: %v", ev.Kind, ev.Job.Errors)
				}
				return
			case <-timeout:
				e.t.Fatal("no embedding job finished in 2 minutes")
			}
		}
	}
}

// put replaces a file of the context (insert when new, else update of
// every old line).
func (c *client) put(file string, old, lines []string) resp {
	c.e.t.Helper()
	ch := map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": lines}
	if old != nil {
		ch = map[string]any{"change_type": "update", "start_line": 0, "end_line": len(old), "new_lines": lines}
	}
	return c.expect("POST", ctxPath, map[string]any{"context_updates": map[string]any{file: []any{ch}}}, 200)
}

// chunkRefs reads meta_query.context_chunks (nil when NULL).
func (e *pluginEnv) chunkRefs(mq any) ([]chunkRef, []byte) {
	e.t.Helper()
	var raw []byte
	if err := e.srv.db.QueryRow(context.Background(), `SELECT context_chunks FROM meta_query WHERE meta_query_id = $1`, mq).Scan(&raw); err != nil {
		e.t.Fatal(err)
	}
	if raw == nil {
		return nil, nil
	}
	var refs []chunkRef
	if err := json.Unmarshal(raw, &refs); err != nil {
		e.t.Fatal(err)
	}
	return refs, raw
}

// complete asks tiny-coder for a completion in main.py with every context
// file and returns the meta_query_id.
func (e *pluginEnv) complete(c *client, prefix, suffix string) any {
	e.t.Helper()
	b := completionBody([]int64{e.ids["tiny-coder"]}, prefix, suffix)
	b["context"].(map[string]any)["context_files"] = []string{"*"}
	r := c.expect("POST", "/api/completion/request", b, 200)
	return r.body["data"].(map[string]any)["meta_query_id"]
}

// chunkAt returns the id and text of a stored chunk.
func (e *pluginEnv) chunkAt(project, file string, index int) (int64, string) {
	e.t.Helper()
	var id int64
	var text string
	if err := e.srv.db.QueryRow(context.Background(), `SELECT chunk_id, content FROM project_context_chunk
		WHERE project_id = $1 AND file_name = $2 AND chunk_index = $3`, project, file, index).Scan(&id, &text); err != nil {
		e.t.Fatal(err)
	}
	return id, text
}

// TestRetrievalNearestChunkFirst: once the job embedded every chunk of
// two files, a completion whose lines before the cursor are one chunk's
// text lays out that chunk nearest to the cursor (last), with similarity
// 1, among at most RETRIEVAL_TOP_K chunks named in meta_query by id and
// score; the engine gets the chunk, not the whole file.
func TestRetrievalNearestChunkFirst(t *testing.T) {
	e, c, project := retrievalEnv(t, nil)
	tag := "n" + uuid.NewString()[:6]
	lib, util := codeLines(tag+"lib", 120), codeLines(tag+"util", 60)
	wait := e.embedJobs()
	c.expect("POST", ctxPath, map[string]any{"context_updates": map[string]any{
		"lib.py":  []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": lib}},
		"util.py": []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": util}},
	}}, 200)
	wait()
	n := e.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1`, project)
	if want := len(chunkLines(lib)) + len(chunkLines(util)); n != want || n < 6 {
		t.Fatalf("%d chunks stored, want %d (at least 6)", n, want)
	}
	if got := e.srv.retr.embedded.Load(); got != int64(n) {
		t.Fatalf("job embedded %d chunks, want %d", got, n)
	}
	if p := e.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1 AND (embedding IS NULL OR embedder <> 'tiny-coder')`, project); p != 0 {
		t.Fatalf("%d chunks without an embedding", p)
	}

	id, text := e.chunkAt(project, "lib.py", 2)
	mq := e.complete(c, text+"\n", "\n")
	refs, _ := e.chunkRefs(mq)
	if len(refs) == 0 || len(refs) > e.srv.retr.topK {
		t.Fatalf("%d chunks laid out, want 1-%d", len(refs), e.srv.retr.topK)
	}
	last := refs[len(refs)-1]
	if last.ID != id || last.File != "lib.py" || last.Score < 0.999 {
		t.Fatalf("nearest chunk %+v, want id %d of lib.py with score 1", last, id)
	}
	for _, r := range refs[:len(refs)-1] {
		if r.Score > last.Score || (r.File != "lib.py" && r.File != "util.py") {
			t.Fatalf("chunk %+v beside the nearest %+v", r, last)
		}
	}
	seen := e.rec.all()
	if !strings.Contains(seen, text) {
		t.Fatal("the engine never got the nearest chunk")
	}
	if strings.Contains(seen, strings.Join(lib, "\n")) {
		t.Fatal("the engine got the whole of lib.py")
	}
}

// TestRetrievalStableLayout: two completions whose cursors are one
// character apart lay out the same chunks in the same order (the stored
// names are byte-equal), and the second finds all of that extra context
// in the KV cache; a completion elsewhere in the file keeps the chunks
// laid out before first, in their order, and appends its own.
func TestRetrievalStableLayout(t *testing.T) {
	e, c, project := retrievalEnv(t, func(c *config.Config) { c.RetrievalBytes, c.RetrievalTopK = 1<<20, 2 })
	lib := make([]string, 200) // short lines: four chunks fit the model's budget
	for i := range lib {
		lib[i] = fmt.Sprintf("x%d = %d", i, i%7)
	}
	wait := e.embedJobs()
	c.put("lib.py", nil, lib)
	wait()
	_, text := e.chunkAt(project, "lib.py", 1)
	otherID, other := e.chunkAt(project, "lib.py", 6)
	p1 := text + "\nresult = x"
	mq1 := e.complete(c, p1, "\n")
	mq2 := e.complete(c, p1+"1", "\n")
	refs1, raw1 := e.chunkRefs(mq1)
	refs2, raw2 := e.chunkRefs(mq2)
	if len(refs1) != 2 || !bytes.Equal(raw1, raw2) {
		t.Fatalf("layouts differ or are not two chunks:\n%s\n%s", raw1, raw2)
	}
	// The second prompt's cached tokens cover every chunk.
	eng, _ := sharedEngine(t)
	sc, err := eng.Get("tiny-coder")
	if err != nil {
		t.Fatal(err)
	}
	extra := 0
	for _, r := range refs2 {
		var txt string
		if err := e.srv.db.QueryRow(context.Background(), `SELECT content FROM project_context_chunk WHERE chunk_id = $1`, r.ID).Scan(&txt); err != nil {
			t.Fatal(err)
		}
		toks, err := sc.Model().Tokenize(txt, false, false)
		if err != nil {
			t.Fatal(err)
		}
		extra += len(toks)
	}
	cached := e.count(`SELECT tokens_cached FROM generation WHERE meta_query_id = $1`, mq2)
	if cached < extra {
		t.Fatalf("second prompt: %d tokens cached, fewer than the %d tokens of its extra context", cached, extra)
	}
	// Another place of the file: the chunks laid out before stay first.
	mq3 := e.complete(c, other+"\n", "\n")
	refs3, raw3 := e.chunkRefs(mq3)
	if !slices.ContainsFunc(refs3, func(r chunkRef) bool { return r.ID == otherID }) {
		t.Fatalf("third layout %s lacks the chunk of its query (%d)", raw3, otherID)
	}
	if len(refs3) <= len(refs2) {
		t.Fatalf("third layout dropped the chunks laid out before:\n%s\n%s", raw2, raw3)
	}
	for i, r := range refs2 {
		if refs3[i].ID != r.ID {
			t.Fatalf("third layout does not start with the second:\n%s\n%s", raw2, raw3)
		}
	}
}

// TestRetrievalReembedsChangedChunksOnly: an edit in the middle of a file
// and lines inserted at its top make the job embed only the chunks whose
// text changed; the others keep their vectors.
func TestRetrievalReembedsChangedChunksOnly(t *testing.T) {
	e, c, project := retrievalEnv(t, nil)
	tag := "r" + uuid.NewString()[:6]
	lib := codeLines(tag, 300)
	wait := e.embedJobs()
	c.put("lib.py", nil, lib)
	wait()
	total := len(chunkLines(lib))
	if got := e.srv.retr.embedded.Load(); got != int64(total) {
		t.Fatalf("first job embedded %d chunks, want %d", got, total)
	}
	changed := func(old, cur []string) int {
		had := map[[32]byte]bool{}
		for _, c := range chunkLines(old) {
			had[c.hash] = true
		}
		n := 0
		for _, c := range chunkLines(cur) {
			if !had[c.hash] {
				n++
			}
		}
		return n
	}
	for _, edit := range []struct {
		name  string
		lines func([]string) []string
	}{
		{"one line changed", func(l []string) []string {
			l = slices.Clone(l)
			l[150] = "def changed(): pass"
			return l
		}},
		{"three lines inserted at the top", func(l []string) []string {
			return append([]string{"import os", "import sys", ""}, l...)
		}},
	} {
		next := edit.lines(lib)
		want := changed(lib, next)
		if want < 1 || 3*want > total {
			t.Fatalf("%s: %d of %d chunks change, expected at least one and at most a third", edit.name, want, total)
		}
		before := e.srv.retr.embedded.Load()
		wait := e.embedJobs()
		c.put("lib.py", lib, next)
		wait()
		if got := e.srv.retr.embedded.Load() - before; got != int64(want) {
			t.Fatalf("%s: the job embedded %d chunks, want the %d that changed (of %d)", edit.name, got, want, len(chunkLines(next)))
		}
		if p := e.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1 AND embedding IS NULL`, project); p != 0 {
			t.Fatalf("%s: %d chunks without an embedding", edit.name, p)
		}
		lib = next
	}
}

// TestRetrievalSecretNeverStored: a secret in a context file reaches
// neither the chunk table nor the engine, through the embedding job and a
// completion that lays out its chunks.
func TestRetrievalSecretNeverStored(t *testing.T) {
	e, c, project := retrievalEnv(t, nil)
	aws, gh, pemBody, code := plantedSecrets()
	lines := append(strings.Split(code, "\n"), codeLines("secretfile", 40)...)
	wait := e.embedJobs()
	c.put("settings.py", nil, lines)
	wait()
	var stored string
	if err := e.srv.db.QueryRow(context.Background(), `SELECT string_agg(content, '|') FROM project_context_chunk WHERE project_id = $1`, project).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	mq := e.complete(c, "import boto3\n\n", "\n")
	if refs, _ := e.chunkRefs(mq); len(refs) == 0 {
		t.Fatal("no chunk laid out")
	}
	seen := e.rec.all()
	for _, secret := range []string{aws, gh, pemBody} {
		if strings.Contains(stored, secret) {
			t.Error("a secret is stored in project_context_chunk")
		}
		if strings.Contains(seen, secret) {
			t.Error("a secret reached the engine")
		}
	}
	if !strings.Contains(stored, "import boto3") {
		t.Fatal("the chunks lack the file's text")
	}
}

// TestRetrievalJobOnlyWithContextRows: the embedding job is inserted in
// the context update's transaction: when its commit fails, neither the
// file, its chunks nor the job exist; when it commits, all do.
func TestRetrievalJobOnlyWithContextRows(t *testing.T) {
	e, c, project := retrievalEnv(t, nil)
	fn := "test_refuse_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	e.exec(`CREATE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.file_name = 'refused.py' THEN RAISE EXCEPTION 'commit refused by the test'; END IF;
			RETURN NULL;
		END $$`)
	t.Cleanup(func() { e.exec("DROP FUNCTION " + fn + "() CASCADE") })
	// Deferred: it runs at COMMIT, after the rows and the job were inserted.
	e.exec(`CREATE CONSTRAINT TRIGGER ` + fn + ` AFTER INSERT OR UPDATE ON project_context_file DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW EXECUTE FUNCTION ` + fn + `()`)
	jobs := func() int {
		return e.count(`SELECT count(*) FROM river_job WHERE queue = $1 AND kind = 'context_embed'`, e.srv.jobs.queue)
	}
	c.expect("POST", ctxPath, map[string]any{"context_updates": map[string]any{"refused.py": []any{
		map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": codeLines("refused", 40)}}}}, 500)
	if n := jobs(); n != 0 {
		t.Fatalf("%d embedding jobs after the refused commit, want 0", n)
	}
	if n := e.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1`, project) +
		e.count(`SELECT count(*) FROM project_context_file WHERE project_id = $1`, project); n != 0 {
		t.Fatalf("%d context rows after the refused commit", n)
	}
	wait := e.embedJobs()
	c.put("kept.py", nil, codeLines("kept", 40))
	wait()
	if n := jobs(); n != 1 {
		t.Fatalf("%d embedding jobs after the committed update, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1 AND file_name = 'kept.py' AND embedding IS NOT NULL`, project); n == 0 {
		t.Fatal("the committed file has no embedded chunk")
	}
}

// TestRetrievalNeedsConsent: without every member's store_context no chunk
// is made, and completions lay out the named files whole, naming no chunk.
func TestRetrievalNeedsConsent(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) { c.EmbeddingModel = "tiny-coder" })
	email := "noconsent-" + uuid.NewString()[:8] + "@example.com"
	c := e.member(email)
	project := e.projectOf(email)
	tag := "c" + uuid.NewString()[:6]
	lib := codeLines(tag, 50)
	c.put("lib.py", nil, lib)
	if n := e.count(`SELECT count(*) FROM project_context_chunk WHERE project_id = $1`, project); n != 0 {
		t.Fatalf("%d chunks stored without consent", n)
	}
	if n := e.count(`SELECT count(*) FROM river_job WHERE queue = $1 AND kind = 'context_embed'`, e.srv.jobs.queue); n != 0 {
		t.Fatalf("%d embedding jobs without consent", n)
	}
	mq := e.complete(c, lib[3]+"\n", "\n")
	if refs, raw := e.chunkRefs(mq); refs != nil {
		t.Fatalf("chunks named without retrieval: %s", raw)
	}
	if !strings.Contains(e.rec.all(), strings.Join(lib, "\n")) {
		t.Fatal("the engine did not get the whole file")
	}
}

// TestContextBounds: an update past a bound of the project's context is
// refused in the route's shapes (413 {"message"} too large, 422 {"detail"}
// too many files), over HTTP and the WebSocket, and stores nothing.
func TestContextBounds(t *testing.T) {
	e := newPluginEnv(t, func(c *config.Config) {
		c.ContextMaxFiles, c.ContextMaxFileBytes, c.ContextMaxBytes = 2, 1024, 1500
	})
	email := "bounds-" + uuid.NewString()[:8] + "@example.com"
	c := e.member(email)
	project := e.projectOf(email)
	line := strings.Repeat("x", 99) // 100 bytes with its newline
	lines := func(n int) []string { return slices.Repeat([]string{line}, n) }
	ins := func(ls []string) []any {
		return []any{map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": ls}}
	}
	c.put("a.py", nil, lines(10)) // 1000 bytes
	for _, tc := range []struct {
		name   string
		update map[string]any
		status int
		msg    string
	}{
		{"file too large", map[string]any{"b.py": ins(lines(11))}, 413, MsgContextTooLarge},
		{"grown too large", map[string]any{"a.py": ins(lines(1))}, 413, MsgContextTooLarge},
		{"project too large", map[string]any{"b.py": ins(lines(6))}, 413, MsgContextTooLarge},
		{"too many files", map[string]any{"b.py": ins(lines(1)), "c.py": ins(lines(1))}, 422, ""},
	} {
		r := c.expect("POST", ctxPath, map[string]any{"context_updates": tc.update}, tc.status)
		if got := tooManyFiles(r.body); (tc.status == 422) != got || (tc.status == 413 && r.msg() != tc.msg) {
			t.Errorf("%s: %s, want %d %q", tc.name, r.raw, tc.status, tc.msg)
		}
		if n := e.count(`SELECT count(*) FROM project_context_file WHERE project_id = $1`, project); n != 1 {
			t.Fatalf("%s: %d files stored, want 1", tc.name, n)
		}
		if n := e.count(`SELECT size_bytes FROM project_context_file WHERE project_id = $1 AND file_name = 'a.py'`, project); n != 1000 {
			t.Fatalf("%s: a.py has %d bytes, want 1000", tc.name, n)
		}
	}
	// Within the bounds: a second file, and a.py emptied (no longer counted).
	c.expect("POST", ctxPath, map[string]any{"context_updates": map[string]any{"b.py": ins(lines(4))}}, 200)
	c.expect("POST", ctxPath, map[string]any{"context_updates": map[string]any{"a.py": []any{
		map[string]any{"change_type": "remove", "start_line": 0, "end_line": 10}}}}, 200)
	c.expect("POST", ctxPath, map[string]any{"context_updates": map[string]any{"c.py": ins(lines(10))}}, 200)

	// The WebSocket answers the same status in its error frame.
	srvAddr := e.listen()
	ws := e.wsDial(srvAddr, "/api/ws/completion/multi-file-context", c)
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"request_id": "big", "multi_file_context_update": map[string]any{
		"context_updates": map[string]any{"d.py": ins(lines(1))}}}); err != nil {
		t.Fatal(err)
	}
	frame := readUntil(t, ws, func(map[string]any) bool { return true })[0]
	if content, _ := frame["content"].(map[string]any); frame["status_code"] != float64(422) || !tooManyFiles(content) {
		t.Fatalf("WebSocket frame %v, want status 422 naming context_updates", frame)
	}
}

// tooManyFiles reports whether body is the 422 of too many context files.
func tooManyFiles(body map[string]any) bool {
	d, _ := body["detail"].([]any)
	if len(d) != 1 {
		return false
	}
	e, _ := d[0].(map[string]any)
	loc, _ := e["loc"].([]any)
	return e["type"] == "too_long" && len(loc) == 2 && loc[1] == "context_updates"
}

// TestChunkLines: chunks cover the file in order, each within the line
// bounds and starting chunkOverlap lines before its own lines; blank files
// have none; and lines inserted at the top leave most chunks' text as it
// was.
func TestChunkLines(t *testing.T) {
	lines := codeLines("chunk", 500)
	cs := chunkLines(lines)
	next := 0
	for i, c := range cs {
		own := c.start + chunkOverlap
		if i == 0 {
			own = 0
		}
		if own != next || c.end <= own || c.end-own > chunkMaxLines || (c.end < len(lines) && c.end-own < chunkMinLines) {
			t.Fatalf("chunk %d = [%d,%d), own lines from %d, after %d", i, c.start, c.end, own, next)
		}
		if c.text != strings.Join(lines[c.start:c.end], "\n") {
			t.Fatalf("chunk %d text is not its lines", i)
		}
		next = c.end
	}
	if next != len(lines) {
		t.Fatalf("chunks end at %d of %d lines", next, len(lines))
	}
	if got := chunkLines([]string{"", "  ", ""}); len(got) != 0 {
		t.Fatalf("blank file: %d chunks", len(got))
	}
	moved := chunkLines(append([]string{"import os", "import sys"}, lines...))
	had := map[[32]byte]bool{}
	for _, c := range cs {
		had[c.hash] = true
	}
	same := 0
	for _, c := range moved {
		if had[c.hash] {
			same++
		}
	}
	if 4*same < 3*len(cs) {
		t.Fatalf("after inserting two lines %d of %d chunks kept their text", same, len(cs))
	}
}

// TestMergeLayout: chunks laid out keep their order, new ones are
// appended nearest last, dropped ones leave, and the oldest go past the
// budget.
func TestMergeLayout(t *testing.T) {
	ch := func(name string, n int) layoutChunk {
		return layoutChunk{file: name, hash: []byte(name), text: strings.Repeat("x", n), tokens: n}
	}
	names := func(l []layoutChunk) string {
		var out []string
		for _, c := range l {
			out = append(out, c.file)
		}
		return strings.Join(out, ",")
	}
	keep := func(layoutChunk) bool { return false }
	for _, tc := range []struct {
		name          string
		layout, found []layoutChunk
		budget        int
		drop          func(layoutChunk) bool
		want          string
	}{
		{"empty", nil, []layoutChunk{ch("a", 1), ch("b", 1)}, 100, keep, "b,a"},
		{"kept in place", []layoutChunk{ch("a", 1), ch("b", 1)}, []layoutChunk{ch("b", 1), ch("a", 1)}, 100, keep, "a,b"},
		{"appended", []layoutChunk{ch("a", 1), ch("b", 1)}, []layoutChunk{ch("c", 1), ch("a", 1), ch("d", 1)}, 100, keep, "a,b,d,c"},
		{"oldest evicted", []layoutChunk{ch("a", 10), ch("b", 10)}, []layoutChunk{ch("c", 10)}, 25, keep, "b,c"},
		{"last stays", nil, []layoutChunk{ch("a", 50)}, 10, keep, "a"},
		{"tokens", []layoutChunk{ch("a", 600), ch("b", 300)}, []layoutChunk{ch("c", 300)}, 10000, keep, "b,c"},
		{"wanted only", nil, []layoutChunk{ch("a", 5), ch("b", 5), ch("c", 5)}, 10, keep, "b,a"},
		{"idempotent", []layoutChunk{ch("b", 5), ch("a", 5)}, []layoutChunk{ch("a", 5), ch("b", 5), ch("c", 5)}, 10, keep, "b,a"},
		{"dropped", []layoutChunk{ch("a", 1), ch("b", 1)}, nil, 100, func(c layoutChunk) bool { return c.file == "a" }, "b"},
	} {
		if got := names(mergeLayout(tc.layout, tc.found, tc.budget, 1000, tc.drop)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestQueryText: the last complete lines before the cursor line.
func TestQueryText(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"a\nb\nc\nd", "b\nc"},
		{"a\nb\nc\n", "b\nc"},
		{"b\nc\n", "b\nc"},
		{"x = ", "x ="},
		{"\n\n  ", ""},
	} {
		if got := queryText(tc.prefix, 2); got != tc.want {
			t.Errorf("queryText(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// TestFitDims: a narrower vector is padded (cosines unchanged), a wider
// one folded.
func TestFitDims(t *testing.T) {
	v := fitDims([]float32{1, 2})
	if len(v) != embedDims || v[0] != 1 || v[1] != 2 || v[2] != 0 {
		t.Fatalf("padded: %v", v[:3])
	}
	wide := make([]float32, embedDims+2)
	wide[0], wide[embedDims] = 1, 2
	if v := fitDims(wide); len(v) != embedDims || v[0] != 3 {
		t.Fatalf("folded: %v", v[:2])
	}
}
