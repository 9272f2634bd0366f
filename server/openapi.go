package server

import (
	"encoding/json"
	"html/template"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/internal/auth"
)

// /openapi.json and /docs describe every route the app registers, from the
// table openAPIOps below: one row per route, written from what its
// handler parses and answers. TestOpenAPIListsEveryRoute fails when a
// registered route has no row or a row has no route, so a new route needs
// its row here; the other TestOpenAPI tests check the rows' required
// fields and authentication against the routes.

// apiField is a top-level field of a request body or response, or a query
// or path parameter. Type is a JSON Schema type, "uuid", "date-time", or
// "[]T" for a list of T.
type apiField struct {
	Name, Type string
	Required   bool
	Doc        string
}

// reqField is a required field, optField an optional one, respField a
// field of a response.
func reqField(name, typ, doc string) apiField  { return apiField{name, typ, true, doc} }
func optField(name, typ, doc string) apiField  { return apiField{name, typ, false, doc} }
func respField(name, typ, doc string) apiField { return apiField{name, typ, false, doc} }

// apiOp documents one route.
type apiOp struct {
	// Path is OpenAPI's: "{name}" where Fiber has ":name".
	Method, Path, Summary string
	// Doc, when set, is the description; what authentication the route
	// needs is added to it.
	Doc string
	// Auth is the class the route's guard checks. Account: an API key
	// needs the account scope (guardAccount) instead of completions.
	// Public: a route of guardPublic, whose rate limit fails closed.
	// Unlimited: the route has no guard, so no rate limit either.
	Auth                       AuthClass
	Account, Public, Unlimited bool
	// OK is the success status; Resp the top-level fields of its JSON
	// body, or HTML a page.
	OK   int
	Resp []apiField
	HTML bool
	// Text, when set, is the media type of a plain-text body.
	Text string
	// Body is the JSON body's top-level fields (Form: a form-urlencoded
	// body). AnyOf lists the sets of fields one of which is required, for
	// a body of several shapes.
	Body  []apiField
	Form  bool
	AnyOf [][]string
	// Query are the query parameters; Params the types of the path
	// parameters ("string" for those not listed).
	Query, Params []apiField
	// Errors are the route's own error answers by status: added to those
	// every route of its kind gives (401, 403, 422, 429, 503), or, for one
	// of those, appended to its description. HTMLErrors: they are HTML
	// pages, not {"message"}.
	Errors     map[int]string
	HTMLErrors bool
	// WS are the request keys of a WebSocket route's client frames, and
	// WSFrames the types of its server frames; WS routes are GET
	// answered 101.
	WS, WSFrames []string
}

// Fields several routes share.
var (
	contextField = reqField("context", "object", "{prefix, suffix (required strings), file_name, selected_text, context_files: names of "+
		"files of the project's multi-file context (\"*\" for all)}; redacted before any model sees it")
	contextualField = "{version_id, trigger_type_id, language_id (required ids of the lookup tables), file_path, caret_line, " +
		"document_char_length, relative_document_position (0 to 1)}"
	behavioralField = "{time_since_last_shown, time_since_last_accepted (ms), typing_speed}"
	storeFields     = []apiField{
		optField("store_context", "boolean", "store the context with the query (default false)"),
		optField("store_contextual_telemetry", "boolean", "default true"),
		optField("store_behavioral_telemetry", "boolean", "default true"),
	}
	messageResp = []apiField{respField("message", "string", "")}
)

// allOverloadedDoc is the 429 of the routes that run models (allOverloaded).
const allOverloadedDoc = "Also, without Retry-After, when every model asked is overloaded."

// passwordRuleDoc states the rule passwordOK applies.
const passwordRuleDoc = "at least 8 characters without spaces, with an upper-case letter, a lower-case letter and a digit"

// wsProtocol describes the frames every WebSocket route speaks.
const wsProtocol = "A WebSocket (OpenAPI has no type for one): this GET is the handshake, with `Upgrade: websocket`, " +
	"answered 101. Authentication is checked at connect time like the HTTP routes of a session and project; when it fails, " +
	"the socket opens, sends {\"error\": <message>} and closes normally. A handshake with an Origin header that " +
	"CORS_ALLOWED_ORIGINS does not list is refused with 403.\n\n" +
	"Client frames are JSON objects with one request key (x-websocket.client_frames) and an optional string \"request_id\" " +
	"(made up by the server when missing): {\"request_id\": \"r1\", \"<key>\": {...}}, the payload being the body of the HTTP " +
	"route the key stands for, whose rate limit it counts against. {\"cancel\": \"r1\"} or {\"cancel\": {\"request_id\": \"r1\"}} " +
	"cancels a request.\n\n" +
	"Server frames always carry request_id: `*_token` frames {type, request_id, model_id, text, replace} stream redacted " +
	"text as it is generated (replace: the text replaces all sent so far); `*_result` frames {type, request_id, status_code, " +
	"content} carry the HTTP route's status and body; {type: \"cancelled\", request_id} ends a cancelled or superseded request; " +
	"{type: \"error\", request_id, status_code, error, retry_after} refuses a frame: 429 over the route's rate limit " +
	"(retry_after in seconds) or with WS_MAX_IN_FLIGHT requests running, 401 when the session or project has ended " +
	"(the connection closes), 503 when Postgres or Redis does not answer (the connection stays), 422 for text that is not " +
	"UTF-8 outside the payload; without status_code for a frame that is not a JSON object or has no known key. A frame " +
	"larger than MAX_BODY_BYTES closes the connection with 1009."

// Documentation shared by the config administration routes.
const (
	adminDoc = "Only for admins (users.is_admin, read on every request): others get 403 {\"detail\": \"Admin privileges " +
		"required\"}. The route's own errors are {\"detail\": text}."
	configDataDoc = "the document: an object (stored as JSON) or a string of HOCON text (JSON is HOCON), stored as given once it " +
		"parses; text that does not is a 422 whose msg gives the line, column and problem"
)

var (
	configResp   = []apiField{respField("config_id", "integer", ""), respField("config_data", "object", "parsed when it is a JSON object, else the text")}
	languageResp = []apiField{respField("language_id", "integer", ""), respField("language_name", "string", "")}
)

// evalRunDoc describes an evaluation run as the eval routes answer it.
const evalRunDoc = "{eval_run_id, status: queued, running, finished or failed, error, model_name, model_sha256, arm, repo, seed, " +
	"task_count, languages, max_tokens (0: the server's limit), requested_by, job_id, started_at, finished_at, overall: {tasks, " +
	"exact_match_rate, mean_edit_similarity, latency_p50_ms, latency_p95_ms, latency_p99_ms} once finished, else null}"

