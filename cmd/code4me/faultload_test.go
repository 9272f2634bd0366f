package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// faultLoad is the fault tests' load: plugin users, each signed in with a
// session and a project, who send completion requests over HTTP one after
// the other and, for every answered one, its feedback with a ground truth.
// It counts every answer by the phase of the test it arrived in, and keeps
// every acknowledged (2xx) completion and feedback so that the test can
// check each is in Postgres afterwards.
//
// A user answered 401 signs in again (password, session, a new project),
// as the plugin does when its tokens are gone. Any other failure is tried
// again 50 ms later.
type faultLoad struct {
	e     *faultEnv
	users []*faultUser

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	phase  string
	counts map[string]map[string]int // phase -> "route status" -> answers
	// completed and relogins count, per phase, each user's answered
	// completions and sign-ins.
	completed, relogins map[string]map[*faultUser]int
	unexpected          []string // 5xx other than 503, each with its body
	acks                []faultAck
}

// faultUser is one plugin user of the load.
type faultUser struct {
	i     int
	email string
	hc    *http.Client
	n     int // requests sent
}

// faultAck is a write the server acknowledged with a 2xx.
type faultAck struct {
	feedback bool // a feedback; else a completion
	mq       string
	model    int64
	accepted bool   // the feedback's was_accepted
	truth    string // the feedback's ground truth
}

const faultPassword = "Secret123"

// newFaultLoad signs up n users (each gets a verification mail job) and
// signs each in, in phase "before".
func newFaultLoad(e *faultEnv, n int) *faultLoad {
	e.t.Helper()
	l := &faultLoad{e: e, phase: "before", counts: map[string]map[string]int{},
		completed: map[string]map[*faultUser]int{}, relogins: map[string]map[*faultUser]int{}}
	for i := range n {
		jar, _ := cookiejar.New(nil)
		u := &faultUser{i: i, email: fmt.Sprintf("fault%d@example.com", i), hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
		status, m, err := l.do(u, "POST", "/api/user/create", map[string]any{"email": u.email, "name": "Fault", "password": faultPassword, "config_id": 1})
		if status != 201 {
			e.t.Fatalf("sign-up of %s: %d %v %v", u.email, status, m, err)
		}
		if !l.login(u) {
			e.t.Fatalf("sign-in of %s failed: %v", u.email, l.counts)
		}
		l.users = append(l.users, u)
	}
	return l
}

// start runs the users until stop.
func (l *faultLoad) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for _, u := range l.users {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.run(ctx, u)
		}()
	}
}

// stop ends the load once every user's request in flight is answered.
func (l *faultLoad) stop() {
	l.cancel()
	l.wg.Wait()
	for _, u := range l.users {
		u.hc.CloseIdleConnections()
	}
}

// setPhase names the phase that answers arriving from now on count in.
func (l *faultLoad) setPhase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
}

func (l *faultLoad) run(ctx context.Context, u *faultUser) {
	signedIn := true
	last := "" // the last answered query
	for ctx.Err() == nil {
		if !signedIn {
			if signedIn = l.login(u); !signedIn {
				pause(ctx)
				continue
			}
		}
		u.n++
		status, m, _ := l.do(u, "POST", "/api/completion/request", faultCompletion(l.e.modelID, u, u.n))
		switch status {
		case 200:
		case 401:
			signedIn = false
			continue
		default:
			// The feedback on the last answered query goes again (the
			// plugin's queue of unsent feedback), so feedback meets the
			// fault too.
			if last != "" {
				signedIn = l.feedback(u, last)
			}
			pause(ctx)
			continue
		}
		data, _ := m["data"].(map[string]any)
		mq, _ := data["meta_query_id"].(string)
		if mq == "" || !hasOneCompletion(m) {
			l.mu.Lock()
			l.unexpected = append(l.unexpected, fmt.Sprintf("completion 200 without a completion: %v", m))
			l.mu.Unlock()
			continue
		}
		l.mu.Lock()
		l.acks = append(l.acks, faultAck{mq: mq, model: l.e.modelID})
		l.count(l.completed, u)
		l.mu.Unlock()
		last = mq
		signedIn = l.feedback(u, mq)
	}
}

