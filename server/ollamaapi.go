package server

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/engine"
)

// ollama's native API under /api, as Continue's ollama provider, Zed's
// ollama provider and other ollama clients call it:
//
//   - POST /api/generate: with a "suffix" a completion model fills in the
//     middle (prompt is the text before the cursor), as ollama does for a
//     model whose template has .Suffix; with raw, prompt is the model's
//     whole input; otherwise a completion model continues the prompt and a
//     chat model answers it as the user's message, with system as its
//     system message. A completion model's generation is a stored
//     completion query (clientgen.go).
//   - POST /api/chat: a chat model answers the messages.
//   - GET /api/tags, POST /api/show: the completion and chat models, named
//     "<name>:latest" as ollama tags them (the bare name works too).
//   - GET /api/version: the ollama release whose API these handlers follow.
//
// Both generation routes stream by default (stream: true): lines of JSON,
// the text as it is generated, then a line with done: true, done_reason
// and the durations in nanoseconds. The "context" array ollama returns is
// left out; a request's context, template, keep_alive and the options
// other than those read below are ignored. A request without a prompt (or
// messages) is ollama's way to load a model: it is answered at once with
// done_reason "load". Authentication is the OpenAI API's (a Bearer API
// key, or none from this machine under `serve --open`); errors are
// {"error": "..."}.

// ollamaAPIVersion is the ollama release whose API these handlers follow;
// clients compare it to decide what they may ask for.
const ollamaAPIVersion = "0.17.4"

func (s *Server) ollamaRoutes(api fiber.Router) {
	errs := s.clientErrors(writeOllamaError)
	api.Post("/generate", errs, s.openGuard(ClassS), s.ollamaGenerate)
	api.Post("/chat", errs, s.openGuard(ClassS), s.ollamaChat)
	api.Get("/tags", errs, s.openGuard(ClassS), s.ollamaTags)
	api.Post("/show", errs, s.openGuard(ClassS), s.ollamaShow)
	api.Get("/version", errs, s.guard(ClassNone), s.ollamaVersion)
}

// writeOllamaError answers e in ollama's shape.
func writeOllamaError(c *fiber.Ctx, e clientErr) error {
	return c.Status(e.status).JSON(ollamaErrorBody(e))
}

func ollamaErrorBody(e clientErr) fiber.Map {
	body := fiber.Map{"error": e.msg}
	if e.detail != nil {
		body["detail"] = e.detail
	}
	return body
}

// ollamaRequest is a parsed /api/generate or /api/chat request.
type ollamaRequest struct {
	gen clientGen
	// name is the model as the client named it, echoed in the answer.
	name   string
	stream bool
	// load: the request asks for nothing but the model (no prompt, no
	// messages).
	load bool
}

