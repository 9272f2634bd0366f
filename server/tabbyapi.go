package server

import (
	"errors"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
)

// Tabby's editor API, as the Tabby plugins (VS Code, JetBrains, Vim) call
// it:
//
//   - POST /v1/completions with "segments": a completion at the cursor
//     (mode "standard", the default) or a next-edit suggestion (mode
//     "next_edit_suggestion" with segments.edit_history). The body is told
//     apart from OpenAI's by its "segments" (openaiapi.go dispatches it
//     here). The declarations, the snippets of changed and recently opened
//     files and the clipboard are the completion's context, redacted by the
//     pipeline with everything else; language, git_url, user and
//     debug_options are read and not used.
//   - POST /v1/events: the plugin's view, select and dismiss events, which
//     become the completion's feedback (shown, accepted, not accepted).
//     Nothing else of an event is stored.
//   - GET and POST /v1/health: the server's description in Tabby's shape.
//   - GET /v1beta/server_setting: the plugin sends no telemetry of its own
//     to Tabby's makers (disable_client_side_telemetry).
//   - GET /v1beta/models: the completion and chat models by name.
//
// The completion's id is "cmpl-" and its meta_query_id, so an event names
// the stored query. Authentication and errors are those of the OpenAI API
// (Bearer API key; OpenAI's error shape); queries are stored with client
// "tabby".

func init() {
	tabbyCompletion = (*Server).tabbyComplete
}

func (s *Server) tabbyRoutes() {
	errs := s.clientErrors(writeOpenAIError)
	s.app.Post("/v1/events", errs, s.openGuard(ClassS), s.tabbyEvents)
	s.app.Get("/v1/health", errs, s.openGuard(ClassS), s.tabbyHealth)
	s.app.Post("/v1/health", errs, s.openGuard(ClassS), s.tabbyHealth)
	s.app.Get("/v1beta/server_setting", errs, s.openGuard(ClassS), s.tabbyServerSetting)
	s.app.Get("/v1beta/models", errs, s.openGuard(ClassS), s.tabbyModels)
}

// tabbyIDPrefix starts a Tabby completion id; the meta_query_id follows.
const tabbyIDPrefix = "cmpl-"

// Tabby's completion modes.
const (
	tabbyStandard = "standard"
	tabbyNextEdit = "next_edit_suggestion"
)

// tabbyRequest is a parsed Tabby completion request.
type tabbyRequest struct {
	mode           string
	prefix, suffix string
	filepath       string
	// context is the declarations, then the snippets of changed files, of
	// recently opened files, then the clipboard.
	context []engine.Chunk
	// history is edit_history: original_code, edits_diff, current_version.
	history     *[3]string
	temperature *float64
	seed        *int64
}

// parseTabby reads Tabby's completion body.
func parseTabby(f *fields) *tabbyRequest {
	r := &tabbyRequest{mode: tabbyStandard}
	if f.has("mode") {
		r.mode, _ = f.str("mode", false, 0, 0)
		if r.mode != tabbyStandard && r.mode != tabbyNextEdit {
			f.add("literal_error", "mode", "Input should be 'standard' or 'next_edit_suggestion'", r.mode, nil)
		}
	}
	r.temperature = f.optFloat("temperature", 0, 2)
	r.seed = optSeed(f, "seed")
	sf := f.object("segments", true)
	if sf == nil {
		return r
	}
	r.prefix, _ = sf.str("prefix", true, 0, 0)
	if sf.has("suffix") {
		r.suffix, _ = sf.str("suffix", false, 0, 0)
	}
	if sf.has("filepath") {
		r.filepath, _ = sf.str("filepath", false, 0, 0)
	}
	for _, list := range []string{"declarations", "relevant_snippets_from_changed_files", "relevant_snippets_from_recently_opened_files"} {
		for _, df := range sf.objectList(list, false) {
			var c engine.Chunk
			if df.has("filepath") {
				c.Path, _ = df.str("filepath", false, 0, 0)
			}
			c.Text, _ = df.str("body", true, 0, 0)
			df.optFloat("score", 0, 1e9)
			r.context = append(r.context, c)
		}
	}
	if sf.has("clipboard") {
		if clip, _ := sf.str("clipboard", false, 0, 0); clip != "" {
			r.context = append(r.context, engine.Chunk{Path: "clipboard", Text: clip})
		}
	}
	if hf := sf.object("edit_history", r.mode == tabbyNextEdit); hf != nil {
		var h [3]string
		h[0], _ = hf.str("original_code", true, 0, 0)
		h[1], _ = hf.str("edits_diff", true, 0, 0)
		h[2], _ = hf.str("current_version", true, 0, 0)
		r.history = &h
	}
	return r
}

// tabbyChoice is a choice of Tabby's completion answer. ReplaceRange, for
// a next-edit suggestion, is the span of edit_history.current_version the
// text replaces, in UTF-16 code units (JavaScript's string offsets).
type tabbyChoice struct {
	Index        int         `json:"index"`
	Text         string      `json:"text"`
	ReplaceRange *tabbyRange `json:"replaceRange,omitempty"`
}

type tabbyRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// tabbyComplete handles a Tabby completion request (POST /v1/completions
// with "segments"), on the first completion model: Tabby's request names
// none.
func (s *Server) tabbyComplete(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	r := parseTabby(f)
	if err := f.err(); err != nil {
		return err
	}
	m, err := s.nextEditModel("")
	if err != nil {
		return err
	}
	p := principal(c)
	g := clientGen{model: m, client: "tabby", fileName: r.filepath, extra: r.context}
	g.opts.temperature, g.opts.seed = r.temperature, r.seed
	if r.mode == tabbyNextEdit {
		return s.tabbyNextEdit(c, p, r, g)
	}
	g.prompt, g.suffix, g.fim = r.prefix, r.suffix, true
	res, err := s.generate(c.UserContext(), p, &g, 0, nil)
	if err != nil {
		return err
	}
	choices := []tabbyChoice{}
	if res.queryID != uuid.Nil {
		choices = append(choices, tabbyChoice{Text: res.text})
	}
	return c.JSON(fiber.Map{"id": tabbyIDPrefix + res.queryID.String(), "choices": choices, "mode": r.mode})
}

// tabbyNextEdit answers Tabby's next-edit mode: the region is
// edit_history.current_version, the edits its edits_diff (Tabby's own
// format writes all three as they were sent); the text around the region
// and the cursor come from the segments when current_version is found in
// them. The answer's one choice is the replacement of the changed span,
// with its replaceRange; no choice when the model changed nothing or the
// change touches redacted text.
func (s *Server) tabbyNextEdit(c *fiber.Ctx, p *Principal, r *tabbyRequest, g clientGen) error {
	h := r.history
	ne := &nextEditRequest{model: g.model, format: nextEditFormatOf(g.model), gen: g}
	path := r.filepath
	if path == "" {
		path = "untitled"
	}
	diff := h[1]
	ne.in = nextEditInput{path: path, region: h[2], original: h[0], tabbyDiff: &diff,
		edits: []editEvent{{path: path, diff: h[1]}}, snippets: r.context}
	doc := r.prefix + r.suffix
	if at := strings.Index(doc, h[2]); at >= 0 && h[2] != "" {
		ne.in.before, ne.in.after = doc[:at], doc[at+len(h[2]):]
		ne.in.startOfFile = false
		if cur := len(r.prefix) - at; cur >= 0 && cur <= len(h[2]) && utf8.ValidString(h[2][:cur]) {
			ne.in.cursor = cur
		}
	}
	res, err := s.runNextEdit(c.UserContext(), p, ne, h[2])
	if err != nil {
		return err
	}
	choices := []tabbyChoice{}
	if res.ok {
		choices = append(choices, tabbyChoice{Text: res.text,
			ReplaceRange: &tabbyRange{Start: utf16Offset(h[2], res.start), End: utf16Offset(h[2], res.end)}})
	}
	return c.JSON(fiber.Map{"id": tabbyIDPrefix + res.queryID.String(), "choices": choices, "mode": r.mode})
}

// tabbyEvents handles POST /v1/events. An event about one of the caller's
// completions becomes its feedback: "view" marks it shown (keeping an
// acceptance already recorded), "select" accepted (a partial accept,
// ?select_kind=line, too), "dismiss" not accepted. Any other event, an id
// that names no completion of the caller's, or a choice other than the
// only one is answered 200 and ignored, as Tabby's server does.
func (s *Server) tabbyEvents(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	typ, _ := f.str("type", false, 0, 0)
	cid, _ := f.str("completion_id", false, 0, 0)
	choice, _ := f.integerIn("choice_index", false, 0, 1<<31)
	*f.errs = nil // events are never refused: what is not understood is ignored
	id, err := uuid.Parse(strings.TrimPrefix(cid, tabbyIDPrefix))
	if err != nil || !strings.HasPrefix(cid, tabbyIDPrefix) || choice != 0 || (typ != "view" && typ != "select" && typ != "dismiss") {
		return c.SendStatus(fiber.StatusOK)
	}
	ctx := c.UserContext()
	gens, err := s.q.GenerationListByMetaQuery(ctx, s.db, id)
	if err != nil {
		return err
	}
	if len(gens) == 0 {
		return c.SendStatus(fiber.StatusOK)
	}
	fb := &feedback{MetaQueryID: id, ModelID: gens[0].ModelID}
	switch typ {
	case "view":
		fb.ShownAt = []time.Time{time.Now()}
		fb.WasAccepted = gens[0].WasAccepted
	case "select":
		fb.WasAccepted = true
	}
	if err := s.recordFeedback(ctx, principal(c), fb); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && (ae.status == fiber.StatusForbidden || ae.status == fiber.StatusNotFound) {
			return c.SendStatus(fiber.StatusOK) // another user's completion: ignored, its existence not told
		}
		return err
	}
	return c.SendStatus(fiber.StatusOK)
}

