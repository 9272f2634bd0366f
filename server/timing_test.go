package server

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStageTimesHeader: stages in order, repeated names summed, total last,
// and a nil *stageTimes is inert.
func TestStageTimesHeader(t *testing.T) {
	st := &stageTimes{}
	st.add(StageAuth, 0.214)
	st.add(StageRedact, 1)
	st.add(StageAuth, 0.1)
	if got, want := st.header(), "auth;dur=0.31, redact;dur=1.00"; got != want {
		t.Fatalf("header = %q, want %q", got, want)
	}
	st.start = time.Now().Add(-5 * time.Millisecond)
	if h := st.header(); !strings.HasPrefix(h, "auth;dur=0.31, redact;dur=1.00, total;dur=") {
		t.Fatalf("header = %q", h)
	}
	var none *stageTimes
	none.add(StageAuth, 1)
	lap := time.Now()
	none.lap(StageParse, &lap)
	if _, ok := none.get(StageAuth); ok {
		t.Fatal("nil stageTimes recorded a stage")
	}
}

var serverTimingEntry = regexp.MustCompile(`^([a-z]+);dur=([0-9]+\.[0-9]{2})$`)

// TestCompletionServerTiming: a completion response carries every stage
// of the pipeline in a well-formed Server-Timing header, holding nothing
// but stage names and durations; the query row stores the redaction,
// context and total times.
func TestCompletionServerTiming(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("timing@example.com")
	secret := "ghp_" + strings.Repeat("A1b2C3d4E5", 4)[:36]
	body := completionBody([]int64{e.ids["tiny-coder"]}, "token = \""+secret+"\"\ndef add(a, b):\n    return ", "\n")
	r := c.expect("POST", "/api/completion/request", body, 200)
	h := r.header.Get("Server-Timing")
	if strings.Contains(h, secret) || strings.Contains(h, "ghp_") || strings.Contains(h, "add") {
		t.Fatalf("Server-Timing leaks request content: %q", h)
	}
	got := map[string]float64{}
	var order []string
	for _, part := range strings.Split(h, ", ") {
		m := serverTimingEntry.FindStringSubmatch(part)
		if m == nil {
			t.Fatalf("malformed Server-Timing entry %q in %q", part, h)
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		got[m[1]] = v
		order = append(order, m[1])
	}
	want := []string{StageAuth, StageRateLimit, StageBodyWait, StageParse, StageRedact, StageContext, StageLookup,
		StageTokenize, StageQueue, StagePrefill, StageDecode, StageOutput, StageStore, StageTotal}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("stages = %v, want %v", order, want)
	}
	// Parsing and redaction overlap authentication, and the lookup
	// overlaps the models; the other stages follow each other, so they
	// cannot add up to more than the total (allowing for rounding to
	// 0.01 ms).
	sum := 0.0
	for _, n := range want[:len(want)-1] {
		if n != StageParse && n != StageRedact && n != StageLookup {
			sum += got[n]
		}
	}
	if got[StageParse] <= 0 || got[StageRedact] <= 0 || got[StageLookup] <= 0 {
		t.Fatalf("overlapped stages missing in %q", h)
	}
	if sum > got[StageTotal]+0.01*float64(len(want)) {
		t.Fatalf("stages add up to %.2f ms, more than the total %.2f ms: %q", sum, got[StageTotal], h)
	}
	if got[StagePrefill]+got[StageDecode] <= 0 {
		t.Fatalf("no engine time in %q", h)
	}
	mq := r.body["data"].(map[string]any)["meta_query_id"].(string)
	if n := e.count(`SELECT count(*) FROM meta_query WHERE meta_query_id = $1 AND redact_ms >= 0 AND context_ms >= 0
		AND total_serving_ms >= redact_ms + context_ms`, mq); n != 1 {
		t.Fatal("stage times not stored with the query")
	}

	// A refused request carries no timing of a pipeline that did not run.
	bad := completionBody([]int64{e.ids["tiny-coder"]}, "x", "y")
	bad["contextual_telemetry"].(map[string]any)["language_id"] = 999999
	r = c.expect("POST", "/api/completion/request", bad, 422)
	if h := r.header.Get("Server-Timing"); h != "" {
		t.Fatalf("422 carries Server-Timing %q", h)
	}
}