// adminErrors is errs with the 403 every admin route gives.
// analyticsQuery are the query parameters every analytics route takes.
var analyticsQuery = []apiField{
	optField("from", "string", "RFC 3339; the window is [from, to) of the queries' requested_at; default 30 days before to"),
	optField("to", "string", "RFC 3339; default now"),
	optField("user_id", "uuid", "only this user's queries"),
}

const (
	analyticsDoc = " Counts completion queries only (chat is left out); a generation is shown when it has a shown_at, accepted " +
		"when shown and accepted. Formulas: docs/research.md, Analytics."
	analyticsUsageDoc = "{completions: queries, shown, accepted: generations, acceptance_rate: accepted/shown or null, users, " +
		"user_days: distinct (user, UTC day), completions_per_user_day: completions/user_days or null}"
)

func adminErrors(errs map[int]string) map[int]string {
	out := map[int]string{403: "Also {\"detail\": \"Admin privileges required\"} when the caller is not an admin."}
	for k, v := range errs {
		out[k] = v
	}
	return out
}

// openAPIOps documents every route, in the order of the /docs page; the
// study routes' rows are in study_admin.go, the export job's in export_job.go,
// the llama.cpp API's in llamaapi.go, the OpenAI and ollama APIs' in
// openaiapi.go and ollamaapi.go.
var openAPIOps = append(append(append(append(append(coreOps, exportOps...), llamaOps...), clientAPIOps...), append(append(studyOps, studyStatusOps()...), studyResultOps...)...), adminAPIOps...)

