package server

import (
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/models"
)

// GET /api/admin/overview?window=hour|day: the dashboard's overview in one
// call. Per model, over the last hour in 5-minute buckets (window=hour, the
// default) or the last day in hourly buckets (window=day): requests (the
// model's generations, completion and chat), requests per second, shown,
// accepted, the acceptance rate (accepted/shown, null when nothing was
// shown), and the 50th and 95th percentiles of the model's generation time,
// of the queries' end-to-end serving time and of each stage a request
// passes (overviewStages). Every bucket of the window is listed, empty ones
// with zeros and null percentiles.

// adminWindows are the overview's windows: their length and bucket.
var adminWindows = map[string]struct{ span, bucket time.Duration }{
	"hour": {time.Hour, 5 * time.Minute},
	"day":  {24 * time.Hour, time.Hour},
}

// overviewCounts are the counts of a bucket, a model or the window.
type overviewCounts struct {
	Requests       int64    `json:"requests"`
	RequestsPerS   float64  `json:"requests_per_s"`
	Shown          int64    `json:"shown"`
	Accepted       int64    `json:"accepted"`
	AcceptanceRate *float64 `json:"acceptance_rate"`
}

// overviewBucket is one bucket of one model.
type overviewBucket struct {
	Start time.Time `json:"start"`
	overviewCounts
	GenerationP50 *float64       `json:"generation_p50_ms"`
	GenerationP95 *float64       `json:"generation_p95_ms"`
	LatencyP50    *float64       `json:"latency_p50_ms"`
	LatencyP95    *float64       `json:"latency_p95_ms"`
	Stages        overviewStages `json:"stages"`
}

// overviewStages are the percentiles of each stage of a request, in the
// order it passes them: redacting its text, gathering its context (the
// project's files and retrieved chunks), waiting for a slot, evaluating
// the prompt and generating.
type overviewStages struct {
	Redact  overviewPctl `json:"redact_ms"`
	Context overviewPctl `json:"context_ms"`
	Queue   overviewPctl `json:"queue_ms"`
	Prefill overviewPctl `json:"prefill_ms"`
	Decode  overviewPctl `json:"decode_ms"`
}

// overviewPctl is a stage's nearest-rank 50th and 95th percentiles, null
// when no row of the bucket records the stage.
type overviewPctl struct {
	P50 *float64 `json:"p50"`
	P95 *float64 `json:"p95"`
}

func pctls(v []float64) overviewPctl { return overviewPctl{P50: pctl(v, 0), P95: pctl(v, 1)} }

type overviewModel struct {
	ModelID   int64            `json:"model_id"`
	ModelName string           `json:"model_name"`
	Totals    overviewCounts   `json:"totals"`
	Buckets   []overviewBucket `json:"buckets"`
}

// add counts into b, whose span is seconds long.
func (b *overviewCounts) add(requests, shown, accepted int64, seconds float64) {
	b.Requests += requests
	b.Shown += shown
	b.Accepted += accepted
	b.RequestsPerS = float64(b.Requests) / seconds
	if b.Shown > 0 {
		r := float64(b.Accepted) / float64(b.Shown)
		b.AcceptanceRate = &r
	}
}

func (s *Server) adminOverview(c *fiber.Ctx) error {
	window := c.Query("window", "hour")
	w, ok := adminWindows[window]
	if !ok {
		return failDetail(fiber.StatusBadRequest, fmt.Sprintf("Invalid window %q; hour or day", window))
	}
	// Postgres keeps microseconds: bucket starts read back must be
	// whole multiples of the bucket from from.
	to := time.Now().UTC().Truncate(time.Microsecond)
	from := to.Add(-w.span)
	n := int(w.span / w.bucket)
	rows, err := s.q.AdminOverview(c.UserContext(), s.db, models.AdminOverviewParams{
		BucketS: w.bucket.Seconds(), FromTime: from, ToTime: to})
	if err != nil {
		return internalDetail(MsgAdminAPIError, fmt.Errorf("admin overview: %w", err))
	}
	var out []*overviewModel
	byID := map[int64]*overviewModel{}
	totals := overviewCounts{}
	for _, r := range rows {
		m := byID[r.ModelID]
		if m == nil {
			m = &overviewModel{ModelID: r.ModelID, ModelName: r.ModelName, Buckets: make([]overviewBucket, n)}
			for i := range m.Buckets {
				m.Buckets[i].Start = from.Add(time.Duration(i) * w.bucket)
			}
			byID[r.ModelID] = m
			out = append(out, m)
		}
		i := int(r.Bucket.Sub(from) / w.bucket)
		if i < 0 || i >= n {
			continue
		}
		b := &m.Buckets[i]
		b.add(r.Requests, r.Shown, r.Accepted, w.bucket.Seconds())
		b.GenerationP50, b.GenerationP95 = pctl(r.GenerationTime, 0), pctl(r.GenerationTime, 1)
		b.LatencyP50, b.LatencyP95 = pctl(r.TotalServing, 0), pctl(r.TotalServing, 1)
		b.Stages = overviewStages{Redact: pctls(r.Redact), Context: pctls(r.Context), Queue: pctls(r.Queue),
			Prefill: pctls(r.Prefill), Decode: pctls(r.Decode)}
		m.Totals.add(r.Requests, r.Shown, r.Accepted, w.span.Seconds())
		totals.add(r.Requests, r.Shown, r.Accepted, w.span.Seconds())
	}
	if out == nil {
		out = []*overviewModel{}
	}
	return c.JSON(fiber.Map{"window": window, "from": from, "to": to, "bucket_s": int(w.bucket.Seconds()),
		"models": out, "totals": totals})
}

// pctl is the i-th of a percentile_disc array, nil when there is none.
func pctl(v []float64, i int) *float64 {
	if i >= len(v) {
		return nil
	}
	x := v[i]
	return &x
}

var adminOverviewOp = apiOp{Method: "GET", Path: "/api/admin/overview", Summary: "Admin: requests, acceptance and latency per model",
	Auth: ClassA, Account: true, OK: 200,
	Doc: adminDoc + " Per model over the window, completion and chat alike: requests (the model's generations), " +
		"requests_per_s, shown, accepted, acceptance_rate (accepted/shown, null when nothing was shown), and per bucket the " +
		"nearest-rank 50th and 95th percentiles of generation_time_ms (generation_p50_ms, generation_p95_ms) and of the " +
		"queries' total_serving_ms (latency_p50_ms, latency_p95_ms), and in stages, per stage a request passes, its p50 and p95: " +
		"the queries' redact_ms and context_ms, the generations' queue_ms, prefill_ms and decode_ms; null when none records it. " +
		"Every bucket is listed.",
	Query: []apiField{optField("window", "string", "hour (default: 5-minute buckets) or day (hourly buckets), ending now")},
	Resp: []apiField{respField("window", "string", ""), respField("from", "date-time", ""), respField("to", "date-time", ""),
		respField("bucket_s", "integer", "bucket length in seconds"),
		respField("models", "[]object", "{model_id, model_name, totals: {requests, requests_per_s, shown, accepted, "+
			"acceptance_rate}, buckets: [{start, requests, requests_per_s, shown, accepted, acceptance_rate, generation_p50_ms, "+
			"generation_p95_ms, latency_p50_ms, latency_p95_ms, stages: {redact_ms, context_ms, queue_ms, prefill_ms, decode_ms: "+
			"{p50, p95}}}]}"),
		respField("totals", "object", "{requests, requests_per_s, shown, accepted, acceptance_rate} over every model")},
	Errors: adminErrors(map[int]string{400: "An unknown window"})}
