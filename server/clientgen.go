package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
)

// What the editor-client APIs of openaiapi.go and ollamaapi.go share: one
// generation a client asks of a model, in the pipeline's terms (clientGen)
// and run through it (generate); the clients' error answers; their
// streams; and the client's name stored with the query.
//
// A completion model's generation is a completion query of the plugin's
// pipeline: the prompt and suffix are redacted before the model sees
// them, a running study's arm applies, and the query and its generation
// are stored as the user's consent allows (the context too: these
// clients cannot ask for it per request, so the user's consent alone
// decides). A chat model's generation is a chat turn that is answered but
// not stored: a stored chat belongs to a project, and an API key's
// session has none. Both stream redacted text only.

// clientGen is one generation an editor-client API asks of a model.
type clientGen struct {
	model RegisteredModel
	// client is meta_query.client (clientName).
	client string
	// prompt is the text before the cursor when fim; else, when raw, the
	// model's whole input (special tokens parsed, as the client formatted
	// it); else a chat model's user message.
	prompt, suffix string
	fim, raw       bool
	// system is a chat model's system message ("": the server's default);
	// messages, when set, are a chat turn and prompt is unused.
	system   string
	messages []chatMessage
	// maxTokens is the client's token limit (0: none); the server's limit
	// and a study arm's budget still apply.
	maxTokens int
	opts      samplingOpts
	stop      []string
	// kind is completionRequest.Kind ("next-edit": the prompt asks for a
	// next-edit suggestion); extra is context the client sent
	// (completionRequest.Extra) and fileName the file it is about.
	kind     string
	extra    []engine.Chunk
	fileName string
}

// samplingOpts are the sampler settings a client sent; nil keeps the
// server's.
type samplingOpts struct {
	temperature, topP, minP, repeatPenalty *float64
	topK, repeatLastN                      *int64
	// seed: a negative seed asks for a random one (ollama's convention).
	seed *int64
}

// apply sets p from the client's settings. Candidate i (n > 1) with a
// client seed gets seed+i, so that the candidates differ yet a request
// repeated with its seed gives the same ones.
func (o samplingOpts) apply(p *engine.SamplingParams, i int) {
	if o.temperature != nil {
		p.Temperature = float32(*o.temperature)
	}
	if o.topP != nil {
		p.TopP = float32(*o.topP)
	}
	if o.minP != nil {
		p.MinP = float32(*o.minP)
	}
	if o.repeatPenalty != nil {
		p.RepeatPenalty = float32(*o.repeatPenalty)
	}
	if o.topK != nil {
		p.TopK = int(*o.topK)
	}
	if o.repeatLastN != nil {
		p.RepeatLastN = int(*o.repeatLastN)
	}
	if o.seed != nil && *o.seed >= 0 {
		p.Seed = uint32(*o.seed) + uint32(i)
	}
}

// genResult is one generation's answer.
type genResult struct {
	text    string // redacted
	model   string // the model that answered (a study arm may pick another)
	stop    engine.StopReason
	timings engine.Timings
	// queryID is the stored completion query (uuid.Nil for a chat turn).
	queryID uuid.UUID
}

// finish is the OpenAI finish_reason and ollama done_reason: "length" when
// the token limit ended the text, else "stop".
func (r *genResult) finish() string {
	if r.stop == engine.StopLength {
		return "length"
	}
	return "stop"
}

// chatStops end a chat answer at the next turn of the fallback layouts,
// as the plugin's chat does.
var chatStops = []string{"<|im_end|>", "<|im_start|>", "\n### User"}

