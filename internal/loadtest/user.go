package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/workload"
)

// user is one simulated plugin user. Its goroutine (run) sends everything
// but the answers of HTTP completions, which their own goroutines read,
// and the WebSocket's frames, which wsReader reads; mu guards what those
// share with run.
type user struct {
	i      int
	o      Options
	rep    *Report
	hc     *http.Client
	c      *client
	models *models
	typist typist
	rng    *rand.Rand
	email  string
	key    bool // authenticates with an API key
	ws     bool // completions over the WebSocket

	userID, projectID string
	ctxFiles          []ctxFile
	ctxUncertain      bool // an edit of the context files got no definite answer since the last acknowledged one

	inflight sync.WaitGroup // HTTP completions and WebSocket requests not yet answered
	chats    sync.WaitGroup // the chat request in flight
	chatting atomic.Bool    // a chat request is in flight
	sock     *wsConn
	lastKey  atomic.Int64 // when the latest keystroke was typed (Unix nanoseconds)
	// waiting: the user has stopped typing until its completions in flight
	// are answered (before a context-file edit, or at the end of the run).
	waiting atomic.Bool

	mu       sync.Mutex
	acked    Acked
	answered []answeredCompletion // completions with a generation, not yet given feedback
	fed      bool                 // a generation was picked for feedback
}

// answeredCompletion is a generation the user may give feedback on, with
// the text that followed the cursor (the ground truth).
type answeredCompletion struct {
	mq    string
	truth string
	first bool // the user's first: always with its ground truth
}

const password = "Load-test-Passw0rd"

// signup creates the user, logs in, consents to storing context and
// telemetry, acquires a session and creates a project.
func (u *user) signup(ctx context.Context) error {
	var created struct {
		UserID string `json:"user_id"`
	}
	if err := u.setup(ctx, "POST", "/api/user/create", map[string]any{"email": u.email, "name": "Load " + itoa(u.i),
		"password": password, "config_id": 1}, http.StatusCreated, &created); err != nil {
		return err
	}
	u.userID = created.UserID
	steps := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/api/user/authenticate", map[string]any{"email": u.email, "password": password}, http.StatusOK},
		// Consent: the rows Reconcile checks are stored only when the
		// user's preference allows them (and the request asks).
		{"PUT", "/api/user/update", map[string]any{"preference": map[string]any{"store_context": true,
			"store_contextual_telemetry": true, "store_behavioral_telemetry": true}}, http.StatusCreated},
		{"GET", "/api/session/acquire", nil, http.StatusOK},
	}
	for _, s := range steps {
		if err := u.setup(ctx, s.method, s.path, s.body, s.want, nil); err != nil {
			return err
		}
	}
	return u.createProject(ctx)
}

func (u *user) createProject(ctx context.Context) error {
	var pr struct {
		ProjectID    string `json:"project_id"`
		ProjectToken string `json:"project_token"`
	}
	if err := u.setup(ctx, "POST", "/api/project/create", map[string]any{"project_name": "load " + itoa(u.i)}, http.StatusCreated, &pr); err != nil {
		return err
	}
	u.projectID = pr.ProjectID
	if u.key {
		u.c.header.Set("X-Project-Token", pr.ProjectToken)
	}
	return nil
}

// useKey creates an API key and from then on authenticates with it alone
// (no cookies), in a project created with the key.
func (u *user) useKey(ctx context.Context) error {
	var k struct {
		APIKey string `json:"api_key"`
	}
	if err := u.setup(ctx, "POST", "/api/user/api-keys", map[string]any{"name": "load", "scopes": []string{"completions"}},
		http.StatusCreated, &k); err != nil {
		return err
	}
	u.c.jar = nil
	u.c.header.Set("Authorization", "Bearer "+k.APIKey)
	// The key's own session, sent as X-Session-Token as editor clients
	// without cookies do.
	var sess struct {
		SessionToken string `json:"session_token"`
	}
	if err := u.setup(ctx, "GET", "/api/session/acquire", nil, http.StatusOK, &sess); err != nil {
		return err
	}
	u.c.header.Set("X-Session-Token", sess.SessionToken)
	return u.createProject(ctx)
}