// feedback sends u's feedback on query mq, with a ground truth of its
// own, and reports whether u is still signed in (no 401). Every feedback
// on a query says the same of its acceptance (half the queries are
// accepted, by their id), so that one sent again, or one that committed
// but was never answered, cannot contradict another.
func (l *faultLoad) feedback(u *faultUser, mq string) bool {
	fb := faultAck{feedback: true, mq: mq, model: l.e.modelID, accepted: strings.IndexByte("02468ace", mq[len(mq)-1]) >= 0,
		truth: fmt.Sprintf("value_%d_%d = %d", u.i, u.n, u.n*7)}
	status, _, _ := l.do(u, "POST", "/api/completion/feedback", map[string]any{"meta_query_id": mq, "model_id": fb.model,
		"was_accepted": fb.accepted, "ground_truth": fb.truth, "shown_at": []string{time.Now().UTC().Format(time.RFC3339Nano)}})
	if status == 200 {
		l.mu.Lock()
		l.acks = append(l.acks, fb)
		l.mu.Unlock()
	}
	return status != 401
}

// login signs u in as the plugin does: password, session, a project.
func (l *faultLoad) login(u *faultUser) bool {
	if s, _, _ := l.do(u, "POST", "/api/user/authenticate", map[string]any{"email": u.email, "password": faultPassword}); s != 200 {
		return false
	}
	if s, _, _ := l.do(u, "GET", "/api/session/acquire", nil); s != 200 {
		return false
	}
	if s, _, _ := l.do(u, "POST", "/api/project/create", map[string]any{"project_name": "fault"}); s != 201 {
		return false
	}
	l.mu.Lock()
	l.count(l.relogins, u)
	l.mu.Unlock()
	return true
}

// count adds one to u's count of the current phase; l.mu is held.
func (l *faultLoad) count(c map[string]map[*faultUser]int, u *faultUser) {
	if c[l.phase] == nil {
		c[l.phase] = map[*faultUser]int{}
	}
	c[l.phase][u]++
}

// do sends one request as u and counts its answer under the route and
// status ("error" when none came).
func (l *faultLoad) do(u *faultUser, method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, l.e.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	status, raw, err := 0, []byte(nil), error(nil)
	res, err := u.hc.Do(req)
	if err == nil {
		raw, err = io.ReadAll(res.Body)
		res.Body.Close()
		status = res.StatusCode
	}
	outcome := fmt.Sprint(status)
	if err != nil {
		status, outcome = 0, "error"
	}
	l.mu.Lock()
	if l.counts[l.phase] == nil {
		l.counts[l.phase] = map[string]int{}
	}
	l.counts[l.phase][path+" "+outcome]++
	if status >= 500 && status != 503 && len(l.unexpected) < 20 {
		l.unexpected = append(l.unexpected, fmt.Sprintf("%s %s: %d %s", method, path, status, raw))
	}
	l.mu.Unlock()
	var m map[string]any
	json.Unmarshal(raw, &m)
	return status, m, err
}

// pause waits 50 ms before a failed request is tried again.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(50 * time.Millisecond):
	}
}

// faultCompletion is user u's n-th completion request: some 40 lines of
// prefix, unique to the request.
func faultCompletion(model int64, u *faultUser, n int) map[string]any {
	var b strings.Builder
	fmt.Fprintf(&b, "# user %d request %d\n", u.i, n)
	for i := range 40 {
		fmt.Fprintf(&b, "value_%d = compute(value_%d, %d)\n", i+1, i, (i*7919+n)%100000)
	}
	b.WriteString("total = ")
	file := fmt.Sprintf("fault_%d.py", u.i)
	return map[string]any{
		"model_ids": []int64{model},
		"context":   map[string]any{"prefix": b.String(), "suffix": "\n", "file_name": file, "selected_text": "", "context_files": []string{}},
		"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 47,
			"file_path": file, "caret_line": 41, "document_char_length": b.Len() + 1, "relative_document_position": 0.9},
		"behavioral_telemetry": map[string]any{"time_since_last_shown": 1200, "time_since_last_accepted": 5000, "typing_speed": 3.5},
	}
}

// waitEach waits until every user has had n completions answered in phase,
// and fails the test when that takes longer than limit.
func (l *faultLoad) waitEach(phase string, n int, limit time.Duration) {
	t := l.e.t
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		l.mu.Lock()
		done := 0
		for _, u := range l.users {
			if l.completed[phase][u] >= n {
				done++
			}
		}
		l.mu.Unlock()
		if done == len(l.users) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d users had %d completions answered in phase %q within %v; answers: %s",
				done, len(l.users), n, phase, limit, l.summary())
		}
	}
}

// waitOutcome waits until an answer "route status" arrived in phase, and
// fails the test when none did within limit.
func (l *faultLoad) waitOutcome(phase, outcome string, limit time.Duration) {
	t := l.e.t
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		n := l.counts[phase][outcome]
		l.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in phase %q within %v; answers: %s", outcome, phase, limit, l.summary())
		}
	}
}

