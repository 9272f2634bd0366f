package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/password"
	"github.com/code4me/code4me/models"
)

// The llama.cpp server's API (llama-server), so that llama.vim, llama.vscode
// and other clients written for it work unchanged: POST /infill and POST
// /completion, GET /health, /props and /slots. Completions take the
// plugin API's pipeline (runCompletion): secrets are redacted before a model
// sees the text, a running study's arm applies, and each answer is stored as
// a query of its own (meta_query.client names the client, llamaClient) as far
// as the user's consent allows.
//
// Errors are llama-server's: {"error": {"code", "message", "type"}} with the
// HTTP status as code (llamaErrors). A 422 also carries the house's
// {"detail": [...]} naming each bad field, so the same body serves both.

// llamaRoutes registers the llama.cpp API at the root, where its clients
// look for it.
func (s *Server) llamaRoutes() {
	s.app.Post("/infill", s.llamaErrors, s.openGuard(ClassS), s.llamaInfill)
	s.app.Post("/completion", s.llamaErrors, s.openGuard(ClassS), s.llamaCompletion)
	s.app.Get("/health", s.llamaErrors, s.guard(ClassNone), s.llamaHealth)
	s.app.Get("/props", s.llamaErrors, s.openGuard(ClassA), s.llamaProps)
	s.app.Get("/slots", s.llamaErrors, s.openGuard(ClassA), s.llamaSlots)
}

// Limits of a llama request.
const (
	llamaMaxCandidates = 8 // n_cmpl
	llamaMaxMS         = 10 * 60 * 1000
)

// llamaRequest is a parsed /infill or /completion body.
type llamaRequest struct {
	raw bool // /completion: prompt is the whole, client-formatted prompt

	prefix, suffix, prompt string
	extra                  []engine.Chunk

	nPredict    int // < 0: the server's limit; 0: only evaluate the prompt
	nIndent     int
	stop        []string
	sampling    engine.SamplingParams
	seed        uint32
	hasSeed     bool
	samplers    []string // the samplers honoured, for generation_settings
	cachePrompt bool
	tMaxPrompt  time.Duration
	tMaxPredict time.Duration
	fields      []string // response_fields
	candidates  int      // n_cmpl
	model       string
	stream      bool

	// What tells the clients apart (llamaClient).
	sentFields, sentTMaxPrompt, sentNCmpl bool
}

// llamaDefaults are llama-server's sampling defaults, used for what a
// request does not set.
var llamaDefaults = engine.SamplingParams{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1, RepeatLastN: 64}

// llamaSamplerChars are the one-letter names of llama-server's samplers,
// which "samplers" may give as one string ("kpt").
var llamaSamplerChars = map[rune]string{'d': "dry", 'k': "top_k", 'y': "typ_p", 'p': "top_p", 'm': "min_p",
	'x': "xtc", 't': "temperature", 'i': "infill", 'e': "penalties", 's': "top_n_sigma"}

// parseLlamaRequest reads an /infill (raw false) or /completion (raw true)
// body. Fields llama-server takes that change nothing here (id_slot, lora,
// and any other) are ignored.
func parseLlamaRequest(f *fields, raw bool) *llamaRequest {
	r := &llamaRequest{raw: raw, nPredict: -1, cachePrompt: true, candidates: 1, sampling: llamaDefaults}
	if raw {
		r.prompt, _ = f.str("prompt", true, 0, 0)
	} else {
		r.prefix, _ = f.str("input_prefix", true, 0, 0)
		r.suffix, _ = f.str("input_suffix", true, 0, 0)
		if f.has("prompt") {
			r.prompt, _ = f.str("prompt", false, 0, 0)
		}
		for _, cf := range f.objectList("input_extra", false) {
			var c engine.Chunk
			c.Text, _ = cf.str("text", true, 0, 0)
			if cf.has("filename") {
				c.Path, _ = cf.str("filename", false, 0, 0)
			}
			r.extra = append(r.extra, c)
		}
	}
	if n, ok := f.integerIn("n_predict", false, -2, math.MaxInt32); ok {
		r.nPredict = int(n)
	}
	if n, ok := f.integerIn("n_indent", false, 0, 1024); ok {
		r.nIndent = int(n)
	}
	r.stop = f.strList("stop", false)
	r.readSampling(f)
	r.cachePrompt = f.optBool("cache_prompt", true)
	r.stream = f.optBool("stream", false)
	if n, ok := f.integerIn("t_max_prompt_ms", false, math.MinInt32, llamaMaxMS); ok && n > 0 {
		r.tMaxPrompt = time.Duration(n) * time.Millisecond
	}
	if n, ok := f.integerIn("t_max_predict_ms", false, math.MinInt32, llamaMaxMS); ok && n > 0 {
		r.tMaxPredict = time.Duration(n) * time.Millisecond
	}
	r.fields = f.strList("response_fields", false)
	if n, ok := f.integerIn("n_cmpl", false, 1, llamaMaxCandidates); ok {
		r.candidates = int(n)
	}
	if f.has("model") {
		r.model, _ = f.str("model", false, 0, 0)
	}
	r.sentFields, r.sentTMaxPrompt, r.sentNCmpl = f.has("response_fields"), f.has("t_max_prompt_ms"), f.has("n_cmpl")
	return r
}

