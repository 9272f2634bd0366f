package server

import (
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/stats"
	"github.com/code4me/code4me/models"
)

// Study results (admin only): GET /api/analytics/studies/{study_id}/evaluation
// (the original's path; .../results is the same route) compares a study's
// arms over its exposed queries: the completion queries an arm answered,
// requested in the study's window [starts_at, coalesce(ends_at, now)).
// Counts and quality figures are those of the analytics routes
// (analytics.go); each rate and mean comes with its 95 % interval, and
// every arm but the baseline with its difference from the baseline. The
// formulas are written out in docs/research.md ("Study results").

// studyConfidence is the level of every interval of the study results.
const studyConfidence = 0.95

// studyWindow is the study's window: [starts_at, ends_at), up to now
// while it has no end.
func studyWindow(st models.Study) (from, to time.Time) {
	to = time.Now()
	if st.EndsAt != nil {
		to = *st.EndsAt
	}
	return st.StartsAt, to
}

// estimate is a figure with its 95 % interval; nulls when undefined.
type estimate struct {
	Estimate *float64 `json:"estimate"`
	Low      *float64 `json:"low"`
	High     *float64 `json:"high"`
}

func newEstimate(v float64, iv stats.Interval, ok bool) estimate {
	e := estimate{Estimate: &v}
	if ok {
		e.Low, e.High = &iv.Low, &iv.High
	}
	return e
}

// armLatency is an arm's total_serving_ms over its queries that record
// it: n of them, the mean with its t interval (df = n − 1), the sample
// standard deviation and the nearest-rank p50 and p95.
type armLatency struct {
	N    int64    `json:"n"`
	Mean estimate `json:"mean"`
	SD   *float64 `json:"sd"`
	P50  *float64 `json:"p50"`
	P95  *float64 `json:"p95"`
}

// armResult is one arm's figures.
type armResult struct {
	ArmID          int64          `json:"arm_id"`
	Name           string         `json:"name"`
	ConfigID       int64          `json:"config_id"`
	IsBaseline     bool           `json:"is_baseline"`
	Units          int64          `json:"units"`
	Participants   int64          `json:"participants"`
	Queries        int64          `json:"queries"`
	Generations    int64          `json:"generations"`
	Shown          int64          `json:"shown"`
	Accepted       int64          `json:"accepted"`
	AcceptanceRate estimate       `json:"acceptance_rate"`
	LatencyMS      armLatency     `json:"total_serving_ms"`
	Quality        qualityFigures `json:"quality"`
	VsBaseline     *armDiff       `json:"vs_baseline"`
}

// armDiff is an arm minus the baseline: the difference in acceptance rate
// (Newcombe's hybrid score interval) and in mean total_serving_ms
// (Welch's interval, with its degrees of freedom).
type armDiff struct {
	BaselineArmID      int64    `json:"baseline_arm_id"`
	AcceptanceRateDiff estimate `json:"acceptance_rate_diff"`
	LatencyMeanDiffMS  estimate `json:"total_serving_ms_mean_diff"`
	LatencyDF          *float64 `json:"total_serving_ms_df"`
}

func newArmResult(r models.StudyResultArmsRow) *armResult {
	a := &armResult{ArmID: r.ArmID, Name: r.Name, ConfigID: r.ConfigID, IsBaseline: r.IsBaseline, Units: r.Units,
		Participants: r.Participants, Queries: r.Queries, Generations: r.Generations, Shown: r.Shown, Accepted: r.Accepted,
		Quality: newQualityFigures()}
	if r.Shown > 0 {
		iv, ok := stats.Wilson(r.Accepted, r.Shown, studyConfidence)
		a.AcceptanceRate = newEstimate(float64(r.Accepted)/float64(r.Shown), iv, ok)
	}
	a.LatencyMS.N = r.NLatency
	if r.NLatency > 0 {
		iv, ok := stats.MeanInterval(r.NLatency, r.LatencyMean, r.LatencySd, studyConfidence)
		a.LatencyMS.Mean = newEstimate(r.LatencyMean, iv, ok)
		if r.NLatency > 1 {
			a.LatencyMS.SD = &r.LatencySd
		}
	}
	if len(r.LatencyPercentiles) == 2 {
		a.LatencyMS.P50, a.LatencyMS.P95 = &r.LatencyPercentiles[0], &r.LatencyPercentiles[1]
	}
	return a
}