var coreOps = []apiOp{
	{Method: "GET", Path: "/api/ping", Summary: "Health check: 200 once Postgres and Redis answer (HEAD works too)", Unlimited: true, OK: 200,
		Resp: []apiField{respField("Status", "string", "\"Ok\""), respField("details", "object", "models loaded, private services, version"),
			respField("uptime_s", "integer", ""),
			respField("jobs", "object", "the job queue, read at most once a second, null when it cannot be read: {observed_at, queues: "+
				"[{queue, available, running, oldest_available_ms: the oldest available job's wait or null, completed_5m: jobs "+
				"completed in the last 5 minutes, wait_p50_ms: their median wait from scheduled_at to attempted_at or null}]}, "+
				"listing the queues with available, running or recently completed jobs")},
		Errors: map[int]string{503: "The route's own check of Postgres and Redis answers {\"Status\": \"Unavailable\", \"message\"} " +
			"without Retry-After."}},

	{Method: "POST", Path: "/api/user/create", Summary: "Create a user; sends a verification email", Public: true, OK: 201,
		Doc: "With a Google ID token (token), the token's email must equal email and be verified by Google; the account is bound to the Google account.",
		Body: []apiField{reqField("email", "string", "3 to 50 characters"), reqField("name", "string", "3 to 50 characters"),
			reqField("password", "string", "at most 50 characters; "+passwordRuleDoc),
			reqField("config_id", "integer", "an existing config"), optField("token", "string", "a Google ID token"),
			optField("provider", "string", "\"google\" or \"no_provider\"")},
		Resp: []apiField{respField("message", "string", ""), respField("user_id", "uuid", "")},
		Errors: map[int]string{401: "The Google token is invalid or not for this email", 403: "Google has not verified the token's email",
			404: "No such config_id", 409: "The email is taken, or the Google account is bound to another user"}},
	{Method: "POST", Path: "/api/user/authenticate", Summary: "Log in with email and password, or a Google ID token; sets the auth_token cookie",
		Public: true, OK: 200,
		Doc: "A Google token signs in to the account bound to its subject, or binds the account with the same email when Google " +
			"and the account have both verified it.",
		Body: []apiField{optField("email", "string", ""), optField("password", "string", ""), optField("token", "string", "a Google ID token"),
			optField("provider", "string", "\"google\"")},
		AnyOf: [][]string{{"email", "password"}, {"token"}},
		Resp: []apiField{respField("message", "string", ""), respField("user", "object", "the user; auth_token is the login's token"),
			respField("config", "string", "the user's config")},
		Errors: map[int]string{401: "Wrong email or password, or an invalid Google token",
			409: "The Google account is not linked to the account with its email (the message says how to link), or that account is linked to another"}},
	{Method: "GET", Path: "/api/user/get", Summary: "The caller's user and config", Auth: ClassA, Account: true, OK: 200,
		Resp: []apiField{respField("message", "string", ""), respField("user", "object", "the user, password masked"), respField("config", "string", "")}},
	{Method: "PUT", Path: "/api/user/update", Summary: "Change name, email, password or preference", Auth: ClassA, Account: true, OK: 201,
		Doc: "A new email or password needs previous_password. A new email is unverified: a verification mail goes to it. A new " +
			"password revokes every login, session and API key of the user, and gives a caller signed in with a login a new " +
			"auth_token (cookie and user.auth_token). config_id and verified are applied for admins only.",
		Body: []apiField{optField("name", "string", "3 to 50 characters"), optField("email", "string", ""), optField("previous_password", "string", ""),
			optField("password", "string", passwordRuleDoc), optField("preference", "object", "merged into the stored preference"),
			optField("config_id", "integer", "admins only"), optField("verified", "boolean", "admins only")},
		Resp: []apiField{respField("message", "string", ""), respField("user", "object", "")},
		Errors: map[int]string{401: "Also when previous_password is missing or wrong (a new email or password).", 404: "No such config_id",
			409: "The email is taken"}},
	{Method: "DELETE", Path: "/api/user/delete", Summary: "Delete the caller; every token and API key stops working at once", Auth: ClassA, Account: true, OK: 200,
		Query: []apiField{optField("delete_data", "boolean", "delete the user's data too, instead of keeping it pseudonymised")},
		Resp:  messageResp},
	{Method: "GET", Path: "/api/user/export", Summary: "Download all of the caller's data as one JSON document", Auth: ClassA, Account: true, OK: 200,
		Doc: "Streamed as an attachment: schema_version, exported_at, the user (no password hash), api_keys (no key hashes), " +
			"config_assignments, projects (with the multi-file context of those where the caller is the only member), sessions, " +
			"queries (each with its context, context files, telemetry, generations and ground truth) and chats with their messages. " +
			"An export that fails after the status was sent ends with the document unterminated (invalid JSON). A caller with more " +
			"than EXPORT_SYNC_MAX_QUERIES queries, or async=true, gets 202 {export_id, status: \"queued\", status_url} instead: " +
			"a job builds the document, downloaded from GET /api/user/export/{export_id}. See docs/api.md.",
		Query: []apiField{optField("async", "boolean", "build the export in a job (202) whatever its size")},
		Resp: []apiField{respField("schema_version", "integer", "the layout's version"), respField("user", "object", ""),
			respField("api_keys", "array", ""), respField("config_assignments", "array", ""), respField("projects", "array", ""),
			respField("sessions", "array", ""), respField("queries", "array", ""), respField("chats", "array", "")}},
	{Method: "GET", Path: "/api/user/verify/check", Summary: "Whether the caller's email is verified", Auth: ClassA, Account: true, OK: 200,
		Resp: []apiField{respField("message", "string", ""), respField("user_is_verified", "boolean", "")}},
	{Method: "POST", Path: "/api/user/verify/resend", Summary: "Send a new verification email", Auth: ClassA, Account: true, OK: 200, Resp: messageResp},
	{Method: "GET", Path: "/api/user/verify/", Summary: "Verify an email with the link's single-use token", OK: 200, HTML: true,
		Query:  []apiField{reqField("token", "string", "")},
		Errors: map[int]string{401: "The token is invalid, used, or for an address the account no longer has"}},
	{Method: "POST", Path: "/api/user/reset-password/request", Summary: "Email a password reset link (the same answer for unknown emails)", Public: true, OK: 200,
		Query: []apiField{reqField("email", "string", "")}, Resp: messageResp},
	{Method: "GET", Path: "/api/user/reset-password/", Summary: "The password reset form", Public: true, OK: 200, HTML: true, HTMLErrors: true,
		Query:  []apiField{reqField("token", "string", "")},
		Errors: map[int]string{401: "The token is invalid or used"}},
	{Method: "POST", Path: "/api/user/reset-password/change", Summary: "Set a new password; revokes every login, session and API key",
		Public: true, OK: 200, HTML: true, HTMLErrors: true, Form: true,
		Body: []apiField{reqField("token", "string", ""), reqField("new_password", "string", passwordRuleDoc),
			optField("confirm_password", "string", "checked by the form's script only")},
		Errors: map[int]string{401: "The token is invalid or used", 404: "The user is gone",
			422: "Also, as the form again, when the new password breaks the password rule."}},

	{Method: "POST", Path: "/api/user/api-keys", Summary: "Create an API key (shown once)", Auth: ClassA, Account: true, OK: 201,
		Body: []apiField{reqField("name", "string", "1 to 100 characters"), optField("expires_in_days", "integer", "1 to 36500; never when absent"),
			optField("scopes", "[]string", "\"completions\" (the default) and/or \"account\"")},
		Resp: []apiField{respField("message", "string", ""), respField("api_key", "string", "the key, for Authorization: Bearer"),
			respField("key", "object", "{api_key_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at}")}},
	{Method: "GET", Path: "/api/user/api-keys", Summary: "The caller's API keys, without secrets", Auth: ClassA, Account: true, OK: 200,
		Resp: []apiField{respField("message", "string", ""), respField("api_keys", "[]object", "as key in the create answer")}},
	{Method: "DELETE", Path: "/api/user/api-keys/{id}", Summary: "Revoke an API key at once", Auth: ClassA, Account: true, OK: 200,
		Params: []apiField{reqField("id", "uuid", "")}, Resp: messageResp,
		Errors: map[int]string{404: "No live key of the caller has this id"}},

	{Method: "GET", Path: "/api/user/usage", Summary: "The caller's completion usage: in total, per UTC day and per language", Auth: ClassA, Account: true, OK: 200,
		Doc: "The caller's completion queries requested in [from, to), the generations shown and accepted, and acceptance_rate " +
			"(accepted / shown, null when nothing was shown). Only the caller's own queries; user_id is refused.",
		Query: []apiField{optField("from", "string", "RFC 3339; default 30 days before to"), optField("to", "string", "RFC 3339; default now")},
		Resp: []apiField{respField("from", "string", ""), respField("to", "string", ""),
			respField("total", "object", "{completions, shown, accepted, acceptance_rate}"),
			respField("days", "[]object", "{day, completions, shown, accepted, acceptance_rate, p50_ms, p95_ms: nearest-rank percentiles "+
				"of the queries' total serving time, null when no query of the day was answered}"),
			respField("languages", "[]object", "{language, completions, shown, accepted, acceptance_rate}, most used first; "+
				"queries stored without telemetry are left out")}},
	{Method: "GET", Path: "/api/user/projects", Summary: "The projects the caller is a member of", Auth: ClassA, Account: true, OK: 200,
		Resp: []apiField{respField("projects", "[]object", "{project_id, project_name, role, created_at}, newest first")}},

	{Method: "GET", Path: "/api/session/acquire", Summary: "The login's session, created on first call; sets the session_token cookie", Auth: ClassA, OK: 200,
		Resp: []apiField{respField("message", "string", ""), respField("session_token", "string", "")}},
	{Method: "PUT", Path: "/api/session/deactivate/", Summary: "Log out: end the session and the login, clear the cookies", Auth: ClassA, OK: 200,
		Resp: messageResp, Errors: map[int]string{401: "Also when the login has no session."}},
	{Method: "POST", Path: "/api/project/create", Summary: "Create a project and activate it in the session; sets the project_token cookie", Auth: ClassA, OK: 201,
		Doc:    "Needs the login's (or API key's) session: GET /api/session/acquire first.",
		Body:   []apiField{reqField("project_name", "string", "1 to 100 characters")},
		Resp:   []apiField{respField("message", "string", ""), respField("project_token", "string", "random, not the project id"), respField("project_id", "uuid", "")},
		Errors: map[int]string{401: "Also when the caller has no session (GET /api/session/acquire first)."}},
	{Method: "PUT", Path: "/api/project/activate", Summary: "Activate a project the caller is a member of; sets the project_token cookie", Auth: ClassA, OK: 200,
		Body: []apiField{reqField("project_id", "uuid", "")},
		Resp: []apiField{respField("message", "string", ""), respField("project_token", "string", "")},
		Errors: map[int]string{401: "Also when the caller has no session or is not a member of the project (the same answer for unknown ids).",
			404: "The project is gone"}},

	{Method: "POST", Path: "/api/completion/request", Summary: "Completions from one or several models, in parallel", Auth: ClassSP, OK: 200,
		Doc: "Items come in model_ids order; a model that fails, is unknown or is a chat model gives an item with error and message " +
			"while the others answer. The answer carries a Server-Timing header with the stages in milliseconds.",
		Body: append([]apiField{reqField("model_ids", "[]integer", ""), contextField,
			reqField("contextual_telemetry", "object", contextualField), reqField("behavioral_telemetry", "object", behavioralField),
			optField("stop_sequences", "[]string", "")}, storeFields...),
		Resp: []apiField{respField("message", "string", ""), respField("data", "object", "{meta_query_id, completions: [{model_id, model_name, "+
			"completion, generation_time (ms), confidence, logprobs, stop_reason, trimmed?: {extra_chunks, prefix_tokens} (what the "+
			"prompt's time budget dropped)}]}; an item with error \"deadline\" (the engine estimated it would end after the 30 s "+
			"deadline and refused it before evaluating it) also has estimated_ms and left_ms")},
		Errors: map[int]string{429: allOverloadedDoc}},
	{Method: "POST", Path: "/api/completion/feedback", Summary: "Whether a completion was accepted, when it was shown, and the code that was written", Auth: ClassSP, OK: 200,
		Body: []apiField{reqField("meta_query_id", "uuid", ""), reqField("model_id", "integer", ""), reqField("was_accepted", "boolean", ""),
			optField("ground_truth", "string", "redacted before it is stored"),
			optField("shown_at", "[]string", "instants: RFC 3339 strings or Unix milliseconds")},
		Resp:   []apiField{respField("message", "string", ""), respField("data", "object", "{meta_query_id, model_id}")},
		Errors: map[int]string{403: "Also when the query is another user's.", 404: "No generation of this model for the query"}},
	{Method: "POST", Path: "/api/completion/multi-file-context/update", Summary: "Apply line edits to the project's multi-file context", Auth: ClassSP, OK: 200,
		Body: []apiField{reqField("context_updates", "object", "file name -> list of {change_type: \"update\", \"insert\" or \"remove\", "+
			"start_line, end_line, new_lines: [string]}, applied in order")},
		Resp: []apiField{respField("message", "string", ""), respField("data", "object", "file name -> its lines (redacted), the whole context")},
		Errors: map[int]string{413: "A file or the project's context would exceed CONTEXT_MAX_FILE_BYTES or CONTEXT_MAX_BYTES; nothing is stored " +
			"(more than CONTEXT_MAX_FILES non-empty files is a 422 of type too_long at [\"body\", \"context_updates\"])"}},
	{Method: "GET", Path: "/api/completion/{query_id}", Summary: "A query of the caller and its generations", Auth: ClassS, OK: 200,
		Params: []apiField{reqField("query_id", "uuid", "")},
		Resp: []apiField{respField("message", "string", ""), respField("data", "object", "{meta_query_id, query_type, completions: [{model_id, "+
			"model_name, completion, generation_time, confidence, logprobs, was_accepted, shown_at}]}")},
		Errors: map[int]string{403: "Also when the query is another user's.", 404: "No such query"}},

	{Method: "POST", Path: "/api/chat/request", Summary: "A chat answer from one or several models, with the project's context", Auth: ClassSP, OK: 200,
		Doc: "Telemetry is optional here: absent objects are not stored. context.context_files defaults to every file.",
		Body: append([]apiField{reqField("model_ids", "[]integer", ""), reqField("chat_id", "uuid", "a new id starts a chat"),
			reqField("messages", "[][]string", "[role, content] pairs; role \"user\", \"assistant\" or \"system\" (first only)"), contextField,
			optField("contextual_telemetry", "object", contextualField), optField("behavioral_telemetry", "object", behavioralField),
			optField("web_enabled", "boolean", "")}, storeFields...),
		Resp: []apiField{respField("chat_id", "uuid", ""), respField("title", "string", ""),
			respField("history", "[]object", "one turn: {user_message: {role, content, timestamp, meta_query_id}, assistant_responses: "+
				"[{model_id, model_name, completion, generation_time, confidence, was_accepted}]}")},
		Errors: map[int]string{403: "Also when the chat is another user's or another project's.", 429: allOverloadedDoc}},
	{Method: "GET", Path: "/api/chat/get/{page_number}", Summary: "A page of the caller's chats in the active project, newest first", Auth: ClassSP, OK: 200,
		Params: []apiField{reqField("page_number", "integer", "1 to 214748365")},
		Resp: []apiField{respField("page", "integer", ""), respField("per_page", "integer", ""),
			respField("items", "[]object", "{chat_id, title, created_at, history: turns as in the chat answer}")}},
	{Method: "DELETE", Path: "/api/chat/delete/{chat_id}", Summary: "Delete a chat with its queries, generations and messages", Auth: ClassSP, OK: 200,
		Params: []apiField{reqField("chat_id", "uuid", "")}, Resp: messageResp,
		Errors: map[int]string{403: "Also when the chat is another user's or another project's.", 404: "No such chat"}},

	{Method: "GET", Path: "/api/config/", Summary: "Admin: every config", Auth: ClassA, Account: true, OK: 200, Doc: adminDoc,
		Resp:   []apiField{respField("configs", "[]object", "{config_id, config_data: the document, parsed when it is a JSON object, else its text}")},
		Errors: adminErrors(nil)},
	{Method: "POST", Path: "/api/config/", Summary: "Admin: add a config", Auth: ClassA, Account: true, OK: 201, Doc: adminDoc,
		Body: []apiField{reqField("config_data", "object", configDataDoc)}, Resp: configResp,
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/config/languages", Summary: "Admin: the programming languages telemetry refers to", Auth: ClassA, Account: true,
		OK: 200, Doc: adminDoc,
		Resp:   []apiField{respField("languages", "[]object", "{language_id, language_name}"), respField("mapping", "object", "name: id")},
		Errors: adminErrors(nil)},
	{Method: "POST", Path: "/api/config/languages", Summary: "Admin: add a programming language", Auth: ClassA, Account: true, OK: 201, Doc: adminDoc,
		Body: []apiField{reqField("language_name", "string", "1 to 100 characters, unique")}, Resp: languageResp,
		Errors: adminErrors(map[int]string{409: "A language of that name exists"})},
	{Method: "PUT", Path: "/api/config/languages/{language_id}", Summary: "Admin: rename a programming language", Auth: ClassA, Account: true,
		OK: 200, Doc: adminDoc, Params: []apiField{reqField("language_id", "integer", "")},
		Body: []apiField{reqField("language_name", "string", "1 to 100 characters, unique")}, Resp: languageResp,
		Errors: adminErrors(map[int]string{404: "No such language", 409: "Another language has that name"})},
	{Method: "DELETE", Path: "/api/config/languages/{language_id}", Summary: "Admin: delete a programming language no telemetry uses",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc, Params: []apiField{reqField("language_id", "integer", "")},
		Resp:   []apiField{respField("deleted", "boolean", "true"), respField("language_id", "integer", "")},
		Errors: adminErrors(map[int]string{404: "No such language", 409: "Recorded telemetry uses the language"})},
	{Method: "GET", Path: "/api/config/models", Summary: "Admin: every registered model", Auth: ClassA, Account: true, OK: 200, Doc: adminDoc,
		Resp: []apiField{respField("models", "[]object", "{model_id, model_name, family, is_chat, is_synthetic, loaded: served by this "+
			"server now, registered_at, last_loaded_at, and the state of a model this server's own engine has loaded (null for "+
			"others and on an API node of the worker tier): slots, slots_busy, queue_len, weights_bytes, kv_cells}")},
		Errors: adminErrors(nil)},
	{Method: "DELETE", Path: "/api/config/models/{model_id}", Summary: "Admin: delete a registered model that is not loaded and not used",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc + " Models are registered by the server when it loads their files; no route creates one.",
		Params: []apiField{reqField("model_id", "integer", "")},
		Resp:   []apiField{respField("deleted", "boolean", "true"), respField("model_id", "integer", "")},
		Errors: adminErrors(map[int]string{404: "No such model", 409: "The server has the model loaded, or generations or ground truths use it"})},
	{Method: "PUT", Path: "/api/config/users/{user_id}/admin", Summary: "Admin: grant or revoke a user's admin privileges", Auth: ClassA,
		Account: true, OK: 200, Doc: adminDoc + " The only way to change is_admin; an admin cannot revoke their own.",
		Params: []apiField{reqField("user_id", "uuid", "")}, Body: []apiField{reqField("is_admin", "boolean", "")},
		Resp:   []apiField{respField("user_id", "uuid", ""), respField("is_admin", "boolean", "")},
		Errors: adminErrors(map[int]string{404: "No such user", 409: "The caller tried to revoke their own admin privileges"})},
	{Method: "GET", Path: "/api/config/{config_id}", Summary: "Admin: one config", Auth: ClassA, Account: true, OK: 200, Doc: adminDoc,
		Params: []apiField{reqField("config_id", "integer", "")}, Resp: configResp,
		Errors: adminErrors(map[int]string{404: "No such config"})},
	{Method: "PUT", Path: "/api/config/{config_id}", Summary: "Admin: replace a config's document", Auth: ClassA, Account: true, OK: 200,
		Doc: adminDoc, Params: []apiField{reqField("config_id", "integer", "")},
		Body: []apiField{reqField("config_data", "object", configDataDoc)}, Resp: configResp,
		Errors: adminErrors(map[int]string{404: "No such config"})},
	{Method: "DELETE", Path: "/api/config/{config_id}", Summary: "Admin: delete a config nothing uses", Auth: ClassA, Account: true, OK: 200,
		Doc: adminDoc, Params: []apiField{reqField("config_id", "integer", "")},
		Resp: []apiField{respField("deleted", "boolean", "true"), respField("config_id", "integer", "")},
		Errors: adminErrors(map[int]string{404: "No such config",
			409: "Users, studies, study arms, config assignments or recorded queries use the config; detail counts them"})},

	{Method: "POST", Path: "/api/eval/runs", Summary: "Admin: start an offline evaluation run as a job", Auth: ClassA, Account: true, OK: 202,
		Doc: adminDoc + " The run's tasks are cut from a source tree on the server's host and completed one at a time by a model " +
			"this server serves, greedily, in a job (docs/research.md, Offline evaluation). Read it back with GET /api/eval/runs/{eval_run_id} " +
			"(also the Location header). A repo outside EVAL_ROOT, missing or unreadable, or a chat model, is a 422.",
		Body: []apiField{reqField("repo", "string", "a readable directory inside EVAL_ROOT: absolute, or relative to EVAL_ROOT"),
			reqField("model_id", "integer", "a completion model this server serves"), optField("arm", "string", "a label stored with the run, at most 100 characters"),
			optField("tasks", "integer", "1 to 1000, default 100"), optField("seed", "integer", "0 or more, default 1"),
			optField("max_tokens", "integer", "1 to 4096, default 64"), optField("languages", "[]string", "only these languages (go, python, ...); default all")},
		Resp:   []apiField{respField("eval_run_id", "integer", ""), respField("job_id", "integer", "the River job"), respField("status", "string", "\"queued\"")},
		Errors: adminErrors(map[int]string{404: "The server serves no model with model_id"})},
	{Method: "GET", Path: "/api/eval/runs", Summary: "Admin: evaluation runs, newest first", Auth: ClassA, Account: true, OK: 200,
		Doc:    adminDoc + " Runs of `code4me eval` are listed too.",
		Query:  []apiField{optField("limit", "integer", "1 to 100, default 20"), optField("offset", "integer", "runs to skip, default 0")},
		Resp:   []apiField{respField("runs", "[]object", evalRunDoc), respField("limit", "integer", ""), respField("offset", "integer", "")},
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/eval/runs/{eval_run_id}", Summary: "Admin: one evaluation run, its status and figures", Auth: ClassA, Account: true, OK: 200,
		Doc: adminDoc + " The fields of a run in GET /api/eval/runs, and groups.", Params: []apiField{reqField("eval_run_id", "integer", "")},
		Resp: []apiField{respField("eval_run_id", "integer", ""), respField("status", "string", "queued, running, finished or failed"),
			respField("overall", "object", "the figures once finished, else null"),
			respField("groups", "[]object", "once finished, per task kind and language: {kind, language, tasks, exact_match_rate, "+
				"mean_edit_similarity, latency_p50_ms, latency_p95_ms, latency_p99_ms}")},
		Errors: adminErrors(map[int]string{404: "No such run"})},
	{Method: "GET", Path: "/api/analytics/eval", Summary: "Admin: finished evaluation runs side by side, grouped by the tasks they ran",
		Auth: ClassA, Account: true, OK: 200,
		Doc:   adminDoc + " Runs with the same repo, seed, task count and languages ran the same tasks, so their figures compare.",
		Query: []apiField{optField("model_name", "string", "only this model's runs"), optField("arm", "string", "only this arm's runs")},
		Resp: []apiField{respField("groups", "[]object", "{repo, seed, task_count, languages, runs: [{eval_run_id, model_name, model_sha256, arm, "+
			"max_tokens, started_at, finished_at, overall}]}")},
		Errors: adminErrors(nil)},

	{Method: "GET", Path: "/api/analytics/usage", Summary: "Admin: completion usage and acceptance rate, in total and per day or hour",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc + analyticsDoc,
		Query: append(analyticsQuery, optField("granularity", "string", "\"day\" (default) or \"hour\", in UTC")),
		Resp: []apiField{respField("from", "string", ""), respField("to", "string", ""), respField("granularity", "string", ""),
			respField("total", "object", analyticsUsageDoc), respField("buckets", "[]object", "{bucket: its start, and the figures of total}")},
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/analytics/calibration", Summary: "Admin: per model, reliability bins, ECE and Brier score of the confidence",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc + analyticsDoc + " Over shown completion generations with a confidence.",
		Query: append(analyticsQuery, optField("bins", "integer", "equal-width bins, 1 to 100, default 10")),
		Resp: []apiField{respField("from", "string", ""), respField("to", "string", ""), respField("bins", "integer", ""),
			respField("models", "[]object", "{model_id, model_name, n, ece, brier, bins: [{bin, lower, upper, n, mean_confidence, accept_rate}]}")},
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/analytics/latency", Summary: "Admin: per model, p50/p95/p99 of each latency stage",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc + analyticsDoc + " Nearest-rank percentiles in milliseconds; a query's stages " +
			"count for every model that answered it.", Query: analyticsQuery,
		Resp: []apiField{respField("from", "string", ""), respField("to", "string", ""),
			respField("models", "[]object", "{model_id, model_name, stages: {generation_time_ms, queue_ms, prefill_ms, decode_ms, "+
				"total_serving_ms, redact_ms, context_ms: {n, p50, p95, p99}}}")},
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/analytics/quality", Summary: "Admin: per model, exact match, edit similarity and survival of accepted code",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc + analyticsDoc + " Against the ground truth the plugin reports; survival of " +
			"accepted code at 30 s, 2 min, 5 min and 10 min after acceptance.", Query: analyticsQuery,
		Resp: []apiField{respField("from", "string", ""), respField("to", "string", ""),
			respField("models", "[]object", "{model_id, model_name, shown and accepted: {n, exact_match, edit_similarity}, "+
				"survival: [{horizon_s, n, mean}]}")},
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/analytics/trends", Summary: "Admin: completion usage and serving time per hour, day or week, empty buckets included",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc + analyticsDoc + " Every bucket from the one holding from to the last one " +
			"starting before to is listed, those without queries with zeros; a window of more than 1000 buckets is a 422.",
		Query: append(analyticsQuery, optField("granularity", "string", "\"hour\", \"day\" (default) or \"week\" (from Monday), in UTC"),
			optField("model_id", "integer", "only the queries this model answered, and only its generations")),
		Resp: []apiField{respField("from", "string", ""), respField("to", "string", ""), respField("granularity", "string", ""),
			respField("model_id", "integer", "null without the filter"),
			respField("buckets", "[]object", "{bucket: its start, the figures of /usage's total, total_serving_ms: {n, p50, p95, p99}}")},
		Errors: adminErrors(nil)},
	{Method: "GET", Path: "/api/analytics/models", Summary: "Admin: per model, generations, acceptance, confidence, generation time and failures",
		Auth: ClassA, Account: true, OK: 200, Doc: adminDoc + analyticsDoc + " Over each model's completion generations.", Query: analyticsQuery,
		Resp: []apiField{respField("from", "string", ""), respField("to", "string", ""),
			respField("models", "[]object", "{model_id, model_name, generations, shown, accepted, acceptance_rate: accepted/shown or null, "+
				"confidence: {n, mean}, generation_time_ms: {n, p50, p95, p99}, empty, empty_share: empty/generations, "+
				"with_stop_reason, failed: stop_reason error, cancelled or deadline, failed_share: failed/with_stop_reason or null}")},
		Errors: adminErrors(nil)},

	{Method: "GET", Path: "/admin/jobs", Summary: "Admin: River's web UI for the job queue", Auth: ClassA, Account: true, OK: 200, HTML: true,
		Doc: adminDoc + " River's own UI (riverui): jobs by state and queue, each job's arguments, " +
			"attempts and errors; it can cancel, retry and delete jobs and pause and resume queues. Its pages, assets and JSON " +
			"API (GET, POST, PUT and PATCH under /admin/jobs/api/) are riverui's and not described here; every path under " +
			"/admin/jobs/ passes the same admin check, and counts against one rate limit per admin (20000 an hour unless " +
			"MAX_REQUEST_RATE_PER_HOUR_CONFIG names /admin/jobs/*). See docs/architecture.md, Jobs.",
		Errors: adminErrors(nil)},

	{Method: "GET", Path: "/metrics", Summary: "Prometheus metrics of this server process", Auth: ClassA, Account: true, OK: 200,
		Text: "text/plain; version=0.0.4", Doc: "Every metric in Prometheus' text format; docs/metrics.md lists them. Also served, " +
			"without the admin check and its rate limit, to `Authorization: Bearer <METRICS_TOKEN>` when that is set, and with " +
			"METRICS_LOOPBACK to requests from this machine that carry no proxy header. " + adminDoc,
		Errors: adminErrors(nil)},

	{Method: "GET", Path: "/api/ws/completion", Summary: "WebSocket for completions and feedback", Auth: ClassSP,
		Doc: "completion_request streams completion_token frames and ends with completion_result; a new completion_request " +
			"cancels the connection's previous one, in the engine too. completion_feedback answers completion_feedback_result.",
		WS: wsKeys[wsCompletion], WSFrames: []string{"completion_token", "completion_result", "completion_feedback_result", "cancelled", "error"}},
	{Method: "GET", Path: "/api/ws/chat", Summary: "WebSocket for chat", Auth: ClassSP,
		Doc: "chat_request streams chat_token frames and ends with chat_result; chat_get {page_number} and chat_delete {chat_id} " +
			"answer chat_get_result and chat_delete_result.",
		WS: wsKeys[wsChat], WSFrames: []string{"chat_token", "chat_result", "chat_get_result", "chat_delete_result", "cancelled", "error"}},
	{Method: "GET", Path: "/api/ws/completion/multi-file-context", Summary: "WebSocket for multi-file context updates", Auth: ClassSP,
		Doc: "multi_file_context_update answers multi_file_context_update_result.",
		WS:  wsKeys[wsContext], WSFrames: []string{"multi_file_context_update_result", "cancelled", "error"}},

	{Method: "GET", Path: "/", Summary: "The dashboard (a single-page app)", OK: 200, HTML: true,
		Doc: "The dashboard's entry page; the app runs in the browser and calls the API with the login's cookies. Served " +
			"with a Content-Security-Policy that allows this origin's scripts and styles only, and never cached."},
	{Method: "GET", Path: "/app", Summary: "The dashboard's pages and files", OK: 200, HTML: true,
		Doc: "Every path under /app/ is the dashboard's: a file of its build (hashed files under /app/assets/, cached for a " +
			"year), else, to a request whose Accept lists text/html, the entry page (the app routes the path itself); any " +
			"other request gets 404 {\"detail\": \"Not Found\"}."},
	{Method: "GET", Path: "/openapi.json", Summary: "This document", OK: 200},
	{Method: "GET", Path: "/docs", Summary: "The routes as an HTML page", OK: 200, HTML: true},
}

