// Package loadtest drives a running code4me server the way many plugin users
// do at once, through its HTTP API and completion WebSocket, and checks
// afterwards that every row the server acknowledged is in Postgres with the
// content that was sent.
//
// Each simulated user signs up, logs in, consents to storing context and
// telemetry, acquires a session, creates a project and uploads two context
// files; a share of the users then switches to an API key (Bearer auth with
// the X-Project-Token header). Then the user types: one keystroke every
// 150 to 300 ms, retyping a region of a file of the Go source tree
// (internal/workload), with one completion request per keystroke, over
// POST /api/completion/request or, for every second user, over
// /api/ws/completion. A new keystroke does not wait for the previous
// request: the server supersedes it. Now and then the user sends feedback
// (with ground truth for some), changes a context file, or asks the chat
// model something.
//
// Every 2xx answer that promises stored rows is kept in Report.Acked with its
// ids and what was sent; Reconcile compares them with Postgres. The texts sent
// come from source files that the server's redaction rules leave unchanged,
// so the stored text must equal the sent text byte for byte.
//
// Run is safe to call from tests and from the `code4me loadtest` command; it
// starts goroutines for the users and the RSS sampler and waits for all of
// them before it returns.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/code4me/code4me/internal/redact"
	"github.com/code4me/code4me/internal/workload"
)

// Options configure a run. The zero value of a field means its default.
type Options struct {
	BaseURL  string        // the server, e.g. http://127.0.0.1:8008 (required)
	Users    int           // simulated plugin users (default 32)
	Duration time.Duration // how long the users keep typing (default 2m)
	// Model is the completion model to request (default: the first
	// completion model that /api/ping lists). The chat model is the first
	// chat model the server serves; without one, users do not chat.
	Model    string
	KeyShare float64 // share of users that authenticate with an API key instead of a session (default 0.25; negative: none)
	Seed     int64   // seeds the users' pacing and choices
	Log      *slog.Logger
	// OnError, when set, is called for every answer that is not 2xx (status
	// 0 when no answer came: a refused or broken connection), from the
	// user's goroutine.
	OnError func(route string, status int)

	// ServerPID, when positive, is the server process on this machine whose
	// resident memory (VmRSS of /proc/<pid>/status) is sampled every
	// RSSEvery (default 5s).
	ServerPID int
	RSSEvery  time.Duration
	// SourceRoot is the source tree typed (default GOROOT/src).
	SourceRoot string
	// MaxPrefix and MaxSuffix are the editor window in bytes (defaults 4096
	// and 1024).
	MaxPrefix, MaxSuffix int
	// SettleTimeout bounds the wait for requests still in flight when the
	// typing ends (default 150s: longer than the server's own limits of
	// 30 s per completion and 2 min per chat, so that the server, not the
	// load, ends every request; a request cut off here counts as no
	// answer).
	SettleTimeout time.Duration
	// Continuous types without a pause, a keystroke every 150–300 ms
	// throughout. By default a user pauses as a developer does: 0.5–2 s
	// after typing a line end, and 0.3–1 s after one space in six.
	Continuous bool
	// NoChat: the users do not chat, even when the server serves a chat
	// model.
	NoChat bool
	// ContextEvery: a user edits one of its context files after every
	// ContextEvery keystrokes, once its requests in flight have ended
	// (default 25). ChatEvery: a user starts a chat after every ChatEvery
	// keystrokes when none of its chats is running (default 80). Each
	// user's first edit and chat come after a number of keystrokes drawn
	// from its seed, so that the users' edits and chats are spread out.
	ContextEvery, ChatEvery int
}

