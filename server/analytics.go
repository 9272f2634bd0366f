package server

import (
	"math"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/models"
)

// Research analytics: admin-only (guardAdmin) read-outs of the recorded
// completion queries. Every route takes the window [from, to) of
// meta_query.requested_at (RFC 3339; default the 30 days before now) and
// an optional user_id, and counts completion queries only: chat turns
// never enter completion metrics. A generation is "shown" when it has at
// least one shown_at, "accepted" when it is shown and was_accepted. The
// formulas are written out in docs/research.md.

// MsgAnalyticsError is the 500 detail of the analytics routes.
const MsgAnalyticsError = "Server failed to compute the analytics."

// analyticsDefaultWindow is the window a request without from gets.
const analyticsDefaultWindow = 30 * 24 * time.Hour

func (s *Server) analyticsRoutes(api fiber.Router) {
	g := api.Group("/analytics")
	g.Get("/usage", s.guardAdmin(s.analyticsUsage)...)
	g.Get("/calibration", s.guardAdmin(s.analyticsCalibration)...)
	g.Get("/latency", s.guardAdmin(s.analyticsLatency)...)
	g.Get("/quality", s.guardAdmin(s.analyticsQuality)...)
	g.Get("/trends", s.guardAdmin(s.analyticsTrends)...)
	g.Get("/models", s.guardAdmin(s.analyticsModels)...)
}

// analyticsFilter is the window and user every analytics route takes.
type analyticsFilter struct {
	from, to time.Time
	userID   *uuid.UUID
}

// readAnalyticsFilter reads from and to (RFC 3339; default: the
// analyticsDefaultWindow up to now) and user_id from the query q; bad
// values are recorded in q.
func readAnalyticsFilter(q *fields) analyticsFilter {
	f := analyticsFilter{to: time.Now()}
	if t, ok := q.datetime("to", false); ok {
		f.to = t
	}
	f.from = f.to.Add(-analyticsDefaultWindow)
	if t, ok := q.datetime("from", false); ok {
		f.from = t
	}
	if id, ok := q.uuidField("user_id", false); ok {
		f.userID = &id
	}
	return f
}

// ratio is num/den, or nil (JSON null) when den is 0.
func ratio(num, den int64) *float64 {
	if den == 0 {
		return nil
	}
	r := float64(num) / float64(den)
	return &r
}

// usageJSON is one usage figure set: acceptance_rate = accepted / shown;
// completions_per_user_day = completions / the number of (user, UTC day)
// pairs with at least one completion.
func usageJSON(completions, shown, accepted, users, userDays int64) fiber.Map {
	return fiber.Map{
		"completions": completions, "shown": shown, "accepted": accepted,
		"acceptance_rate": ratio(accepted, shown), "users": users,
		"user_days": userDays, "completions_per_user_day": ratio(completions, userDays),
	}
}

// analyticsUsage answers GET /api/analytics/usage: the totals over the
// window and per UTC day or hour (granularity, default day).
func (s *Server) analyticsUsage(c *fiber.Ctx) error {
	q := queryFields(c)
	f := readAnalyticsFilter(q)
	gran, ok := q.str("granularity", false, 0, 0)
	if !ok {
		gran = "day"
	} else if gran != "day" && gran != "hour" {
		q.add("literal_error", "granularity", "Input should be 'day' or 'hour'", gran, map[string]any{"expected": "'day' or 'hour'"})
	}
	if err := q.err(); err != nil {
		return err
	}
	ctx := c.UserContext()
	total, err := s.q.AnalyticsUsageTotal(ctx, s.db, models.AnalyticsUsageTotalParams{FromTime: f.from, ToTime: f.to, UserID: f.userID})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	rows, err := s.q.AnalyticsUsage(ctx, s.db, models.AnalyticsUsageParams{Granularity: gran, FromTime: f.from, ToTime: f.to, UserID: f.userID})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	buckets := make([]fiber.Map, 0, len(rows))
	for _, r := range rows {
		b := usageJSON(r.Completions, r.Shown, r.Accepted, r.Users, r.UserDays)
		b["bucket"] = r.Bucket.UTC()
		buckets = append(buckets, b)
	}
	return c.JSON(fiber.Map{
		"from": f.from.UTC(), "to": f.to.UTC(), "granularity": gran,
		"total":   usageJSON(total.Completions, total.Shown, total.Accepted, total.Users, total.UserDays),
		"buckets": buckets,
	})
}

// calibrationModel is one model's calibration over its shown completion
// generations with a confidence: N of them, ECE = Σ_b (n_b/N)·|acc_b −
// conf_b| over the non-empty bins, Brier = (1/N)·Σ (confidence −
// accepted)² with accepted 1 or 0.
type calibrationModel struct {
	ModelID   int64            `json:"model_id"`
	ModelName string           `json:"model_name"`
	N         int64            `json:"n"`
	ECE       float64          `json:"ece"`
	Brier     float64          `json:"brier"`
	Bins      []calibrationBin `json:"bins"`
	brierSum  float64
}