// readSampling reads the sampler settings. A "samplers" list limits the
// chain to the samplers it names, as in llama-server: those of the engine
// that it leaves out are neutral (no top-k, top-p or min-p cut, no
// repetition penalty, and temperature 1: the draw from the model's own
// distribution that ends llama-server's chain). Samplers the engine does
// not have (infill, dry, typ_p, xtc, top_n_sigma) are accepted and skipped.
func (r *llamaRequest) readSampling(f *fields) {
	p := &r.sampling
	if n, ok := f.integerIn("top_k", false, math.MinInt32, math.MaxInt32); ok {
		p.TopK = max(int(n), 0) // <= 0: off
	}
	if v := f.optFloat("top_p", 0, 1); v != nil {
		p.TopP = float32(*v)
	}
	if v := f.optFloat("min_p", 0, 1); v != nil {
		p.MinP = float32(*v)
	}
	if v := f.optFloat("temperature", math.Inf(-1), math.Inf(1)); v != nil {
		p.Temperature = float32(max(*v, 0)) // <= 0: greedy
	}
	if v := f.optFloat("repeat_penalty", 0, math.Inf(1)); v != nil {
		p.RepeatPenalty = float32(*v)
	}
	if n, ok := f.integerIn("repeat_last_n", false, -1, math.MaxInt32); ok {
		p.RepeatLastN = int(n)
	}
	if n, ok := f.integerIn("seed", false, -1, math.MaxUint32); ok && n >= 0 {
		r.seed, r.hasSeed = uint32(n), true // -1: a random seed
	}
	r.samplers = []string{"penalties", "top_k", "top_p", "min_p", "temperature"}
	if !f.has("samplers") {
		return
	}
	raw, _ := f.get("samplers", false)
	var names []string
	var chars string
	if err := json.Unmarshal(raw, &chars); err == nil {
		for _, c := range chars {
			if name, ok := llamaSamplerChars[c]; ok {
				names = append(names, name)
			}
		}
	} else {
		names = f.strList("samplers", false)
	}
	on := map[string]bool{}
	r.samplers = []string{}
	for _, n := range names {
		on[n] = true
		r.samplers = append(r.samplers, n)
	}
	if !on["top_k"] {
		p.TopK = 0
	}
	if !on["top_p"] {
		p.TopP = 1
	}
	if !on["min_p"] {
		p.MinP = 0
	}
	if !on["temperature"] {
		p.Temperature = 1
	}
	if !on["penalties"] {
		p.RepeatPenalty = 1
	}
}

// llamaClient names the client in meta_query.client. Only /infill is told
// apart: llama.vim sends every request with curl (User-Agent "curl/…") and
// always asks for response_fields; llama.vscode sends from Node (axios or
// fetch, never curl), always with t_max_prompt_ms or n_cmpl and never with
// response_fields. Anything else, and every /completion request, is
// "llama.cpp-api".
func llamaClient(userAgent string, r *llamaRequest) string {
	curl := strings.HasPrefix(userAgent, "curl/")
	switch {
	case r.raw:
	case curl && r.sentFields:
		return "llama.vim"
	case !curl && !r.sentFields && (r.sentTMaxPrompt || r.sentNCmpl):
		return "llama.vscode"
	}
	return "llama.cpp-api"
}

// POST /infill
func (s *Server) llamaInfill(c *fiber.Ctx) error { return s.llamaServe(c, false) }

// POST /completion
func (s *Server) llamaCompletion(c *fiber.Ctx) error { return s.llamaServe(c, true) }

// llamaServe parses, picks the model and answers one request: an object,
// an array of n_cmpl objects, or with stream true a server-sent event
// stream.
func (s *Server) llamaServe(c *fiber.Ctx, raw bool) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	r := parseLlamaRequest(f, raw)
	if err := f.err(); err != nil {
		return err
	}
	m, err := s.llamaModel(c.UserContext(), r.model, !raw)
	if err != nil {
		return err
	}
	run := &llamaRun{s: s, p: principal(c), r: r, m: m, client: llamaClient(c.Get(fiber.HeaderUserAgent), r)}
	if !raw && r.prompt != "" {
		run.middle, _ = s.plugin.redactor.Text(c.UserContext(), pgText(r.prompt))
	}
	if r.stream {
		return run.stream(c)
	}
	ctx := c.UserContext()
	var out []map[string]any
	for i := range r.candidates {
		st := timing(c)
		if i > 0 {
			st = nil // the stage times are the first candidate's
		}
		res, _, err := run.candidate(ctx, i, st, nil)
		if err != nil {
			if i == 0 {
				return err
			}
			s.log.Warn("llama: candidate failed", slog.Int("candidate", i), slog.String("error", err.Error()))
			break // the candidates so far are the answer
		}
		out = append(out, res)
	}
	setServerTiming(c)
	if r.candidates == 1 {
		return c.JSON(out[0])
	}
	return c.JSON(out)
}