// outcomes returns a copy of the answers counted in phase.
func (l *faultLoad) outcomes(phase string) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.counts[phase] {
		out[k] = v
	}
	return out
}

// summary lists the answers of every phase.
func (l *faultLoad) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	phases := make([]string, 0, len(l.counts))
	for p := range l.counts {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	for _, p := range phases {
		keys := make([]string, 0, len(l.counts[p]))
		for k := range l.counts[p] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "\n  %s:", p)
		for _, k := range keys {
			fmt.Fprintf(&b, " [%s]=%d", k, l.counts[p][k])
		}
	}
	return b.String()
}

// checkAnswers fails the test for any 5xx other than 503, and for any
// answer in phase other than those allowed (statuses, or "error" for no
// answer), route by route.
func (l *faultLoad) checkAnswers(phase string, allowed ...string) {
	t := l.e.t
	t.Helper()
	l.mu.Lock()
	unexpected := append([]string(nil), l.unexpected...)
	l.mu.Unlock()
	for _, u := range unexpected {
		t.Errorf("unexpected answer: %s", u)
	}
	for k, n := range l.outcomes(phase) {
		status := k[strings.LastIndexByte(k, ' ')+1:]
		if !slices.Contains(allowed, status) {
			t.Errorf("phase %q: %d answers %q; allowed: %v", phase, n, k, allowed)
		}
	}
}

// reconcile checks that every acknowledged completion is in Postgres,
// answered (total_serving_ms set, its generation stored), every
// acknowledged feedback with its acceptance and ground truth, and that no
// query is half answered. It returns how many acknowledgements of each
// kind it checked.
func (l *faultLoad) reconcile() (completions, feedbacks int) {
	t := l.e.t
	t.Helper()
	conn := l.e.conn()
	ctx := context.Background()
	answered := map[string]bool{} // meta_query_id -> total_serving_ms set
	rows, err := conn.Query(ctx, `SELECT meta_query_id::text, total_serving_ms IS NOT NULL FROM meta_query`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var done bool
		if err := rows.Scan(&id, &done); err != nil {
			t.Fatal(err)
		}
		answered[id] = done
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	type genKey struct {
		mq    string
		model int64
	}
	accepted := map[genKey]bool{}
	rows, err = conn.Query(ctx, `SELECT meta_query_id::text, model_id, was_accepted FROM generation`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k genKey
		var a bool
		if err := rows.Scan(&k.mq, &k.model, &a); err != nil {
			t.Fatal(err)
		}
		accepted[k] = a
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	truths := map[string]bool{} // meta_query_id + "\x00" + ground truth
	rows, err = conn.Query(ctx, `SELECT meta_query_id::text, ground_truth FROM ground_truth`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var mq, truth string
		if err := rows.Scan(&mq, &truth); err != nil {
			t.Fatal(err)
		}
		truths[mq+"\x00"+truth] = true
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}

	l.mu.Lock()
	acks := append([]faultAck(nil), l.acks...)
	l.mu.Unlock()
	missing := 0
	for _, a := range acks {
		k := genKey{a.mq, a.model}
		got, stored := accepted[k]
		var bad string
		switch {
		case !a.feedback && (!answered[a.mq] || !stored):
			bad = fmt.Sprintf("completion %s: answered %v, generation stored %v", a.mq, answered[a.mq], stored)
		case a.feedback && (!stored || got != a.accepted || !truths[a.mq+"\x00"+a.truth]):
			bad = fmt.Sprintf("feedback on %s: was_accepted %v (sent %v), ground truth stored %v", a.mq, got, a.accepted, truths[a.mq+"\x00"+a.truth])
		}
		if bad != "" {
			if missing++; missing <= 10 {
				t.Errorf("acknowledged but not in Postgres: %s", bad)
			}
		}
		if a.feedback {
			feedbacks++
		} else {
			completions++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes not in Postgres", missing, len(acks))
	}
	// Every query is either answered (total_serving_ms and its
	// generations) or marked as never answered (total_serving_ms NULL, no
	// generation).
	var mixed int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM meta_query mq WHERE total_serving_ms IS NULL
		AND EXISTS (SELECT 1 FROM generation g WHERE g.meta_query_id = mq.meta_query_id)`).Scan(&mixed); err != nil {
		t.Fatal(err)
	}
	if mixed != 0 {
		t.Errorf("%d queries have generations but no total_serving_ms", mixed)
	}
	return completions, feedbacks
}