func (s *Server) openAPIRoutes() {
	s.app.Get("/openapi.json", s.guard(ClassNone), s.openAPI)
	s.app.Get("/docs", s.guard(ClassNone), s.docs)
}

// Both documents are built once, on first use.
var (
	openAPIJSON = sync.OnceValue(func() []byte {
		b, err := json.Marshal(buildOpenAPI())
		if err != nil {
			panic("openapi: " + err.Error()) // the table holds only strings, numbers and maps
		}
		return b
	})
	docsHTML = sync.OnceValue(buildDocs)
)

// schemaOf is the JSON Schema of an apiField type.
func schemaOf(typ string) fiber.Map {
	switch {
	case strings.HasPrefix(typ, "[]"):
		return fiber.Map{"type": "array", "items": schemaOf(typ[2:])}
	case typ == "uuid":
		return fiber.Map{"type": "string", "format": "uuid"}
	case typ == "date-time":
		return fiber.Map{"type": "string", "format": "date-time"}
	}
	return fiber.Map{"type": typ}
}

// objectSchema is the schema of an object with fields.
func objectSchema(fields []apiField) fiber.Map {
	props := fiber.Map{}
	var required []string
	for _, f := range fields {
		p := schemaOf(f.Type)
		if f.Doc != "" {
			p["description"] = f.Doc
		}
		props[f.Name] = p
		if f.Required {
			required = append(required, f.Name)
		}
	}
	s := fiber.Map{"type": "object", "properties": props}
	if required != nil {
		s["required"] = required
	}
	return s
}