// tabbyHealth handles GET and POST /v1/health: Tabby's description of the
// server. device is "cpu" when no layer is offloaded (N_GPU_LAYERS=0), else
// "auto": llama.cpp offloads to a GPU when its build has one.
func (s *Server) tabbyHealth(c *fiber.Ctx) error {
	var model, chat any
	if m, ok := s.defaultModel(false); ok {
		model = m.Name
	}
	if m, ok := s.defaultModel(true); ok {
		chat = m.Name
	}
	device := "auto"
	if s.cfg.NGPULayers == 0 {
		device = "cpu"
	}
	return c.JSON(fiber.Map{"model": model, "chat_model": chat, "chat_device": device, "device": device, "arch": runtime.GOARCH,
		"cpu_info": runtime.GOOS + "/" + runtime.GOARCH, "cpu_count": runtime.NumCPU(), "cuda_devices": []string{},
		"version":   fiber.Map{"build_date": "", "build_timestamp": "", "git_sha": "", "git_describe": "code4me " + s.plugin.version},
		"webserver": true})
}

// tabbyServerSetting handles GET /v1beta/server_setting: the plugins'
// own usage telemetry (sent to Tabby's makers, not to this server) is
// turned off, as nothing of a user's work should leave the server
// without the user's consent.
func (s *Server) tabbyServerSetting(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"disable_client_side_telemetry": true})
}

// tabbyModels handles GET /v1beta/models: the completion and chat models.
func (s *Server) tabbyModels(c *fiber.Ctx) error {
	completion, chat := []string{}, []string{}
	for _, m := range s.clientModels() {
		if m.Chat {
			chat = append(chat, m.Name)
		} else {
			completion = append(completion, m.Name)
		}
	}
	return c.JSON(fiber.Map{"completion": completion, "chat": chat})
}

// Documentation of the Tabby routes.
var tabbyOps = []apiOp{
	{Method: "POST", Path: "/v1/events", Summary: "Tabby's completion events (view, select, dismiss) as feedback", Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + "An event naming one of the caller's completions (completion_id \"cmpl-<meta_query_id>\", choice_index 0) " +
			"is recorded as its feedback: view marks it shown, select accepted (?select_kind=line too), dismiss not accepted. Any " +
			"other event is answered 200 and ignored; nothing of an event is stored but the feedback.",
		Body: []apiField{optField("type", "string", "view, select or dismiss"), optField("completion_id", "string", "\"cmpl-<id>\""),
			optField("choice_index", "integer", "0"), optField("view_id", "string", "ignored"), optField("elapsed", "integer", "ignored")},
		Query:  []apiField{optField("select_kind", "string", "line: a partial accept, recorded as accepted")},
		Errors: clientErrorDocs(openAIShape, nil)},
	{Method: "GET", Path: "/v1/health", Summary: "Tabby's health: the served models and the machine", Auth: ClassS, OK: 200,
		Doc:  openAIAuthDoc + "Tabby's plugins show it and check the server with it.",
		Resp: tabbyHealthResp, Errors: clientErrorDocs(openAIShape, nil)},
	{Method: "POST", Path: "/v1/health", Summary: "Tabby's health (as GET)", Auth: ClassS, OK: 200,
		Doc:  openAIAuthDoc + "The same answer as GET /v1/health.",
		Resp: tabbyHealthResp, Errors: clientErrorDocs(openAIShape, nil)},
	{Method: "GET", Path: "/v1beta/server_setting", Summary: "Tabby's server settings: the plugins' own telemetry off", Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + "Tabby's plugins read it after /v1/health; their usage telemetry goes to Tabby's makers, not to " +
			"this server, and is turned off.",
		Resp:   []apiField{respField("disable_client_side_telemetry", "boolean", "true")},
		Errors: clientErrorDocs(openAIShape, nil)},
	{Method: "GET", Path: "/v1beta/models", Summary: "Tabby's model list: the completion and chat models", Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + "Tabby's completion requests run on the first completion model.",
		Resp: []apiField{respField("completion", "[]string", "the completion models' names"),
			respField("chat", "[]string", "the chat models' names")},
		Errors: clientErrorDocs(openAIShape, nil)},
}

var tabbyHealthResp = []apiField{respField("model", "string", "the first completion model, or null"),
	respField("chat_model", "string", "the first chat model, or null"), respField("device", "string", "cpu, or auto (a GPU when llama.cpp has one)"),
	respField("chat_device", "string", "as device"), respField("arch", "string", ""), respField("cpu_info", "string", ""),
	respField("cpu_count", "integer", ""), respField("cuda_devices", "[]string", "empty"),
	respField("version", "object", "{build_date, build_timestamp, git_sha, git_describe}"), respField("webserver", "boolean", "true")}