// parseOllama reads a generation (chat false) or chat request.
func (s *Server) parseOllama(body []byte, chat bool) (*ollamaRequest, error) {
	f, err := jsonBytes(body)
	if err != nil {
		return nil, err
	}
	r := &ollamaRequest{stream: f.optBool("stream", true)}
	r.name, _ = f.str("model", true, 1, 0)
	hasSuffix := false
	if chat {
		r.gen.messages = parseOllamaMessages(f)
		r.load = len(r.gen.messages) == 0
	} else {
		if f.has("prompt") {
			r.gen.prompt, _ = f.str("prompt", false, 0, 0)
		}
		if hasSuffix = f.has("suffix"); hasSuffix {
			r.gen.suffix, _ = f.str("suffix", false, 0, 0)
		}
		if f.has("system") {
			r.gen.system, _ = f.str("system", false, 0, 0)
		}
		r.gen.raw = f.optBool("raw", false)
		r.load = r.gen.prompt == "" && r.gen.suffix == ""
		if images := f.strList("images", false); len(images) > 0 {
			return nil, refuse("images", "Images are not supported by this server.")
		}
	}
	if o := f.object("options", false); o != nil {
		// num_predict: -1 (unlimited) and -2 (fill the context) mean the
		// server's limit.
		if v := optInt(o, "num_predict", -2, math.MaxInt32); v != nil && *v > 0 {
			r.gen.maxTokens = int(*v)
		}
		r.gen.opts.temperature = o.optFloat("temperature", 0, 2)
		r.gen.opts.topP = o.optFloat("top_p", 0, 1)
		r.gen.opts.minP = o.optFloat("min_p", 0, 1)
		r.gen.opts.repeatPenalty = o.optFloat("repeat_penalty", 0, math.Inf(1))
		r.gen.opts.topK = optInt(o, "top_k", 0, math.MaxInt32)
		r.gen.opts.repeatLastN = optInt(o, "repeat_last_n", 0, math.MaxInt32)
		r.gen.opts.seed = optSeed(o, "seed")
		r.gen.stop = stopList(o, "stop")
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	if format, ok := f.get("format", false); ok && string(format) != `""` {
		return nil, refuse("format", "Structured output (format) is not supported by this server.")
	}
	m, ok := s.clientModel(r.name)
	if !ok {
		return nil, &clientErr{status: fiber.StatusNotFound, msg: fmt.Sprintf("model %q not found", r.name), param: "model"}
	}
	if raw, ok := f.get("tools", false); ok && string(raw) != "[]" {
		return nil, refuse("tools", r.name+" does not support tools")
	}
	switch {
	case chat && !m.Chat:
		return nil, refuse("model", r.name+" does not support chat")
	case m.Chat && r.gen.suffix != "":
		return nil, refuse("suffix", r.name+" does not support insert")
	case r.gen.raw && r.gen.suffix != "":
		return nil, refuse("raw", "raw mode does not support a suffix")
	}
	r.gen.model = m
	// A completion model's template is the prompt itself, or the middle
	// to fill when a suffix is given (even an empty one: the cursor is at
	// the end of the file).
	r.gen.fim = !m.Chat && hasSuffix && !r.gen.raw
	r.gen.raw = r.gen.raw || !m.Chat && !r.gen.fim
	return r, nil
}

// parseOllamaMessages reads messages: {role, content} objects.
func parseOllamaMessages(f *fields) []chatMessage {
	list := f.objectList("messages", false)
	out := make([]chatMessage, 0, len(list))
	for _, mf := range list {
		role, _ := mf.str("role", true, 0, 0)
		if role != "system" && role != "user" && role != "assistant" {
			mf.add("literal_error", "role", "Input should be 'system', 'user' or 'assistant'", role, nil)
		}
		var content string
		if mf.has("content") {
			content, _ = mf.str("content", false, 0, 0)
		}
		if images := mf.strList("images", false); len(images) > 0 {
			mf.add("value_error", "images", "Images are not supported by this server", nil, nil)
		}
		out = append(out, chatMessage{role, content})
	}
	return out
}

// ollamaMessage is a chat message of /api/chat.
type ollamaMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ollamaLine is an answer of /api/generate (Response) or /api/chat
// (Message), or one line of its stream.
type ollamaLine struct {
	Model      string         `json:"model"`
	CreatedAt  string         `json:"created_at"`
	Response   *string        `json:"response,omitempty"`
	Message    *ollamaMessage `json:"message,omitempty"`
	Done       bool           `json:"done"`
	DoneReason string         `json:"done_reason,omitempty"`
	*ollamaMetrics
}

// ollamaMetrics close an answer; durations are in nanoseconds.
type ollamaMetrics struct {
	TotalDuration int64 `json:"total_duration"`
	// LoadDuration is 0: the models are loaded when the server starts.
	LoadDuration       int64 `json:"load_duration"`
	PromptEvalCount    int   `json:"prompt_eval_count"`
	PromptEvalDuration int64 `json:"prompt_eval_duration"`
	EvalCount          int   `json:"eval_count"`
	EvalDuration       int64 `json:"eval_duration"`
}

func nanos(ms float64) int64 { return int64(ms * float64(time.Millisecond)) }

// line is one answer line with text.
func (r *ollamaRequest) line(chat bool, text string) ollamaLine {
	l := ollamaLine{Model: r.name, CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	if chat {
		l.Message = &ollamaMessage{Role: "assistant", Content: text}
	} else {
		l.Response = &text
	}
	return l
}

// final is the line that ends an answer: res's text (the whole answer,
// or "" after a stream), the reason and the metrics, timed from t0.
func (r *ollamaRequest) final(chat bool, res *genResult, text string, t0 time.Time) ollamaLine {
	l := r.line(chat, text)
	l.Done, l.DoneReason = true, res.finish()
	t := res.timings
	l.ollamaMetrics = &ollamaMetrics{TotalDuration: int64(time.Since(t0)), PromptEvalCount: t.PromptTokens,
		PromptEvalDuration: nanos(t.PrefillMS), EvalCount: t.GeneratedTokens, EvalDuration: nanos(t.DecodeMS)}
	return l
}

// ollamaGenerate handles POST /api/generate.
func (s *Server) ollamaGenerate(c *fiber.Ctx) error { return s.ollamaAnswer(c, false) }

// ollamaChat handles POST /api/chat.
func (s *Server) ollamaChat(c *fiber.Ctx) error { return s.ollamaAnswer(c, true) }

// ollamaAnswer runs a generation or chat request and answers it, streamed
// unless the request says stream: false.
func (s *Server) ollamaAnswer(c *fiber.Ctx, chat bool) error {
	t0 := time.Now()
	r, err := s.parseOllama(c.Body(), chat)
	if err != nil {
		return err
	}
	if r.load {
		l := r.line(chat, "")
		l.Done, l.DoneReason = true, "load"
		return c.JSON(l)
	}
	r.gen.client = clientName(c, "ollama")
	p := principal(c)
	if !r.stream {
		res, err := s.generate(c.UserContext(), p, &r.gen, 0, nil)
		if err != nil {
			return err
		}
		return c.JSON(r.final(chat, res, res.text, t0))
	}
	route := c.Route().Path
	return streamAnswer(c, false, func(ctx context.Context, es *eventStream) {
		ts := &textStream{emit: func(d string) { es.send(r.line(chat, d)) }}
		res, err := s.generate(ctx, p, &r.gen, 0, ts.add)
		if err != nil {
			es.send(ollamaErrorBody(s.clientError(ctx, route, err)))
			return
		}
		// The text after the last whitespace is held back for redaction
		// until the generation ends.
		ts.finish(res.text)
		es.send(r.final(chat, res, "", t0))
	})
}

// ollamaDetails describes a model as /api/tags and /api/show do.
type ollamaDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// modelFacts are what the in-process engine knows of a model (ok false on
// an API node of the worker tier, whose engine is elsewhere).
func (s *Server) modelFacts(name string) (engine.Stats, bool) {
	if s.plugin.engine == nil {
		return engine.Stats{}, false
	}
	for _, st := range s.plugin.engine.Stats() {
		if st.Model == name {
			return st, true
		}
	}
	return engine.Stats{}, false
}

// details are m's ollama details: its architecture as the family (the
// FIM family without an in-process engine), its parameter count and its
// quantization as the model file names them.
func (s *Server) details(m RegisteredModel) ollamaDetails {
	d := ollamaDetails{Format: "gguf", Family: string(m.Family)}
	if st, ok := s.modelFacts(m.Name); ok {
		d.Family = st.Info.Arch
		d.ParameterSize = humanCount(st.Info.NParams)
		d.QuantizationLevel = quantization(st.Info.Description)
	}
	d.Families = []string{d.Family}
	return d
}

// humanCount writes a parameter count as ollama does: "494.03M", "1.5B".
func humanCount(n uint64) string {
	f := float64(n)
	switch {
	case f >= 1e9:
		return trimZeros(strconv.FormatFloat(f/1e9, 'f', 1, 64)) + "B"
	case f >= 1e6:
		return trimZeros(strconv.FormatFloat(f/1e6, 'f', 2, 64)) + "M"
	case f >= 1e3:
		return trimZeros(strconv.FormatFloat(f/1e3, 'f', 2, 64)) + "K"
	}
	return strconv.FormatUint(n, 10)
}

func trimZeros(s string) string { return strings.TrimSuffix(strings.TrimRight(s, "0"), ".") }

// quantization reads the file type from llama.cpp's model description
// ("<arch> <size> <type>"): "Q4_K - Medium" gives "Q4_K_M", "all F32"
// gives "F32".
func quantization(desc string) string {
	parts := strings.SplitN(desc, " ", 3)
	if len(parts) < 3 {
		return ""
	}
	t := strings.TrimSpace(strings.TrimSuffix(parts[2], "(guessed)"))
	t = strings.TrimPrefix(t, "all ")
	if base, variant, ok := strings.Cut(t, " - "); ok {
		switch variant {
		case "Small", "Medium", "Large":
			return base + "_" + variant[:1]
		}
		return base
	}
	return t
}

// ollamaName is m's name as ollama tags it.
func ollamaName(m RegisteredModel) string {
	if strings.Contains(m.Name, ":") {
		return m.Name
	}
	return m.Name + ":latest"
}

// ollamaTags handles GET /api/tags: the completion and chat models, with
// each file's size and sha256 (the digest) from the model table.
func (s *Server) ollamaTags(c *fiber.Ctx) error {
	list := s.clientModels()
	ids := make([]int64, len(list))
	for i, m := range list {
		ids[i] = m.ID
	}
	rows, err := s.q.ModelListByIDs(c.UserContext(), s.db, ids)
	if err != nil {
		return err
	}
	type tag struct {
		Name       string        `json:"name"`
		Model      string        `json:"model"`
		ModifiedAt time.Time     `json:"modified_at"`
		Size       int64         `json:"size"`
		Digest     string        `json:"digest"`
		Details    ollamaDetails `json:"details"`
	}
	models := []tag{}
	for _, m := range list {
		t := tag{Name: ollamaName(m), Model: ollamaName(m), Digest: m.SHA256, Details: s.details(m)}
		for _, row := range rows {
			if row.ModelID == m.ID {
				t.ModifiedAt = row.LastLoadedAt
				if row.FileSize != nil {
					t.Size = *row.FileSize
				}
			}
		}
		models = append(models, t)
	}
	return c.JSON(fiber.Map{"models": models})
}

// ollamaShow handles POST /api/show {model} ({name} as older clients send
// it). The template of a completion model holds .Suffix, the sign ollama
// clients read as "fills in the middle"; parameters are "name value"
// lines, the server's defaults.
func (s *Server) ollamaShow(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	key := "model"
	if !f.has(key) && f.has("name") {
		key = "name"
	}
	name, _ := f.str(key, true, 1, 0)
	if err := f.err(); err != nil {
		return err
	}
	m, ok := s.clientModel(name)
	if !ok {
		return &clientErr{status: fiber.StatusNotFound, msg: fmt.Sprintf("model %q not found", name), param: key}
	}
	limit := s.plugin.limits.tokens(m.Chat)
	params := []string{
		"temperature " + fmtNum(float64(defaultSampling.Temperature)), "top_k " + strconv.Itoa(defaultSampling.TopK),
		"top_p " + fmtNum(float64(defaultSampling.TopP)), "repeat_penalty " + fmtNum(float64(defaultSampling.RepeatPenalty)),
		"repeat_last_n " + strconv.Itoa(defaultSampling.RepeatLastN), "num_predict " + strconv.Itoa(limit),
	}
	info := map[string]any{"general.architecture": string(m.Family)}
	if st, ok := s.modelFacts(m.Name); ok {
		params = append(params, "num_ctx "+strconv.Itoa(st.NCtxPerSlot))
		info = map[string]any{"general.architecture": st.Info.Arch, "general.parameter_count": st.Info.NParams,
			st.Info.Arch + ".context_length": st.Info.NCtxTrain}
	}
	template := "{{ .Prompt }}"
	capabilities := []string{"completion"}
	switch {
	case m.Chat && s.plugin.runner != nil && s.plugin.runner.ChatTemplate(m.Name) != "":
		template = s.plugin.runner.ChatTemplate(m.Name) // the model's own (Jinja) template
	case !m.Chat:
		template = "{{- /* the server lays out fill-in-the-middle prompts in the " + string(m.Family) + " format */ -}}\n" +
			"{{- if .Suffix }}{{ .Prompt }}<fill in the middle>{{ .Suffix }}{{ else }}{{ .Prompt }}{{ end }}"
		capabilities = append(capabilities, "insert")
	}
	modelfile := "# code4me serves this model; its settings are the server's.\nFROM " + ollamaName(m) + "\n"
	for _, p := range params {
		modelfile += "PARAMETER " + p + "\n"
	}
	return c.JSON(fiber.Map{"modelfile": modelfile, "parameters": strings.Join(params, "\n"), "template": template,
		"details": s.details(m), "model_info": info, "capabilities": capabilities})
}

// ollamaVersion handles GET /api/version.
func (s *Server) ollamaVersion(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"version": ollamaAPIVersion})
}

