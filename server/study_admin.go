package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// Study administration (admin only), under /api/analytics/studies. The
// original's paths stay: create, list, {id}/details, {id}/activate (start)
// and {id}/deactivate (end); pause, a PATCH and REST-style aliases are
// added. A study is made as a draft; start runs it (409 while another
// runs), pause stops exposure and keeps the participants, start again
// resumes, end is final.

// Messages of the study routes.
const (
	MsgStudyError      = "Server failed to administer the study."
	MsgStudyNotFound   = "Study not found"
	MsgStudyCreated    = "Study created successfully"
	MsgStudyOtherRuns  = "Another study is running; pause or end it first."
	MsgStudyEnded      = "The study has ended; an ended study cannot change."
	MsgStudyNotRunning = "The study is not running."
	MsgStudyPastEnd    = "The study's end date has passed; set a later ends_at first."
)

// Bounds of a study's definition.
const (
	studyMaxArms       = 20
	studyMaxArmWeight  = 1000
	studyMaxTimeBudget = 60_000
	studyMaxDebounce   = 5_000
)

func (s *Server) studyRoutes(api fiber.Router) {
	api.Post("/analytics/studies", s.guardAdmin(s.studyCreate)...)
	api.Get("/analytics/studies", s.guardAdmin(s.studyList)...)
	g := api.Group("/analytics/studies")
	g.Post("/create", s.guardAdmin(s.studyCreate)...)
	g.Get("/list", s.guardAdmin(s.studyList)...)
	g.Get("/:study_id", s.guardAdmin(s.studyDetails)...)
	g.Get("/:study_id/details", s.guardAdmin(s.studyDetails)...)
	g.Patch("/:study_id", s.guardAdmin(s.studyUpdate)...)
	g.Post("/:study_id/start", s.guardAdmin(s.studyStart)...)
	g.Post("/:study_id/activate", s.guardAdmin(s.studyStart)...)
	g.Post("/:study_id/pause", s.guardAdmin(s.studyPause)...)
	g.Post("/:study_id/end", s.guardAdmin(s.studyEnd)...)
	g.Post("/:study_id/deactivate", s.guardAdmin(s.studyEnd)...)
	s.studyResultRoutes(g)
}

// studyJSON is a study as the routes answer it.
func studyJSON(st models.Study) fiber.Map {
	return fiber.Map{"study_id": st.StudyID, "name": st.Name, "description": st.Description, "created_by": st.CreatedBy,
		"starts_at": st.StartsAt, "ends_at": st.EndsAt, "status": st.Status, "is_active": st.Status == "running",
		"unit": st.Unit, "seed": st.Seed, "max_participants": st.MaxParticipants,
		"created_at": st.CreatedAt, "updated_at": st.UpdatedAt}
}

func armJSON(a models.StudyArm) fiber.Map {
	return fiber.Map{"arm_id": a.ArmID, "name": a.Name, "config_id": a.ConfigID, "weight": a.Weight,
		"is_baseline": a.IsBaseline, "policy": json.RawMessage(a.Policy)}
}

// objectList reads name, a list of objects, as one fields reader each.
func (f *fields) objectList(name string, required bool) []*fields {
	raw, ok := f.get(name, required)
	if !ok {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		f.add("list_type", name, "Input should be a valid list", rawInput(raw), nil)
		return nil
	}
	out := make([]*fields, 0, len(list))
	for i, el := range list {
		loc := append(f.at(name), i)
		sub := &fields{loc: loc, errs: f.errs, inputRaw: el, inputFloats: true}
		if err := json.Unmarshal(el, &sub.raw); err != nil || sub.raw == nil {
			*f.errs = append(*f.errs, fieldError{Type: "model_type", Loc: loc,
				Msg: "Input should be a valid dictionary or instance of the model", Input: rawInput(el)})
			continue
		}
		out = append(out, sub)
	}
	return out
}

// onlyKnown records every key of f not in known.
func (f *fields) onlyKnown(known ...string) {
	ok := map[string]bool{}
	for _, k := range known {
		ok[k] = true
	}
	for k, v := range f.raw {
		if !ok[k] {
			f.add("extra_forbidden", k, "Extra inputs are not permitted", rawInput(v), nil)
		}
	}
}

// armSpec is an arm of a create request.
type armSpec struct {
	name     string
	configID int64
	weight   int64
	baseline bool
	policy   armPolicy
}

