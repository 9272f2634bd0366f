package server

import (
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/engine"
)

// Stage timing. guard starts a stageTimes for every authenticated request
// and records the auth and rate-limit stages; the completion handler adds
// its own stages and sends them all in a Server-Timing header
// (https://www.w3.org/TR/server-timing/): `auth;dur=0.21, redact;dur=0.10`.
// The header carries fixed stage names and durations in milliseconds,
// never anything taken from the request.

// Stage names of the Server-Timing header.
const (
	StageAuth      = "auth"      // credentials checked and the session refreshed (Redis)
	StageRateLimit = "ratelimit" // the request counted against the caller's budget (Redis)
	StageParse     = "parse"     // body decoded and validated (completion: during auth, overlapped)
	StageBodyWait  = "bodywait"  // completion: the wait, after auth, for the body's parse and redaction
	StageLookup    = "lookup"    // user state, consent and telemetry ids checked (Postgres; completion: while the models run)
	StageRedact    = "redact"    // prefix, suffix, selection and file name redacted (completion: during auth)
	StageContext   = "context"   // multi-file context selected (Postgres)
	StageTokenize  = "tokenize"  // prompt laid out and tokenized (engine, caller's goroutine)
	StageQueue     = "queue"     // waiting for a slot (engine)
	StagePrefill   = "prefill"   // prompt evaluated (engine)
	StageDecode    = "decode"    // tokens generated (engine)
	StageOutput    = "output"    // completions redacted
	StageStore     = "store"     // the query written and committed (Postgres)
	StageTotal     = "total"     // guard start until the response is encoded
)

// stageTimes collects stage durations in the order they happen. The zero
// value is ready; methods on a nil *stageTimes do nothing, so pipeline code
// shared with the WebSocket handler need not check.
type stageTimes struct {
	start time.Time
	n     int
	names [16]string
	ms    [16]float64
}

const localsTiming = "code4me.timing"

// timing returns the request's stageTimes (nil when guard did not run).
func timing(c *fiber.Ctx) *stageTimes {
	t, _ := c.Locals(localsTiming).(*stageTimes)
	return t
}

// add records a stage of ms milliseconds; a repeated name adds to it.
func (t *stageTimes) add(name string, ms float64) {
	if t == nil {
		return
	}
	for i := range t.n {
		if t.names[i] == name {
			t.ms[i] += ms
			return
		}
	}
	if t.n == len(t.names) {
		return
	}
	t.names[t.n], t.ms[t.n] = name, ms
	t.n++
}

// lap records the time since *from as stage name and moves *from to now.
func (t *stageTimes) lap(name string, from *time.Time) {
	now := time.Now()
	t.add(name, float64(now.Sub(*from).Microseconds())/1000)
	*from = now
}

// engine records the engine's stages of a result.
func (t *stageTimes) engine(tm engine.Timings) {
	t.add(StageTokenize, tm.TokenizeMS)
	t.add(StageQueue, tm.QueueMS)
	t.add(StagePrefill, tm.PrefillMS)
	t.add(StageDecode, tm.DecodeMS)
}

// get returns a stage's duration and whether it was recorded.
func (t *stageTimes) get(name string) (float64, bool) {
	if t == nil {
		return 0, false
	}
	for i := range t.n {
		if t.names[i] == name {
			return t.ms[i], true
		}
	}
	return 0, false
}

// header renders the stages, then total (time since start), as a
// Server-Timing value.
func (t *stageTimes) header() string {
	var b strings.Builder
	b.Grow(16 * (t.n + 1))
	for i := range t.n {
		appendStage(&b, t.names[i], t.ms[i])
	}
	if !t.start.IsZero() {
		appendStage(&b, StageTotal, float64(time.Since(t.start).Microseconds())/1000)
	}
	return b.String()
}

func appendStage(b *strings.Builder, name string, ms float64) {
	if b.Len() > 0 {
		b.WriteString(", ")
	}
	b.WriteString(name)
	b.WriteString(";dur=")
	b.WriteString(strconv.FormatFloat(ms, 'f', 2, 64))
}

// setServerTiming sends the request's stages in the Server-Timing header.
func setServerTiming(c *fiber.Ctx) {
	if t := timing(c); t != nil {
		c.Set("Server-Timing", t.header())
	}
}