// calibrationBin is one reliability-diagram bin: confidences in [lower,
// upper) (the last bin includes 1).
type calibrationBin struct {
	Bin            int32   `json:"bin"`
	Lower          float64 `json:"lower"`
	Upper          float64 `json:"upper"`
	N              int64   `json:"n"`
	MeanConfidence float64 `json:"mean_confidence"`
	AcceptRate     float64 `json:"accept_rate"`
}

// analyticsCalibration answers GET /api/analytics/calibration: per model,
// the reliability bins (bins equal-width bins, default 10, 1 to 100), ECE
// and Brier score.
func (s *Server) analyticsCalibration(c *fiber.Ctx) error {
	q := queryFields(c)
	f := readAnalyticsFilter(q)
	bins := int64(10)
	if n, ok := q.integerIn("bins", false, 1, 100); ok {
		bins = n
	}
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.AnalyticsCalibration(c.UserContext(), s.db, models.AnalyticsCalibrationParams{
		Bins: int32(bins), FromTime: f.from, ToTime: f.to, UserID: f.userID})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	out := []*calibrationModel{}
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].ModelID != r.ModelID {
			out = append(out, &calibrationModel{ModelID: r.ModelID, ModelName: r.ModelName, Bins: []calibrationBin{}})
		}
		m := out[len(out)-1]
		m.N += r.N
		m.brierSum += r.BrierSum
		m.Bins = append(m.Bins, calibrationBin{Bin: r.Bin, Lower: float64(r.Bin) / float64(bins),
			Upper: float64(r.Bin+1) / float64(bins), N: r.N, MeanConfidence: r.MeanConfidence, AcceptRate: r.AcceptRate})
	}
	for _, m := range out {
		for _, b := range m.Bins {
			m.ECE += float64(b.N) / float64(m.N) * math.Abs(b.AcceptRate-b.MeanConfidence)
		}
		m.Brier = m.brierSum / float64(m.N)
	}
	return c.JSON(fiber.Map{"from": f.from.UTC(), "to": f.to.UTC(), "bins": bins, "models": out})
}

// latencyStage is one stage's distribution: how many generations record
// it, and its nearest-rank percentiles (null when none does).
type latencyStage struct {
	N   int64    `json:"n"`
	P50 *float64 `json:"p50"`
	P95 *float64 `json:"p95"`
	P99 *float64 `json:"p99"`
}

func newLatencyStage(n int64, ps []float64) latencyStage {
	st := latencyStage{N: n}
	if len(ps) == 3 {
		st.P50, st.P95, st.P99 = &ps[0], &ps[1], &ps[2]
	}
	return st
}

// analyticsLatency answers GET /api/analytics/latency: per model, the
// p50, p95 and p99 of each latency stage, in milliseconds. The
// generation's stages (generation_time_ms, queue_ms, prefill_ms,
// decode_ms) are its own; the query's (total_serving_ms, redact_ms,
// context_ms) are those of the queries the model answered.
func (s *Server) analyticsLatency(c *fiber.Ctx) error {
	q := queryFields(c)
	f := readAnalyticsFilter(q)
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.AnalyticsLatency(c.UserContext(), s.db, models.AnalyticsLatencyParams{FromTime: f.from, ToTime: f.to, UserID: f.userID})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	out := make([]fiber.Map, 0, len(rows))
	for _, r := range rows {
		out = append(out, fiber.Map{"model_id": r.ModelID, "model_name": r.ModelName, "stages": map[string]latencyStage{
			"generation_time_ms": newLatencyStage(r.NGenerationTime, r.GenerationTime),
			"queue_ms":           newLatencyStage(r.NQueue, r.Queue),
			"prefill_ms":         newLatencyStage(r.NPrefill, r.Prefill),
			"decode_ms":          newLatencyStage(r.NDecode, r.Decode),
			"total_serving_ms":   newLatencyStage(r.NTotalServing, r.TotalServing),
			"redact_ms":          newLatencyStage(r.NRedact, r.Redact),
			"context_ms":         newLatencyStage(r.NContext, r.Context),
		}})
	}
	return c.JSON(fiber.Map{"from": f.from.UTC(), "to": f.to.UTC(), "models": out})
}

// survivalHorizons are the times after acceptance at which survival of
// accepted code is measured.
var survivalHorizons = []time.Duration{30 * time.Second, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute}

// survivalHorizonsS is survivalHorizons in seconds, as the quality
// queries take them.
func survivalHorizonsS() []int32 {
	out := make([]int32, len(survivalHorizons))
	for k, h := range survivalHorizons {
		out[k] = int32(h / time.Second)
	}
	return out
}