// llamaModel returns the model a request names, or by default the first
// completion model. A model that cannot fill in the middle answers /infill
// 501, as llama-server does for a vocabulary without FIM tokens; a chat
// model cannot serve /completion either (the completion pipeline runs only
// completion models).
func (s *Server) llamaModel(ctx context.Context, name string, infill bool) (RegisteredModel, error) {
	if name == "" {
		for _, m := range s.plugin.models.List() {
			if m.Completion() && s.plugin.runner != nil {
				return m, nil
			}
		}
		return RegisteredModel{}, errLlamaLoading
	}
	m, ok := s.plugin.models.ByName(name)
	if !ok || s.plugin.runner == nil {
		var names []string
		for _, m := range s.plugin.models.List() {
			names = append(names, m.Name)
		}
		return m, invalid("value_error", []any{"body", "model"},
			fmt.Sprintf("Value error, no model named %q; the models are: %s", name, strings.Join(names, ", ")), name)
	}
	if !m.Completion() {
		if infill {
			return m, errLlamaNoInfill
		}
		return m, &llamaError{status: fiber.StatusBadRequest, typ: "invalid_request_error",
			msg: fmt.Sprintf("%s is a chat model: /completion serves completion models", m.Name)}
	}
	return m, nil
}

// llamaRun is one request's candidates.
type llamaRun struct {
	s      *Server
	p      *Principal
	r      *llamaRequest
	m      RegisteredModel
	client string
	middle string // the prompt field of /infill, redacted
}

// candidate runs candidate i through the completion pipeline and renders
// its answer; text is the completion. Candidates are sequential requests of the same prompt, so the
// second and later find the first one's prompt in the KV cache and
// evaluate only its last token; each gets its own seed (the request's seed
// plus i, or a random one) so that they differ. Each is a query of its own,
// with its own generation row.
func (lr *llamaRun) candidate(ctx context.Context, i int, st *stageTimes, sink tokenSink) (out map[string]any, text string, err error) {
	r := lr.r
	cr := &completionRequest{
		ModelIDs: []int64{lr.m.ID},
		Context:  contextData{Prefix: r.prefix + r.prompt, Suffix: r.suffix},
		// Stored when the user's consent allows it: these clients have
		// no flag of their own.
		StoreContext:  true,
		StopSequences: r.stop,
		Client:        lr.client,
		Extra:         r.extra,
		Tune:          func(req *engine.Request) { lr.tune(req, i) },
		// Requests never supersede one another: these clients cancel by
		// closing the connection.
		Concurrent: true,
	}
	if r.raw {
		cr.Context = contextData{Prefix: r.prompt}
	}
	if r.nPredict == 0 {
		cr.Trigger = "warm-up"
	}
	res, err := lr.s.runCompletion(ctx, lr.p, cr, sink, st, nil)
	if err != nil {
		return nil, "", err
	}
	var o *modelOutcome
	if len(res.Outcomes) > 0 {
		o = res.Outcomes[0]
	}
	switch {
	case o == nil:
		// A study arm answered without a model (a prefix too short for
		// it): an empty completion.
		return lr.result(i, nil), "", nil
	case o.ok():
		return lr.result(i, o), o.text, nil
	case errors.Is(o.err, engine.ErrDeadline):
		return nil, "", llamaDeadline(o.err)
	case errors.Is(o.err, engine.ErrPromptBudget):
		// t_max_prompt_ms passed while the prompt was evaluated: what was
		// evaluated stays in the KV cache for the next request.
		return lr.result(i, nil), "", nil
	case errors.Is(o.err, engine.ErrNoFIM):
		return nil, "", errLlamaNoInfill
	case errors.Is(o.err, engine.ErrPromptTooLong):
		return nil, "", &llamaError{status: fiber.StatusBadRequest, typ: "exceed_context_size_error",
			msg: "the request exceeds the available context size"}
	case o.reason == "no worker":
		return nil, "", fail(fiber.StatusServiceUnavailable, MsgNoWorker)
	case o.reason == "overloaded":
		return nil, "", fail(fiber.StatusTooManyRequests, MsgTooManyRequests)
	}
	return nil, "", internal("completion failed: "+o.reason, o.err)
}

// llamaDeadline answers a request the engine refused at once because it
// estimated that the request would end after its deadline: 503
// unavailable_error (with Retry-After), as llama-server answers when it
// cannot take a request now, since a later try may find the model idle;
// the message gives the estimate when the engine did.
func llamaDeadline(err error) *llamaError {
	return &llamaError{status: fiber.StatusServiceUnavailable, typ: "unavailable_error", msg: deadlineMessage(err)}
}

// deadlineMessage tells a client that the engine refused its request for
// its deadline, with the engine's estimate when it gave one.
func deadlineMessage(err error) string {
	msg := "The server cannot answer before the request's deadline"
	if de := (*engine.DeadlineError)(nil); errors.As(err, &de) {
		msg += fmt.Sprintf(" (estimated %.1f s, %.1f s left)", de.Estimate.Seconds(), de.Left.Seconds())
	}
	return msg
}