func (u *user) onError(route string, status int) {
	if u.o.OnError != nil {
		u.o.OnError(route, status)
	}
}

// prepare signs the user up and, for a key user, switches to the key.
func (u *user) prepare(ctx context.Context) error {
	u.c = newClient(u.o.BaseURL, u.hc)
	if err := u.signup(ctx); err != nil {
		return err
	}
	if u.key {
		return u.useKey(ctx)
	}
	return nil
}

// run uploads the project's context and types until ctx ends, then waits
// for its requests in flight.
func (u *user) run(ctx context.Context) {
	defer u.settle()
	// The project's context: both files, whole.
	ups := map[string][]change{}
	for _, f := range u.ctxFiles {
		ups[f.name] = []change{{Type: "insert", Start: 0, End: 0, Lines: f.lines}}
	}
	u.contextUpdate(ctx, ups)
	// Each user edits and chats at its own keystrokes: the first edit after
	// 1 to ContextEvery keystrokes, the first chat after 1 to ChatEvery,
	// drawn from its seed. Were they at the same keystroke for all, the
	// users, who start together and type at the same pace, would edit
	// their context files (and start chats) in the same few seconds, a
	// burst that independent developers do not make.
	ctxPhase, chatPhase := u.rng.IntN(u.o.ContextEvery), u.rng.IntN(u.o.ChatEvery)
	keys := u.typist.keys
	for n := 0; ctx.Err() == nil; n++ {
		k := keys[n%len(keys)]
		u.complete(ctx, n, k, truthAfter(keys, n))
		switch {
		case every(n, u.o.ContextEvery, ctxPhase):
			// An edit of a context file, between keystrokes: the requests in
			// flight end first, so each request's context is known.
			u.waiting.Store(true)
			u.inflight.Wait()
			u.waiting.Store(false)
			f := u.ctxFiles[((n+ctxPhase)/u.o.ContextEvery)%len(u.ctxFiles)]
			line := fmt.Sprintf("// edit %d of %s", n, f.name)
			at := u.rng.IntN(len(f.lines) + 1)
			u.contextUpdate(ctx, map[string][]change{f.name: {{Type: "insert", Start: at, End: at, Lines: []string{line}}}})
		case every(n, u.o.ChatEvery, chatPhase) && u.models.chatName != "" && !u.o.NoChat && !u.chatting.Load():
			// The chat answers beside the typing, one at a time.
			u.chatting.Store(true)
			u.chats.Add(1)
			go func() {
				defer u.chats.Done()
				defer u.chatting.Store(false)
				u.chat(ctx, k)
			}()
		case n%100 == 99:
			// A deliberate 4xx: feedback on a query that does not exist.
			u.send(ctx, RouteFeedback, "POST", "/api/completion/feedback", map[string]any{"meta_query_id": uuid.NewString(),
				"model_id": u.models.id, "was_accepted": false, "shown_at": []string{}}, http.StatusNotFound)
		}
		u.feedback(ctx)
		gap := keyMin + time.Duration(u.rng.Int64N(int64(keyJitter)))
		if !u.o.Continuous {
			gap += pause(u.rng, k)
		}
		if !sleep(ctx, gap) {
			break
		}
	}
}

// every says whether keystroke n (counted from 0) is followed by an action
// a user takes after every period keystrokes, the first after
// period - phase of them (phase in [0, period)).
func every(n, period, phase int) bool { return (n+phase)%period == period-1 }