func (o *Options) defaults() error {
	if o.BaseURL == "" {
		return errors.New("loadtest: BaseURL is required")
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	if o.Users <= 0 {
		o.Users = 32
	}
	if o.Duration <= 0 {
		o.Duration = 2 * time.Minute
	}
	if o.KeyShare == 0 {
		o.KeyShare = 0.25
	}
	o.KeyShare = min(max(o.KeyShare, 0), 1)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RSSEvery <= 0 {
		o.RSSEvery = 5 * time.Second
	}
	if o.SourceRoot == "" {
		o.SourceRoot = filepath.Join(runtime.GOROOT(), "src")
	}
	if o.MaxPrefix <= 0 {
		o.MaxPrefix = 4096
	}
	if o.MaxSuffix <= 0 {
		o.MaxSuffix = 1024
	}
	if o.ContextEvery <= 0 {
		o.ContextEvery = 25
	}
	if o.ChatEvery <= 0 {
		o.ChatEvery = 80
	}
	if o.SettleTimeout <= 0 {
		o.SettleTimeout = 150 * time.Second
	}
	return nil
}

// Routes as the report names them.
const (
	RouteCompletion    = "POST /api/completion/request"
	RouteWSCompletion  = "WS /api/ws/completion completion_request"
	RouteFeedback      = "POST /api/completion/feedback"
	RouteContextUpdate = "POST /api/completion/multi-file-context/update"
	RouteChat          = "POST /api/chat/request"
)

// Typing pace: a keystroke every keyMin plus up to keyJitter.
const (
	keyMin    = 150 * time.Millisecond
	keyJitter = 150 * time.Millisecond
)

// pause is the think time after keystroke k (zero for most keystrokes):
// 0.5–2 s at a line end, and 0.3–1 s after one space in six. Seeded by
// the user's rng, so a seed repeats the same pauses.
func pause(rng *rand.Rand, k workload.Keystroke) time.Duration {
	switch {
	case strings.HasSuffix(k.Prefix, "\n"):
		return 500*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
	case strings.HasSuffix(k.Prefix, " ") && rng.IntN(6) == 0:
		return 300*time.Millisecond + time.Duration(rng.Int64N(int64(700*time.Millisecond)))
	}
	return 0
}

// Run signs the users up, lets them type for o.Duration, waits for the
// requests in flight, and returns what was measured and acknowledged. It
// fails only when the run cannot start (no server, no model, no source
// tree); answers that are not 2xx are counted in the report. Cancelling ctx
// ends the typing early.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	rep := newReport(o)
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		MaxIdleConns: 4 * o.Users, MaxIdleConnsPerHost: 4 * o.Users, IdleConnTimeout: time.Minute}}
	defer hc.CloseIdleConnections()

	models, err := resolveModels(ctx, hc, o)
	if err != nil {
		return nil, err
	}
	rep.Model, rep.ModelID, rep.ChatModel, rep.ChatModelID = models.name, models.id, models.chatName, models.chatID
	typists, err := buildTypists(o)
	if err != nil {
		return nil, err
	}

	pinger := newClient(o.BaseURL, hc) // reads /api/ping's engine counters
	var rss sync.WaitGroup
	rssCtx, stopRSS := context.WithCancel(ctx)
	if o.ServerPID > 0 {
		rss.Add(1)
		cache := func() int64 {
			var n int64
			for _, m := range engineCountersNow(rssCtx, pinger) {
				n += m.PromptCache.Bytes
			}
			return n / 1024
		}
		go func() { defer rss.Done(); rep.sampleRSS(rssCtx, o.ServerPID, o.RSSEvery, cache) }()
	}
	defer func() { stopRSS(); rss.Wait() }()

	runID := time.Now().UnixNano()
	setupStart := time.Now()
	// The typing starts when every user has signed up (or failed to):
	// password hashing at sign-up and login is deliberately slow, and
	// would otherwise overlap the typing of the users that started first.
	started := make(chan struct{})
	var typeCtx context.Context
	users := make([]*user, o.Users)
	var wg, ready sync.WaitGroup
	nKey := int(float64(o.Users)*o.KeyShare + 0.5)
	for i := range users {
		u := &user{
			i: i, o: o, rep: rep, hc: hc, models: models, typist: typists[i%len(typists)],
			rng:   rand.New(rand.NewPCG(uint64(o.Seed), uint64(i))),
			email: fmt.Sprintf("load-%d-%d@example.com", runID, i),
			key:   i < nKey, ws: i%2 == 1,
			ctxFiles: typists[(i+1)%len(typists)].ctxFiles,
		}
		users[i] = u
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the sign-ups over the first second or two.
			err := ctx.Err()
			if sleep(ctx, time.Duration(i)*50*time.Millisecond) {
				err = u.prepare(ctx)
			}
			ready.Done()
			if err != nil {
				if ctx.Err() == nil {
					o.Log.Warn("loadtest: user could not start", slog.Int("user", i), slog.String("error", err.Error()))
					rep.userFailed(err)
				}
				return
			}
			<-started
			u.run(typeCtx)
		}()
	}
	ready.Wait()
	start := time.Now()
	rep.Start, rep.SetupElapsed = start, start.Sub(setupStart)
	rep.mu.Lock()
	setupRequests := rep.Requests
	rep.mu.Unlock()
	before := engineCountersNow(ctx, pinger)
	typeCtx, cancel := context.WithDeadline(ctx, start.Add(o.Duration))
	defer cancel()
	close(started)
	wg.Wait()
	rep.Elapsed = time.Since(start)
	if before != nil {
		rep.Engines = engineTotals(before, engineCountersNow(ctx, pinger))
	}
	rep.mu.Lock()
	rep.TypingRequests = rep.Requests - setupRequests
	rep.mu.Unlock()
	stopRSS()
	rss.Wait()
	for _, u := range users {
		rep.Acked.merge(&u.acked)
	}
	rep.finish()
	return rep, nil
}