// tune applies the request's settings to candidate i's engine request. The
// token limit is the smaller of n_predict and the server's (or the study
// arm's); every line rule but n_indent is off, as in llama-server.
func (lr *llamaRun) tune(req *engine.Request, i int) {
	r := lr.r
	switch {
	case r.raw:
		req.Raw = true
	case strings.HasSuffix(req.Prefix, lr.middle):
		// prompt, the cursor line typed so far, goes after the FIM middle
		// token. The pipeline redacted prefix and prompt as one text; when
		// that changed their border, all of it stays before the suffix.
		req.Prefix, req.Middle = strings.TrimSuffix(req.Prefix, lr.middle), lr.middle
	}
	req.KeepCursorLine = true
	if r.nPredict >= 0 && r.nPredict < req.MaxTokens {
		req.MaxTokens = r.nPredict
	}
	seed := req.Sampling.Seed
	if r.hasSeed {
		seed = r.seed + uint32(i)
	}
	req.Sampling = r.sampling
	req.Sampling.Seed = seed
	req.Mode = engine.ModeMultiLine
	req.NIndent = r.nIndent
	req.TMaxPrompt, req.TMaxPredict = r.tMaxPrompt, r.tMaxPredict
	req.CachePrompt = r.cachePrompt
}

// llamaStopTypes map the engine's stop reasons onto llama-server's
// stop_type. A stop string is "word"; the line rules (n_indent,
// t_max_predict_ms) are "limit", as there.
func llamaStopType(res *engine.Result) string {
	switch {
	case res.Stop == engine.StopEOS:
		return "eos"
	case res.Stop == engine.StopWord && res.StoppingWord != "":
		return "word"
	}
	return "limit"
}

// result renders candidate i as llama-server's answer, filtered by
// response_fields. o nil is an empty completion (nothing generated).
func (lr *llamaRun) result(i int, o *modelOutcome) map[string]any {
	var res engine.Result
	text, maxTokens, seed := "", lr.r.nPredict, lr.r.seed
	name := lr.m.Name
	if o != nil {
		res, text, maxTokens, seed, name = *o.res, o.text, o.maxTokens, o.seed, o.model.Name
	}
	t := res.Timings
	perToken := func(ms float64, n int) (float64, float64) {
		if n == 0 || ms <= 0 {
			return 0, 0
		}
		return ms / float64(n), 1e3 * float64(n) / ms
	}
	promptPer, promptRate := perToken(t.PrefillMS, t.EvaluatedTokens)
	predPer, predRate := perToken(t.DecodeMS, t.GeneratedTokens)
	stopType := "limit"
	if o != nil {
		stopType = llamaStopType(&res)
	}
	if lr.r.stream {
		text = "" // streamed already
	}
	out := map[string]any{
		"index": i, "content": text, "tokens": []int{}, "id_slot": res.Slot, "stop": true, "model": name,
		"tokens_predicted": t.GeneratedTokens, "tokens_evaluated": t.PromptTokens,
		"generation_settings": lr.settings(maxTokens, seed),
		"has_new_line":        strings.Contains(text, "\n"), "truncated": res.Truncated,
		"stop_type": stopType, "stopping_word": res.StoppingWord,
		"tokens_cached": t.PromptTokens + t.GeneratedTokens,
		"timings": map[string]any{
			"cache_n": t.CachedTokens, "prompt_n": t.EvaluatedTokens, "prompt_ms": t.PrefillMS,
			"prompt_per_token_ms": promptPer, "prompt_per_second": promptRate,
			"predicted_n": t.GeneratedTokens, "predicted_ms": t.DecodeMS,
			"predicted_per_token_ms": predPer, "predicted_per_second": predRate,
		},
	}
	if tr := res.Trimmed; tr.Any() {
		// What the prompt's time budget (t_max_prompt_ms) dropped.
		out["code4me_trimmed"] = map[string]any{"extra_chunks": tr.ExtraChunks, "prefix_tokens": tr.PrefixTokens}
	}
	return llamaFields(out, lr.r.fields)
}

// settings is generation_settings: what the engine request used.
func (lr *llamaRun) settings(maxTokens int, seed uint32) map[string]any {
	r, p := lr.r, lr.r.sampling
	return map[string]any{
		"n_predict": maxTokens, "seed": seed, "temperature": p.Temperature, "top_k": p.TopK, "top_p": p.TopP,
		"min_p": p.MinP, "repeat_penalty": p.RepeatPenalty, "repeat_last_n": p.RepeatLastN, "samplers": r.samplers,
		"stop": nonNil(r.stop), "n_indent": r.nIndent, "t_max_prompt_ms": r.tMaxPrompt.Milliseconds(),
		"t_max_predict_ms": r.tMaxPredict.Milliseconds(), "cache_prompt": r.cachePrompt, "n_cmpl": r.candidates,
	}
}