// scopeOf is the API key scope op's route needs.
func scopeOf(op apiOp) string {
	if op.Account {
		return auth.ScopeAccount
	}
	return auth.ScopeCompletions
}

// security lists the credentials that satisfy op's guard, any one
// requirement of them.
func security(op apiOp) []fiber.Map {
	none := []string{}
	key := []string{scopeOf(op)}
	switch op.Auth {
	case ClassA:
		return []fiber.Map{{"authToken": none}, {"apiKey": key}}
	case ClassS:
		return []fiber.Map{{"sessionToken": none}, {"sessionTokenHeader": none}, {"apiKey": key}}
	case ClassSP:
		var reqs []fiber.Map
		for _, sess := range []string{"sessionToken", "sessionTokenHeader", "apiKey"} {
			for _, proj := range []string{"projectToken", "projectTokenHeader"} {
				r := fiber.Map{sess: none, proj: none}
				if sess == "apiKey" {
					r[sess] = key
				}
				reqs = append(reqs, r)
			}
		}
		return reqs
	}
	return []fiber.Map{}
}

// authText says in words what op's route needs and how it is rate-limited.
func authText(op apiOp) string {
	key := "or `Authorization: Bearer <API key>` with the '" + scopeOf(op) + "' scope"
	session := "A session: the session_token cookie or X-Session-Token header, " + key + " (the key's session is made on first use)"
	switch {
	case op.Unlimited:
		return "No authentication, no rate limit."
	case op.Public:
		return "No authentication. Rate-limited per client IP whatever credentials the request carries; when Redis cannot " +
			"count, the route answers 503 instead of letting the request through."
	case op.Auth == ClassA:
		return "A login: the auth_token cookie, " + key + ". Rate-limited per user."
	case op.Auth == ClassS:
		return session + ". Rate-limited per user."
	case op.Auth == ClassSP:
		return session + ", and a project token of that session: the project_token cookie or X-Project-Token header. " +
			"Rate-limited per user."
	}
	return "No authentication. Rate-limited per client IP."
}