// typist is one user's keystrokes, and context files that are not the file
// being typed.
type typist struct {
	keys     []workload.Keystroke
	ctxFiles []ctxFile
}

type ctxFile struct {
	name  string
	lines []string
}

// buildTypists makes at least o.Users typists from the source tree, each
// on a file the default redaction rules leave unchanged.
func buildTypists(o Options) ([]typist, error) {
	keys := int(o.Duration/keyMin) + 2
	keys = min(keys, 4000)
	red, err := redact.New(redact.Options{CacheSize: -1})
	if err != nil {
		return nil, err
	}
	// More candidates than users: files with a secret-like string (test
	// keys, example passwords) are dropped.
	ws, err := workload.Build(o.SourceRoot, 3*o.Users, workload.Options{Files: 1, Keystrokes: keys,
		MaxPrefix: o.MaxPrefix, MaxSuffix: o.MaxSuffix, MinFileBytes: 8 << 10})
	if err != nil {
		return nil, fmt.Errorf("loadtest: workload: %w", err)
	}
	ctx := context.Background()
	var out []typist
	for _, w := range ws {
		if len(out) == o.Users || len(w.Keystrokes) == 0 {
			break
		}
		src, err := os.ReadFile(filepath.Join(o.SourceRoot, w.Keystrokes[0].File))
		if err != nil {
			return nil, err
		}
		if r, f := red.Text(ctx, string(src)); len(f) > 0 || r != string(src) {
			continue
		}
		lines := strings.Split(string(src), "\n")
		t := typist{keys: w.Keystrokes}
		// Two context files: the file's first and last 40 lines under other names.
		base := strings.TrimSuffix(filepath.Base(w.Keystrokes[0].File), ".go")
		t.ctxFiles = []ctxFile{
			{name: "ctx/" + base + "_head.go", lines: slices.Clone(lines[:min(40, len(lines))])},
			{name: "ctx/" + base + "_tail.go", lines: slices.Clone(lines[max(0, len(lines)-40):])},
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, errors.New("loadtest: no source file without secret-like text")
	}
	return out, nil
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