// parsePolicy reads an arm's policy; model ids must be completion models
// this server has loaded.
func (s *Server) parsePolicy(f *fields) armPolicy {
	var p armPolicy
	if f == nil {
		return p
	}
	f.onlyKnown("model_ids", "max_tokens", "time_budget_ms", "context", "suffix", "min_prefix_chars", "debounce_ms")
	p.ModelIDs = f.intList("model_ids", false, 1)
	for i, id := range p.ModelIDs {
		if m, ok := s.plugin.models.Get(id); !ok || !m.Completion() {
			*f.errs = append(*f.errs, fieldError{Type: "foreign_key", Loc: append(f.at("model_ids"), i),
				Msg: "Value error, not a completion model this server has loaded", Input: id})
		}
	}
	n, _ := f.integerIn("max_tokens", false, 1, int64(s.plugin.limits.CompletionTokens))
	p.MaxTokens = int(n)
	n, _ = f.integerIn("time_budget_ms", false, 1, studyMaxTimeBudget)
	p.TimeBudgetMS = int(n)
	n, _ = f.integerIn("min_prefix_chars", false, 0, math.MaxInt32)
	p.MinPrefixChars = int(n)
	n, _ = f.integerIn("debounce_ms", false, 0, studyMaxDebounce)
	p.DebounceMS = int(n)
	if c, ok := f.str("context", false, 0, 0); ok {
		if c != armContextRequest && c != armContextNone && c != armContextAll {
			f.add("literal_error", "context", "Input should be 'request', 'none' or 'all-but-current'", c,
				map[string]any{"expected": "'request', 'none' or 'all-but-current'"})
		}
		p.Context = c
	}
	if f.has("suffix") {
		b, ok := f.boolean("suffix", false)
		if ok {
			p.Suffix = &b
		}
	}
	return p
}

// POST /api/analytics/studies/create (and POST /api/analytics/studies):
// {name, description?, starts_at? (default now), ends_at?, unit? ("user",
// "session" or "request"; default "user"), seed?, max_participants?,
// arms: [{name, config_id, weight? (1), baseline?, policy?}], start?}.
// The original's {config_ids, default_config_id} is accepted in place of
// arms: one arm per config, the default one the baseline. Without a
// baseline the first arm is it.
func (s *Server) studyCreate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	name, _ := f.str("name", true, 1, 200)
	desc, hasDesc := f.str("description", false, 0, 5000)
	startsAt := time.Now()
	if t, ok := f.datetime("starts_at", false); ok {
		startsAt = t
	}
	var endsAt *time.Time
	if t, ok := f.datetime("ends_at", false); ok {
		endsAt = &t
		if !t.After(startsAt) {
			f.add("value_error", "ends_at", "Value error, ends_at must be after starts_at", t, nil)
		}
	}
	unit := unitUser
	if u, ok := f.str("unit", false, 0, 0); ok {
		if u != unitUser && u != unitSession && u != unitRequest {
			f.add("literal_error", "unit", "Input should be 'user', 'session' or 'request'", u,
				map[string]any{"expected": "'user', 'session' or 'request'"})
		}
		unit = u
	}
	seed := rand.Int64N(1 << 53)
	if n, ok := f.integer("seed", false, 0); ok {
		seed = n
	}
	var maxP *int32
	if n, ok := f.integerIn("max_participants", false, 1, math.MaxInt32); ok {
		v := int32(n)
		maxP = &v
	}
	start := f.optBool("start", false)
	arms := s.parseArms(f)
	if err := f.err(); err != nil {
		return err
	}
	if err := s.checkConfigs(ctx, f, arms); err != nil {
		return err
	}
	var descPtr *string
	if hasDesc {
		descPtr = &desc
	}
	creator := principal(c).UserID
	var st models.Study
	var made []models.StudyArm
	err = db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		made = nil
		var err error
		st, err = s.q.StudyCreate(ctx, tx, models.StudyCreateParams{Name: name, Description: descPtr, CreatedBy: &creator,
			StartsAt: startsAt, EndsAt: endsAt, Unit: unit, Seed: seed, MaxParticipants: maxP})
		if err != nil {
			return err
		}
		for _, a := range arms {
			pol, _ := json.Marshal(a.policy)
			row, err := s.q.StudyArmCreate(ctx, tx, models.StudyArmCreateParams{StudyID: st.StudyID, Name: a.name,
				ConfigID: a.configID, Weight: int32(a.weight), IsBaseline: a.baseline, Policy: pol})
			if err != nil {
				return err
			}
			made = append(made, row)
		}
		if start {
			st, err = s.q.StudySetStatus(ctx, tx, models.StudySetStatusParams{Status: "running", StudyID: st.StudyID,
				FromStatuses: []string{"draft"}})
			if err != nil {
				return err
			}
		}
		after := studyJSON(st)
		after["arms"] = armsJSON(made)
		return s.audit(ctx, tx, c, "create", "studies", st.StudyID.String(), nil, after)
	})
	if db.IsUniqueViolation(err, "study_one_running_idx") {
		return failDetail(fiber.StatusConflict, MsgStudyOtherRuns)
	}
	if err != nil {
		return internalDetail(MsgStudyError, err)
	}
	s.studies.invalidate()
	out := studyJSON(st)
	out["message"] = MsgStudyCreated
	out["arms"] = armsJSON(made)
	return c.Status(fiber.StatusCreated).JSON(out)
}