// settle waits for the requests in flight, at most SettleTimeout, and
// closes the WebSocket.
func (u *user) settle() {
	u.waiting.Store(true)
	done := make(chan struct{})
	go func() { u.inflight.Wait(); u.chats.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(u.o.SettleTimeout):
	}
	// Feedback on the last answers, as a plugin sends it after the typing.
	fctx, cancel := context.WithTimeout(context.Background(), u.o.SettleTimeout)
	defer cancel()
	u.feedback(fctx)
	if u.sock != nil {
		u.sock.close()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ctxUncertain {
		return
	}
	last := map[string]int{}
	for i, c := range u.acked.ContextUpdates {
		last[c.FileName] = i
	}
	for _, i := range last {
		u.acked.ContextUpdates[i].Final = true
	}
}

// truthAfter is the text typed after keystroke n (up to 40 bytes of the
// next keystrokes' prefixes): what the developer actually wrote.
func truthAfter(keys []workload.Keystroke, n int) string {
	i := n % len(keys)
	j := min(i+40, len(keys)-1)
	if j <= i {
		return ""
	}
	a, b := keys[i].Prefix, keys[j].Prefix
	// Both prefixes end at the cursor; the window may have moved, so take
	// what b adds after a's last 64 bytes.
	tail := a[max(0, len(a)-64):]
	at := strings.LastIndex(b, tail)
	if at < 0 {
		return ""
	}
	return b[at+len(tail):]
}

// completionBody is the plugin's completion request for keystroke k.
func (u *user) completionBody(k workload.Keystroke) (map[string]any, AckedCompletion) {
	files := make([]string, len(u.ctxFiles))
	for i, f := range u.ctxFiles {
		files[i] = f.name
	}
	ct := Contextual{VersionID: 1, TriggerTypeID: 1 + int64(u.rng.IntN(2)), LanguageID: 1, FilePath: k.File,
		CaretLine: int64(strings.Count(k.Prefix, "\n")), DocumentCharLength: int64(len(k.Prefix) + len(k.Suffix))}
	ct.RelativeDocumentPosition = float64(len(k.Prefix)) / float64(max(ct.DocumentCharLength, 1))
	bt := Behavioral{TimeSinceLastShown: int64(u.rng.IntN(5000)), TimeSinceLastAccepted: int64(u.rng.IntN(60000)),
		TypingSpeed: float64(u.rng.IntN(80)) / 10}
	a := AckedCompletion{UserID: u.userID, ProjectID: u.projectID, Prefix: k.Prefix, Suffix: k.Suffix, FileName: k.File,
		Contextual: ct, Behavioral: bt}
	u.mu.Lock()
	a.ContextKnown = !u.ctxUncertain
	for _, f := range u.ctxFiles {
		a.ContextFiles = append(a.ContextFiles, ContextFileSent{Name: f.name, Content: strings.Join(f.lines, "\n")})
	}
	u.mu.Unlock()
	body := map[string]any{
		"model_ids": []int64{u.models.id},
		"context": map[string]any{"prefix": k.Prefix, "suffix": k.Suffix, "file_name": k.File, "selected_text": "",
			"context_files": files},
		"store_context": true, "store_contextual_telemetry": true, "store_behavioral_telemetry": true,
		"contextual_telemetry": map[string]any{"version_id": ct.VersionID, "trigger_type_id": ct.TriggerTypeID,
			"language_id": ct.LanguageID, "file_path": ct.FilePath, "caret_line": ct.CaretLine,
			"document_char_length": ct.DocumentCharLength, "relative_document_position": ct.RelativeDocumentPosition},
		"behavioral_telemetry": map[string]any{"time_since_last_shown": bt.TimeSinceLastShown,
			"time_since_last_accepted": bt.TimeSinceLastAccepted, "typing_speed": bt.TypingSpeed},
	}
	return body, a
}

// completionAnswer is the body of a completion answer (the WebSocket
// result frame's content).
type completionAnswer struct {
	Data struct {
		MetaQueryID string `json:"meta_query_id"`
		Completions []struct {
			ModelID    int64  `json:"model_id"`
			Completion string `json:"completion"`
			Error      string `json:"error"`
		} `json:"completions"`
	} `json:"data"`
}

// complete sends keystroke n's completion request, over the WebSocket or
// HTTP, without waiting for its answer.
func (u *user) complete(ctx context.Context, n int, k workload.Keystroke, truth string) {
	body, a := u.completionBody(k)
	u.lastKey.Store(time.Now().UnixNano())
	// One answered generation in three gets feedback.
	pick := u.rng.IntN(3) == 0
	if u.ws {
		if err := u.wsComplete(ctx, n, body, a, truth, pick); err == nil {
			return
		}
		// No WebSocket now (the server restarted, say): this keystroke goes
		// over HTTP, and the next one tries to connect again.
	}
	u.inflight.Add(1)
	go func() {
		defer u.inflight.Done()
		t0 := time.Now()
		ans := u.c.do(context.WithoutCancel(ctx), "POST", "/api/completion/request", body)
		answered := u.completionAnswered(RouteCompletion, ans.status, ans.body, time.Since(t0), a, truth, pick)
		if ans.status == http.StatusOK {
			u.rep.stages(answered, ans.header.Get("Server-Timing"))
		}
	}()
}

// completionAnswered records an answer to a completion request: its
// status and latency, and, for a 200, the acknowledged rows. The user
// gives feedback on its first generation, and on the others when pick is
// set. True when a completion was answered (not superseded, no error).
func (u *user) completionAnswered(route string, status int, body []byte, d time.Duration, a AckedCompletion, truth string, pick bool) bool {
	var res completionAnswer
	superseded := false
	if status == http.StatusOK {
		if err := json.Unmarshal(body, &res); err != nil || res.Data.MetaQueryID == "" {
			u.rep.badAnswer(route)
			status = -1
		}
		for _, c := range res.Data.Completions {
			switch c.Error {
			case "":
			case "superseded":
				superseded = true
			default:
				u.rep.errorItem(route, c.Error)
			}
		}
	}
	u.rep.record(route, status, d, superseded)
	if status == http.StatusOK && !superseded && len(res.Data.Completions) > 0 && res.Data.Completions[0].Error == "" {
		// The latency the developer sees: from the last keystroke typed
		// before the answer came, not from this request's own.
		u.rep.sinceKeystroke(time.Since(time.Unix(0, u.lastKey.Load())), u.waiting.Load())
	}
	if status < 200 || status > 299 {
		u.onError(route, status)
		return false
	}
	a.MetaQueryID = res.Data.MetaQueryID
	for _, c := range res.Data.Completions {
		if c.Error == "" {
			a.Generations = append(a.Generations, AckedGeneration{ModelID: c.ModelID, Completion: c.Completion})
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.acked.Completions = append(u.acked.Completions, a)
	if len(a.Generations) > 0 && (pick || !u.fed) {
		u.answered = append(u.answered, answeredCompletion{mq: a.MetaQueryID, truth: truth, first: !u.fed})
		u.fed = true
	}
	return !superseded && len(a.Generations) > 0
}

// feedback gives feedback on the generations picked since the last call:
// shown, accepted one time in three, with the ground truth one time in
// three.
func (u *user) feedback(ctx context.Context) {
	u.mu.Lock()
	todo := u.answered
	u.answered = nil
	u.mu.Unlock()
	for _, a := range todo {
		shown := time.Now().UTC().Truncate(time.Millisecond)
		fb := AckedFeedback{MetaQueryID: a.mq, ModelID: u.models.id, WasAccepted: u.rng.IntN(3) == 0, ShownAt: []time.Time{shown}}
		body := map[string]any{"meta_query_id": a.mq, "model_id": fb.ModelID, "was_accepted": fb.WasAccepted,
			"shown_at": []string{shown.Format(time.RFC3339Nano)}}
		if a.truth != "" && (a.first || u.rng.IntN(3) == 0) {
			fb.GroundTruth = a.truth
			body["ground_truth"] = a.truth
		}
		if u.send(ctx, RouteFeedback, "POST", "/api/completion/feedback", body, http.StatusOK) {
			u.mu.Lock()
			u.acked.Feedback = append(u.acked.Feedback, fb)
			u.mu.Unlock()
		}
	}
}

// send sends one request and records it; want is the status it should
// get (a deliberate 4xx, or 200). True when it got want and want is 2xx.
func (u *user) send(ctx context.Context, route, method, path string, body any, want int) bool {
	t0 := time.Now()
	a := u.c.do(context.WithoutCancel(ctx), method, path, body)
	d := time.Since(t0)
	if want >= 400 && a.status == want {
		u.rep.deliberate(route, a.status, d)
		return false
	}
	u.rep.record(route, a.status, d, false)
	if a.status < 200 || a.status > 299 {
		u.onError(route, a.status)
	}
	return a.status == want
}

// change is one line edit of a context file.
type change struct {
	Type       string   `json:"change_type"`
	Start, End int      `json:"-"`
	Lines      []string `json:"new_lines"`
}

func (c change) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"change_type": c.Type, "start_line": c.Start, "end_line": c.End, "new_lines": c.Lines})
}

