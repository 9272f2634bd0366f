package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Report is what a run measured and what the server acknowledged.
type Report struct {
	BaseURL          string
	Users, KeyUsers  int // users, and those with an API key
	WSUsers          int // users whose completions go over the WebSocket
	Duration         time.Duration
	Model, ChatModel string // "" ChatModel: no chat model served
	ModelID          int64
	ChatModelID      int64
	SetupElapsed     time.Duration // the sign-ups, before the typing
	Start            time.Time     // the typing started
	Elapsed          time.Duration // from the start of the typing to the last answer

	// Routes holds per route the answers and latencies.
	Routes map[string]*RouteStats
	// Requests is every request sent, TypingRequests those sent after the
	// sign-ups; RequestsPerSecond divides TypingRequests by Elapsed.
	Requests, TypingRequests int
	RequestsPerSecond        float64
	// Status5xx counts answers 500 to 599 other than 503; Unavailable the
	// 503s; Limited the 429s; NoAnswer requests that got no answer (the
	// connection failed); Unexpected every other answer that is not 2xx
	// and not a deliberate 4xx, plus 2xx answers whose body could not be
	// read.
	Status5xx, Unavailable, Limited, NoAnswer, Unexpected int
	// UserErrors are why users stopped before the end (sign-up failed).
	UserErrors []string
	// Stages are the Server-Timing stages (milliseconds, sorted) of the
	// HTTP completions answered with a completion, OtherStages those of
	// the other 200s (superseded, timed out).
	Stages, OtherStages map[string][]float64
	// Continuous: the users typed without pauses (Options.Continuous).
	Continuous bool
	// SinceKeystroke are the completions answered with a completion (HTTP
	// and WebSocket), each from the user's last keystroke before the
	// answer came (milliseconds, sorted): the latency the developer sees.
	SinceKeystroke []float64
	// SinceKeystrokeWaited are those of SinceKeystroke answered while
	// their user waited for them (before a context-file edit, or at the
	// end of the run), SinceKeystrokePaused the others: answered during a
	// pause in the typing.
	SinceKeystrokeWaited, SinceKeystrokePaused []float64
	// Answers are SinceKeystroke's samples as they came, each with when
	// (from Start) and whether the user waited for it, for the latency
	// over the run (Windows).
	Answers []Answer
	// RSS are the server's resident memory samples (ServerPID set).
	RSS []RSSSample
	// Engines is what each model's engine did during the typing.
	Engines []EngineTotals

	// Acked is everything the server acknowledged: Reconcile's input.
	Acked Acked

	mu sync.Mutex
}

// RouteStats are one route's answers. Latencies (milliseconds) are those
// of 2xx answers that did the work: a completion answered as superseded,
// or cancelled on the WebSocket, counts apart.
type RouteStats struct {
	Count      int
	Statuses   map[int]int // 0: no answer
	Superseded int         // 200 answers with a superseded completion (HTTP)
	Cancelled  int         // cancelled frames (WebSocket; a newer request superseded it)
	Deliberate int         // deliberate 4xx answered as intended
	BadAnswers int         // 2xx answers whose body could not be read
	// ErrorItems counts, by reason, completions a 200 answered with an
	// error item other than superseded ("timed out", "overloaded", ...).
	ErrorItems    map[string]int
	P50, P95, P99 float64
	lat           []float64
}

// RSSSample is the server's resident memory at a moment of the run.
type RSSSample struct {
	At  time.Duration // since the run started
	KiB int64
	// CacheKiB is what the models' prompt caches held then (/api/ping):
	// host memory that fills up to its bound (ENGINE_PROMPT_CACHE_MIB) by
	// design, which the flatness check leaves out.
	CacheKiB int64
}

// net is the sample's RSS less the prompt caches.
func (s RSSSample) net() int64 { return s.KiB - s.CacheKiB }

func newReport(o Options) *Report {
	r := &Report{BaseURL: o.BaseURL, Users: o.Users, Duration: o.Duration, Routes: map[string]*RouteStats{}}
	r.KeyUsers = int(float64(o.Users)*o.KeyShare + 0.5)
	r.WSUsers = o.Users / 2
	r.Continuous = o.Continuous
	return r
}

func (r *Report) route(name string) *RouteStats {
	s := r.Routes[name]
	if s == nil {
		s = &RouteStats{Statuses: map[int]int{}}
		r.Routes[name] = s
	}
	return s
}