func armsJSON(arms []models.StudyArm) []fiber.Map {
	out := make([]fiber.Map, 0, len(arms))
	for _, a := range arms {
		out = append(out, armJSON(a))
	}
	return out
}

// parseArms reads arms, or the original's config_ids and default_config_id.
func (s *Server) parseArms(f *fields) []armSpec {
	var arms []armSpec
	if !f.has("arms") && f.has("config_ids") {
		ids := f.intList("config_ids", true, 1)
		def, _ := f.integer("default_config_id", true, 1)
		seen := map[int64]bool{}
		for _, id := range append([]int64{def}, ids...) {
			if !seen[id] {
				seen[id] = true
				arms = append(arms, armSpec{name: fmt.Sprintf("config %d", id), configID: id, weight: 1, baseline: id == def})
			}
		}
		return arms
	}
	list := f.objectList("arms", true)
	if list != nil && (len(list) < 1 || len(list) > studyMaxArms) {
		f.add("value_error", "arms", fmt.Sprintf("Value error, a study has 1 to %d arms", studyMaxArms), nil, nil)
	}
	names := map[string]bool{}
	baselines := 0
	for _, af := range list {
		af.onlyKnown("name", "config_id", "weight", "baseline", "policy")
		var a armSpec
		a.name, _ = af.str("name", true, 1, 100)
		if names[a.name] {
			af.add("value_error", "name", "Value error, arm names must differ", a.name, nil)
		}
		names[a.name] = true
		a.configID, _ = af.integer("config_id", true, 1)
		a.weight = 1
		if w, ok := af.integerIn("weight", false, 1, studyMaxArmWeight); ok {
			a.weight = w
		}
		a.baseline = af.optBool("baseline", false)
		if a.baseline {
			baselines++
		}
		a.policy = s.parsePolicy(af.object("policy", false))
		arms = append(arms, a)
	}
	if baselines > 1 {
		f.add("value_error", "arms", "Value error, at most one arm is the baseline", nil, nil)
	}
	if baselines == 0 && len(arms) > 0 {
		arms[0].baseline = true
	}
	return arms
}

// checkConfigs answers 422 naming each arm whose config does not exist.
func (s *Server) checkConfigs(ctx context.Context, f *fields, arms []armSpec) error {
	for i, a := range arms {
		ok, err := s.q.ConfigExists(ctx, s.db, a.configID)
		if err != nil {
			return internalDetail(MsgStudyError, err)
		}
		if !ok {
			*f.errs = append(*f.errs, fieldError{Type: "foreign_key", Loc: []any{"body", "arms", i, "config_id"},
				Msg: "Value error, unknown config", Input: a.configID})
		}
	}
	return f.err()
}

