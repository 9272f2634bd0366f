package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// The OpenAI-compatible API under /v1, as Continue's OpenAI and Mistral
// providers, Zed's OpenAI-compatible provider and OpenAI's SDKs call it:
//
//   - POST /v1/completions: with "suffix" the model fills in the middle
//     (prompt is the text before the cursor, laid out in the model's own
//     FIM format); without it, prompt is the model's whole input (a
//     client-formatted prompt, its special tokens parsed). Each choice is
//     a completion query stored like the plugin's (clientgen.go); a chat
//     model answers a prompt without a suffix, unstored.
//   - POST /v1/fim/completions: Mistral's fill-in-the-middle shape (prompt
//     and suffix, answered like a chat completion), which Continue's
//     Mistral provider calls for autocomplete.
//   - POST /v1/chat/completions: a chat model answers the messages.
//   - GET /v1/models: the completion and chat models, by name.
//   - POST /v1/embeddings: embeddings of texts (embeddings.go).
//
// Callers authenticate with `Authorization: Bearer <API key>` holding the
// completions scope; the key's session is opened on first use. Under
// `serve --open` a request from the machine itself needs none (openGuard,
// llamaapi.go): Zed's ollama edit predictions, for one, send no key. Errors,
// the guard's included, are OpenAI's {"error": {message, type, param,
// code}}: a field the fields reader refuses is a 422 naming it (with the
// house's detail list beside), and what these APIs define but the server
// cannot honour (echo, logprobs, best_of, tools, structured output) a 400.
// Unknown fields and the penalties are ignored.

// maxChoices is the most choices one request may ask for (prompts × n):
// they run one after another.
const maxChoices = 16

// openAIKind is the /v1 route a generation request came to.
type openAIKind int

const (
	openAICompletions openAIKind = iota // POST /v1/completions
	openAIFIM                           // POST /v1/fim/completions
	openAIChat                          // POST /v1/chat/completions
)

// tabbyCompletion, when set, answers the POST /v1/completions requests
// whose body has "segments" (Tabby's completion shape) in place of the
// OpenAI handler, after the same guard; an error it returns is answered
// in OpenAI's shape. Nil: no Tabby API is served, and such a body is read
// as OpenAI's (and refused for its missing prompt).
var tabbyCompletion func(s *Server, c *fiber.Ctx) error

// clientAPIRoutes registers the editor-client APIs: OpenAI's under /v1
// and ollama's under /api.
func (s *Server) clientAPIRoutes(api fiber.Router) {
	s.openAIRoutes()
	s.tabbyRoutes()
	s.nextEditRoutes()
	s.ollamaRoutes(api)
}

func (s *Server) openAIRoutes() {
	errs := s.clientErrors(writeOpenAIError)
	v1 := s.app.Group("/v1")
	v1.Post("/completions", errs, s.openGuard(ClassS), s.openAIGenerate(openAICompletions))
	v1.Post("/fim/completions", errs, s.openGuard(ClassS), s.openAIGenerate(openAIFIM))
	v1.Post("/chat/completions", errs, s.openGuard(ClassS), s.openAIGenerate(openAIChat))
	v1.Get("/models", errs, s.openGuard(ClassS), s.openAIModels)
	v1.Post("/embeddings", errs, s.openGuard(ClassS), s.openAIEmbeddings)
}

// writeOpenAIError answers e in OpenAI's shape.
func writeOpenAIError(c *fiber.Ctx, e clientErr) error {
	return c.Status(e.status).JSON(openAIErrorBody(e))
}

func openAIErrorBody(e clientErr) fiber.Map {
	body := fiber.Map{"error": fiber.Map{"message": e.msg, "type": openAIErrorType(e.status), "param": nullable(e.param),
		"code": nullable(e.code)}}
	if e.detail != nil {
		body["detail"] = e.detail
	}
	return body
}