// versus is arm a against the baseline b.
func versus(a, b models.StudyResultArmsRow) *armDiff {
	d := &armDiff{BaselineArmID: b.ArmID}
	if iv, ok := stats.Newcombe(a.Accepted, a.Shown, b.Accepted, b.Shown, studyConfidence); ok {
		d.AcceptanceRateDiff = newEstimate(float64(a.Accepted)/float64(a.Shown)-float64(b.Accepted)/float64(b.Shown), iv, true)
	}
	if a.NLatency > 0 && b.NLatency > 0 {
		iv, df, ok := stats.Welch(a.NLatency, a.LatencyMean, a.LatencySd, b.NLatency, b.LatencyMean, b.LatencySd, studyConfidence)
		d.LatencyMeanDiffMS = newEstimate(a.LatencyMean-b.LatencyMean, iv, ok)
		if ok && df > 0 {
			d.LatencyDF = &df
		}
	}
	return d
}

// studyEvaluation answers GET /api/analytics/studies/{study_id}/evaluation.
func (s *Server) studyEvaluation(c *fiber.Ctx) error {
	ctx := c.UserContext()
	st, err := s.pathStudy(c)
	if err != nil {
		return err
	}
	from, to := studyWindow(st)
	rows, err := s.q.StudyResultArms(ctx, s.db, models.StudyResultArmsParams{StudyID: st.StudyID, Unit: st.Unit, FromTime: from, ToTime: to})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	quality, err := s.q.StudyResultQuality(ctx, s.db, models.StudyResultQualityParams{StudyID: st.StudyID, FromTime: from, ToTime: to,
		HorizonsS: survivalHorizonsS()})
	if err != nil {
		return internalDetail(MsgAnalyticsError, err)
	}
	base := -1
	for i, r := range rows {
		if r.IsBaseline {
			base = i
		}
	}
	arms := make([]*armResult, len(rows))
	byID := map[int64]*armResult{}
	for i, r := range rows {
		arms[i] = newArmResult(r)
		byID[r.ArmID] = arms[i]
		if base >= 0 && i != base {
			arms[i].VsBaseline = versus(r, rows[base])
		}
	}
	for _, r := range quality {
		if a := byID[r.ArmID]; a != nil {
			a.Quality = readQualityFigures(r.NShown, r.EmShown, r.EsShown, r.NAccepted, r.EmAccepted, r.EsAccepted,
				r.SurvivalN, r.SurvivalMean)
		}
	}
	return c.JSON(fiber.Map{"study": studyJSON(st), "from": from.UTC(), "to": to.UTC(), "unit": st.Unit,
		"confidence_level": studyConfidence, "arms": arms})
}

// studyResultRoutes registers the results and the export under the
// studies' group g.
func (s *Server) studyResultRoutes(g fiber.Router) {
	g.Get("/:study_id/evaluation", s.guardAdmin(s.studyEvaluation)...)
	g.Get("/:study_id/results", s.guardAdmin(s.studyEvaluation)...)
	g.Get("/:study_id/export", s.guardAdmin(s.studyExport)...)
}