// record counts one answer (status 0: none, -1: a 2xx whose body could
// not be read, already counted by badAnswer).
func (r *Report) record(route string, status int, d time.Duration, superseded bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.route(route)
	s.Count++
	r.Requests++
	switch {
	case status == -1:
		return
	case status >= 200 && status <= 299, status == 101: // 101: a WebSocket handshake
		s.Statuses[status]++
		if superseded {
			s.Superseded++
			return
		}
		s.lat = append(s.lat, float64(d.Microseconds())/1000)
		return
	}
	s.Statuses[status]++
	switch {
	case status == 0:
		r.NoAnswer++
	case status == 429:
		r.Limited++
	case status == 503:
		r.Unavailable++
	case status >= 500:
		r.Status5xx++
	default:
		r.Unexpected++
	}
}

// sinceKeystroke keeps an answered completion's latency from the user's
// last keystroke; waited: the user was waiting for it.
func (r *Report) sinceKeystroke(d time.Duration, waited bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := float64(d.Microseconds()) / 1000
	r.SinceKeystroke = append(r.SinceKeystroke, ms)
	r.Answers = append(r.Answers, Answer{At: time.Since(r.Start), MS: ms, Waited: waited})
	if waited {
		r.SinceKeystrokeWaited = append(r.SinceKeystrokeWaited, ms)
	} else {
		r.SinceKeystrokePaused = append(r.SinceKeystrokePaused, ms)
	}
}

// cancelled counts a WebSocket request a newer one superseded.
func (r *Report) cancelled(route string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.route(route)
	s.Count++
	s.Cancelled++
	r.Requests++
}

// deliberate counts a deliberate 4xx answered as intended.
func (r *Report) deliberate(route string, status int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.route(route)
	s.Count++
	s.Statuses[status]++
	s.Deliberate++
	r.Requests++
}

// stageOrder is the order of the Server-Timing stages in the report.
var stageOrder = []string{"auth", "ratelimit", "bodywait", "parse", "redact", "lookup", "context", "tokenize", "queue",
	"prefill", "decode", "output", "store", "total"}

// stages keeps the stages of a Server-Timing header (name;dur=ms, ...) in
// Stages (answered) or OtherStages.
func (r *Report) stages(answered bool, h string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Stages == nil {
		r.Stages, r.OtherStages = map[string][]float64{}, map[string][]float64{}
	}
	set := r.Stages
	if !answered {
		set = r.OtherStages
	}
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "dur="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					set[name] = append(set[name], f)
				}
			}
		}
	}
}

// errorItem counts a completion answered with an error item.
func (r *Report) errorItem(route, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.route(route)
	if s.ErrorItems == nil {
		s.ErrorItems = map[string]int{}
	}
	s.ErrorItems[reason]++
}

// badAnswer counts a 2xx answer whose body could not be read.
func (r *Report) badAnswer(route string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.route(route).BadAnswers++
	r.Unexpected++
}

func (r *Report) userFailed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.UserErrors = append(r.UserErrors, err.Error())
}

// finish computes the percentiles and the rate.
func (r *Report) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.Routes {
		slices.Sort(s.lat)
		s.P50, s.P95, s.P99 = pct(s.lat, 50), pct(s.lat, 95), pct(s.lat, 99)
	}
	slices.Sort(r.SinceKeystroke)
	slices.Sort(r.SinceKeystrokeWaited)
	slices.Sort(r.SinceKeystrokePaused)
	for _, l := range r.Stages {
		slices.Sort(l)
	}
	for _, l := range r.OtherStages {
		slices.Sort(l)
	}
	if r.Elapsed > 0 {
		r.RequestsPerSecond = float64(r.TypingRequests) / r.Elapsed.Seconds()
	}
}

// Answer is one completion answered with a completion: when it came (from
// the start of the typing), its latency from the user's last keystroke
// (milliseconds), and whether the user waited for it.
type Answer struct {
	At     time.Duration
	MS     float64
	Waited bool
}

// Window is the answered completions that came in one stretch of the run.
type Window struct {
	From, To time.Duration
	// All are the latencies of every answer in the window, Paused of those
	// answered during a pause in the typing (milliseconds, sorted).
	All, Paused []float64
}

// Windows groups answers by when they came, in stretches of width from
// the start of the typing; the last stretch takes in the answers that came
// after the typing (the users waiting for their last requests).
func Windows(answers []Answer, width, typing time.Duration) []Window {
	if width <= 0 || typing <= 0 {
		return nil
	}
	n := int((typing + width - 1) / width)
	ws := make([]Window, n)
	for i := range ws {
		ws[i].From, ws[i].To = time.Duration(i)*width, min(time.Duration(i+1)*width, typing)
	}
	for _, a := range answers {
		w := &ws[min(max(int(a.At/width), 0), n-1)]
		w.All = append(w.All, a.MS)
		if !a.Waited {
			w.Paused = append(w.Paused, a.MS)
		}
	}
	for i := range ws {
		slices.Sort(ws[i].All)
		slices.Sort(ws[i].Paused)
	}
	return ws
}

