package server

import (
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/models"
)

// Research analytics over time and per model: GET /api/analytics/trends
// and /api/analytics/models, under the rules of analytics.go (admins only,
// the window [from, to) and user_id of readAnalyticsFilter, completion
// queries only). The formulas are written out in docs/research.md.

// trendSteps are the bucket lengths of /trends. Buckets are UTC, which has
// no daylight saving, so a day is always 24 hours and a week 168.
var trendSteps = map[string]time.Duration{"hour": time.Hour, "day": 24 * time.Hour, "week": 7 * 24 * time.Hour}

// maxTrendBuckets bounds the buckets one /trends answer holds: every
// bucket is a row, empty or not, so a long window at a fine granularity
// would otherwise make an answer of any size.
const maxTrendBuckets = 1000

// trendBucketStart is the start of the UTC bucket holding t, as Postgres'
// date_trunc(gran, t, 'UTC') gives it: weeks start on Monday.
func trendBucketStart(gran string, t time.Time) time.Time {
	t = t.UTC()
	if gran == "hour" {
		return t.Truncate(time.Hour)
	}
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if gran == "week" {
		day = day.AddDate(0, 0, -(int(day.Weekday())+6)%7)
	}
	return day
}

// trendBuckets is how many buckets of gran the window [from, to) touches:
// those starting at the bucket holding from, up to the last one starting
// before to.
func trendBuckets(gran string, from, to time.Time) int64 {
	first := trendBucketStart(gran, from)
	if !to.After(first) {
		return 0
	}
	// Sub saturates at about 292 years, which is far past the limit anyway.
	return int64((to.Sub(first)-1)/trendSteps[gran]) + 1
}

// analyticsTrends answers GET /api/analytics/trends: per UTC hour, day
// or week (granularity, default day) of the window, empty buckets
// included, the usage figures of /usage and the percentiles of the
// queries' total_serving_ms; model_id keeps the queries that model
// answered, counting only its generations.
func (s *Server) analyticsTrends(c *fiber.Ctx) error {
	q := queryFields(c)
	f := readAnalyticsFilter(q)
	gran, ok := q.str("granularity", false, 0, 0)
	if !ok {
		gran = "day"
	} else if trendSteps[gran] == 0 {
		q.add("literal_error", "granularity", "Input should be 'hour', 'day' or 'week'", gran, map[string]any{"expected": "'hour', 'day' or 'week'"})
	}
	var modelID *int64
	if id, ok := q.integer("model_id", false, 1); ok {
		modelID = &id
	}
	if q.err() == nil {
		if n := trendBuckets(gran, f.from, f.to); n > maxTrendBuckets {
			q.add("value_error", "from", fmt.Sprintf("Value error, the window from %s to %s holds %d %s buckets, more than %d: "+
				"narrow the window or choose a coarser granularity", f.from.UTC().Format(time.RFC3339), f.to.UTC().Format(time.RFC3339),
				n, gran, maxTrendBuckets), f.from.UTC().Format(time.RFC3339Nano), map[string]any{"buckets": n, "max_buckets": maxTrendBuckets})
		}
	}
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.AnalyticsTrends(c.UserContext(), s.db, models.AnalyticsTrendsParams{
		Granularity: gran, FromTime: f.from, ToTime: f.to, ModelID: modelID, UserID: f.userID})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	buckets := make([]fiber.Map, 0, len(rows))
	for _, r := range rows {
		b := usageJSON(r.Completions, r.Shown, r.Accepted, r.Users, r.UserDays)
		b["bucket"] = r.Bucket.UTC()
		b["total_serving_ms"] = newLatencyStage(r.NTotalServing, r.TotalServing)
		buckets = append(buckets, b)
	}
	return c.JSON(fiber.Map{"from": f.from.UTC(), "to": f.to.UTC(), "granularity": gran, "model_id": modelID, "buckets": buckets})
}

// analyticsModels answers GET /api/analytics/models: per model, its
// completion generations, shown, accepted and acceptance rate, mean
// confidence, generation time percentiles and the shares of empty and of
// failed generations.
func (s *Server) analyticsModels(c *fiber.Ctx) error {
	q := queryFields(c)
	f := readAnalyticsFilter(q)
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.AnalyticsModels(c.UserContext(), s.db, models.AnalyticsModelsParams{FromTime: f.from, ToTime: f.to, UserID: f.userID})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	out := make([]fiber.Map, 0, len(rows))
	for _, r := range rows {
		var meanConf *float64
		if r.NConfidence > 0 {
			m := r.ConfidenceSum / float64(r.NConfidence)
			meanConf = &m
		}
		out = append(out, fiber.Map{
			"model_id": r.ModelID, "model_name": r.ModelName,
			"generations": r.Generations, "shown": r.Shown, "accepted": r.Accepted,
			"acceptance_rate": ratio(r.Accepted, r.Shown),
			"confidence":      fiber.Map{"n": r.NConfidence, "mean": meanConf},
			// The same figure as /latency's stage of that name.
			"generation_time_ms": newLatencyStage(r.Generations, r.GenerationTime),
			"empty":              r.Empty, "empty_share": ratio(r.Empty, r.Generations),
			"with_stop_reason": r.WithStopReason, "failed": r.Failed, "failed_share": ratio(r.Failed, r.WithStopReason),
		})
	}
	return c.JSON(fiber.Map{"from": f.from.UTC(), "to": f.to.UTC(), "models": out})
}