// Responses and headers every route shares.
var (
	messageRef   = fiber.Map{"$ref": "#/components/schemas/Message"}
	retryAfter   = fiber.Map{"description": "Seconds to wait before trying again", "schema": fiber.Map{"type": "integer"}}
	htmlContent  = fiber.Map{"text/html": fiber.Map{"schema": fiber.Map{"type": "string"}}}
	rateHeaders  = fiber.Map{"X-RateLimit-Limit": fiber.Map{"schema": fiber.Map{"type": "integer"}}, "X-RateLimit-Remaining": fiber.Map{"schema": fiber.Map{"type": "integer"}}}
	validationOf = fiber.Map{"description": "Validation error in FastAPI's shape: {\"detail\": [{type, loc, msg, input, ctx}]}, " +
		"loc naming the field, e.g. [\"body\", \"context\", \"prefix\"].",
		"content": fiber.Map{"application/json": fiber.Map{"schema": fiber.Map{"$ref": "#/components/schemas/ValidationError"}}}}
)

func jsonMessage(desc string) fiber.Map {
	return fiber.Map{"description": desc, "content": fiber.Map{"application/json": fiber.Map{"schema": messageRef}}}
}

// responses are op's answers: its success, the errors every route of its
// kind gives, and its own.
func responses(op apiOp) fiber.Map {
	r := fiber.Map{}
	switch {
	case op.WS != nil:
		r["101"] = fiber.Map{"description": "Switching Protocols: the WebSocket is open"}
		r["403"] = jsonMessage("The Origin header names an origin CORS_ALLOWED_ORIGINS does not list")
		r["426"] = fiber.Map{"description": "Upgrade Required: not a WebSocket handshake"}
	case op.HTML:
		r[itoa(op.OK)] = fiber.Map{"description": "An HTML page", "content": htmlContent}
	case op.Text != "":
		r[itoa(op.OK)] = fiber.Map{"description": "Success", "content": fiber.Map{op.Text: fiber.Map{"schema": fiber.Map{"type": "string"}}}}
	default:
		r[itoa(op.OK)] = fiber.Map{"description": "Success", "content": fiber.Map{"application/json": fiber.Map{"schema": objectSchema(op.Resp)}}}
	}
	if op.Auth != ClassNone && op.WS == nil {
		r["401"] = jsonMessage("Not authenticated: credentials missing, invalid, expired or revoked.")
		r["403"] = jsonMessage("The API key lacks the '" + scopeOf(op) + "' scope.")
	}
	if len(op.Body) > 0 || len(op.Query) > 0 || strings.Contains(op.Path, "{") {
		r["422"] = validationOf
	}
	if !op.Unlimited {
		h := fiber.Map{"Retry-After": retryAfter}
		for k, v := range rateHeaders {
			h[k] = v
		}
		resp := jsonMessage("Too many requests: the rate limit of this route is spent.")
		resp["headers"] = h
		r["429"] = resp
	}
	unavailable := jsonMessage("Postgres or Redis does not answer (the message names which), or the server is shutting down.")
	unavailable["headers"] = fiber.Map{"Retry-After": retryAfter}
	r["503"] = unavailable
	for status, desc := range op.Errors {
		base, _ := r[itoa(status)].(fiber.Map)
		e := jsonMessage(desc)
		if op.HTMLErrors {
			e["content"] = htmlContent
		}
		if base != nil {
			// The shared words, then the route's; every shape the
			// answer may take.
			content := fiber.Map{}
			for _, m := range []fiber.Map{asMap(base["content"]), asMap(e["content"])} {
				for k, v := range m {
					content[k] = v
				}
			}
			e = fiber.Map{"description": base["description"].(string) + " " + desc, "content": content}
			if h, ok := base["headers"]; ok {
				e["headers"] = h
			}
		}
		r[itoa(status)] = e
	}
	return r
}

