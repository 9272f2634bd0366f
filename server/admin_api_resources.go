package server

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/models"
)

// The admin API's resources (admin_api.go serves them): each names its
// sqlc list query (queries/admin_*.sql), its filters, its sort keys and
// the writes it supports. Writes the rest of the API already makes are not
// repeated here: studies change through /api/analytics/studies (create,
// PATCH, start, pause, end), configs, languages and model deletion through
// /api/config.

// Messages of the admin API's writes.
const (
	MsgDeleteSelf   = "You cannot delete your own account here; use DELETE /api/user/delete."
	MsgJobsDisabled = "This server has no job queue client."
)

var adminResources = []adminRoutable{
	adminUsers, adminProjects, adminSessions, adminModels, adminWorkers, adminQueries, adminGenerations,
	adminStudies, adminArms, adminConfigs, adminJobs, adminAudit,
}

// Filters several resources share.
var (
	fromFilter = adminFilter{"from", "date-time", "RFC 3339: rows at or after it"}
	toFilter   = adminFilter{"to", "date-time", "RFC 3339: rows before it"}
)

// userAudit is what the audit log keeps of a user: the flags an admin
// changes, never the email or name (which must go with the account).
type userAudit struct {
	UserID     uuid.UUID  `json:"user_id"`
	IsAdmin    bool       `json:"is_admin"`
	Verified   bool       `json:"verified"`
	VerifiedAt *time.Time `json:"verified_at"`
}