// matchFigures are exact match and edit similarity (eval.ExactMatch,
// eval.EditSimilarity) of completions against their latest ground truth,
// averaged over the N generations that have one.
type matchFigures struct {
	N              int64    `json:"n"`
	ExactMatch     *float64 `json:"exact_match"`
	EditSimilarity *float64 `json:"edit_similarity"`
}

// newMatchFigures are n generations' figures with the means em and es
// (nulls when n is 0).
func newMatchFigures(n int64, em, es float64) matchFigures {
	m := matchFigures{N: n}
	if n > 0 {
		m.ExactMatch, m.EditSimilarity = &em, &es
	}
	return m
}

// survivalFigure is the mean survival at one horizon over the N accepted
// generations with a ground truth by then (null when N is 0).
type survivalFigure struct {
	HorizonS int64    `json:"horizon_s"`
	N        int64    `json:"n"`
	Mean     *float64 `json:"mean"`
}

// qualityFigures are the quality figures of a set of shown generations:
// exact match and edit similarity of the shown and of the accepted ones,
// and the survival of accepted code at each horizon. They are read from
// the figures the truth_match job stores per (generation, ground truth)
// (truth_job.go), within seconds of the ground truth's arrival.
type qualityFigures struct {
	Shown    matchFigures     `json:"shown"`
	Accepted matchFigures     `json:"accepted"`
	Survival []survivalFigure `json:"survival"`
}

// newQualityFigures are the figures of a set without ground truths.
func newQualityFigures() qualityFigures {
	return readQualityFigures(0, 0, 0, 0, 0, 0, nil, nil)
}

// readQualityFigures are the figures of a quality query's row: the counts
// and means of the shown and accepted generations, and per horizon of
// survivalHorizons the count and mean survival (absent: none).
func readQualityFigures(nShown int64, emShown, esShown float64, nAccepted int64, emAccepted, esAccepted float64,
	survN []int64, survMean []float64) qualityFigures {
	q := qualityFigures{Shown: newMatchFigures(nShown, emShown, esShown),
		Accepted: newMatchFigures(nAccepted, emAccepted, esAccepted)}
	for k, h := range survivalHorizons {
		sv := survivalFigure{HorizonS: int64(h / time.Second)}
		if k < len(survN) && k < len(survMean) && survN[k] > 0 {
			sv.N, sv.Mean = survN[k], &survMean[k]
		}
		q.Survival = append(q.Survival, sv)
	}
	return q
}

// survivalBy is the survival of an accepted completion at horizon h:
// against the latest of truths (oldest first, reported at truthTimes)
// reported at or before acceptedAt + h. false when the completion is
// empty or no truth was reported by then.
func survivalBy(completion string, acceptedAt time.Time, h time.Duration, truths []string, truthTimes []time.Time) (float64, bool) {
	if completion == "" {
		return 0, false
	}
	i := len(truthTimes) - 1
	for i >= 0 && truthTimes[i].After(acceptedAt.Add(h)) {
		i--
	}
	if i < 0 {
		return 0, false
	}
	return survival(completion, truths[i]), true
}

// qualityModel is one model's quality figures.
type qualityModel struct {
	ModelID   int64  `json:"model_id"`
	ModelName string `json:"model_name"`
	qualityFigures
}

// survival is the share of completion's characters (runes) that survive
// in truth: the length of their longest common subsequence divided by
// the completion's length. The completion must not be empty.
func survival(completion, truth string) float64 {
	a, b := []rune(completion), []rune(truth)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			if a[i-1] == b[j-1] {
				cur[j] = prev[j-1] + 1
			} else {
				cur[j] = max(prev[j], cur[j-1])
			}
		}
		prev, cur = cur, prev
	}
	return float64(prev[len(b)]) / float64(len(a))
}

// analyticsQuality answers GET /api/analytics/quality: per model, exact
// match and edit similarity of shown and of accepted completions against
// their latest ground truth, and the survival of accepted code: at
// horizon h, an accepted, non-empty completion's survival against the
// latest ground truth reported at or before accepted_at + h, averaged
// over the accepted generations that have one. The figures are the
// stored ones of the truth_match job (truth_job.go), aggregated in SQL.
func (s *Server) analyticsQuality(c *fiber.Ctx) error {
	q := queryFields(c)
	f := readAnalyticsFilter(q)
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.AnalyticsQuality(c.UserContext(), s.db, models.AnalyticsQualityParams{FromTime: f.from, ToTime: f.to,
		UserID: f.userID, HorizonsS: survivalHorizonsS()})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	out := make([]qualityModel, 0, len(rows))
	for _, r := range rows {
		out = append(out, qualityModel{ModelID: r.ModelID, ModelName: r.ModelName, qualityFigures: readQualityFigures(
			r.NShown, r.EmShown, r.EsShown, r.NAccepted, r.EmAccepted, r.EsAccepted, r.SurvivalN, r.SurvivalMean)})
	}
	return c.JSON(fiber.Map{"from": f.from.UTC(), "to": f.to.UTC(), "models": out})
}