// GET /api/analytics/studies/list?status=&include_inactive=: newest first.
// The original listed running studies only unless include_inactive=true;
// status (draft, running, paused, ended) picks one status.
func (s *Server) studyList(c *fiber.Ctx) error {
	q := queryFields(c)
	status, _ := q.str("status", false, 0, 0)
	if status != "" && status != "draft" && status != "running" && status != "paused" && status != "ended" {
		q.add("literal_error", "status", "Input should be 'draft', 'running', 'paused' or 'ended'", status, nil)
	}
	if all, ok := q.boolean("include_inactive", false); ok && !all && status == "" {
		status = "running"
	}
	if err := q.err(); err != nil {
		return err
	}
	rows, err := s.q.StudyList(c.UserContext(), s.db, status)
	if err != nil {
		return internalDetail(MsgStudyError, err)
	}
	out := make([]fiber.Map, 0, len(rows))
	for _, r := range rows {
		m := studyJSON(models.Study{StudyID: r.StudyID, Name: r.Name, Description: r.Description, CreatedBy: r.CreatedBy,
			StartsAt: r.StartsAt, EndsAt: r.EndsAt, CreatedAt: r.CreatedAt, Unit: r.Unit, Seed: r.Seed,
			MaxParticipants: r.MaxParticipants, Status: r.Status, UpdatedAt: r.UpdatedAt})
		m["creator_name"], m["participants"] = r.CreatorName, r.Participants
		out = append(out, m)
	}
	return c.JSON(fiber.Map{"studies": out})
}

// pathStudy reads the study_id path parameter and loads the study (422 for
// a malformed id, 404 for an unknown one).
func (s *Server) pathStudy(c *fiber.Ctx) (models.Study, error) {
	id, err := pathUUID(c, "study_id")
	if err != nil {
		return models.Study{}, err
	}
	st, err := s.q.StudyGetByID(c.UserContext(), s.db, id)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return st, failDetail(fiber.StatusNotFound, MsgStudyNotFound)
	}
	if err != nil {
		return st, internalDetail(MsgStudyError, err)
	}
	return st, nil
}

// GET /api/analytics/studies/{study_id}/details: the study, its arms with
// the units assigned and queries exposed so far, and its participants.
func (s *Server) studyDetails(c *fiber.Ctx) error {
	ctx := c.UserContext()
	st, err := s.pathStudy(c)
	if err != nil {
		return err
	}
	arms, err := s.q.StudyArmList(ctx, s.db, st.StudyID)
	if err != nil {
		return internalDetail(MsgStudyError, err)
	}
	counts, err := s.q.StudyAssignmentCounts(ctx, s.db, st.StudyID)
	if err != nil {
		return internalDetail(MsgStudyError, err)
	}
	n, err := s.q.StudyParticipantCount(ctx, s.db, st.StudyID)
	if err != nil {
		return internalDetail(MsgStudyError, err)
	}
	out := armsJSON(arms)
	for i, a := range out {
		for _, ct := range counts {
			if ct.ArmID == arms[i].ArmID {
				a["assigned_units"], a["exposed_queries"] = ct.AssignedUnits, ct.ExposedQueries
			}
		}
	}
	return c.JSON(fiber.Map{"study": studyJSON(st), "arms": out, "participants": n})
}

// PATCH /api/analytics/studies/{study_id} {description?, ends_at?,
// max_participants?}: what may change while a study is not ended. A cap
// below the participants already enrolled is refused (422).
func (s *Server) studyUpdate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	f.onlyKnown("description", "ends_at", "max_participants")
	st, err := s.pathStudy(c)
	if err != nil {
		return err
	}
	arg := models.StudyUpdateParams{StudyID: st.StudyID, Description: st.Description, EndsAt: st.EndsAt, MaxParticipants: st.MaxParticipants}
	if f.has("description") {
		d, _ := f.str("description", false, 0, 5000)
		arg.Description = &d
	}
	if f.has("ends_at") {
		if t, ok := f.datetime("ends_at", false); ok {
			if !t.After(st.StartsAt) {
				f.add("value_error", "ends_at", "Value error, ends_at must be after starts_at", t, nil)
			}
			arg.EndsAt = &t
		}
	}
	if f.has("max_participants") {
		if n, ok := f.integerIn("max_participants", false, 1, math.MaxInt32); ok {
			have, err := s.q.StudyParticipantCount(ctx, s.db, st.StudyID)
			if err != nil {
				return internalDetail(MsgStudyError, err)
			}
			if n < have {
				f.add("value_error", "max_participants",
					fmt.Sprintf("Value error, the study already has %d participants", have), n, nil)
			}
			v := int32(n)
			arg.MaxParticipants = &v
		}
	}
	if err := f.err(); err != nil {
		return err
	}
	var row models.Study
	err = s.auditedTx(c, "update", "studies", func(tx pgx.Tx) (string, any, any, error) {
		var err error
		row, err = s.q.StudyUpdate(ctx, tx, arg)
		return st.StudyID.String(), studyJSON(st), studyJSON(row), err
	})
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return failDetail(fiber.StatusConflict, MsgStudyEnded)
	}
	if err != nil {
		return internalDetail(MsgStudyError, err)
	}
	s.studies.invalidate()
	return c.JSON(fiber.Map{"study": studyJSON(row)})
}