var adminUsers = &adminResource[models.AdminUserListRow]{
	Name: "users", Title: "User", IDType: "uuid", ParseID: uuidID,
	ID: func(r models.AdminUserListRow) string { return r.UserID.String() },
	Filters: []adminFilter{
		{"email", "string", "a part of the email address, in any case"},
		{"is_admin", "boolean", ""}, {"verified", "boolean", ""},
	},
	Sorts: []adminSort[models.AdminUserListRow]{
		{"created_at", sortTime, func(r models.AdminUserListRow) any { return r.JoinedAt }},
		{"email", sortText, func(r models.AdminUserListRow) any { return r.Email }},
		{"name", sortText, func(r models.AdminUserListRow) any { return r.Name }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminUserListRow, error) {
		return s.q.AdminUserList(ctx, q, models.AdminUserListParams{ID: a.uuid("id"), Email: a.str("email"),
			IsAdmin: a.boolean("is_admin"), Verified: a.boolean("verified"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterText: a.AfterText, Lim: a.Limit})
	},
	Audit: func(r models.AdminUserListRow) any {
		return userAudit{UserID: r.UserID, IsAdmin: r.IsAdmin, Verified: r.Verified, VerifiedAt: r.VerifiedAt}
	},
	Writes: []adminWrite[models.AdminUserListRow]{
		{Method: fiber.MethodPatch, Action: "update", Summary: "change a user's admin and verified flags",
			Doc: "An admin cannot remove their own admin flag (409). Verifying sets verified_at, unverifying clears it; " +
				"the audit row keeps the flags, not the email or name.",
			Body:   []apiField{optField("is_admin", "boolean", ""), optField("verified", "boolean", "")},
			Errors: map[int]string{409: MsgRevokeOwnAdmin},
			Lock:   lockUser, Apply: patchUser},
		{Method: fiber.MethodDelete, Action: "delete", Summary: "delete a user's account",
			Doc: "As DELETE /api/user/delete does for the user themselves: every login, session and API key ends, and " +
				"with delete_data=true their queries, chats and sole projects go too (docs/research.md, Deletion and consent). " +
				"An admin cannot delete their own account here (409).",
			Query:  []apiField{optField("delete_data", "boolean", "default false: the user's recorded data is kept, pseudonymised")},
			Errors: map[int]string{409: MsgDeleteSelf},
			Lock:   lockUser, Apply: deleteUser},
	},
	Doc: "Users, without password hashes or Google subjects (google_linked says whether one is bound).",
	Item: "{user_id, email, name, joined_at, is_oauth_signup, verified, verified_at, is_admin, config_id, store_context, " +
		"store_contextual_telemetry, store_behavioral_telemetry, consent_updated_at, password_changed_at, updated_at, google_linked}",
}

func lockUser(ctx context.Context, s *Server, tx pgx.Tx, a adminArgs) error {
	_, err := s.q.AdminUserLock(ctx, tx, *a.uuid("id"))
	return err
}

// patchUser sets is_admin and verified; an admin cannot drop their own
// admin flag, so the last admin cannot lock everyone out.
func patchUser(c *fiber.Ctx, s *Server, tx pgx.Tx, before models.AdminUserListRow) (func(context.Context), error) {
	f, err := jsonBody(c)
	if err != nil {
		return nil, err
	}
	f.onlyKnown("is_admin", "verified")
	arg := models.AdminUserUpdateParams{UserID: before.UserID}
	if f.has("is_admin") {
		if v, ok := f.boolean("is_admin", false); ok {
			arg.IsAdmin = &v
		}
	}
	if f.has("verified") {
		if v, ok := f.boolean("verified", false); ok {
			arg.Verified = &v
		}
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	if arg.IsAdmin != nil && !*arg.IsAdmin && before.UserID == principal(c).UserID {
		return nil, failDetail(fiber.StatusConflict, MsgRevokeOwnAdmin)
	}
	return nil, s.q.AdminUserUpdate(c.UserContext(), tx, arg)
}

// deleteUser deletes the account through the account-deletion path,
// in the write's transaction; the tokens are revoked again after the
// commit.
func deleteUser(c *fiber.Ctx, s *Server, tx pgx.Tx, before models.AdminUserListRow) (func(context.Context), error) {
	q := queryFields(c)
	deleteData, _ := q.boolean("delete_data", false)
	if err := q.err(); err != nil {
		return nil, err
	}
	if before.UserID == principal(c).UserID {
		return nil, failDetail(fiber.StatusConflict, MsgDeleteSelf)
	}
	done, err := s.deleteAccount(c.UserContext(), tx, before.UserID, deleteData)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) {
		if err := done(ctx); err != nil {
			s.log.Warn("admin delete user: revoke tokens after commit", slog.String("user_id", before.UserID.String()),
				slog.String("error", err.Error()))
		}
	}, nil
}

var adminProjects = &adminResource[models.AdminProjectListRow]{
	Name: "projects", Title: "Project", IDType: "uuid", ParseID: uuidID,
	ID: func(r models.AdminProjectListRow) string { return r.ProjectID.String() },
	Filters: []adminFilter{
		{"name", "string", "a part of the project name, in any case"},
		{"created_by", "uuid", ""}, {"user_id", "uuid", "projects the user is a member of"},
	},
	Sorts: []adminSort[models.AdminProjectListRow]{
		{"created_at", sortTime, func(r models.AdminProjectListRow) any { return r.CreatedAt }},
		{"name", sortText, func(r models.AdminProjectListRow) any { return r.ProjectName }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminProjectListRow, error) {
		return s.q.AdminProjectList(ctx, q, models.AdminProjectListParams{ID: a.uuid("id"), Name: a.str("name"),
			CreatedBy: a.uuid("created_by"), UserID: a.uuid("user_id"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterText: a.AfterText, Lim: a.Limit})
	},
	Doc:  "Projects with their member and context-file counts.",
	Item: "{project_id, project_name, created_by, created_at, members, context_files}",
}

var adminSessions = &adminResource[models.AdminSessionListRow]{
	Name: "sessions", Title: "Session", IDType: "uuid", ParseID: uuidID,
	ID: func(r models.AdminSessionListRow) string { return r.SessionID.String() },
	Filters: []adminFilter{
		{"user_id", "uuid", ""}, {"open", "boolean", "true: sessions that have not ended"},
	},
	Sorts: []adminSort[models.AdminSessionListRow]{
		{"created_at", sortTime, func(r models.AdminSessionListRow) any { return r.StartTime }},
		{"last_seen_at", sortTime, func(r models.AdminSessionListRow) any { return r.LastSeenAt }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminSessionListRow, error) {
		return s.q.AdminSessionList(ctx, q, models.AdminSessionListParams{ID: a.uuid("id"), UserID: a.uuid("user_id"),
			Open: a.boolean("open"), Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, Lim: a.Limit})
	},
	Doc:  "Login sessions (created_at sorts by start_time).",
	Item: "{session_id, user_id, start_time, end_time, last_seen_at, user_agent, ip, open}",
}

var adminModels = &adminResource[models.AdminModelListRow]{
	Name: "models", Title: "Model", IDType: "integer", ParseID: intID,
	ID: func(r models.AdminModelListRow) string { return strconv.FormatInt(r.ModelID, 10) },
	Filters: []adminFilter{
		{"name", "string", "a part of the model name, in any case"}, {"family", "string", ""}, {"is_chat", "boolean", ""},
	},
	Sorts: []adminSort[models.AdminModelListRow]{
		{"created_at", sortTime, func(r models.AdminModelListRow) any { return r.RegisteredAt }},
		{"last_loaded_at", sortTime, func(r models.AdminModelListRow) any { return r.LastLoadedAt }},
		{"name", sortText, func(r models.AdminModelListRow) any { return r.Name }},
	},
	DefaultSort: "name",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminModelListRow, error) {
		return s.q.AdminModelList(ctx, q, models.AdminModelListParams{ID: a.integer("id"), Name: a.str("name"),
			Family: a.str("family"), IsChat: a.boolean("is_chat"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterText: a.AfterText, Lim: a.Limit})
	},
	Doc: "Registered model files (created_at sorts by registered_at). The schema has no enabled flag, so there is no PATCH; " +
		"DELETE /api/config/models/{model_id} deletes an unused model.",
	Item: "{model_id, name, family, file_sha256, file_size, parameters, is_chat, is_synthetic, registered_at, last_loaded_at, " +
		"workers: registered workers serving it}",
}

var adminWorkers = &adminResource[models.AdminWorkerListRow]{
	Name: "workers", Title: "Worker", IDType: "uuid", ParseID: uuidID,
	ID: func(r models.AdminWorkerListRow) string { return r.WorkerID.String() },
	Filters: []adminFilter{
		{"alive", "boolean", fmt.Sprintf("true: heartbeat younger than %s", remote.AliveFor)},
		{"draining", "boolean", ""}, {"model_id", "integer", "workers serving the model"},
	},
	Sorts: []adminSort[models.AdminWorkerListRow]{
		{"created_at", sortTime, func(r models.AdminWorkerListRow) any { return r.StartedAt }},
		{"heartbeat_at", sortTime, func(r models.AdminWorkerListRow) any { return r.HeartbeatAt }},
		{"host", sortText, func(r models.AdminWorkerListRow) any { return r.Host }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminWorkerListRow, error) {
		return s.q.AdminWorkerList(ctx, q, models.AdminWorkerListParams{AliveMs: float64(remote.AliveFor.Milliseconds()),
			ID: a.uuid("id"), Alive: a.boolean("alive"), Draining: a.boolean("draining"), ModelID: a.integer("model_id"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterText: a.AfterText, Lim: a.Limit})
	},
	Doc: "The worker tier's workers (created_at sorts by started_at), each with its load at the last heartbeat summed " +
		"over its models: slots, slots_busy, queue_len, load = slots_busy/slots (0 without slots); the memory its models " +
		"hold summed over them: weights_bytes (tensor bytes) and kv_cells (KV cache cells of all slots), a model that did " +
		"not report them counting 0; heartbeat_age_ms by the database clock, alive, and models, each with its own figures " +
		"(weights_bytes and kv_cells null when not reported).",
	Item: "{worker_id, host, pid, version, started_at, heartbeat_at, heartbeat_age_ms, alive, draining, slots, slots_busy, " +
		"queue_len, load, weights_bytes, kv_cells, models: [{model_id, name, is_chat, slots, slots_busy, queue_len, " +
		"weights_bytes, kv_cells}]}",
}

var adminQueries = &adminResource[models.AdminQueryListRow]{
	Name: "queries", Title: "Query", IDType: "uuid", ParseID: uuidID,
	ID: func(r models.AdminQueryListRow) string { return r.MetaQueryID.String() },
	Filters: []adminFilter{
		{"user_id", "uuid", ""}, {"model_id", "integer", "queries the model answered"},
		{"query_type", "string", "completion or chat"}, {"project_id", "uuid", ""}, {"session_id", "uuid", ""},
		{"study_id", "uuid", ""}, fromFilter, toFilter,
	},
	Sorts: []adminSort[models.AdminQueryListRow]{
		{"created_at", sortTime, func(r models.AdminQueryListRow) any { return r.RequestedAt }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminQueryListRow, error) {
		return s.q.AdminQueryList(ctx, q, models.AdminQueryListParams{ID: a.uuid("id"), UserID: a.uuid("user_id"),
			ModelID: a.integer("model_id"), QueryType: a.str("query_type"), ProjectID: a.uuid("project_id"),
			SessionID: a.uuid("session_id"), StudyID: a.uuid("study_id"), From: a.datetime("from"), To: a.datetime("to"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, Lim: a.Limit})
	},
	Doc: "Completion and chat queries (meta_query; created_at sorts by requested_at, from and to bound it). Their context " +
		"(prefix, suffix, files), stored only with the user's consent, is never shown here.",
	Item: "{meta_query_id, query_type, user_id, session_id, project_id, chat_id, config_id, study_id, arm_id, client, " +
		"server_version, requested_at, total_serving_ms, redact_ms, context_ms, model_ids}",
}

// generationID reads a generation's id, "<meta_query_id>:<model_id>".
func generationID(raw string) (map[string]any, bool) {
	q, m, ok := strings.Cut(raw, ":")
	if !ok {
		return nil, false
	}
	qid, err := uuid.Parse(q)
	if err != nil {
		return nil, false
	}
	mid, err := strconv.ParseInt(m, 10, 64)
	if err != nil {
		return nil, false
	}
	return map[string]any{"query_id": &qid, "model_id": &mid}, true
}

var adminGenerations = &adminResource[models.AdminGenerationListRow]{
	Name: "generations", Title: "Generation", IDType: "string", ParseID: generationID,
	ID: func(r models.AdminGenerationListRow) string { return r.GenerationID },
	Filters: []adminFilter{
		{"query_id", "uuid", ""}, {"model_id", "integer", ""}, {"user_id", "uuid", "the query's user"},
		{"accepted", "boolean", ""}, {"from", "date-time", "RFC 3339: queries requested at or after it"},
		{"to", "date-time", "RFC 3339: queries requested before it"},
	},
	Sorts: []adminSort[models.AdminGenerationListRow]{
		{"created_at", sortTime, func(r models.AdminGenerationListRow) any { return r.RequestedAt }},
		{"generation_time_ms", sortInt, func(r models.AdminGenerationListRow) any { return int64(r.GenerationTimeMs) }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminGenerationListRow, error) {
		return s.q.AdminGenerationList(ctx, q, models.AdminGenerationListParams{QueryID: a.uuid("query_id"),
			ModelID: a.integer("model_id"), UserID: a.uuid("user_id"), Accepted: a.boolean("accepted"),
			From: a.datetime("from"), To: a.datetime("to"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterInt: a.AfterInt, Lim: a.Limit})
	},
	Doc: "Each model's answer to a query; id is \"<meta_query_id>:<model_id>\". completion is the redacted text as stored. " +
		"created_at sorts, and from and to bound, by the query's requested_at (requested_at in the row).",
	Item: "{generation_id, meta_query_id, model_id, user_id, completion, generation_time_ms, shown_at, was_accepted, " +
		"feedback_at, confidence, stop_reason, queue_ms, prefill_ms, decode_ms, tokens_cached, tokens_evaluated, " +
		"tokens_generated, sampler, seed, template_version, engine_build, context_policy, trigger, created_at, requested_at}",
}

var adminStudies = &adminResource[models.AdminStudyListRow]{
	Name: "studies", Title: "Study", IDType: "uuid", ParseID: uuidID,
	ID: func(r models.AdminStudyListRow) string { return r.StudyID.String() },
	Filters: []adminFilter{
		{"status", "string", "draft, running, paused or ended"}, {"name", "string", "a part of the name, in any case"},
	},
	Sorts: []adminSort[models.AdminStudyListRow]{
		{"created_at", sortTime, func(r models.AdminStudyListRow) any { return r.CreatedAt }},
		{"starts_at", sortTime, func(r models.AdminStudyListRow) any { return r.StartsAt }},
		{"name", sortText, func(r models.AdminStudyListRow) any { return r.Name }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminStudyListRow, error) {
		return s.q.AdminStudyList(ctx, q, models.AdminStudyListParams{ID: a.uuid("id"), Status: a.str("status"),
			Name: a.str("name"), Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterText: a.AfterText, Lim: a.Limit})
	},
	Doc: "Studies with their arm and participant counts. They change through /api/analytics/studies (create, PATCH, " +
		"start, pause, end), which the audit log records too.",
	Item: "{study_id, name, description, created_by, starts_at, ends_at, status, unit, seed, max_participants, created_at, " +
		"updated_at, arms, participants}",
}

var adminArms = &adminResource[models.AdminArmListRow]{
	Name: "arms", Title: "Arm", IDType: "integer", ParseID: intID,
	ID: func(r models.AdminArmListRow) string { return strconv.FormatInt(r.ArmID, 10) },
	Filters: []adminFilter{
		{"study_id", "uuid", ""}, {"config_id", "integer", ""},
	},
	Sorts: []adminSort[models.AdminArmListRow]{
		{"arm_id", sortInt, func(r models.AdminArmListRow) any { return r.ArmID }},
		{"name", sortText, func(r models.AdminArmListRow) any { return r.Name }},
	},
	DefaultSort: "arm_id",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminArmListRow, error) {
		return s.q.AdminArmList(ctx, q, models.AdminArmListParams{ID: a.integer("id"), StudyID: a.uuid("study_id"),
			ConfigID: a.integer("config_id"), Sort: a.Sort, AfterID: a.AfterID, AfterInt: a.AfterInt, AfterText: a.AfterText,
			Lim: a.Limit})
	},
	Doc:  "Study arms with the queries each answered.",
	Item: "{arm_id, study_id, name, config_id, weight, is_baseline, policy, exposed_queries}",
}

var adminConfigs = &adminResource[models.AdminConfigListRow]{
	Name: "configs", Title: "Config", IDType: "integer", ParseID: intID,
	ID: func(r models.AdminConfigListRow) string { return strconv.FormatInt(r.ConfigID, 10) },
	Sorts: []adminSort[models.AdminConfigListRow]{
		{"config_id", sortInt, func(r models.AdminConfigListRow) any { return r.ConfigID }},
		{"created_at", sortTime, func(r models.AdminConfigListRow) any { return r.CreatedAt }},
		{"updated_at", sortTime, func(r models.AdminConfigListRow) any { return r.UpdatedAt }},
	},
	DefaultSort: "config_id",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminConfigListRow, error) {
		return s.q.AdminConfigList(ctx, q, models.AdminConfigListParams{ID: a.integer("id"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterInt: a.AfterInt, Lim: a.Limit})
	},
	Doc: "Plugin configs with how many users get each at login. They change through /api/config (POST, PUT and DELETE " +
		"/api/config/{config_id}), which the audit log records too.",
	Item: "{config_id, config_data: the document as stored, created_at, updated_at, users}",
}

var adminJobs = &adminResource[models.AdminJobListRow]{
	Name: "jobs", Title: "Job", IDType: "integer", ParseID: intID,
	ID: func(r models.AdminJobListRow) string { return strconv.FormatInt(r.ID, 10) },
	Filters: []adminFilter{
		{"state", "string", "available, cancelled, completed, discarded, pending, retryable, running or scheduled"},
		{"kind", "string", ""}, {"queue", "string", ""},
	},
	Sorts: []adminSort[models.AdminJobListRow]{
		{"created_at", sortTime, func(r models.AdminJobListRow) any { return r.CreatedAt }},
		{"scheduled_at", sortTime, func(r models.AdminJobListRow) any { return r.ScheduledAt }},
		{"id", sortInt, func(r models.AdminJobListRow) any { return r.ID }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminJobListRow, error) {
		return s.q.AdminJobList(ctx, q, models.AdminJobListParams{ID: a.integer("id"), State: a.str("state"),
			Kind: a.str("kind"), Queue: a.str("queue"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterInt: a.AfterInt, Lim: a.Limit})
	},
	Writes: []adminWrite[models.AdminJobListRow]{
		{Method: fiber.MethodPost, Action: "cancel", Summary: "cancel a job",
			Doc: "Through River's client (JobCancelTx): a job not yet running is cancelled at once; a running one is asked " +
				"to stop and is cancelled when its worker notices; a finished one is left as it is.",
			Errors: map[int]string{503: "Also when the server has no job queue client"},
			Lock:   lockJob, Apply: func(c *fiber.Ctx, s *Server, tx pgx.Tx, before models.AdminJobListRow) (func(context.Context), error) {
				if s.jobs.client == nil {
					return nil, failDetail(fiber.StatusServiceUnavailable, MsgJobsDisabled)
				}
				_, err := s.jobs.client.JobCancelTx(c.UserContext(), tx, before.ID)
				return nil, err
			}},
		{Method: fiber.MethodPost, Action: "retry", Summary: "retry a job",
			Doc: "Through River's client (JobRetryTx): a job in any state but running becomes available to run now " +
				"(max_attempts grows by one when its attempts are spent); a running job is left as it is.",
			Errors: map[int]string{503: "Also when the server has no job queue client"},
			Lock:   lockJob, Apply: func(c *fiber.Ctx, s *Server, tx pgx.Tx, before models.AdminJobListRow) (func(context.Context), error) {
				if s.jobs.client == nil {
					return nil, failDetail(fiber.StatusServiceUnavailable, MsgJobsDisabled)
				}
				_, err := s.jobs.client.JobRetryTx(c.UserContext(), tx, before.ID)
				return nil, err
			}},
	},
	Doc: "River's jobs, without their arguments (an engine request's hold a user's code). River's UI at /admin/jobs " +
		"shows them too.",
	Item: "{id, state, kind, queue, priority, attempt, max_attempts, created_at, scheduled_at, attempted_at, finalized_at, " +
		"tags, last_error: the latest failed attempt's error or null}",
}

func lockJob(ctx context.Context, s *Server, tx pgx.Tx, a adminArgs) error {
	_, err := s.q.AdminJobLock(ctx, tx, *a.integer("id"))
	return err
}

var adminAudit = &adminResource[models.AdminAudit]{
	Name: "audit", Title: "Audit entry", IDType: "integer", ParseID: intID,
	ID: func(r models.AdminAudit) string { return strconv.FormatInt(r.ID, 10) },
	Filters: []adminFilter{
		{"actor_id", "uuid", "the admin"}, {"action", "string", "update, delete, create, cancel, retry, start, pause, end, ..."},
		{"resource", "string", "users, jobs, configs, languages, models, studies, ..."}, {"resource_id", "string", ""},
		fromFilter, toFilter,
	},
	Sorts: []adminSort[models.AdminAudit]{
		{"created_at", sortTime, func(r models.AdminAudit) any { return r.At }},
		{"id", sortInt, func(r models.AdminAudit) any { return r.ID }},
	},
	DefaultSort: "-created_at",
	List: func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]models.AdminAudit, error) {
		return s.q.AdminAuditList(ctx, q, models.AdminAuditListParams{ID: a.integer("id"), ActorID: a.uuid("actor_id"),
			Action: a.str("action"), Resource: a.str("resource"), ResourceID: a.str("resource_id"),
			From: a.datetime("from"), To: a.datetime("to"),
			Sort: a.Sort, AfterID: a.AfterID, AfterTime: a.AfterTime, AfterInt: a.AfterInt, Lim: a.Limit})
	},
	Doc: "The audit log: one row per admin write, appended in the write's transaction (created_at sorts by at). A user's " +
		"rows keep only their flags, never the email or name.",
	Item: "{id, at, actor_id, action, resource, resource_id, before, after}",
}