func asMap(v any) fiber.Map { m, _ := v.(fiber.Map); return m }

// operation is op as an OpenAPI operation.
func operation(op apiOp) fiber.Map {
	desc := authText(op)
	if op.WS != nil {
		desc = wsProtocol + "\n\n" + desc
	}
	if op.Doc != "" {
		desc = op.Doc + "\n\n" + desc
	}
	o := fiber.Map{"summary": op.Summary, "description": desc, "responses": responses(op), "security": security(op)}
	var params []fiber.Map
	for _, seg := range strings.Split(op.Path, "/") {
		if !strings.HasPrefix(seg, "{") {
			continue
		}
		name, typ := strings.Trim(seg, "{}"), "string"
		if i := slices.IndexFunc(op.Params, func(f apiField) bool { return f.Name == name }); i >= 0 {
			typ = op.Params[i].Type
		}
		params = append(params, fiber.Map{"name": name, "in": "path", "required": true, "schema": schemaOf(typ)})
	}
	for _, q := range op.Query {
		p := fiber.Map{"name": q.Name, "in": "query", "required": q.Required, "schema": schemaOf(q.Type)}
		if q.Doc != "" {
			p["description"] = q.Doc
		}
		params = append(params, p)
	}
	if params != nil {
		o["parameters"] = params
	}
	if len(op.Body) > 0 {
		schema := objectSchema(op.Body)
		if op.AnyOf != nil {
			var alts []fiber.Map
			for _, a := range op.AnyOf {
				alts = append(alts, fiber.Map{"required": a})
			}
			schema["anyOf"] = alts
		}
		ct := "application/json"
		if op.Form {
			ct = "application/x-www-form-urlencoded"
		}
		o["requestBody"] = fiber.Map{"required": true, "content": fiber.Map{ct: fiber.Map{"schema": schema}}}
	}
	if op.WS != nil {
		o["x-websocket"] = fiber.Map{"client_frames": append(slices.Clone(op.WS), "cancel"), "server_frames": op.WSFrames}
	}
	return o
}