// llamaFields keeps only the response_fields of out (none listed: all of
// it). A path into a nested object ("timings/prompt_n") comes back as a
// top-level key of that exact name, as llama-server answers it and
// llama.vim reads it; a path that names nothing is left out.
func llamaFields(out map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return out
	}
	kept := map[string]any{}
	for _, path := range fields {
		var v any = out
		for _, key := range strings.Split(path, "/") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			if v, ok = m[key]; !ok {
				break
			}
		}
		if v != nil {
			kept[path] = v
		}
	}
	return kept
}

// stream answers with server-sent events as llama-server does: a
// "data: {...}" event per piece of redacted text ({index, content, stop:
// false}), then the candidate's answer with stop true and its content
// empty, for each candidate in turn. Text is released once it is redacted
// (up to the last whitespace while the model runs; the rest when it ends).
// The status and headers go before the models run, so a failure after
// them is an "error: {...}" event. Text that redaction rewrote after it
// was sent (rare: a secret completed by later tokens) comes again whole in
// an event with "replace": true.
func (lr *llamaRun) stream(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	// Fiber returns from the handler before the body is written, and does
	// not cancel the request's context when the client leaves: the models
	// stop at the first write that fails.
	base := context.WithoutCancel(c.UserContext())
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithCancel(base)
		defer cancel()
		failed := false
		send := func(event string, v any) {
			b, _ := json.Marshal(v)
			if failed {
				return
			}
			w.WriteString(event + ": ")
			w.Write(b)
			w.WriteString("\n\n")
			if err := w.Flush(); err != nil {
				failed = true
				cancel()
			}
		}
		for i := range lr.r.candidates {
			sent := ""
			piece := func(text string, replace bool) {
				ev := map[string]any{"index": i, "content": text, "tokens": []int{}, "stop": false, "id_slot": -1}
				if replace {
					ev["replace"] = true
					sent = text
				} else {
					sent += text
				}
				send("data", ev)
			}
			sink := func(_ int64, text string, replace bool) { piece(text, replace) }
			res, text, err := lr.candidate(ctx, i, nil, sink)
			if err != nil {
				_, body := lr.s.llamaErrorBody(ctx, err)
				send("error", body)
				return
			}
			switch {
			case !strings.HasPrefix(text, sent):
				piece(text, true)
			case len(text) > len(sent):
				piece(text[len(sent):], false)
			}
			send("data", res)
			if failed {
				return
			}
		}
	})
	return nil
}

// llamaError is an error answered in llama-server's shape with a type its
// status alone does not give.
type llamaError struct {
	status   int
	typ, msg string
}

func (e *llamaError) Error() string { return e.msg }

var (
	// errLlamaNoInfill is llama-server's answer for a model without FIM
	// tokens.
	errLlamaNoInfill = &llamaError{status: fiber.StatusNotImplemented, typ: "not_supported_error",
		msg: "Infill is not supported by this model"}
	// errLlamaLoading answers while no completion model is served (the
	// worker tier's workers not up yet).
	errLlamaLoading = &llamaError{status: fiber.StatusServiceUnavailable, typ: "unavailable_error", msg: "Loading model"}
)

// llamaErrorType is llama-server's error type for a status.
func llamaErrorType(status int) string {
	switch status {
	case fiber.StatusBadRequest, fiber.StatusUnprocessableEntity, fiber.StatusRequestEntityTooLarge:
		return "invalid_request_error"
	case fiber.StatusUnauthorized:
		return "authentication_error"
	case fiber.StatusForbidden:
		return "permission_error"
	case fiber.StatusNotFound:
		return "not_found_error"
	case fiber.StatusNotImplemented:
		return "not_supported_error"
	case fiber.StatusTooManyRequests, fiber.StatusServiceUnavailable:
		return "unavailable_error"
	}
	return "server_error"
}

// llamaErrors answers the errors of the llama routes (their guard's
// included) in llama-server's shape; errorResponse decides the status and
// the message, as for every route.
func (s *Server) llamaErrors(c *fiber.Ctx) error {
	err := c.Next()
	if err == nil {
		return nil
	}
	status, body := s.llamaErrorBody(c.UserContext(), err)
	if status == fiber.StatusServiceUnavailable {
		c.Set(fiber.HeaderRetryAfter, itoa(retryAfterUnavailable))
	}
	if status >= 500 && status != fiber.StatusNotImplemented && status != fiber.StatusServiceUnavailable {
		s.log.Error("request failed", slog.String("method", c.Method()), slog.String("route", c.Route().Path),
			slog.Int("status", status), slog.String("error", err.Error()))
	}
	return c.Status(status).JSON(body)
}