// Documentation the ollama routes share.
const (
	ollamaShape   = `ollama's {"error": "<message>"}`
	ollamaAuthDoc = "Authenticate with `Authorization: Bearer <API key>` (completions scope), which ollama clients send as their API " +
		"key; the key's session opens on first use. Under `serve --open`, a request from this machine without credentials " +
		"acts as OPEN_USER. Errors are " + ollamaShape + ". "
	ollamaGenDoc = "stream (default true) answers lines of JSON: the text as it is generated and redacted, then a line with done: " +
		"true, done_reason (stop or length), total_duration, load_duration, prompt_eval_count, prompt_eval_duration, eval_count " +
		"and eval_duration (nanoseconds); a failure after the stream started is a last {\"error\"} line. A request without " +
		"prompt or messages answers at once with done_reason \"load\". Model names may carry ollama's \":latest\" tag; " +
		"keep_alive, context, template and unknown fields are ignored."
	ollama400Doc = "What the model or server does not offer: insert (a suffix) on a chat model, chat on a completion model, tools, " +
		"images, format."
	ollama422Doc = "A 422's body is " + ollamaShape + ", naming the first refused field, with the usual detail list beside it. "
)

// ollamaGenErrors are the error answers of the ollama generation routes.
var ollamaGenErrors = clientErrorDocs(ollamaShape, map[int]string{400: ollama400Doc,
	404: "No model of that name.", 500: "The model failed.", 504: "The model did not finish within the server's time limit."})