// studyAction names a status change in the audit log.
var studyAction = map[string]string{"running": "start", "paused": "pause", "ended": "end"}

// setStatus moves the path's study to status from one of from, answering
// 409 with why when it cannot.
func (s *Server) setStatus(c *fiber.Ctx, status string, from ...string) error {
	st, err := s.pathStudy(c)
	if err != nil {
		return err
	}
	if status == "running" && st.EndsAt != nil && !st.EndsAt.After(time.Now()) && st.Status != "ended" {
		return failDetail(fiber.StatusConflict, MsgStudyPastEnd)
	}
	var row models.Study
	err = s.auditedTx(c, studyAction[status], "studies", func(tx pgx.Tx) (string, any, any, error) {
		var err error
		row, err = s.q.StudySetStatus(c.UserContext(), tx, models.StudySetStatusParams{Status: status, StudyID: st.StudyID, FromStatuses: from})
		return st.StudyID.String(), studyJSON(st), studyJSON(row), err
	})
	switch {
	case db.IsUniqueViolation(err, "study_one_running_idx"):
		return failDetail(fiber.StatusConflict, MsgStudyOtherRuns)
	case errors.Is(db.Translate(err), db.ErrNotFound):
		if st.Status == "ended" {
			return failDetail(fiber.StatusConflict, MsgStudyEnded)
		}
		if status == "paused" {
			return failDetail(fiber.StatusConflict, MsgStudyNotRunning)
		}
		// Already in the status asked for: nothing to do.
		return c.JSON(fiber.Map{"study": studyJSON(st), "message": fmt.Sprintf("Study '%s' is %s", st.Name, st.Status)})
	case err != nil:
		return internalDetail(MsgStudyError, err)
	}
	s.studies.invalidate()
	return c.JSON(fiber.Map{"study": studyJSON(row), "study_id": row.StudyID,
		"message": fmt.Sprintf("Study '%s' is %s", row.Name, row.Status)})
}

// POST /api/analytics/studies/{study_id}/start (also /activate): a draft
// or paused study runs.
func (s *Server) studyStart(c *fiber.Ctx) error { return s.setStatus(c, "running", "draft", "paused") }

// POST /api/analytics/studies/{study_id}/pause: exposure stops; the
// participants stay enrolled and keep their arms when it resumes.
func (s *Server) studyPause(c *fiber.Ctx) error { return s.setStatus(c, "paused", "running") }

// POST /api/analytics/studies/{study_id}/end (also /deactivate): final;
// ends_at becomes now when it was later or unset.
func (s *Server) studyEnd(c *fiber.Ctx) error {
	return s.setStatus(c, "ended", "draft", "running", "paused")
}

// Documentation of the study routes in /openapi.json.
const (
	studyDoc = adminDoc + " Studies: docs/research.md, Running a study."
	studyObj = "{study_id, name, description, created_by, starts_at, ends_at, status: draft, running, paused or ended, " +
		"is_active: status is running, unit: user, session or request, seed, max_participants, created_at, updated_at}"
	armObj = "{arm_id, name, config_id, weight, is_baseline, policy: {model_ids, max_tokens, time_budget_ms, context: request, " +
		"none or all-but-current, suffix, min_prefix_chars, debounce_ms}}"
)

var studyIDParam = []apiField{reqField("study_id", "uuid", "")}