// Documentation of the results and export routes in /openapi.json.
const (
	studyResultsDoc = adminDoc + " Over the study's exposed queries: the completion queries its arms answered, requested in " +
		"[starts_at, coalesce(ends_at, now)). Formulas: docs/research.md, Study results."
	estimateObj  = "{estimate, low, high}: the 95 % interval; nulls when undefined"
	armResultObj = "{arm_id, name, config_id, is_baseline, units (distinct users, sessions or queries, per the study's unit), " +
		"participants (distinct users), queries, generations, shown, accepted, acceptance_rate: " + estimateObj + " (Wilson), " +
		"total_serving_ms: {n (queries), mean: " + estimateObj + " (Student's t, n − 1 df), sd, p50, p95}, quality: {shown and " +
		"accepted: {n, exact_match, edit_similarity}, survival: [{horizon_s, n, mean}]} as GET /api/analytics/quality has them, " +
		"vs_baseline: null for the baseline, else {baseline_arm_id, acceptance_rate_diff: " + estimateObj + " (Newcombe's hybrid " +
		"score), total_serving_ms_mean_diff: " + estimateObj + " (Welch), total_serving_ms_df}}"
)

var studyResultOps = []apiOp{
	{Method: "GET", Path: "/api/analytics/studies/{study_id}/evaluation", Summary: "Admin: a study's arms compared, with 95 % intervals",
		Auth: ClassA, Account: true, OK: 200, Doc: studyResultsDoc + " GET /api/analytics/studies/{study_id}/results is the same route.",
		Params: studyIDParam,
		Resp: []apiField{respField("study", "object", studyObj), respField("from", "string", "starts_at"),
			respField("to", "string", "ends_at, or now while the study has no end"), respField("unit", "string", "user, session or request"),
			respField("confidence_level", "number", "0.95"), respField("arms", "[]object", "in arm_id order: "+armResultObj)},
		Errors: adminErrors(map[int]string{404: "No such study"})},
	{Method: "GET", Path: "/api/analytics/studies/{study_id}/results", Summary: "Admin: a study's arms compared (as GET .../evaluation)",
		Auth: ClassA, Account: true, OK: 200, Doc: studyResultsDoc, Params: studyIDParam,
		Resp:   []apiField{respField("arms", "[]object", armResultObj)},
		Errors: adminErrors(map[int]string{404: "No such study"})},
	{Method: "GET", Path: "/api/analytics/studies/{study_id}/export", Summary: "Admin: a study's exposed queries, one row per query and model",
		Auth: ClassA, Account: true, OK: 200,
		Doc: adminDoc + " The body is JSON Lines (application/x-ndjson: one object per line with the fields below) or CSV (text/csv: " +
			"a header row, then the same columns in the same order; null is an empty field), streamed in (requested_at, " +
			"meta_query_id, model_id) order. Every row's schema and the X-Code4me-Export-Schema header name the layout, " +
			"\"" + studyExportSchema + "\". Ids of users and sessions are pseudonyms; no email or code is exported. An export " +
			"that fails half way ends the connection before the body's end. Columns: docs/research.md, Study export.",
		Params: studyIDParam,
		Query:  []apiField{optField("format", "string", "\"jsonl\" (default) or \"csv\"")},
		Resp: []apiField{respField("schema", "string", studyExportSchema), respField("study_id", "uuid", ""),
			respField("arm_name", "string", ""), respField("arm_id", "integer", ""), respField("config_id", "integer", ""),
			respField("unit_key", "string", "pseudonym of the unit randomised"), respField("participant", "string", "pseudonym of the user"),
			respField("session", "string", "pseudonym of the session"), respField("meta_query_id", "uuid", ""),
			respField("requested_at", "date-time", ""), respField("model_id", "integer", "null: no generation"),
			respField("model_name", "string", ""), respField("shown", "boolean", ""), respField("accepted", "boolean", ""),
			respField("confidence", "number", ""), respField("total_serving_ms", "number", ""),
			respField("generation_time_ms", "integer", ""), respField("tokens_generated", "integer", ""),
			respField("survival_30s", "number", ""), respField("survival_2m", "number", ""), respField("survival_5m", "number", ""),
			respField("survival_10m", "number", ""), respField("exact_match", "boolean", ""), respField("edit_similarity", "number", ""),
			respField("language_id", "integer", ""), respField("trigger", "string", "manual, auto or idle")},
		Errors: adminErrors(map[int]string{404: "No such study"})},
}