// ollamaOptions documents the options both generation routes read.
var ollamaOptions = optField("options", "object", "num_predict (capped at the server's limit; -1 and -2 mean the limit), "+
	"temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed (negative: random), stop; others are ignored")

// ollamaOps document the ollama routes.
var ollamaOps = []apiOp{
	{Method: "POST", Path: "/api/generate", Summary: "ollama generate: fill in the middle with suffix, else complete the prompt",
		Auth: ClassS, OK: 200,
		Doc: ollamaAuthDoc + ollama422Doc + "A completion model fills in the middle when suffix is given (even empty), else continues prompt as " +
			"its whole input; a chat model answers prompt as the user's message or, with raw, as its whole input. Prompt and suffix " +
			"are redacted before the model sees them; a completion model's answer is a completion query stored as the user's " +
			"consent allows, with client \"ollama\" (\"continue\" when the User-Agent names Continue); a chat model's is not " +
			"stored. " + ollamaGenDoc,
		Body: []apiField{reqField("model", "string", "a name from GET /api/tags"), optField("prompt", "string", "the text before "+
			"the cursor, or the whole prompt"), optField("suffix", "string", "the text after the cursor: fill in the middle"),
			optField("system", "string", "a chat model's system message"), optField("raw", "boolean", "prompt is the model's whole input"),
			optField("stream", "boolean", "default true"), ollamaOptions},
		Resp: []apiField{respField("model", "string", ""), respField("created_at", "date-time", ""), respField("response", "string", ""),
			respField("done", "boolean", ""), respField("done_reason", "string", "stop, length or load"),
			respField("total_duration", "integer", "ns"), respField("load_duration", "integer", "ns (0: models load at start)"),
			respField("prompt_eval_count", "integer", ""), respField("prompt_eval_duration", "integer", "ns"),
			respField("eval_count", "integer", ""), respField("eval_duration", "integer", "ns")},
		Errors: ollamaGenErrors},
	{Method: "POST", Path: "/api/chat", Summary: "ollama chat on a chat model", Auth: ClassS, OK: 200,
		Doc: ollamaAuthDoc + ollama422Doc + "The messages are redacted before the model sees them and the prompt is the model's own chat template; " +
			"the turn is answered, not stored. " + ollamaGenDoc,
		Body: []apiField{reqField("model", "string", "a chat model's name"),
			optField("messages", "[]object", "{role: system, user or assistant, content}"), optField("stream", "boolean", "default true"),
			ollamaOptions},
		Resp: []apiField{respField("model", "string", ""), respField("created_at", "date-time", ""),
			respField("message", "object", "{role: assistant, content}"), respField("done", "boolean", ""),
			respField("done_reason", "string", ""), respField("total_duration", "integer", "ns"), respField("eval_count", "integer", "")},
		Errors: ollamaGenErrors},
	{Method: "GET", Path: "/api/tags", Summary: "ollama model list: the completion and chat models", Auth: ClassS, OK: 200,
		Doc: ollamaAuthDoc + "Each model: name and model (\"<name>:latest\"), modified_at (last loaded), size (the file's bytes), digest " +
			"(the file's sha256), details {parent_model, format: gguf, family, families, parameter_size, quantization_level}.",
		Resp:   []apiField{respField("models", "[]object", "")},
		Errors: clientErrorDocs(ollamaShape, nil)},
	{Method: "POST", Path: "/api/show", Summary: "ollama model details", Auth: ClassS, OK: 200,
		Doc: ollamaAuthDoc + ollama422Doc + "A completion model's template holds .Suffix and its capabilities \"insert\", which ollama clients " +
			"read as fill in the middle; parameters are the server's defaults as \"name value\" lines.",
		Body:  []apiField{optField("model", "string", "the model's name"), optField("name", "string", "the model's name, as older clients send it")},
		AnyOf: [][]string{{"model"}, {"name"}},
		Resp: []apiField{respField("modelfile", "string", ""), respField("parameters", "string", ""), respField("template", "string", ""),
			respField("details", "object", ""), respField("model_info", "object", ""), respField("capabilities", "[]string", "")},
		Errors: clientErrorDocs(ollamaShape, map[int]string{404: "No model of that name."})},
	{Method: "GET", Path: "/api/version", Summary: "ollama version: the ollama release whose API the server follows", OK: 200,
		Resp: []apiField{respField("version", "string", "")}},
}