// generate runs candidate i of g (candidates differ only in their seed)
// and passes its redacted text to sink as it is generated (sink may be
// nil; see textStream).
func (s *Server) generate(ctx context.Context, p *Principal, g *clientGen, i int, sink func(text string, replace bool)) (*genResult, error) {
	if g.model.Chat {
		return s.generateChat(ctx, g, i, sink)
	}
	r := &completionRequest{ModelIDs: []int64{g.model.ID}, Context: contextData{Prefix: g.prompt, Suffix: g.suffix, FileName: g.fileName},
		StoreContext: true, StopSequences: g.stop, Client: g.client, Kind: g.kind, Extra: g.extra, Concurrent: true}
	r.Tune = func(req *engine.Request) {
		req.Raw = !g.fim
		// The client's stop strings and token limit end the text, as its API
		// promises, not the plugin's blank-line rule.
		req.Mode = engine.ModeMultiLine
		if g.kind == nextEditKind {
			// A next-edit writes the whole region back, longer than a
			// completion: it may take as many tokens as a chat answer.
			req.MaxTokens = max(req.MaxTokens, s.plugin.limits.ChatTokens)
		}
		if g.maxTokens > 0 && g.maxTokens < req.MaxTokens {
			req.MaxTokens = g.maxTokens
		}
		g.opts.apply(&req.Sampling, i)
	}
	// A study arm may run several models: the first that streams is the
	// one answered.
	var mu sync.Mutex
	streamed := int64(-1)
	var ts tokenSink
	if sink != nil {
		ts = func(id int64, text string, replace bool) {
			mu.Lock()
			defer mu.Unlock()
			if streamed < 0 {
				streamed = id
			}
			if id == streamed {
				sink(text, replace)
			}
		}
	}
	res, err := s.runCompletion(ctx, p, r, ts, nil, nil)
	if err != nil {
		return nil, err
	}
	out := &genResult{model: g.model.Name, stop: engine.StopWord, queryID: res.MetaQueryID}
	if len(res.Outcomes) == 0 {
		return out, nil // a study arm withholds completions from this request
	}
	var pick *modelOutcome
	for _, o := range res.Outcomes {
		if o.ok() && (pick == nil || o.id == streamed) {
			pick = o
		}
	}
	if pick == nil {
		return nil, outcomeError(res.Outcomes[0])
	}
	out.text, out.model, out.stop, out.timings = pick.text, pick.model.Name, pick.res.Stop, pick.res.Timings
	return out, nil
}

// generateChat runs candidate i of g on a chat model: a chat turn (or a
// raw prompt) redacted before the model sees it, answered, not stored.
func (s *Server) generateChat(ctx context.Context, g *clientGen, i int, sink func(text string, replace bool)) (*genResult, error) {
	redact := func(t string) string {
		out, _ := s.plugin.redactor.Text(ctx, pgText(t))
		return out
	}
	req := engine.Request{Raw: true, Sampling: withSeed(defaultSampling, s.plugin.seed()),
		MaxTokens: s.plugin.limits.ChatTokens, Stop: g.stop, CachePrompt: true}
	if g.raw {
		req.Prefix = redact(g.prompt)
	} else {
		system := defaultSystemPrompt
		if g.system != "" {
			system = redact(g.system)
		}
		msgs := []chatMessage{{"user", redact(g.prompt)}}
		if g.messages != nil {
			msgs = make([]chatMessage, 0, len(g.messages))
			for j, m := range g.messages {
				if j == 0 && m.Role == "system" {
					system = redact(m.Content)
					continue
				}
				msgs = append(msgs, chatMessage{m.Role, redact(m.Content)})
			}
		}
		req.Prefix = s.modelChatPrompt(g.model, system, msgs)
		req.Stop = append(slices.Clone(chatStops), g.stop...)
	}
	if g.maxTokens > 0 && g.maxTokens < req.MaxTokens {
		req.MaxTokens = g.maxTokens
	}
	g.opts.apply(&req.Sampling, i)
	var ts tokenSink
	if sink != nil {
		ts = func(_ int64, text string, replace bool) { sink(text, replace) }
	}
	o := s.runModels(ctx, []int64{g.model.ID}, chatTimeout, true, func(RegisteredModel) engine.Request { return req }, ts)[0]
	if !o.ok() {
		return nil, outcomeError(o)
	}
	return &genResult{text: o.text, model: o.model.Name, stop: o.res.Stop, timings: o.res.Timings}, nil
}