// llamaErrorBody is err's status and llama-server body. A 422 keeps the
// house's detail list beside it.
func (s *Server) llamaErrorBody(ctx context.Context, err error) (int, map[string]any) {
	var le *llamaError
	if errors.As(err, &le) {
		return le.status, map[string]any{"error": map[string]any{"code": le.status, "message": le.msg, "type": le.typ}}
	}
	status, b := s.errorResponse(ctx, err)
	house, _ := b.(fiber.Map)
	msg, _ := house["message"].(string)
	out := map[string]any{}
	switch d := house["detail"].(type) {
	case string:
		msg = d
	case []fieldError:
		var parts []string
		for _, fe := range d {
			var loc []string
			for _, l := range fe.Loc[min(1, len(fe.Loc)):] { // without "body"
				loc = append(loc, fmt.Sprint(l))
			}
			parts = append(parts, strings.Join(loc, ".")+": "+fe.Msg)
		}
		msg = strings.Join(parts, "; ")
		out["detail"] = d
	}
	out["error"] = map[string]any{"code": status, "message": msg, "type": llamaErrorType(status)}
	return status, out
}

// GET /health: {"status": "ok"} while a completion model is served; 503
// "Loading model" while none is (the worker tier before its workers are up).
func (s *Server) llamaHealth(c *fiber.Ctx) error {
	if _, err := s.llamaModel(c.UserContext(), "", false); err != nil {
		return err
	}
	if len(s.llamaSlotList(c.UserContext(), "")) == 0 && s.plugin.engine == nil {
		return errLlamaLoading // models known, but no live worker serves one
	}
	return c.JSON(fiber.Map{"status": "ok"})
}

// llamaQueryModel is the model ?model= names (any model, chat models
// too), by default the first completion model.
func (s *Server) llamaQueryModel(c *fiber.Ctx) (RegisteredModel, error) {
	q := queryFields(c)
	if !q.has("model") {
		return s.llamaModel(c.UserContext(), "", false)
	}
	name, _ := q.str("model", false, 0, 0)
	if err := q.err(); err != nil {
		return RegisteredModel{}, err
	}
	if m, ok := s.plugin.models.ByName(name); ok && s.plugin.runner != nil {
		return m, nil
	}
	return RegisteredModel{}, invalid("value_error", []any{"query", "model"}, fmt.Sprintf("Value error, no model named %q", name), name)
}

// GET /props: the model's default generation settings, slots and build.
func (s *Server) llamaProps(c *fiber.Ctx) error {
	m, err := s.llamaQueryModel(c)
	if err != nil {
		return err
	}
	slots := s.llamaSlotList(c.UserContext(), m.Name)
	var nCtx any
	if len(slots) > 0 {
		nCtx = slots[0]["n_ctx"]
	}
	build := s.plugin.build
	if build == "" {
		build = "code4me server " + s.plugin.version
	}
	return c.JSON(fiber.Map{
		"default_generation_settings": fiber.Map{"id": 0, "id_task": -1, "n_ctx": nCtx, "model": m.Name, "is_processing": false,
			"params": fiber.Map{"n_predict": s.plugin.limits.CompletionTokens, "temperature": llamaDefaults.Temperature,
				"top_k": llamaDefaults.TopK, "top_p": llamaDefaults.TopP, "min_p": llamaDefaults.MinP,
				"repeat_penalty": llamaDefaults.RepeatPenalty, "repeat_last_n": llamaDefaults.RepeatLastN, "seed": -1,
				"stop": []string{}, "n_indent": 0, "samplers": []string{"penalties", "top_k", "top_p", "min_p", "temperature"}}},
		"total_slots": len(slots), "model_alias": m.Name, "model_path": m.Name, "modalities": fiber.Map{"vision": false, "audio": false},
		"build_info": build, "infill": m.Completion(),
	})
}

// GET /slots: each slot of the model with id, is_processing and n_ctx (the
// KV cells of one slot). The engine counts busy slots rather than naming
// them, so is_processing marks that many, lowest ids first (where the
// engine keeps the slots in use). On the worker tier the slots are those of
// every live worker serving the model, numbered one after the other; the
// worker registry does not hold n_ctx, which is null there.
func (s *Server) llamaSlots(c *fiber.Ctx) error {
	m, err := s.llamaQueryModel(c)
	if err != nil {
		return err
	}
	return c.JSON(s.llamaSlotList(c.UserContext(), m.Name))
}

// llamaSlotList lists the slots of model (every model's when empty).
func (s *Server) llamaSlotList(ctx context.Context, model string) []map[string]any {
	out := []map[string]any{}
	add := func(name string, slots, busy int, nCtx any) {
		for i := range slots {
			out = append(out, map[string]any{"id": len(out), "id_task": -1, "n_ctx": nCtx, "is_processing": i < busy, "model": name})
		}
	}
	if s.plugin.engine != nil {
		for _, st := range s.plugin.engine.Stats() {
			if model == "" || st.Model == model {
				add(st.Model, st.Slots, st.SlotsBusy, st.NCtxPerSlot)
			}
		}
		return out
	}
	rr, ok := s.plugin.runner.(remoteRunner)
	if !ok {
		return out
	}
	rows, err := rr.c.Registry(ctx)
	if err != nil {
		s.log.Warn("llama: worker registry", slog.String("error", err.Error()))
		return out
	}
	for _, w := range rows {
		if w.Alive && !w.Draining && (model == "" || w.ModelName == model) {
			add(w.ModelName, int(w.Slots), int(w.SlotsBusy), nil)
		}
	}
	return out
}

