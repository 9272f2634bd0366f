package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
)

// TestSecretsCorpus plants every kind of secretKinds (secrets_kinds_test.go)
// in every way a plugin sends text, through the real server, the real
// engine and real Postgres and Redis, and proves that none leaves the
// server: not in the prompt the engine tokenizes, not in any text or JSON
// column of any table the test's user touched, not in any response body or
// WebSocket frame, not in any log line (debug level). A leak of a planted
// secret, or of its distinctive core (the token without its prefix, a line
// of a key's body), fails the test; the recall of each kind is logged as a
// table.
//
// Each placement gets its own freshly drawn secret, so a leak names the
// path it took, and a marker of its own, which must reach the engine or the
// database: a secret that reached nothing would prove nothing.
func TestSecretsCorpus(t *testing.T) {
	e, logs := newSecretsEnv(t)
	addr := e.listen()
	from := e.rec.len()
	// Kinds typed from their first character to their last, one request
	// per keystroke.
	typedWhole := []string{"aws-access-key-id", "yaml-password", "postgres-url", "rsa-private-key"}

	// Three plugins at once, each with its own account, project and
	// sockets, share the kinds between them.
	runs := make([]*corpusRun, 3)
	t.Run("plugins", func(t *testing.T) {
		for w := range runs {
			runs[w] = &corpusRun{}
			t.Run(strconv.Itoa(w), func(t *testing.T) {
				t.Parallel()
				r := runs[w]
				r.start(t, e, addr, fmt.Sprintf("corpus%d@example.com", w))
				for i := w; i < len(secretKinds); i += len(runs) {
					r.kind(i, secretKinds[i])
				}
				for i := w; i < len(typedWhole); i += len(runs) {
					r.typeWhole(kindNamed(t, typedWhole[i]))
				}
				for _, conn := range []*websocket.Conn{r.ws.completion, r.ws.chat, r.ws.context} {
					conn.Close()
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	waitWSGoroutines(t)

	all := &corpusRun{t: t}
	tables := map[string]string{}
	for _, r := range runs {
		all.placed = append(all.placed, r.placed...)
		all.responses = append(all.responses, r.responses...)
		for table, text := range dumpUserRows(t, e, r.uid) {
			tables[table] += text
		}
	}
	var db []string
	for _, text := range tables {
		db = append(db, text)
	}
	sinks := map[string]string{
		"engine":    e.rec.since(from),
		"database":  strings.Join(db, "\n\x00\n"),
		"responses": all.responseStrings(),
		"logs":      logs.strings(t),
	}
	t.Logf("sinks: engine %d bytes, database %d, responses %d, logs %d", len(sinks["engine"]), len(sinks["database"]),
		len(sinks["responses"]), len(sinks["logs"]))
	all.check(sinks)
}

// start signs a plugin's user up (storing context allowed), logs it in,
// creates its project and opens its three sockets.
func (r *corpusRun) start(t *testing.T, e *pluginEnv, addr, email string) {
	r.t = t
	r.e = &pluginEnv{env: &env{t: t, srv: e.srv}, rec: e.rec, ids: e.ids}
	r.uid = r.e.signup(email)
	r.c = r.e.loggedIn(email)
	r.c.expect("POST", "/api/project/create", map[string]any{"project_name": "corpus"}, 201)
	if _, err := e.srv.db.Exec(t.Context(), `UPDATE users SET preference = '{"store_context": true}' WHERE user_id = $1`, r.uid); err != nil {
		t.Fatal(err)
	}
	r.ws = &corpusSockets{
		completion: r.e.wsDial(addr, "/api/ws/completion", r.c),
		chat:       r.e.wsDial(addr, "/api/ws/chat", r.c),
		context:    r.e.wsDial(addr, "/api/ws/completion/multi-file-context", r.c),
	}
}

// corpusSockets are the three WebSocket connections of the plugin.
type corpusSockets struct{ completion, chat, context *websocket.Conn }

// placement is one planted secret: where it was put and what must not
// leave.
type placement struct {
	kind, where string
	needles     []string
	marker      string
	// engine says the text is sent to the engine (the marker must reach
	// it); otherwise it is only stored (the marker must reach the database).
	engine bool
}

type corpusRun struct {
	t         *testing.T
	e         *pluginEnv
	uid       string
	c         *client
	ws        *corpusSockets
	placed    []*placement
	responses []string
	seq       int
}

// plantBare draws a fresh credential of k for the placement where and
// returns its code and the placement's marker.
func (r *corpusRun) plantBare(k secretKind, where string, engine bool) (code, marker string) {
	code, needles := k.make(r.t)
	r.seq++
	p := &placement{kind: k.name, where: where, needles: needles, marker: fmt.Sprintf("mk%s%04d", randomFrom(csLower, 6), r.seq), engine: engine}
	r.placed = append(r.placed, p)
	return code, p.marker
}

// plant is plantBare with the code after a line holding the marker.
func (r *corpusRun) plant(k secretKind, where string, engine bool) string {
	code, marker := r.plantBare(k, where, engine)
	return "# " + marker + "\n" + code
}

// prose is a credential, after its marker line, in a sentence.
func prose(code string) string {
	marker, rest, _ := strings.Cut(code, "\n")
	return marker + "\nFYI, staging uses " + rest + " until we rotate it next week; do not paste it in chat."
}

func (r *corpusRun) do(c *client, method, path string, body any, status int) resp {
	r.t.Helper()
	res := c.expect(method, path, body, status)
	r.responses = append(r.responses, string(res.raw))
	return res
}

// kind runs every placement of k: one context update over HTTP and one
// over the WebSocket, one completion over HTTP and its feedback, two
// keystrokes over the WebSocket and a chat turn (over HTTP for one kind,
// over the WebSocket for the next).
func (r *corpusRun) kind(i int, k secretKind) {
	t := r.t
	coder, instruct := r.e.ids["tiny-coder"], r.e.ids["tiny-instruct"]
	header := "# " + k.file + "\n"

	// Context files: at the end of one file, at the start of another, a key
	// inserted one line per change, and a file sent over the WebSocket.
	dir := k.name + "/"
	files := []string{dir + "a-" + k.file, dir + "b-" + k.file, dir + "c-" + k.file, dir + "d-" + k.file}
	insert := func(lines ...string) map[string]any {
		return map[string]any{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": lines}
	}
	var perLine []any
	lines := strings.Split(r.plant(k, "context file, one line per change", true), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		perLine = append(perLine, insert(lines[i]))
	}
	r.do(r.c, "POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": map[string]any{
		files[0]: []any{insert(append([]string{"import os", "", "DEBUG = False"}, strings.Split(r.plant(k, "context file, last line", true), "\n")...)...)},
		files[1]: []any{insert(append(strings.Split(r.plant(k, "context file, first line", true), "\n"), "", "TIMEOUT = 30")...)},
		files[2]: perLine,
	}}, 200)
	r.send(r.ws.context, "multi_file_context_update", map[string]any{"context_updates": map[string]any{
		files[3]: []any{insert(append(append([]string{"[app]"}, strings.Split(r.plant(k, "context file over the WebSocket", true), "\n")...), "[log]")...)},
	}}, "multi_file_context_update_result")

	// HTTP completion with the context files: in the code before the
	// cursor, the prefix ending right after a secret, the suffix starting
	// with one and holding prose, the selected text; then the ground truth
	// of its feedback.
	first, marker := r.plantBare(k, "suffix start", true)
	body := completionBody([]int64{coder},
		header+r.plant(k, "prefix (code)", true)+"\n\nrelease = 1\n"+r.plant(k, "prefix end", true),
		first+"\n# "+marker+"\n"+prose(r.plant(k, "suffix (prose)", true))+"\n")
	body["store_context"] = true
	body["context"].(map[string]any)["file_name"] = k.file
	body["context"].(map[string]any)["selected_text"] = r.plant(k, "selected text", false)
	body["context"].(map[string]any)["context_files"] = files
	res := r.do(r.c, "POST", "/api/completion/request", body, 200)
	mq := res.body["data"].(map[string]any)["meta_query_id"].(string)
	r.do(r.c, "POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": coder, "was_accepted": false,
		"ground_truth": r.plant(k, "ground truth", false)}, 200)

	// The last two keystrokes of a secret over the WebSocket, as fast as
	// the plugin sends them: the second supersedes the first and streams
	// its tokens.
	typed := r.plant(k, "typed over the WebSocket", true)
	var last string
	for cut := 1; cut >= 0; cut-- {
		b := completionBody([]int64{coder}, header+typed[:len(typed)-cut], "\n")
		b["context"].(map[string]any)["file_name"] = k.file
		last = fmt.Sprintf("%s-%d", k.name, cut)
		if err := r.ws.completion.WriteJSON(map[string]any{"request_id": last, "completion_request": b}); err != nil {
			t.Fatal(err)
		}
	}
	r.readUntil(r.ws.completion, last, "completion_result")

	// A chat turn with one context file.
	if i%2 == 0 {
		chat := chatBody([]int64{instruct}, uuid.NewString(), [2]string{"user", prose(r.plant(k, "chat message", true))})
		chat["context"].(map[string]any)["context_files"] = files[:1]
		r.do(r.c, "POST", "/api/chat/request", chat, 200)
	} else {
		chat := chatBody([]int64{instruct}, uuid.NewString(), [2]string{"user", "Why does this fail?\n" + r.plant(k, "chat over the WebSocket", true)})
		chat["context"].(map[string]any)["context_files"] = files[:1]
		r.send(r.ws.chat, "chat_request", chat, "chat_result")
	}
}

// typeWhole types a credential of k from its first character to its last,
// one request per keystroke, over HTTP; a key block is typed one line per
// request.
func (r *corpusRun) typeWhole(k secretKind) {
	typed := r.plant(k, "typed from the first character", true)
	secret := r.placed[len(r.placed)-1].needles[0]
	start := strings.Index(typed, secret)
	typed = typed[:min(len(typed), start+len(secret)+1)] // and one keystroke after it
	step := func(i int) int { return i + 1 }
	if strings.Contains(typed, "-----BEGIN") {
		step = func(i int) int {
			if nl := strings.IndexByte(typed[min(i+1, len(typed)):], '\n'); nl >= 0 {
				return i + 1 + nl
			}
			return max(i+1, len(typed))
		}
	}
	for i := step(start); i <= len(typed); i = step(i) {
		b := completionBody([]int64{r.e.ids["tiny-coder"]}, "# "+k.file+"\n"+typed[:i], "\n")
		b["context"].(map[string]any)["file_name"] = k.file
		r.do(r.c, "POST", "/api/completion/request", b, 200)
	}
}

// responseStrings returns the strings of every response body and frame,
// unescaped.
func (r *corpusRun) responseStrings() string {
	out := make([]string, len(r.responses))
	for i, raw := range r.responses {
		s, err := jsonStrings([]byte(raw))
		if err != nil {
			r.t.Fatalf("response %.200s: %v", raw, err)
		}
		out[i] = s
	}
	return strings.Join(out, "\n\x00\n")
}

// send sends one request frame and reads until its final frame.
func (r *corpusRun) send(conn *websocket.Conn, key string, payload any, final string) {
	r.seq++
	id := fmt.Sprintf("req-%d", r.seq)
	if err := conn.WriteJSON(map[string]any{"request_id": id, key: payload}); err != nil {
		r.t.Fatal(err)
	}
	r.readUntil(conn, id, final)
}

// readUntil keeps every frame until the one of type final for request id,
// which must answer 200.
func (r *corpusRun) readUntil(conn *websocket.Conn, id, final string) {
	r.t.Helper()
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		r.responses = append(r.responses, string(data))
		var f struct {
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
			Status    int    `json:"status_code"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			r.t.Fatalf("frame %q: %v", data, err)
		}
		if f.Type == final && f.RequestID == id {
			if f.Status != 200 {
				r.t.Fatalf("%s %s: %s", final, id, data)
			}
			return
		}
	}
}

// check fails on every needle found in a sink, on every placement whose
// marker reached neither the engine nor the database, and on a kind whose
// rule's placeholder never follows its markers in the prompts; it logs per
// kind the recall, the leaks per sink and the placeholders seen.
func (r *corpusRun) check(sinks map[string]string) {
	t := r.t
	order := []string{"engine", "database", "responses", "logs"}
	type tally struct {
		placed, leaked int
		bySink         map[string]int
		rules          map[string]bool
	}
	tallies := map[string]*tally{}
	for _, k := range secretKinds {
		tallies[k.name] = &tally{bySink: map[string]int{}, rules: map[string]bool{}}
	}
	for _, p := range r.placed {
		tl := tallies[p.kind]
		tl.placed++
		switch {
		case p.engine && !strings.Contains(sinks["engine"], p.marker):
			t.Errorf("%s, %s: the text never reached the engine (marker %s)", p.kind, p.where, p.marker)
		case !p.engine && !strings.Contains(sinks["database"], p.marker):
			t.Errorf("%s, %s: the text was never stored (marker %s)", p.kind, p.where, p.marker)
		case p.engine && p.where != "suffix start": // its marker follows it
			for _, m := range placeholderRe.FindAllStringSubmatch(after(sinks["engine"], p.marker), -1) {
				tl.rules[m[1]] = true
			}
		}
		leaked := false
		for _, sink := range order {
			text := sinks[sink]
			for _, n := range p.needles {
				if strings.Contains(text, n) {
					t.Errorf("LEAK %s, %s: %.12s… found in the %s", p.kind, p.where, n, sink)
					tl.bySink[sink]++
					leaked = true
					break
				}
			}
		}
		if leaked {
			tl.leaked++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-26s %6s %6s %6s %8s %5s %4s  %s\n", "kind", "placed", "recall", "engine", "database", "resp", "logs", "placeholders")
	for _, k := range secretKinds {
		tl := tallies[k.name]
		if !tl.rules[k.rule] {
			t.Errorf("%s: no %s placeholder after any of its markers", k.name, k.rule)
		}
		fmt.Fprintf(&b, "%-26s %6d %5.0f%% %6d %8d %5d %4d  %s\n", k.name, tl.placed, 100*float64(tl.placed-tl.leaked)/float64(tl.placed),
			tl.bySink["engine"], tl.bySink["database"], tl.bySink["responses"], tl.bySink["logs"], strings.Join(slices.Sorted(maps.Keys(tl.rules)), " "))
	}
	t.Logf("recall per kind over %d placements (leaks per sink):%s", len(r.placed), b.String())
}

// placeholderRe matches a placeholder of the redaction.
var placeholderRe = regexp.MustCompile(`<redacted:([a-z0-9-]+)>`)

// after returns the text after the last occurrence of marker up to the
// next marker or the end of the text the engine tokenized.
func after(s, marker string) string {
	s = s[strings.LastIndex(s, marker)+len(marker):]
	if end := strings.IndexAny(s, "\x00"); end >= 0 {
		s = s[:end]
	}
	if end := strings.Index(s, "# mk"); end >= 0 {
		s = s[:end]
	}
	return s
}

func kindNamed(t *testing.T, name string) secretKind {
	for _, k := range secretKinds {
		if k.name == name {
			return k
		}
	}
	t.Fatalf("no kind %s", name)
	return secretKind{}
}