// outcomeError is the answer to a generation whose model gave none.
func outcomeError(o *modelOutcome) error {
	switch o.reason {
	case "overloaded":
		return fail(fiber.StatusTooManyRequests, MsgTooManyRequests)
	case "no worker":
		return fail(fiber.StatusServiceUnavailable, MsgNoWorker)
	case "timed out":
		return fail(fiber.StatusGatewayTimeout, "The model did not finish within the server's time limit.")
	case "unknown model":
		return &clientErr{status: fiber.StatusNotFound, msg: "The model is no longer served.", param: "model", code: "model_not_found"}
	case "deadline":
		// Refused before any work: a later try may find the model idle.
		return &clientErr{status: fiber.StatusServiceUnavailable, msg: deadlineMessage(o.err)}
	}
	return internal(MsgGenerateCompletionsError, fmt.Errorf("model %s: %s: %w", o.model.Name, o.reason, o.err))
}

// clientModel returns the completion or chat model a client names: its
// name, or (ollama's tag convention) its name followed by ":latest".
func (s *Server) clientModel(name string) (RegisteredModel, bool) {
	for _, n := range []string{name, strings.TrimSuffix(name, ":latest")} {
		if m, ok := s.plugin.models.ByName(n); ok && (m.Chat || m.Completion()) {
			return m, true
		}
	}
	return RegisteredModel{}, false
}

// clientModels are the models the editor-client APIs list: those that
// complete code or chat.
func (s *Server) clientModels() []RegisteredModel {
	var out []RegisteredModel
	for _, m := range s.plugin.models.List() {
		if m.Chat || m.Completion() {
			out = append(out, m)
		}
	}
	return out
}

// continueAgent matches a User-Agent that names Continue as a product
// ("Continue/1.2.3", any case).
var continueAgent = regexp.MustCompile(`(?i)(^|[\s(;,])continue(/|\s|;|\)|$)`)

// clientName is meta_query.client for a request of an editor-client API:
// "continue" when its User-Agent names Continue (Continue's
// requestOptions.headers can set one), else the API's name (api).
func clientName(c *fiber.Ctx, api string) string {
	if continueAgent.MatchString(c.Get(fiber.HeaderUserAgent)) {
		return "continue"
	}
	return api
}

// clientErr is an error an editor-client API answers in its own shape:
// the status, a message, the request field at fault and OpenAI's error
// code (both "" when none), and for a 422 the house's list of refused
// fields, which the answer carries beside its own shape ("detail").
type clientErr struct {
	status           int
	msg, param, code string
	detail           []fieldError
}

func (e *clientErr) Error() string { return e.msg }

// refuse is a 400 about the request field param: something the API
// defines that the server does not offer.
func refuse(param, msg string) error {
	return &clientErr{status: fiber.StatusBadRequest, msg: msg, param: param}
}

// clientError maps err to an editor-client API's answer, with the status
// and message the plugin API gives it. A request refused by the fields
// reader is a 422 whose message names the first refused field and the rule
// it broke, never its value; the detail list has the inputs redacted as
// every 422 has. route is logged with a 5xx.
func (s *Server) clientError(ctx context.Context, route string, err error) clientErr {
	var ce *clientErr
	if errors.As(err, &ce) {
		return *ce
	}
	status, body := s.errorResponse(ctx, err)
	var ve *validationError
	if errors.As(err, &ve) && len(ve.errs) > 0 {
		fe := ve.errs[0]
		out := clientErr{status: status, msg: "Invalid request body: " + fe.Msg, param: fieldPath(fe.Loc), detail: ve.errs}
		if out.param != "" {
			out.msg = fmt.Sprintf("Invalid '%s': %s", out.param, fe.Msg)
		}
		return out
	}
	var msg string
	if m, ok := body.(fiber.Map); ok {
		if msg, _ = m["message"].(string); msg == "" {
			msg, _ = m["detail"].(string)
		}
	}
	if status >= 500 && !errors.Is(err, errShuttingDown) {
		s.log.Error("request failed", slog.String("route", route), slog.Int("status", status), slog.String("error", err.Error()))
	}
	out := clientErr{status: status, msg: msg}
	switch status {
	case fiber.StatusUnauthorized:
		out.code = "invalid_api_key"
	case fiber.StatusTooManyRequests:
		out.code = "rate_limit_exceeded"
	}
	return out
}