// Open access (`code4me serve --open`): one user on the machine itself
// needs no key. The local user (OPEN_USER) gets an API key with the
// completions scope at start-up, held only in memory; a request to an
// editor-client route that carries no credentials at all and comes from
// this machine acts with that key, so it is authenticated, rate-limited
// and stored as the local user's. "From this machine" is strict, since a
// local proxy or a web page could otherwise borrow the access: the peer
// address is loopback, the request names no forwarded client
// (X-Forwarded-For or -Host, Forwarded, X-Real-IP), its Host is a loopback name
// (a web page reached by DNS rebinding has its own), and it has no Origin
// header (browsers send one; editors do not). serve refuses --open unless
// every listener is on a loopback address.
type openAccess struct {
	key atomic.Pointer[string]
}

// openKeyName names the local user's key in its key list. Each start
// revokes the previous one.
const openKeyName = "serve --open (local access)"

// OpenLocal turns open access on for the user with email, creating the
// user when there is none (with a random password: it signs in only once
// someone resets it).
func (s *Server) OpenLocal(ctx context.Context, email string) error {
	email, err := normalizeEmail(email)
	if err != nil {
		return fmt.Errorf("open access: OPEN_USER: %w", err)
	}
	u, err := s.q.UserGetByEmail(ctx, s.db, email)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		pw, _, _ := auth.NewAPIKey() // 32 random bytes, as text
		hash, herr := password.Hash(ctx, pw)
		if herr != nil {
			return fmt.Errorf("open access: %w", herr)
		}
		pref, _ := json.Marshal(defaultPreference)
		u, err = s.q.UserCreate(ctx, s.db, models.UserCreateParams{Email: email, Name: "Local user", PasswordHash: hash,
			ConfigID: 1, Preference: pref})
	}
	if err != nil {
		return fmt.Errorf("open access: user %s: %w", email, err)
	}
	keys, err := s.q.ApiKeyListByUser(ctx, s.db, u.UserID)
	if err != nil {
		return fmt.Errorf("open access: %w", err)
	}
	for _, k := range keys {
		if k.Name == openKeyName && k.RevokedAt == nil {
			if _, err := s.q.ApiKeyRevoke(ctx, s.db, models.ApiKeyRevokeParams{ApiKeyID: k.ApiKeyID, UserID: u.UserID}); err != nil {
				return fmt.Errorf("open access: %w", err)
			}
			if err := s.tokens.ForgetAPIKey(ctx, k.KeyHash, k.ApiKeyID, u.UserID); err != nil {
				return fmt.Errorf("open access: %w", err)
			}
		}
	}
	key, hash, display := auth.NewAPIKey()
	if _, err := s.q.ApiKeyCreate(ctx, s.db, models.ApiKeyCreateParams{UserID: u.UserID, Name: openKeyName, KeyHash: hash,
		Prefix: display}); err != nil {
		return fmt.Errorf("open access: %w", err)
	}
	s.open.key.Store(&key)
	return nil
}

// openGuard is guard(class) for the editor-client routes: under open
// access, a request from this machine without credentials acts as the
// local user (openAccess).
func (s *Server) openGuard(class AuthClass) fiber.Handler {
	inner := s.guard(class)
	return func(c *fiber.Ctx) error {
		if key := s.open.key.Load(); key != nil && noCredentials(c) && localRequest(c) {
			c.Request().Header.Set(fiber.HeaderAuthorization, "Bearer "+*key)
		}
		return inner(c)
	}
}

// noCredentials reports whether c carries no credential at all. An
// Authorization header with an empty bearer token counts as none: llama.vim
// sends "Authorization: Bearer " when its api_key is empty.
func noCredentials(c *fiber.Ctx) bool {
	h := strings.TrimSpace(c.Get(fiber.HeaderAuthorization))
	return (h == "" || strings.EqualFold(h, "bearer")) && cookieOrHeader(c, cookieSession, headerSession) == "" &&
		c.Cookies(cookieAuth) == ""
}

// localRequest reports whether c comes straight from this machine: see
// openAccess.
func localRequest(c *fiber.Ctx) bool {
	for _, h := range []string{fiber.HeaderXForwardedFor, fiber.HeaderXForwardedHost, "Forwarded", "X-Real-IP", fiber.HeaderOrigin} {
		if c.Get(h) != "" {
			return false
		}
	}
	host := string(c.Request().Host())
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if ip := net.ParseIP(host); !(host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return false
	}
	return c.Context().RemoteIP().IsLoopback()
}