// contextUpdate sends edits of context files and, when acknowledged, keeps
// the files as the server answered them.
func (u *user) contextUpdate(ctx context.Context, ups map[string][]change) {
	t0 := time.Now()
	a := u.c.do(context.WithoutCancel(ctx), "POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": ups})
	u.rep.record(RouteContextUpdate, a.status, time.Since(t0), false)
	if a.status != http.StatusOK {
		u.onError(RouteContextUpdate, a.status)
		if a.status == 0 || a.status >= 500 {
			// It may have been applied.
			u.mu.Lock()
			u.ctxUncertain = true
			u.mu.Unlock()
		}
		return
	}
	var res struct {
		Data map[string][]string `json:"data"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil {
		u.rep.badAnswer(RouteContextUpdate)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ctxUncertain = false
	for name, chs := range ups {
		for _, ch := range chs {
			u.acked.ContextUpdates = append(u.acked.ContextUpdates, AckedContextUpdate{ProjectID: u.projectID, FileName: name,
				ChangeType: ch.Type, StartLine: ch.Start, EndLine: ch.End, NewLines: ch.Lines, Lines: res.Data[name]})
		}
		for i := range u.ctxFiles {
			if u.ctxFiles[i].name == name {
				u.ctxFiles[i].lines = res.Data[name]
			}
		}
	}
}

// chat asks the chat model about the line being typed, in a new chat.
func (u *user) chat(ctx context.Context, k workload.Keystroke) {
	line := k.Prefix[strings.LastIndexByte(k.Prefix, '\n')+1:]
	msg := fmt.Sprintf("What does this line of %s do? %s", k.File, line)
	chatID := uuid.NewString()
	body := map[string]any{"model_ids": []int64{u.models.chatID}, "chat_id": chatID, "messages": [][]string{{"user", msg}},
		"context": map[string]any{"prefix": k.Prefix, "suffix": k.Suffix, "file_name": k.File}}
	t0 := time.Now()
	a := u.c.do(context.WithoutCancel(ctx), "POST", "/api/chat/request", body)
	u.rep.record(RouteChat, a.status, time.Since(t0), false)
	if a.status != http.StatusOK {
		u.onError(RouteChat, a.status)
		return
	}
	var res struct {
		History []struct {
			UserMessage struct {
				MetaQueryID string `json:"meta_query_id"`
			} `json:"user_message"`
			Responses []struct {
				ModelID    int64  `json:"model_id"`
				Completion string `json:"completion"`
				Error      string `json:"error"`
			} `json:"assistant_responses"`
		} `json:"history"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil || len(res.History) != 1 {
		u.rep.badAnswer(RouteChat)
		return
	}
	ac := AckedChat{ChatID: chatID, MetaQueryID: res.History[0].UserMessage.MetaQueryID, UserID: u.userID, Message: msg}
	for _, r := range res.History[0].Responses {
		if r.Error == "" {
			ac.Generations = append(ac.Generations, AckedGeneration{ModelID: r.ModelID, Completion: r.Completion})
		}
	}
	u.mu.Lock()
	u.acked.Chats = append(u.acked.Chats, ac)
	u.mu.Unlock()
}