func buildOpenAPI() fiber.Map {
	paths := fiber.Map{}
	for _, op := range openAPIOps {
		item, _ := paths[op.Path].(fiber.Map)
		if item == nil {
			item = fiber.Map{}
			paths[op.Path] = item
		}
		item[strings.ToLower(op.Method)] = operation(op)
	}
	str := fiber.Map{"type": "string"}
	return fiber.Map{
		"openapi": "3.1.0",
		"info": fiber.Map{"title": "code4me plugin API", "version": "2",
			"description": "Handler errors are {\"message\"}; framework errors {\"detail\"} (404, 405, 413 for bodies over " +
				"MAX_BODY_BYTES). A path with its trailing slash toggled answers 307 to the route's path."},
		"paths": paths,
		"components": fiber.Map{
			"schemas": fiber.Map{
				"Message": fiber.Map{"type": "object", "required": []string{"message"}, "properties": fiber.Map{"message": str}},
				"ValidationError": fiber.Map{"type": "object", "required": []string{"detail"}, "properties": fiber.Map{
					"detail": fiber.Map{"type": "array", "items": fiber.Map{"type": "object", "required": []string{"type", "loc", "msg"},
						"properties": fiber.Map{
							"type":  str,
							"loc":   fiber.Map{"type": "array", "items": fiber.Map{"type": []string{"string", "integer"}}},
							"msg":   str,
							"input": fiber.Map{"description": "the value refused; passwords and tokens masked, text redacted"},
							"ctx":   fiber.Map{"type": "object"},
						}}},
				}},
			},
			"securitySchemes": fiber.Map{
				"authToken":          fiber.Map{"type": "apiKey", "in": "cookie", "name": cookieAuth, "description": "A login (POST /api/user/authenticate)"},
				"sessionToken":       fiber.Map{"type": "apiKey", "in": "cookie", "name": cookieSession, "description": "A session (GET /api/session/acquire)"},
				"sessionTokenHeader": fiber.Map{"type": "apiKey", "in": "header", "name": headerSession, "description": "The session token, for clients without cookies"},
				"projectToken":       fiber.Map{"type": "apiKey", "in": "cookie", "name": cookieProject, "description": "An active project (POST /api/project/create or PUT /api/project/activate)"},
				"projectTokenHeader": fiber.Map{"type": "apiKey", "in": "header", "name": headerProject, "description": "The project token, for clients without cookies"},
				"apiKey": fiber.Map{"type": "http", "scheme": "bearer", "description": "An API key (POST /api/user/api-keys). Its scopes, " +
					"named in each requirement: 'completions' for completion, chat, context, sessions and projects; 'account' for the account itself."},
			},
		},
	}
}

// GET /openapi.json
func (s *Server) openAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(openAPIJSON())
}

var docsTmpl = template.Must(template.New("docs").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>code4me API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}code{font-size:1.05em}</style></head>
<body><h1>code4me plugin API</h1>
<p>Machine-readable schema: <a href="/openapi.json">/openapi.json</a>. Authenticate with the <code>auth_token</code>,
<code>session_token</code> and <code>project_token</code> cookies (or the <code>X-Session-Token</code> and
<code>X-Project-Token</code> headers), or <code>Authorization: Bearer &lt;api key&gt;</code>.</p>
<table><tr><th>Method</th><th>Path</th><th>Auth</th><th>Summary</th></tr>
{{range .}}<tr><td>{{.Method}}</td><td><code>{{.Path}}</code></td><td>{{.AuthName}}</td><td>{{.Summary}}</td></tr>
{{end}}</table></body></html>`))

// buildDocs renders the /docs page.
func buildDocs() []byte {
	type row struct{ Method, Path, AuthName, Summary string }
	names := map[AuthClass]string{ClassNone: "none", ClassA: "login", ClassS: "session", ClassSP: "session + project"}
	rows := make([]row, 0, len(openAPIOps))
	for _, op := range openAPIOps {
		name := names[op.Auth]
		if op.Account {
			name += " (account scope)"
		}
		rows = append(rows, row{op.Method, op.Path, name, op.Summary})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Path < rows[j].Path })
	var b strings.Builder
	if err := docsTmpl.Execute(&b, rows); err != nil {
		panic("docs: " + err.Error()) // a fixed template over fixed rows
	}
	return []byte(b.String())
}

// GET /docs
func (s *Server) docs(c *fiber.Ctx) error {
	c.Type("html", "utf-8")
	return c.Send(docsHTML())
}