// openAIErrorType is the error's type by its status.
func openAIErrorType(status int) string {
	switch {
	case status == fiber.StatusUnauthorized:
		return "authentication_error"
	case status == fiber.StatusForbidden:
		return "permission_error"
	case status == fiber.StatusTooManyRequests:
		return "rate_limit_error"
	case status == fiber.StatusNotImplemented:
		return "not_supported_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// nullable is s, or JSON null for "".
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// openAIRequest is a parsed generation request of /v1.
type openAIRequest struct {
	kind openAIKind
	gen  clientGen
	// prompts are answered n times each, in order (a chat request has one,
	// unused: its messages are in gen).
	prompts              []string
	n                    int
	stream, includeUsage bool
}

// choices is the number of choices the request asks for.
func (r *openAIRequest) choices() int { return len(r.prompts) * r.n }

// parseOpenAI reads a generation request of kind and the model it names.
func (s *Server) parseOpenAI(body []byte, kind openAIKind) (*openAIRequest, error) {
	f, err := jsonBytes(body)
	if err != nil {
		return nil, err
	}
	r := &openAIRequest{kind: kind, n: 1, prompts: []string{""}}
	var name string
	if f.has("model") {
		name, _ = f.str("model", false, 0, 0)
	}
	if kind == openAIChat {
		r.gen.messages = parseOpenAIMessages(f)
	} else {
		r.prompts = parsePrompts(f, kind == openAICompletions)
		if f.has("suffix") {
			r.gen.suffix, _ = f.str("suffix", false, 0, 0)
			r.gen.fim = true
		}
		r.gen.fim = r.gen.fim || kind == openAIFIM
	}
	limit := "max_tokens"
	if kind == openAIChat && !f.has(limit) {
		limit = "max_completion_tokens"
	}
	if v := optInt(f, limit, 1, math.MaxInt32); v != nil {
		r.gen.maxTokens = int(*v)
	}
	r.gen.opts.temperature = f.optFloat("temperature", 0, 2)
	r.gen.opts.topP = f.optFloat("top_p", 0, 1)
	if kind == openAIFIM {
		r.gen.opts.seed = optSeed(f, "random_seed") // Mistral's name
	} else {
		r.gen.opts.seed = optSeed(f, "seed")
		if v := optInt(f, "n", 1, maxChoices); v != nil {
			r.n = int(*v)
		}
	}
	r.stream = f.optBool("stream", false)
	if so := f.object("stream_options", false); so != nil {
		r.includeUsage = so.optBool("include_usage", false)
	}
	r.gen.stop = stopList(f, "stop")
	if err := f.err(); err != nil {
		return nil, err
	}
	if err := refuseUnsupported(f, kind); err != nil {
		return nil, err
	}
	if r.choices() > maxChoices {
		return nil, refuse("n", fmt.Sprintf("At most %d choices per request: prompts times n.", maxChoices))
	}
	m, ok := s.clientModel(name)
	if name == "" {
		m, ok = s.defaultModel(kind == openAIChat)
	}
	switch {
	case !ok && name == "":
		return nil, &clientErr{status: fiber.StatusNotFound, msg: "This server serves no model for this route.", param: "model", code: "model_not_found"}
	case !ok:
		return nil, &clientErr{status: fiber.StatusNotFound, msg: fmt.Sprintf("The model '%s' does not exist.", name), param: "model", code: "model_not_found"}
	case kind == openAIChat && !m.Chat:
		return nil, refuse("model", fmt.Sprintf("'%s' is a completion model, not a chat model: use /v1/completions.", m.Name))
	case kind != openAIChat && m.Chat && r.gen.fim:
		return nil, refuse("model", fmt.Sprintf("'%s' is a chat model: it cannot fill in the middle.", m.Name))
	}
	r.gen.model = m
	r.gen.raw = kind != openAIChat && !r.gen.fim
	return r, nil
}

// defaultModel is the model a request that names none gets: the first
// chat or completion model.
func (s *Server) defaultModel(chat bool) (RegisteredModel, bool) {
	for _, m := range s.clientModels() {
		if m.Chat == chat {
			return m, true
		}
	}
	return RegisteredModel{}, false
}

// refuseUnsupported refuses what these routes define and the server
// cannot honour.
func refuseUnsupported(f *fields, kind openAIKind) error {
	if echo, _ := f.boolean("echo", false); echo {
		return refuse("echo", "echo is not supported: the answer holds the completion only.")
	}
	if kind == openAICompletions && f.has("logprobs") || kind == openAIChat && f.optBool("logprobs", false) {
		// The answer is redacted text; the model's own tokens are not.
		return refuse("logprobs", "logprobs are not supported: the server answers redacted text, not the model's tokens.")
	}
	if n, ok := f.integer("best_of", false, 0); ok && n > 1 {
		return refuse("best_of", "best_of is not supported: ask for n choices instead.")
	}
	if raw, ok := f.get("tools", false); ok && string(raw) != "[]" {
		return refuse("tools", "Tools are not supported by this server.")
	}
	if rf := f.object("response_format", false); rf != nil {
		if t, _ := rf.str("type", false, 0, 0); t != "" && t != "text" {
			return refuse("response_format", "Structured output is not supported: response_format must be text.")
		}
	}
	return f.err()
}

// parsePrompts reads prompt: a string or, for /v1/completions, a list of
// strings (each answered n times).
func parsePrompts(f *fields, list bool) []string {
	raw, ok := f.get("prompt", true)
	if !ok {
		return nil
	}
	if list && len(raw) > 0 && raw[0] == '[' {
		out := f.strList("prompt", true)
		if len(out) == 0 {
			f.add("too_short", "prompt", "List should have at least 1 item", nil, nil)
		}
		return out
	}
	s, _ := f.str("prompt", true, 0, 0)
	return []string{s}
}

// parseOpenAIMessages reads messages: {role, content} objects, content a
// string or a list of text parts. A developer message is a system
// message.
func parseOpenAIMessages(f *fields) []chatMessage {
	list := f.objectList("messages", true)
	out := make([]chatMessage, 0, len(list))
	for _, mf := range list {
		role, _ := mf.str("role", true, 0, 0)
		switch role {
		case "developer":
			role = "system"
		case "system", "user", "assistant":
		default:
			mf.add("literal_error", "role", "Input should be 'system', 'developer', 'user' or 'assistant'", role, nil)
		}
		out = append(out, chatMessage{role, messageText(mf)})
	}
	if len(list) == 0 && f.has("messages") {
		f.add("too_short", "messages", "List should have at least 1 item", nil, nil)
	}
	return out
}

// messageText reads a message's content: a string, null, or a list of
// {"type": "text", "text"} parts, joined.
func messageText(mf *fields) string {
	raw, ok := mf.get("content", false)
	if !ok {
		return ""
	}
	if len(raw) == 0 || raw[0] != '[' {
		s, _ := mf.str("content", false, 0, 0)
		return s
	}
	var text string
	for _, part := range mf.objectList("content", false) {
		if t, _ := part.str("type", true, 0, 0); t != "text" {
			part.add("literal_error", "type", "Only text content is supported", t, nil)
			continue
		}
		s, _ := part.str("text", true, 0, 0)
		text += s
	}
	return text
}

// openAIRun generates every choice of r in order with run: a prompt's
// candidates one after another, so that each after the first finds the
// prompt in the KV cache. run gets the choice's index, its generation and
// its candidate number.
func openAIRun(r *openAIRequest, run func(i int, g *clientGen, j int) (*genResult, error)) ([]*genResult, error) {
	out := make([]*genResult, 0, r.choices())
	for _, prompt := range r.prompts {
		for j := range r.n {
			g := r.gen
			g.prompt = prompt
			res, err := run(len(out), &g, j)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
		}
	}
	return out, nil
}

// openAIUsage counts tokens: each prompt once, every choice's completion.
type openAIUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(res []*genResult, n int) *openAIUsage {
	u := &openAIUsage{}
	for i, r := range res {
		if i%n == 0 {
			u.PromptTokens += r.timings.PromptTokens
		}
		u.CompletionTokens += r.timings.GeneratedTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// openAIAnswer is a response or stream chunk of a generation route.
type openAIAnswer struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []any  `json:"choices"`
	// Usage is *openAIUsage, or JSON null in the chunks before a stream's
	// usage chunk; absent when not asked for.
	Usage any `json:"usage,omitempty"`
}

// openAITextChoice is a choice of /v1/completions.
type openAITextChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

// openAIChatChoice is a choice of /v1/chat/completions and
// /v1/fim/completions: message in a response, delta in a chunk.
type openAIChatChoice struct {
	Index        int            `json:"index"`
	Message      *openAIMessage `json:"message,omitempty"`
	Delta        *openAIMessage `json:"delta,omitempty"`
	Logprobs     any            `json:"logprobs"`
	FinishReason *string        `json:"finish_reason"`
}

type openAIMessage struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

// openAIGenerate handles the generation routes of kind.
func (s *Server) openAIGenerate(kind openAIKind) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if kind == openAICompletions && tabbyCompletion != nil {
			if f, err := jsonBody(c); err == nil && f.has("segments") {
				return tabbyCompletion(s, c)
			}
		}
		r, err := s.parseOpenAI(c.Body(), kind)
		if err != nil {
			return err
		}
		r.gen.client = clientName(c, "openai")
		if zetaCompletion(r) {
			r.gen.kind, r.gen.client = nextEditKind, "zed"
		}
		p := principal(c)
		head := openAIAnswer{ID: "cmpl-" + uuid.NewString(), Object: "text_completion", Created: time.Now().Unix(), Model: r.gen.model.Name}
		if kind != openAICompletions {
			head.ID, head.Object = "chatcmpl-"+uuid.NewString(), "chat.completion"
		}
		if r.stream {
			route := c.Route().Path
			return streamAnswer(c, true, func(ctx context.Context, es *eventStream) { s.openAIStream(ctx, p, r, head, es, route) })
		}
		res, err := openAIRun(r, func(_ int, g *clientGen, j int) (*genResult, error) {
			return s.generate(c.UserContext(), p, g, j, nil)
		})
		if err != nil {
			return err
		}
		for i, g := range res {
			finish := g.finish()
			if kind == openAICompletions {
				head.Choices = append(head.Choices, openAITextChoice{Text: g.text, Index: i, FinishReason: &finish})
			} else {
				head.Choices = append(head.Choices, openAIChatChoice{Index: i, Message: &openAIMessage{Role: "assistant", Content: g.text},
					FinishReason: &finish})
			}
		}
		head.Usage = usageOf(res, r.n)
		return c.JSON(head)
	}
}

// openAIStream writes r's answer as server-sent events: per choice, its
// text as it is generated and a chunk with its finish_reason; then the
// usage (asked for with stream_options.include_usage; /v1/fim/completions
// always sends it in its last chunk, as Mistral does); then
// "data: [DONE]". A failure ends the stream with an {"error"} event.
func (s *Server) openAIStream(ctx context.Context, p *Principal, r *openAIRequest, head openAIAnswer, es *eventStream, route string) {
	if r.kind != openAICompletions {
		head.Object = "chat.completion.chunk"
	}
	if r.includeUsage && r.kind != openAIFIM {
		head.Usage = json.RawMessage("null")
	}
	send := func(choice any, usage *openAIUsage) {
		ch := head
		ch.Choices = []any{}
		if choice != nil {
			ch.Choices = []any{choice}
		}
		if usage != nil {
			ch.Usage = usage
		}
		es.send(ch)
	}
	delta := func(i int, text string, finish *string) any {
		if r.kind == openAICompletions {
			return openAITextChoice{Text: text, Index: i, FinishReason: finish}
		}
		return openAIChatChoice{Index: i, Delta: &openAIMessage{Content: text}, FinishReason: finish}
	}
	res, err := openAIRun(r, func(i int, g *clientGen, j int) (*genResult, error) {
		if r.kind != openAICompletions {
			send(openAIChatChoice{Index: i, Delta: &openAIMessage{Role: "assistant"}}, nil)
		}
		ts := &textStream{emit: func(d string) { send(delta(i, d, nil), nil) }}
		res, err := s.generate(ctx, p, g, j, ts.add)
		if err != nil {
			return nil, err
		}
		// The text after the last whitespace is held back for redaction
		// until the generation ends: it comes now, then the finish.
		ts.finish(res.text)
		finish := res.finish()
		var usage *openAIUsage
		if r.kind == openAIFIM {
			usage = usageOf([]*genResult{res}, 1)
		}
		send(delta(i, "", &finish), usage)
		return res, nil
	})
	if err != nil {
		es.send(openAIErrorBody(s.clientError(ctx, route, err)))
		return
	}
	if r.includeUsage && r.kind != openAIFIM {
		send(nil, usageOf(res, r.n))
	}
	es.raw("data: [DONE]\n\n")
}

// openAIModels handles GET /v1/models: the completion and chat models.
func (s *Server) openAIModels(c *fiber.Ctx) error {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	data := []model{}
	for _, m := range s.clientModels() {
		data = append(data, model{ID: m.Name, Object: "model", Created: s.started.Unix(), OwnedBy: "code4me"})
	}
	return c.JSON(fiber.Map{"object": "list", "data": data})
}

// msgNoEmbeddings answers POST /v1/embeddings when no model embeds here.
const msgNoEmbeddings = "No served model embeds (EMBEDDING_MODEL, or a completion model that embeds), so /v1/embeddings is not available."

// clientErrorDocs are the error answers of an editor-client route: errs,
// and the answers every guarded route gives, in the API's own shape.
func clientErrorDocs(shape string, errs map[int]string) map[int]string {
	out := map[int]string{}
	for _, status := range []int{fiber.StatusUnauthorized, fiber.StatusForbidden, fiber.StatusTooManyRequests, fiber.StatusServiceUnavailable} {
		out[status] = "The body is " + shape + "."
	}
	for k, v := range errs {
		out[k] = v
	}
	return out
}

// Documentation the OpenAI routes share.
const (
	openAIShape   = `OpenAI's {"error": {"message", "type", "param", "code"}}`
	openAIAuthDoc = "Authenticate with `Authorization: Bearer <API key>` (completions scope); the key's session opens on first use. " +
		"Under `serve --open`, a request from this machine without credentials acts as OPEN_USER. " +
		"Errors are " + openAIShape + ". "
	openAI422Doc = "A 422's body is " + openAIShape + ", naming the first refused field in message and param, with the usual " +
		"detail list beside it. "
	openAI400Doc = "A feature the server does not offer (echo, logprobs, best_of, tools, structured output, too many choices, a model " +
		"of the other kind), in OpenAI's shape with param naming the field."
	openAIGenDoc = "Sampling: temperature, top_p, seed, stop; max_tokens is capped at the server's limit (its default); " +
		"presence_penalty, frequency_penalty, user and unknown fields are ignored. stream: true answers server-sent events " +
		"(\"data: {chunk}\", ended by \"data: [DONE]\"), the text as it is generated and redacted; a failure after the stream " +
		"started is a last {\"error\"} event. Each choice's prompt is redacted before a model sees it."
)

// openAIGenErrors are the error answers of the OpenAI generation routes.
var openAIGenErrors = clientErrorDocs(openAIShape, map[int]string{400: openAI400Doc,
	404: "No model of that name (code model_not_found).", 500: "The model failed.",
	504: "The model did not finish within the server's time limit."})

// Body fields the OpenAI generation routes share.
var (
	openAIModelField  = optField("model", "string", "a name from GET /v1/models; default the first model of the route's kind")
	openAISampleField = []apiField{optField("max_tokens", "integer", "1 or more; capped at the server's limit, its default"),
		optField("temperature", "number", "0 to 2"), optField("top_p", "number", "0 to 1"),
		optField("stop", "[]string", "stop strings (or one string)"), optField("stream", "boolean", "default false")}
	openAIChoiceResp = "{index, message: {role: assistant, content}, logprobs: null, finish_reason: stop or length}"
	openAIUsageResp  = respField("usage", "object", "{prompt_tokens, completion_tokens, total_tokens}")
)

// openAIOps document the OpenAI-compatible routes.
var openAIOps = []apiOp{
	{Method: "POST", Path: "/v1/completions", Summary: "OpenAI completions: fill in the middle with suffix, else continue a raw prompt",
		Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + openAI422Doc + "With suffix (even empty) the model fills in the middle, prompt being the text before the cursor; " +
			"without it prompt is the model's whole input, special tokens included. Each choice is a completion query stored as " +
			"the user's consent allows, with client \"openai\" (\"continue\" when the User-Agent names Continue); a chat model " +
			"answers a prompt without suffix, unstored. " + openAIGenDoc + " A body with \"segments\" is Tabby's completion request " +
			"(language, segments {prefix, suffix, filepath, git_url, declarations, relevant_snippets_from_changed_files, " +
			"relevant_snippets_from_recently_opened_files, clipboard, edit_history}, mode standard or next_edit_suggestion, " +
			"temperature, seed), answered {id: \"cmpl-<meta_query_id>\", choices: [{index, text, replaceRange?}], mode} and stored " +
			"with client \"tabby\". A prompt in Zed's Zeta next-edit format (its \"### User Excerpt:\" heading and " +
			"editable-region markers) is stored as a next-edit of client \"zed\" (POST /v1/next-edit).",
		Body: append([]apiField{reqField("prompt", "string", "the text before the cursor, or the whole prompt; a list of prompts "+
			"answers each"), optField("suffix", "string", "the text after the cursor: fill in the middle"), openAIModelField,
			optField("n", "integer", "choices per prompt (prompts times n at most 16), run one after another so that they share the "+
				"prompt's KV cache"), optField("seed", "integer", "choice i samples with seed+i"),
			optField("stream_options", "object", "{include_usage}: a last chunk with the usage")}, openAISampleField...),
		Resp: []apiField{respField("id", "string", ""), respField("object", "string", "\"text_completion\""), respField("created", "integer", ""),
			respField("model", "string", ""), respField("choices", "[]object", "{text, index, logprobs: null, finish_reason: stop or length}"),
			openAIUsageResp},
		Errors: openAIGenErrors},
	{Method: "POST", Path: "/v1/fim/completions", Summary: "Mistral-style fill in the middle (Continue's Mistral provider)",
		Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + openAI422Doc + "Run and stored as POST /v1/completions with a suffix; answered in the chat completion's shape, the " +
			"filled middle as the assistant's message. " + openAIGenDoc + " A stream's last chunk carries the usage.",
		Body: append([]apiField{reqField("prompt", "string", "the text before the cursor"),
			optField("suffix", "string", "the text after the cursor"), openAIModelField,
			optField("random_seed", "integer", "the sampler's seed")}, openAISampleField...),
		Resp: []apiField{respField("id", "string", ""), respField("object", "string", "\"chat.completion\""), respField("created", "integer", ""),
			respField("model", "string", ""), respField("choices", "[]object", openAIChoiceResp), openAIUsageResp},
		Errors: openAIGenErrors},
	{Method: "POST", Path: "/v1/chat/completions", Summary: "OpenAI chat completions on a chat model", Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + openAI422Doc + "The prompt is the model's own chat template (the server's system prompt when the messages have " +
			"none). The turn is answered but not stored: a stored chat belongs to a project, which an API key's session has not. " +
			openAIGenDoc,
		Body: append([]apiField{reqField("messages", "[]object", "{role: system, developer, user or assistant, content: a string or "+
			"a list of {type: text, text} parts}"), openAIModelField,
			optField("max_completion_tokens", "integer", "max_tokens under its newer name"),
			optField("n", "integer", "choices, run one after another (at most 16)"), optField("seed", "integer", "choice i samples with seed+i"),
			optField("stream_options", "object", "{include_usage}: a last chunk with the usage")}, openAISampleField...),
		Resp: []apiField{respField("id", "string", ""), respField("object", "string", "\"chat.completion\""), respField("created", "integer", ""),
			respField("model", "string", ""), respField("choices", "[]object", openAIChoiceResp), openAIUsageResp},
		Errors: openAIGenErrors},
	{Method: "GET", Path: "/v1/models", Summary: "OpenAI model list: the completion and chat models", Auth: ClassS, OK: 200,
		Doc:    openAIAuthDoc + "Each model's id is the name the other /v1 routes take.",
		Resp:   []apiField{respField("object", "string", "\"list\""), respField("data", "[]object", "{id, object: \"model\", created, owned_by}")},
		Errors: clientErrorDocs(openAIShape, nil)},
	{Method: "POST", Path: "/v1/embeddings", Summary: "OpenAI embeddings: mean-pooled vectors of texts, redacted first", Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + "Each text is redacted, then embedded by the named model (or, when none is named, the model retrieval uses), " +
			"mean-pooled over its first 512 tokens. Nothing is stored.",
		Body: []apiField{reqField("input", "string", "the text, or a list of texts (at most 256, none empty)"),
			optField("model", "string", "a completion or chat model; default: the embedding model"),
			optField("encoding_format", "string", "float (default) or base64 (little-endian float32s)")},
		Resp: []apiField{respField("object", "string", "\"list\""), respField("data", "[]object", "{object: \"embedding\", index, embedding}"),
			respField("model", "string", ""), respField("usage", "object", "{prompt_tokens, total_tokens}")},
		Errors: clientErrorDocs(openAIShape, map[int]string{400: "dimensions, token arrays, an unknown encoding_format, an empty text, more than 256 texts, or a model that cannot embed.",
			404: "The model does not exist.", 501: msgNoEmbeddings})},
}

// clientAPIOps document the OpenAI-compatible, Tabby, next-edit and
// ollama routes (openapi.go).
var clientAPIOps = append(append(append(openAIOps, tabbyOps...), nextEditOps...), ollamaOps...)