// llamaOps document the llama.cpp routes (openapi.go).
var llamaOps = []apiOp{
	{Method: "POST", Path: "/infill", Summary: "llama.cpp server API: fill in the middle (llama.vim, llama.vscode)", Auth: ClassS, OK: 200,
		Doc: "llama-server's /infill, for clients written for it; docs/clients.md. The text and the input_extra chunks are redacted " +
			"before a model sees them; the answer is stored as a query per candidate when the user's consent allows. " + llamaErrorDoc,
		Body: []apiField{reqField("input_prefix", "string", "the lines before the cursor line"),
			reqField("input_suffix", "string", "the rest of the cursor line and the lines after it"),
			optField("prompt", "string", "the cursor line up to the cursor: placed after the FIM middle token"),
			optField("input_extra", "[]object", "{text (required), filename}: extra context, most relevant last"),
			optField("model", "string", "a completion model's name; default the first"),
			optField("n_cmpl", "integer", "1 to 8 candidates: the answer is then an array, one object per candidate"),
			optField("n_predict", "integer", "most tokens to generate (at most COMPLETION_MAX_TOKENS; -1 that limit); 0 only evaluates "+
				"the prompt, to warm the KV cache (generation.trigger \"warm-up\")")}, Resp: llamaResp,
		Errors: llamaErrorDocs(map[int]string{400: "The prompt does not fit the context (exceed_context_size_error), or n_cmpl is out of range",
			501: "{\"error\": {\"code\": 501, \"message\": \"Infill is not supported by this model\", \"type\": \"not_supported_error\"}}: a chat model",
			503: "unavailable_error with Retry-After: the engine estimated that the request would end after its deadline and refused it before evaluating it"})},
	{Method: "POST", Path: "/completion", Summary: "llama.cpp server API: complete a client-formatted prompt", Auth: ClassS, OK: 200,
		Doc: "llama-server's /completion: prompt is the whole prompt, special tokens included; otherwise as /infill. " + llamaErrorDoc,
		Body: []apiField{reqField("prompt", "string", "the prompt, laid out by the client"),
			optField("model", "string", "a completion model's name; default the first"),
			optField("n_predict", "integer", "as for /infill")}, Resp: llamaResp,
		Errors: llamaErrorDocs(map[int]string{400: "A chat model, or the prompt does not fit the context"})},
	{Method: "GET", Path: "/health", Summary: "llama.cpp server API: 200 {\"status\": \"ok\"} while a completion model is served", OK: 200,
		Doc:  "503 {\"error\": {\"code\": 503, \"message\": \"Loading model\", \"type\": \"unavailable_error\"}} while none is.",
		Resp: []apiField{respField("status", "string", "\"ok\"")}, Errors: map[int]string{503: "Loading model: no completion model is served yet."}},
	{Method: "GET", Path: "/props", Summary: "llama.cpp server API: the model's default settings, slots and build", Auth: ClassA, OK: 200,
		Doc: llamaErrorDoc, Query: []apiField{optField("model", "string", "a model's name; default the first completion model")},
		Resp: []apiField{respField("default_generation_settings", "object", "{n_ctx, model, params}"),
			respField("total_slots", "integer", ""), respField("model_alias", "string", "the model's name"),
			respField("model_path", "string", "the model's name (no file path is shown)"), respField("build_info", "string", "")},
		Errors: llamaErrorDocs(nil)},
	{Method: "GET", Path: "/slots", Summary: "llama.cpp server API: the model's slots", Auth: ClassA, OK: 200,
		Doc: "An array of {id, is_processing, n_ctx, model}. The engine counts its busy slots, so is_processing marks that many, " +
			"lowest ids first. On the worker tier (serve --engine=remote) the slots of every live worker serving the model, " +
			"with n_ctx null. " + llamaErrorDoc,
		Query:  []apiField{optField("model", "string", "a model's name; default the first completion model")},
		Errors: llamaErrorDocs(nil)},
}

// llamaResp are the fields of an /infill or /completion answer.
var llamaResp = []apiField{respField("content", "string", "the completion, redacted"), respField("stop", "boolean", "true"),
	respField("stop_type", "string", "eos, word (a stop string) or limit"), respField("stopping_word", "string", ""),
	respField("model", "string", ""), respField("tokens_cached", "integer", "prompt and generated tokens in the slot's cache"),
	respField("tokens_evaluated", "integer", "tokens in the prompt"), respField("truncated", "boolean", "the prompt was cut to fit"),
	respField("code4me_trimmed", "object", "{extra_chunks, prefix_tokens}: what the prompt's time budget (t_max_prompt_ms, "+
		"else the server's ENGINE_PROMPT_BUDGET_MS) dropped, present only when it dropped something"),
	respField("timings", "object", "{cache_n, prompt_n (tokens evaluated), prompt_ms, prompt_per_token_ms, prompt_per_second, "+
		"predicted_n, predicted_ms, predicted_per_token_ms, predicted_per_second}"),
	respField("generation_settings", "object", "what the engine request used")}

// llamaErrorDoc describes the llama routes' errors.
const llamaErrorDoc = "Errors are llama-server's {\"error\": {\"code\", \"message\", \"type\"}}; a 422 also has the usual " +
	"\"detail\" list. Under `serve --open`, a request from this machine without credentials acts as OPEN_USER."

// llamaErrorDocs is errs with the note that each error is in
// llama-server's shape.
func llamaErrorDocs(errs map[int]string) map[int]string {
	out := map[int]string{401: "In llama-server's error shape.", 429: "In llama-server's error shape."}
	for k, v := range errs {
		out[k] = v
	}
	return out
}