var studyOps = []apiOp{
	{Method: "POST", Path: "/api/analytics/studies/create", Summary: "Admin: create a study (a draft unless start is true)",
		Auth: ClassA, Account: true, OK: 201, Doc: studyDoc + " POST /api/analytics/studies is the same route.",
		Body: []apiField{reqField("name", "string", "1 to 200 characters"), optField("description", "string", ""),
			optField("starts_at", "string", "RFC 3339; default now"), optField("ends_at", "string", "RFC 3339, after starts_at"),
			optField("unit", "string", "the unit randomised: user (default), session or request"),
			optField("seed", "integer", "of the assignment hash; default random"),
			optField("max_participants", "integer", "enrolment cap, at least 1"),
			reqField("arms", "[]object", "1 to 20 "+armObj+" (weight 1 to 1000, default 1; baseline: default the first arm); "+
				"or config_ids"),
			optField("config_ids", "[]integer", "instead of arms: one arm per config"),
			optField("default_config_id", "integer", "with config_ids: the baseline arm's config"),
			optField("start", "boolean", "run it at once")},
		Resp: []apiField{respField("study", "object", studyObj+", its fields at the top level"), respField("arms", "[]object", armObj),
			respField("message", "string", "")},
		Errors: adminErrors(map[int]string{409: "start is true and another study is running"})},
	{Method: "POST", Path: "/api/analytics/studies", Summary: "Admin: create a study (as POST .../create)", Auth: ClassA, Account: true,
		OK: 201, Doc: studyDoc, Resp: []apiField{respField("study_id", "uuid", "and the rest of POST /api/analytics/studies/create's answer")},
		Errors: adminErrors(map[int]string{409: "start is true and another study is running"})},
	{Method: "GET", Path: "/api/analytics/studies/list", Summary: "Admin: studies, newest first", Auth: ClassA, Account: true, OK: 200,
		Doc: studyDoc + " GET /api/analytics/studies is the same route.",
		Query: []apiField{optField("status", "string", "draft, running, paused or ended"),
			optField("include_inactive", "boolean", "false: running studies only (when status is not given)")},
		Resp:   []apiField{respField("studies", "[]object", studyObj+" with creator_name and participants")},
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/analytics/studies", Summary: "Admin: studies (as GET .../list)", Auth: ClassA, Account: true, OK: 200,
		Doc: studyDoc, Resp: []apiField{respField("studies", "[]object", studyObj)}, Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/analytics/studies/{study_id}/details", Summary: "Admin: a study, its arms and enrolment",
		Auth: ClassA, Account: true, OK: 200, Doc: studyDoc + " GET /api/analytics/studies/{study_id} is the same route.", Params: studyIDParam,
		Resp: []apiField{respField("study", "object", studyObj), respField("arms", "[]object", armObj+" with assigned_units "+
			"(logged user or session units) and exposed_queries"), respField("participants", "integer", "users enrolled")},
		Errors: adminErrors(map[int]string{404: "No such study"})},
	{Method: "GET", Path: "/api/analytics/studies/{study_id}", Summary: "Admin: a study (as GET .../details)", Auth: ClassA, Account: true,
		OK: 200, Doc: studyDoc, Params: studyIDParam, Resp: []apiField{respField("study", "object", studyObj)},
		Errors: adminErrors(map[int]string{404: "No such study"})},
	{Method: "PATCH", Path: "/api/analytics/studies/{study_id}", Summary: "Admin: change a study's description, end or enrolment cap",
		Auth: ClassA, Account: true, OK: 200, Doc: studyDoc, Params: studyIDParam,
		Body: []apiField{optField("description", "string", ""), optField("ends_at", "string", "RFC 3339, after starts_at"),
			optField("max_participants", "integer", "not below the participants enrolled")},
		Resp:   []apiField{respField("study", "object", studyObj)},
		Errors: adminErrors(map[int]string{404: "No such study", 409: "The study has ended"})},
}

// studyStatusOps documents the status changes, which answer alike.
func studyStatusOps() []apiOp {
	var ops []apiOp
	for _, r := range []struct{ path, summary string }{
		{"start", "run a draft or paused study"}, {"activate", "run a study (as .../start)"},
		{"pause", "pause a running study: exposure stops, participants keep their arms"},
		{"end", "end a study for good (ends_at becomes now when later)"}, {"deactivate", "end a study (as .../end)"},
	} {
		ops = append(ops, apiOp{Method: "POST", Path: "/api/analytics/studies/{study_id}/" + r.path, Summary: "Admin: " + r.summary,
			Auth: ClassA, Account: true, OK: 200, Doc: studyDoc, Params: studyIDParam,
			Resp: []apiField{respField("study", "object", studyObj), respField("message", "string", "")},
			Errors: adminErrors(map[int]string{404: "No such study",
				409: "Another study is running, the study has ended, its end date has passed, or (pause) it is not running"})})
	}
	return ops
}