// fieldPath names a field by its location: "stop", "stream_options.include_usage",
// "messages[2].content" ("" for the body itself, or a position in it).
func fieldPath(loc []any) string {
	if len(loc) > 1 {
		if _, pos := loc[1].(int); pos {
			return ""
		}
	}
	var b strings.Builder
	for _, part := range loc[min(1, len(loc)):] {
		switch v := part.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(v) + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}

// clientErrors answers the errors of the rest of a route's chain, its
// guard's included, with write: in the editor-client API's own shape.
func (s *Server) clientErrors(write func(c *fiber.Ctx, e clientErr) error) fiber.Handler {
	return func(c *fiber.Ctx) error {
		err := c.Next()
		if err == nil {
			return nil
		}
		e := s.clientError(c.UserContext(), c.Route().Path, err)
		if e.status == fiber.StatusServiceUnavailable {
			c.Set(fiber.HeaderRetryAfter, itoa(retryAfterUnavailable))
		}
		return write(c, e)
	}
}

// eventStream writes a streamed answer, each event flushed at once:
// server-sent events ("data: {...}" and a blank line, OpenAI) or lines of
// JSON (ollama). A failed write cancels the request: the client has left.
type eventStream struct {
	w      *bufio.Writer
	sse    bool
	cancel context.CancelFunc
	failed bool
}

// send writes v as one event.
func (es *eventStream) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	if es.sse {
		es.raw("data: " + string(b) + "\n\n")
	} else {
		es.raw(string(b) + "\n")
	}
}

// raw writes text as it is.
func (es *eventStream) raw(text string) {
	if es.failed {
		return
	}
	es.w.WriteString(text)
	if err := es.w.Flush(); err != nil {
		es.failed = true
		es.cancel()
	}
}

// streamAnswer answers c with a stream that run writes. Fasthttp writes
// the body after the handler has returned, so run gets its own context
// (Fiber never cancels a request's) and must not use c; the status and
// headers are sent before run starts, so a failure while it runs is an
// event of the stream.
func streamAnswer(c *fiber.Ctx, sse bool, run func(ctx context.Context, es *eventStream)) error {
	base := context.WithoutCancel(c.UserContext())
	if sse {
		c.Set(fiber.HeaderContentType, "text/event-stream")
	} else {
		c.Set(fiber.HeaderContentType, "application/x-ndjson")
	}
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithCancel(base)
		defer cancel()
		run(ctx, &eventStream{w: w, sse: sse, cancel: cancel})
	})
	return nil
}

// textStream turns a generation's redacted text, as the pipeline passes
// it (a delta, or rarely the whole text again after redaction changed
// what was sent), into the deltas a client appends. A client cannot take
// back text, so once the redacted text no longer starts with what was
// sent, nothing more of it is sent.
type textStream struct {
	sent     string
	diverged bool
	emit     func(delta string)
}

func (t *textStream) add(text string, replace bool) {
	if t.diverged {
		return
	}
	if replace {
		if !strings.HasPrefix(text, t.sent) {
			t.diverged = true
			return
		}
		text = text[len(t.sent):]
	}
	if text == "" {
		return
	}
	t.sent += text
	t.emit(text)
}

// finish sends what of the final text was not sent yet: the pipeline holds
// back the text after the last whitespace until the generation ends.
func (t *textStream) finish(final string) { t.add(final, true) }

// optSeed reads an optional integer seed of any sign.
func optSeed(f *fields, name string) *int64 {
	if !f.has(name) {
		return nil
	}
	if v, ok := f.integerIn(name, false, math.MinInt64, math.MaxInt64); ok {
		return &v
	}
	return nil
}

// optInt reads an optional integer in [lo, hi].
func optInt(f *fields, name string, lo, hi int64) *int64 {
	if !f.has(name) {
		return nil
	}
	if v, ok := f.integerIn(name, false, lo, hi); ok {
		return &v
	}
	return nil
}

// stopList reads stop strings: a string or a list of strings. Empty
// strings are dropped: they would stop every generation before it starts.
func stopList(f *fields, name string) []string {
	raw, ok := f.get(name, false)
	if !ok {
		return nil
	}
	var list []string
	if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
		list = f.strList(name, false)
	} else if s, ok := f.str(name, false, 0, 0); ok {
		list = []string{s}
	}
	return slices.DeleteFunc(list, func(s string) bool { return s == "" })
}