// pct is the nearest-rank percentile of sorted values (0 when none).
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Failed says whether the run broke a rule of its own: a 5xx, an
// unexpected answer, or a user that could not start.
func (r *Report) Failed() bool {
	return r.Status5xx > 0 || r.Unexpected > 0 || len(r.UserErrors) > 0
}

// sampleRSS samples VmRSS of pid, and what cache (may be nil) says the
// prompt caches hold, every every until ctx ends.
func (r *Report) sampleRSS(ctx context.Context, pid int, every time.Duration, cache func() int64) {
	t := time.NewTicker(every)
	defer t.Stop()
	start := time.Now()
	for {
		if kib, err := readRSS(pid); err == nil {
			var c int64
			if cache != nil {
				c = cache()
			}
			r.mu.Lock()
			r.RSS = append(r.RSS, RSSSample{At: time.Since(start), KiB: kib, CacheKiB: c})
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readRSS reads VmRSS (KiB) from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// RSSSummary is the first sample, the first after the warm-up (a quarter
// of the run, at least 10 s in, when there is one), and the last; flat
// when the last is within 10 % of the warm one, the prompt caches left
// out.
func (r *Report) RSSSummary() (first, warm, last RSSSample, flat, ok bool) {
	if len(r.RSS) == 0 {
		return first, warm, last, false, false
	}
	first, last = r.RSS[0], r.RSS[len(r.RSS)-1]
	warm = last
	for _, s := range r.RSS {
		if s.At >= max(r.Duration/4, 10*time.Second) {
			warm = s
			break
		}
	}
	flat = float64(last.net()) <= 1.1*float64(warm.net())
	return first, warm, last, flat, true
}

// routeOrder lists the plugin's typing routes first, then the rest by name.
func (r *Report) routeOrder() []string {
	first := []string{RouteCompletion, RouteWSCompletion, RouteFeedback, RouteContextUpdate, RouteChat}
	var out, rest []string
	for _, n := range first {
		if _, ok := r.Routes[n]; ok {
			out = append(out, n)
		}
	}
	for n := range r.Routes {
		if !slices.Contains(first, n) {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// Write prints the report as markdown tables.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "Load test: %d users (%d with an API key, %d on the WebSocket), %v of typing, model %s (id %d)",
		r.Users, r.KeyUsers, r.WSUsers, r.Duration, r.Model, r.ModelID)
	if r.ChatModel != "" {
		fmt.Fprintf(w, ", chat model %s (id %d)", r.ChatModel, r.ChatModelID)
	}
	fmt.Fprintf(w, "\n\nSign-ups: %.1f s. Typing: %d requests in %.1f s (to the last answer): %.1f requests/s.\n", r.SetupElapsed.Seconds(),
		r.TypingRequests, r.Elapsed.Seconds(), r.RequestsPerSecond)
	fmt.Fprintf(w, "All %d requests: 5xx (not 503): %d, 503: %d, 429: %d, no answer: %d, unexpected: %d\n\n",
		r.Requests, r.Status5xx, r.Unavailable, r.Limited, r.NoAnswer, r.Unexpected)
	fmt.Fprintln(w, "| route | requests | statuses | p50 ms | p95 ms | p99 ms |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, name := range r.routeOrder() {
		s := r.Routes[name]
		var st []string
		codes := make([]int, 0, len(s.Statuses))
		for c := range s.Statuses {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			label := strconv.Itoa(c)
			if c == 0 {
				label = "none"
			}
			st = append(st, fmt.Sprintf("%s×%d", label, s.Statuses[c]))
		}
		if s.Superseded > 0 {
			st = append(st, fmt.Sprintf("(%d of the 200s superseded)", s.Superseded))
		}
		if s.Cancelled > 0 {
			st = append(st, fmt.Sprintf("cancelled×%d (superseded)", s.Cancelled))
		}
		if s.Deliberate > 0 {
			st = append(st, fmt.Sprintf("(%d deliberate 4xx)", s.Deliberate))
		}
		reasons := make([]string, 0, len(s.ErrorItems))
		for k := range s.ErrorItems {
			reasons = append(reasons, k)
		}
		slices.Sort(reasons)
		for _, k := range reasons {
			st = append(st, fmt.Sprintf("(%d answered %q)", s.ErrorItems[k], k))
		}
		if s.BadAnswers > 0 {
			st = append(st, fmt.Sprintf("%d unreadable", s.BadAnswers))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.1f | %.1f | %.1f |\n", name, s.Count, strings.Join(st, " "), s.P50, s.P95, s.P99)
	}
	fmt.Fprintln(w, "\nLatencies are of 2xx answers that did their work (superseded completions apart).")
	typing := "with pauses at line ends and between words"
	if r.Continuous {
		typing = "continuous typing, no pauses"
	}
	fmt.Fprintf(w, "Completions answered with a completion (HTTP and WebSocket), from the user's last keystroke before the answer (%s): %d, p50 %.1f ms, p95 %.1f ms\n",
		typing, len(r.SinceKeystroke), pct(r.SinceKeystroke, 50), pct(r.SinceKeystroke, 95))
	if waited, paused := r.SinceKeystrokeWaited, r.SinceKeystrokePaused; len(r.SinceKeystroke) > 0 {
		fmt.Fprintf(w, "Of those, answered while the user waited for them (before a context-file edit, or at the end): %d, p50 %.1f ms, p95 %.1f ms; answered during a pause in the typing: %d, p50 %.1f ms, p95 %.1f ms\n",
			len(waited), pct(waited, 50), pct(waited, 95), len(paused), pct(paused, 50), pct(paused, 95))
		fmt.Fprint(w, "\nThe same by when the answer came (the first stretch holds the users' first, cold prompts; the last, the answers the users waited for after the typing):\n\n")
		fmt.Fprintln(w, "| answered | n | p50 ms | p95 ms | in a pause: n | p50 ms | p95 ms |\n|---|---|---|---|---|---|---|")
		ws := Windows(r.Answers, 30*time.Second, r.Duration)
		for i, x := range ws {
			when := fmt.Sprintf("%s–%s", x.From, x.To)
			if i == len(ws)-1 {
				when = fmt.Sprintf("from %s", x.From)
			}
			fmt.Fprintf(w, "| %s | %d | %.1f | %.1f | %d | %.1f | %.1f |\n", when, len(x.All), pct(x.All, 50), pct(x.All, 95),
				len(x.Paused), pct(x.Paused, 50), pct(x.Paused, 95))
		}
	}
	if len(r.Stages)+len(r.OtherStages) > 0 {
		fmt.Fprintf(w, "\nServer-Timing of the HTTP completions (ms): %d answered with a completion, %d other 200s (superseded, timed out):\n\n",
			len(r.Stages["total"]), len(r.OtherStages["total"]))
		fmt.Fprintln(w, "| stage | answered p50 | answered p95 | others p50 | others p95 |\n|---|---|---|---|---|")
		for _, n := range stageOrder {
			a, o := r.Stages[n], r.OtherStages[n]
			if len(a)+len(o) > 0 {
				fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f | %.1f |\n", n, pct(a, 50), pct(a, 95), pct(o, 50), pct(o, 95))
			}
		}
	}
	writeEngineTotals(w, r.Engines, r.Elapsed.Seconds())
	if first, warm, last, flat, ok := r.RSSSummary(); ok {
		verdict := "flat (within 10 % after the warm-up, the prompt caches left out)"
		if !flat {
			verdict = "NOT flat (grew more than 10 % after the warm-up, the prompt caches left out)"
		}
		fmt.Fprintf(w, "\nServer RSS: %.1f MiB at %v, %.1f MiB at %v (after warm-up), %.1f MiB at %v (last): %s\n",
			float64(first.KiB)/1024, first.At.Round(time.Second), float64(warm.KiB)/1024, warm.At.Round(time.Second),
			float64(last.KiB)/1024, last.At.Round(time.Second), verdict)
		var parts []string
		for _, s := range r.RSS {
			parts = append(parts, fmt.Sprintf("%v %.0f", s.At.Round(time.Second), float64(s.KiB)/1024))
		}
		fmt.Fprintf(w, "RSS samples (MiB): %s\n", strings.Join(parts, ", "))
		if last.CacheKiB > 0 || warm.CacheKiB > 0 {
			fmt.Fprintf(w, "The models' prompt caches in host memory (bounded by ENGINE_PROMPT_CACHE_MIB) held %.1f MiB after the warm-up and %.1f MiB at the end; without them the RSS went from %.1f to %.1f MiB.\n",
				float64(warm.CacheKiB)/1024, float64(last.CacheKiB)/1024, float64(warm.net())/1024, float64(last.net())/1024)
		}
	}
	for _, e := range r.UserErrors {
		fmt.Fprintf(w, "user stopped: %s\n", e)
	}
}
