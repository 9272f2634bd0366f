package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/redact"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/models"
)

// Completion pipeline, shared by
// POST /api/completion/request and the WebSocket completion_request:
//
//  1. validate the body; check telemetry ids against the lookup tables (a
//     bad id is a 422 naming the field, never a query lost later);
//  2. redact prefix, suffix and selected text (context files are stored
//     redacted) before anything reaches a model;
//  3. select the multi-file context;
//  4. run every requested model in parallel, at most ModelWorkers at once,
//     each under its own deadline; a model that fails, is unknown or is a
//     chat model gives an error item while the others answer;
//  5. redact every completion;
//  6. write the query, its context, telemetry and generations in one
//     transaction, committed before the response, so feedback sent right
//     after it finds its generation.
//
// Items are returned in model_ids order (duplicates answered once).

// Per-request limits.
const (
	completionTimeout = 30 * time.Second
	chatTimeout       = 2 * time.Minute
)

// Limits are the most tokens a completion and a chat answer generate
// (COMPLETION_MAX_TOKENS, CHAT_MAX_TOKENS).
type Limits struct{ CompletionTokens, ChatTokens int }

// LimitsOf reads Limits from c (config.Load sets and checks them).
func LimitsOf(c config.Config) Limits {
	return Limits{CompletionTokens: c.CompletionMaxTokens, ChatTokens: c.ChatMaxTokens}
}

// defaultSampling is Code4me V2's completion sampler; the seed is drawn per
// request and stored with each generation.
var defaultSampling = engine.SamplingParams{Temperature: 0.2, TopK: 50, TopP: 0.95, RepeatPenalty: 1.1, RepeatLastN: 64}

// completionMode is the stop mode of every completion, stored in
// generation.sampler under "mode"; completionModes maps the stored names.
const completionMode = "blank-line"

var completionModes = map[string]engine.Mode{
	"multi-line": engine.ModeMultiLine, "single-line": engine.ModeSingleLine, "blank-line": engine.ModeBlankLine}

// tokens is the limit for a chat (true) or completion (false) request.
func (l Limits) tokens(chat bool) int {
	if chat {
		return l.ChatTokens
	}
	return l.CompletionTokens
}

// plugin is the state of the completion, chat and WebSocket handlers.
type plugin struct {
	// engine is the in-process engine (nil on an API node of the worker
	// tier); runner runs every request, on it or on the workers.
	engine   *engine.Engine
	runner   Runner
	redactor *redact.Redactor
	models   *ModelRegistry
	workers  int
	version  string
	limits   Limits
	// sampler is generation.sampler for completion (false) and chat (true)
	// requests.
	sampler map[bool][]byte
	// stored counts how completion queries were written
	// (completion_store.go).
	stored storeCounts
	// seed draws a request's sampler seed (Deps.Seed, else random).
	seed func() uint32
	// build is generation.engine_build (Deps.Build).
	build string
	// preStoreHook, when set (tests), may add to every first batch.
	preStoreHook func(*batchTx)
}

// initPlugin fills s.plugin from d: a Redactor when none is given, and the
// model registry from the engine's loaded models.
func (s *Server) initPlugin(d Deps) error {
	s.plugin = plugin{engine: d.Engine, redactor: d.Redactor, models: d.Models, workers: d.Config.ModelWorkers,
		version: strconv.FormatInt(d.Config.ServerVersionID, 10), limits: LimitsOf(d.Config)}
	s.plugin.seed, s.plugin.build = d.Seed, d.Build
	if s.plugin.seed == nil {
		s.plugin.seed = rand.Uint32
	}
	s.plugin.sampler = map[bool][]byte{false: samplerParams(s.plugin.limits, false), true: samplerParams(s.plugin.limits, true)}
	if s.plugin.workers < 1 {
		s.plugin.workers = 4
	}
	if s.plugin.redactor == nil {
		r, err := redact.New(redact.Options{})
		if err != nil {
			return fmt.Errorf("server: redactor: %w", err)
		}
		s.plugin.redactor = r
	}
	switch {
	case d.Remote != nil:
		if s.plugin.models == nil {
			s.plugin.models = NewModelRegistry(nil)
		}
		s.plugin.runner = remoteRunner{c: d.Remote, reg: s.plugin.models, tmpl: d.Templates}
	case d.Engine != nil:
		s.plugin.runner = engineRunner{e: d.Engine}
	}
	if s.plugin.models == nil && d.Engine != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		reg, err := RegisterModels(ctx, d.DB, d.Engine, nil, s.plugin.limits)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		s.plugin.models = reg
	}
	return nil
}

// pluginRoutes registers the completion, chat and WebSocket routes.
func (s *Server) pluginRoutes(api fiber.Router) {
	cp := api.Group("/completion")
	cp.Post("/request", s.guardOverlap(ClassSP, s.parseCompletionBody), s.completionRequest)
	cp.Post("/feedback", s.guard(ClassSP), s.completionFeedback)
	cp.Post("/multi-file-context/update", s.guard(ClassSP), s.contextUpdate)
	cp.Get("/:query_id", s.guard(ClassS), s.completionGet)
	ch := api.Group("/chat")
	ch.Post("/request", s.guard(ClassSP), s.chatRequestHandler)
	ch.Get("/get/:page_number", s.guard(ClassSP), s.chatGet)
	ch.Delete("/delete/:chat_id", s.guard(ClassSP), s.chatDelete)
	s.wsRoutes(api)
}

// errCancelled ends a pipeline whose caller cancelled it (WebSocket cancel
// or supersede); nothing is stored.
var errCancelled = errors.New("request cancelled")

// modelOutcome is one model's answer, or why it has none.
type modelOutcome struct {
	id    int64
	model RegisteredModel
	known bool
	res   *engine.Result
	text  string // redacted completion
	seed  uint32
	// sampling, maxTokens and mode are the engine request's, stored with
	// the generation (generation.sampler).
	sampling  engine.SamplingParams
	maxTokens int
	mode      engine.Mode
	reason    string // user-visible failure reason; "" on success
	err       error  // logged cause
	gen       time.Duration
	// redactMS is the time spent redacting the completion.
	redactMS float64
}

func (o *modelOutcome) ok() bool { return o.reason == "" }

// item renders the outcome as a completion item of the response
// ({model_id, model_name, completion, generation_time, confidence}).
func (o *modelOutcome) item(errMsg string) fiber.Map {
	if !o.ok() {
		name := "Model ID: " + strconv.FormatInt(o.id, 10)
		if o.known {
			name = o.model.Name
		}
		item := fiber.Map{"model_id": o.id, "message": errMsg, "model_name": name, "error": o.reason}
		if de := (*engine.DeadlineError)(nil); errors.As(o.err, &de) {
			// Refused before its prompt ran: the engine's estimate and the
			// time that was left.
			item["estimated_ms"], item["left_ms"] = de.Estimate.Milliseconds(), de.Left.Milliseconds()
		}
		return item
	}
	item := fiber.Map{"model_id": o.id, "model_name": o.model.Name, "completion": o.text,
		"generation_time": int(o.gen.Milliseconds()), "confidence": o.res.Confidence, "logprobs": logprobs(o.res),
		"stop_reason": stopReason(o.res.Stop)}
	if t := o.res.Trimmed; t.Any() {
		// The prompt's time budget dropped context to answer in time.
		item["trimmed"] = fiber.Map{"extra_chunks": t.ExtraChunks, "prefix_tokens": t.PrefixTokens}
	}
	return item
}

func logprobs(r *engine.Result) []float64 {
	out := make([]float64, len(r.Logprobs))
	for i, v := range r.Logprobs {
		out[i] = float64(v)
	}
	return out
}

// stopReason maps the engine's reasons onto generation.stop_reason.
func stopReason(r engine.StopReason) string {
	if r == engine.StopLength {
		return "max_tokens"
	}
	return string(r)
}

// tokenSink receives redacted text of a model while it generates: delta
// appends; replace (rare: redaction changed text already sent) replaces
// everything sent so far with text.
type tokenSink func(modelID int64, text string, replace bool)

// runModels runs one engine request per distinct model id, at most
// s.plugin.workers at once, and returns the outcomes in ids order.
// build makes the request for a model, or returns a failure reason.
func (s *Server) runModels(ctx context.Context, ids []int64, timeout time.Duration, wantChat bool,
	build func(m RegisteredModel) engine.Request, sink tokenSink) []*modelOutcome {
	var outs []*modelOutcome
	seen := map[int64]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			outs = append(outs, &modelOutcome{id: id})
		}
	}
	var run []*modelOutcome
	for _, o := range outs {
		m, ok := s.plugin.models.Get(o.id)
		o.model, o.known = m, ok
		switch {
		case !ok || s.plugin.runner == nil:
			o.reason = "unknown model"
		case wantChat && !m.Chat:
			o.reason = "Model is not a ChatCompletionModel"
		case !wantChat && !m.Completion():
			o.reason = "model is a chat model, not a completion model"
		default:
			run = append(run, o)
		}
	}
	start := func(o *modelOutcome) {
		req := build(o.model)
		o.seed, o.sampling, o.maxTokens, o.mode = req.Sampling.Seed, req.Sampling, req.MaxTokens, req.Mode
		s.runModel(ctx, o, req, timeout, sink)
	}
	if len(run) == 1 {
		// One model (the plugins' usual request) runs in the caller's
		// goroutine: the engine's answer wakes the request itself, with no
		// goroutine between them to start and wait for.
		start(run[0])
		return outs
	}
	sem := make(chan struct{}, s.plugin.workers)
	var wg sync.WaitGroup
	for _, o := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				o.reason, o.err = "cancelled", ctx.Err()
				return
			}
			defer func() { <-sem }()
			start(o)
		}()
	}
	wg.Wait()
	return outs
}

// runModel runs one request and redacts its completion.
func (s *Server) runModel(ctx context.Context, o *modelOutcome, req engine.Request, timeout time.Duration, sink tokenSink) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var res *engine.Result
	var err error
	if sink == nil {
		res, err = s.plugin.runner.Complete(ctx, o.model.Name, req)
	} else {
		res, err = s.streamModel(ctx, o, req, sink)
	}
	o.gen = time.Since(start)
	switch {
	case errors.Is(err, engine.ErrOverloaded):
		o.reason, o.err = "overloaded", err
		return
	case errors.Is(err, remote.ErrNoWorker):
		o.reason, o.err = "no worker", err
		return
	case err != nil:
		o.reason, o.err = "failed", err
		return
	case res == nil:
		o.reason = "failed"
		return
	}
	switch res.Stop {
	case engine.StopCancelled:
		o.reason, o.err = "cancelled", res.Err
		if errors.Is(res.Err, engine.ErrSuperseded) {
			o.reason = "superseded"
		}
		return
	case engine.StopDeadline:
		o.reason, o.err = "timed out", res.Err
		if errors.Is(res.Err, engine.ErrDeadline) {
			// Refused at once: the engine estimated it would end too late.
			o.reason = "deadline"
		}
		return
	case engine.StopError:
		o.reason, o.err = "failed", res.Err
		return
	}
	o.res = res
	o.gen = time.Duration((res.Timings.PrefillMS + res.Timings.DecodeMS) * float64(time.Millisecond))
	t := time.Now()
	o.text, _ = s.plugin.redactor.Text(ctx, pgText(res.Text))
	o.redactMS = msSince(t)
}

// pgText makes text storable in Postgres, which rejects NUL characters
// (models with random weights produce them): each becomes U+FFFD.
func pgText(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// streamModel runs req as a stream, passing redacted text to sink as it
// comes.
func (s *Server) streamModel(ctx context.Context, o *modelOutcome, req engine.Request, sink tokenSink) (*engine.Result, error) {
	st, err := s.plugin.runner.Stream(ctx, o.model.Name, req)
	if err != nil {
		return nil, err
	}
	sr := streamRedactor{r: s.plugin.redactor}
	for {
		delta, err := st.Next(ctx)
		if err != nil {
			break // io.EOF, or ctx ended: the scheduler ends the request too
		}
		if out, replace, ok := sr.add(ctx, delta); ok {
			sink(o.id, out, replace)
		}
	}
	return st.Wait()
}

// streamRedactor releases streamed text only once it is redacted: text up
// to the last whitespace (secrets are runs without whitespace), holding
// back an unterminated private-key block.
type streamRedactor struct {
	r    *redact.Redactor
	full strings.Builder
	sent string
}

// add appends delta and returns the text to send: a delta, or (replace)
// the whole redacted text when redaction changed what was already sent.
func (sr *streamRedactor) add(ctx context.Context, delta string) (string, bool, bool) {
	sr.full.WriteString(pgText(delta))
	full := sr.full.String()
	safe := full[:strings.LastIndexAny(full, " \t\n")+1]
	if b := strings.LastIndex(safe, "-----BEGIN"); b >= 0 && strings.LastIndex(safe, "-----END") < b {
		safe = safe[:b]
	}
	red, _ := sr.r.Text(ctx, safe)
	if len(red) <= len(sr.sent) && strings.HasPrefix(sr.sent, red) {
		return "", false, false
	}
	if strings.HasPrefix(red, sr.sent) {
		out := red[len(sr.sent):]
		sr.sent = red
		return out, false, true
	}
	sr.sent = red
	return red, true, true
}

// requestState returns the caller's config, study and consent at request
// time (401 when the user is gone) and answers 422 naming each unknown
// telemetry lookup id, in one round trip.
func (s *Server) requestState(ctx context.Context, uid uuid.UUID, t *contextualTelemetry) (models.CompletionRequestStateRow, error) {
	arg := models.CompletionRequestStateParams{UserID: uid}
	if t != nil {
		arg.VersionID, arg.TriggerTypeID, arg.LanguageID = t.VersionID, t.TriggerTypeID, t.LanguageID
	}
	st, err := s.q.CompletionRequestState(ctx, s.db, arg)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return st, fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredSession)
	} else if err != nil || t == nil {
		return st, err
	}
	var errs []fieldError
	add := func(name string, v int64, good bool, what string) {
		if !good {
			errs = append(errs, fieldError{Type: "foreign_key", Loc: []any{"body", "contextual_telemetry", name},
				Msg: "Value error, unknown " + what, Input: v})
		}
	}
	add("version_id", t.VersionID, st.VersionOk, "plugin version")
	add("trigger_type_id", t.TriggerTypeID, st.TriggerTypeOk, "trigger type")
	add("language_id", t.LanguageID, st.LanguageOk, "programming language")
	if len(errs) > 0 {
		return st, &validationError{errs: errs}
	}
	return st, nil
}

// prepared is a validated, redacted request ready for the models.
type prepared struct {
	t0       time.Time
	ctx      contextData // redacted
	files    []contextFile
	redactMS float64
	ctxMS    float64

	// retr is the extra context retrieved from the files' chunks, laid
	// out instead of the whole files (nil: the files, retrieval.go).
	retr *retrieved

	// The caller's state (config, study, consent) and the telemetry ids'
	// check: read while the models run, since only storage needs them.
	// Valid once stateDone is closed.
	stateDone chan struct{}
	state     models.CompletionRequestStateRow
	stateErr  error
	lookupMS  float64

	// asg is the study arm answering the request (nil: none, and always
	// for chat).
	asg *assignment
	// client is meta_query.client when an editor-client API asks.
	client string
}

// waitState waits for the caller's state: nil, a 422 for unknown telemetry
// ids, a 401 for a user who is gone, or a database error.
func (pr *prepared) waitState() error {
	<-pr.stateDone
	return pr.stateErr
}

// redactedContext is a request's context with its secrets redacted, and
// the milliseconds that took.
type redactedContext struct {
	ctx contextData
	ms  float64
}

// redactContext redacts the prefix, suffix, selected text and file name.
func (s *Server) redactContext(ctx context.Context, c contextData) *redactedContext {
	t := time.Now()
	out := c
	out.Prefix, _ = s.plugin.redactor.Text(ctx, pgText(c.Prefix))
	out.Suffix, _ = s.plugin.redactor.Text(ctx, pgText(c.Suffix))
	out.SelectedText, _ = s.plugin.redactor.Text(ctx, pgText(c.SelectedText))
	out.FileName, _ = s.plugin.redactor.Text(ctx, pgText(c.FileName))
	return &redactedContext{ctx: out, ms: msSince(t)}
}

// prepare runs pipeline steps 1–3 and records their stages in st (may be
// nil). The query counts as requested when st started, else now. The text
// is redacted while the project's context files are read; prepare returns
// when both are done, and nothing reaches a model before. The caller's
// state is read meanwhile and may still be on its way (waitState): it
// decides what is stored and whether the telemetry ids are valid, not
// what the models see, so callers start the models without it and cancel
// them when it fails.
//
// red, when not nil, is c already redacted (redactContext).
func (s *Server) prepare(ctx context.Context, p *Principal, c contextData, ct *contextualTelemetry, st *stageTimes, red *redactedContext) (*prepared, error) {
	pr := &prepared{t0: time.Now(), stateDone: make(chan struct{})}
	if st != nil && !st.start.IsZero() {
		pr.t0 = st.start
	}
	go func() {
		defer close(pr.stateDone)
		t := time.Now()
		pr.state, pr.stateErr = s.requestState(ctx, p.UserID, ct)
		pr.lookupMS = msSince(t)
	}()
	var wg sync.WaitGroup
	var filesErr error
	wg.Go(func() {
		t := time.Now()
		pr.files, filesErr = s.selectContext(ctx, p.ProjectID, p.ContextVersion, c.FileName, c.ContextFiles)
		pr.ctxMS = msSince(t)
	})
	if red == nil {
		red = s.redactContext(ctx, c)
	}
	pr.ctx, pr.redactMS = red.ctx, red.ms
	wg.Wait()
	st.add(StageRedact, pr.redactMS)
	st.add(StageContext, pr.ctxMS)
	if filesErr != nil {
		pr.waitState() // its goroutine reads pr; let it end before pr is dropped
		return nil, fmt.Errorf("select context: %w", filesErr)
	}
	return pr, nil
}

// recordModels adds the engine stages of the slowest model that answered,
// and the time spent redacting completions, to st.
func recordModels(st *stageTimes, outs []*modelOutcome) {
	var slow *modelOutcome
	out := 0.0
	for _, o := range outs {
		if !o.ok() {
			continue
		}
		out = max(out, o.redactMS)
		if slow == nil || o.res.Timings.TotalMS > slow.res.Timings.TotalMS {
			slow = o
		}
	}
	if slow != nil {
		st.engine(slow.res.Timings)
		st.add(StageOutput, out)
	}
}

// completionResult is the data of a completion response.
type completionResult struct {
	MetaQueryID uuid.UUID
	Items       []fiber.Map
	// Outcomes are the models' answers, for the editor-client APIs that
	// render them their own way.
	Outcomes []*modelOutcome
}

// FIMRequest is the engine request the completion pipeline makes for one
// model: prefix, suffix and file name already redacted, extra the
// project's context files, key the supersede key (the session and file).
// Benchmarks use it to send the bare engine exactly what the server sends.
func FIMRequest(prefix, suffix, fileName string, extra []engine.Chunk, stop []string, key string, maxTokens int, seed uint32) engine.Request {
	return engine.Request{
		Prefix: prefix, Suffix: suffix, FilePath: fileName, Extra: extra,
		Sampling: withSeed(defaultSampling, seed), MaxTokens: maxTokens, Stop: stop,
		Mode: completionModes[completionMode], CachePrompt: true, SupersedeKey: key,
	}
}

// runCompletion is the whole pipeline. sink, when set, receives tokens; st
// (may be nil) receives the stage times.
//
// red, when not nil, is r.Context already redacted.
func (s *Server) runCompletion(ctx context.Context, p *Principal, r *completionRequest, sink tokenSink, st *stageTimes, red *redactedContext) (*completionResult, error) {
	mq := uuid.New()
	// A running study's arm, when the caller has one, decides the models,
	// budgets and context (study.go).
	asg, err := s.assign(ctx, p.UserID, p.SessionID, mq, false)
	if err != nil {
		return nil, err
	}
	r = asg.applyPolicy(r)
	pr, err := s.prepare(ctx, p, r.Context, r.Contextual, st, red)
	if err != nil {
		return nil, err
	}
	pr.asg, pr.client = asg, r.Client
	key := p.SessionID.String() + "\x00" + r.Context.FileName
	// From here a newer request of the same session and file stops this
	// one's work (wctx); it is still answered and stored, as superseded.
	wctx, sup, arrived, supKey := ctx, &superseded{}, func() {}, ""
	if !r.Concurrent {
		wctx, sup, arrived = s.supersede.arrive(ctx, key, pr.t0)
		supKey = key
	}
	defer arrived()
	if len(r.Extra) > 0 {
		pr.files = s.redactChunks(ctx, r.Extra)
	} else {
		t := time.Now()
		pr.retr = s.retrieve(wctx, p, key, pr, s.modelNames(r.ModelIDs), asg.maxTokens(s.plugin.limits.CompletionTokens))
		ms := msSince(t)
		pr.ctxMS += ms
		st.add(StageContext, ms)
	}
	// The models start now. Nothing is written, streamed or returned before
	// the caller's state passes (waitState); its refusal (unknown telemetry
	// ids, the user gone) cancels them.
	mctx, cancelModels := context.WithCancel(wctx)
	defer cancelModels()
	if sink != nil {
		stream := sink
		sink = func(modelID int64, text string, replace bool) {
			if pr.waitState() != nil {
				cancelModels()
				return
			}
			stream(modelID, text, replace)
		}
	}
	// The query's rows that do not depend on the models' output, queued in
	// b; total is nil when it is not known yet. Called after waitState.
	queueQuery := func(ctx context.Context, b *batchTx, total *float64) error {
		if err := s.createMetaQuery(ctx, b, p, pr, mq, "completion", nil, total); err != nil {
			return err
		}
		if err := s.q.CompletionQueryCreate(ctx, b, models.CompletionQueryCreateParams{MetaQueryID: mq, StopSequences: nonNil(r.StopSequences)}); err != nil {
			return err
		}
		return s.storeQueryData(ctx, b, mq, pr, r)
	}
	pre := s.startPreStore(ctx, mq, func(ctx context.Context, b *batchTx) error {
		if err := pr.waitState(); err != nil {
			cancelModels()
			return err
		}
		return queueQuery(ctx, b, nil)
	})
	var outs []*modelOutcome
	if debounce(mctx, asg, pr.t0) && !sup.is() {
		outs = s.runModels(mctx, r.ModelIDs, asg.timeout(completionTimeout), false, func(m RegisteredModel) engine.Request {
			extra := chunks(pr.files)
			if pr.retr != nil {
				extra = pr.retr.extra()
			}
			req := FIMRequest(pr.ctx.Prefix, asg.suffix(pr.ctx.Suffix), pr.ctx.FileName, extra, r.StopSequences, supKey,
				asg.maxTokens(s.plugin.limits.CompletionTokens), s.plugin.seed())
			if r.Tune != nil {
				r.Tune(&req)
			}
			return req
		}, sink)
	} else {
		outs = supersededOutcomes(r.ModelIDs)
	}
	if sup.is() {
		for _, o := range outs {
			if o.reason == "cancelled" {
				o.reason = "superseded"
			}
		}
	}
	if ctx.Err() != nil {
		s.discard(pre)
		return nil, errCancelled
	}
	if err := pr.waitState(); err != nil {
		return nil, err // nothing was stored: the first batch was never sent
	}
	st.add(StageLookup, pr.lookupMS)
	if err := allOverloaded(outs); err != nil {
		s.discard(pre)
		return nil, err
	}
	recordModels(st, outs)
	lap := time.Now()
	total := msSince(pr.t0)
	var b batchTx
	if perr := pre.wait(); perr == nil {
		// The second commit: generations and the total serving time.
		err = s.storeGenerationsOf(ctx, &b, mq, pr.t0, outs, queryOriginOf(r, pr))
		if err == nil {
			err = s.q.MetaQuerySetTotalServing(ctx, &b, models.MetaQuerySetTotalServingParams{MetaQueryID: mq, TotalServingMs: &total})
		}
		if err == nil {
			err = b.send(ctx, s.db)
		}
		if err != nil {
			s.discard(pre)
		} else {
			s.plugin.stored.overlapped.Add(1)
		}
	} else {
		// Nothing was committed: every row in one batch, one implicit
		// transaction, committed before the response.
		s.log.Debug("completion: first commit failed, storing after inference", slog.String("error", perr.Error()))
		s.plugin.stored.single.Add(1)
		err = queueQuery(ctx, &b, &total)
		if err == nil {
			err = s.storeGenerationsOf(ctx, &b, mq, pr.t0, outs, queryOriginOf(r, pr))
		}
		if err == nil {
			err = b.send(ctx, s.db)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store completion query: %w", err)
	}
	st.lap(StageStore, &lap)
	res := &completionResult{MetaQueryID: mq, Outcomes: outs}
	for _, o := range outs {
		if o.err != nil && o.reason == "failed" {
			s.log.Warn("completion: model failed", slog.Int64("model_id", o.id), slog.String("error", o.err.Error()))
		}
		res.Items = append(res.Items, o.item(MsgCompletionErrorItem))
	}
	if res.Items == nil {
		res.Items = []fiber.Map{}
	}
	return res, nil
}

// supersededOutcomes answers every model of ids as superseded: a newer
// request replaced this one while it waited out its debounce.
func supersededOutcomes(ids []int64) []*modelOutcome {
	var outs []*modelOutcome
	seen := map[int64]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			outs = append(outs, &modelOutcome{id: id, reason: "superseded"})
		}
	}
	return outs
}

// allOverloaded answers 429 when every model that ran was overloaded, and
// 503 when no live worker of the worker tier serves any of them.
func allOverloaded(outs []*modelOutcome) error {
	counts := map[string]int{}
	for _, o := range outs {
		counts[o.reason]++
	}
	switch n := len(outs); {
	case n == 0:
		return nil
	case counts["overloaded"] == n:
		return fail(fiber.StatusTooManyRequests, MsgTooManyRequests)
	case counts["no worker"] == n:
		return fail(fiber.StatusServiceUnavailable, MsgNoWorker)
	}
	return nil
}

func withSeed(p engine.SamplingParams, seed uint32) engine.SamplingParams {
	p.Seed = seed
	return p
}

// createMetaQuery inserts the meta_query row.
// total is nil while it is not known.
func (s *Server) createMetaQuery(ctx context.Context, tx models.DBTX, p *Principal, pr *prepared, mq uuid.UUID, typ string, chatID *uuid.UUID, total *float64) error {
	config := pr.state.ConfigID
	if pr.asg != nil {
		config = pr.asg.arm.ConfigID
	}
	// A key's session (the editor-client APIs) has no project.
	var project *uuid.UUID
	if p.ProjectID != uuid.Nil {
		project = &p.ProjectID
	}
	client := "plugin"
	switch {
	case pr.client != "":
		client = pr.client
	case p.KeyID != uuid.Nil:
		client = "api-key"
	}
	return s.q.MetaQueryInsert(ctx, tx, models.MetaQueryInsertParams{
		MetaQueryID: mq, QueryType: typ, UserID: p.UserID, SessionID: &p.SessionID, ProjectID: project, ChatID: chatID,
		ConfigID: config, StudyID: pr.asg.studyIDPtr(), ArmID: pr.asg.armIDPtr(), Client: client, ServerVersion: s.plugin.version, RequestedAt: pr.t0,
		TotalServingMs: total, RedactMs: &pr.redactMS, ContextMs: &pr.ctxMS, ContextChunks: pr.retr.json(),
	})
}

// storeQueryData writes what the request and the user's consent allow:
// the context (both must say yes), the context files used (names and
// change indexes always, content with the context), and telemetry.
func (s *Server) storeQueryData(ctx context.Context, tx models.DBTX, mq uuid.UUID, pr *prepared, r *completionRequest) error {
	storeCtx := r.StoreContext && pr.state.StoreContext
	if storeCtx {
		fn, sel := pr.ctx.FileName, pr.ctx.SelectedText
		if err := s.q.ContextCreate(ctx, tx, models.ContextCreateParams{MetaQueryID: mq, Prefix: pr.ctx.Prefix, Suffix: pr.ctx.Suffix,
			FileName: &fn, SelectedText: &sel}); err != nil {
			return err
		}
	}
	if len(pr.files) > 0 {
		arg := models.QueryContextFileInsertManyParams{MetaQueryID: mq, FileNames: make([]string, len(pr.files)),
			ChangeIndexes: make([]int32, len(pr.files)), Contents: []string{}}
		for i, f := range pr.files {
			arg.FileNames[i], arg.ChangeIndexes[i] = f.name, f.changeIndex
			if storeCtx {
				arg.Contents = append(arg.Contents, f.content)
			}
		}
		if err := s.q.QueryContextFileInsertMany(ctx, tx, arg); err != nil {
			return err
		}
	}
	if t := r.Contextual; t != nil && r.StoreContextualTelemetry && pr.state.StoreContextualTelemetry {
		fp := t.FilePath
		if fp != nil {
			red, _ := s.plugin.redactor.Text(ctx, pgText(*fp))
			fp = &red
		}
		if err := s.q.ContextualTelemetryCreate(ctx, tx, models.ContextualTelemetryCreateParams{MetaQueryID: mq,
			VersionID: t.VersionID, TriggerTypeID: t.TriggerTypeID, LanguageID: t.LanguageID, FilePath: fp,
			CaretLine: t.CaretLine, DocumentCharLength: t.DocumentCharLength, RelativeDocumentPosition: t.RelativeDocumentPosition}); err != nil {
			return err
		}
	}
	if b := r.Behavioral; b != nil && r.StoreBehavioralTelemetry && pr.state.StoreBehavioralTelemetry {
		if err := s.q.BehavioralTelemetryCreate(ctx, tx, models.BehavioralTelemetryCreateParams{MetaQueryID: mq,
			TimeSinceLastShown: b.TimeSinceLastShown, TimeSinceLastAccepted: b.TimeSinceLastAccepted, TypingSpeed: b.TypingSpeed}); err != nil {
			return err
		}
	}
	return nil
}

// samplerParams is generation.sampler: every sampling parameter, the token
// limit and (completions) the stop mode, so that a replay (replay.go)
// rebuilds the request from the row, not from today's defaults.
func samplerParams(l Limits, chat bool) []byte {
	mode := ""
	if !chat {
		mode = completionMode
	}
	return samplerJSON(defaultSampling, l.tokens(chat), mode, true)
}

// samplerJSON is generation.sampler: the sampler, the token limit, the
// stop mode's name (none for chat) and, when the prompt left the suffix
// out (suffix false: a study arm's policy), "suffix": false.
func samplerJSON(p engine.SamplingParams, maxTokens int, mode string, suffix bool) []byte {
	m := map[string]any{"temperature": p.Temperature, "top_k": p.TopK, "top_p": p.TopP, "min_p": p.MinP,
		"repeat_penalty": p.RepeatPenalty, "repeat_last_n": p.RepeatLastN, "max_tokens": maxTokens}
	if mode != "" {
		m["mode"] = mode
	}
	if !suffix {
		m["suffix"] = false
	}
	b, _ := json.Marshal(m)
	return b
}

// modeName is the stored name of a completion's stop mode.
func modeName(m engine.Mode) string {
	for name, v := range completionModes {
		if v == m {
			return name
		}
	}
	return completionMode
}

// storeGenerations writes one generation row per model that answered.
func (s *Server) storeGenerations(ctx context.Context, tx models.DBTX, mq uuid.UUID, shown time.Time, outs []*modelOutcome) error {
	return s.storeGenerationsOf(ctx, tx, mq, shown, outs, queryOrigin{})
}

// storeGenerationsOf is storeGenerations with how a completion's context
// was chosen and what triggered it (queryOriginOf).
func (s *Server) storeGenerationsOf(ctx context.Context, tx models.DBTX, mq uuid.UUID, shown time.Time, outs []*modelOutcome, qo queryOrigin) error {
	var build *string
	if s.plugin.build != "" {
		build = &s.plugin.build
	}
	for _, o := range outs {
		if !o.ok() {
			continue
		}
		t := o.res.Timings
		conf := min(max(o.res.Confidence, 0), 1)
		reason := stopReason(o.res.Stop)
		seed := int64(o.seed)
		tmpl := "engine/" + string(o.model.Family)
		if o.model.Chat {
			tmpl = s.chatTemplateID(o.model)
		}
		sampler := s.plugin.sampler[o.model.Chat]
		if !o.model.Chat && o.maxTokens > 0 {
			// What the engine request used: a study arm or a client API may
			// have changed the defaults.
			mode := modeName(o.mode)
			if qo.kind != "" {
				mode = qo.kind
			}
			sampler = samplerJSON(o.sampling, o.maxTokens, mode, !qo.dropSuffix)
		}
		cached, evald, gend := int32(t.CachedTokens), int32(t.EvaluatedTokens), int32(t.GeneratedTokens)
		if err := s.q.GenerationCreate(ctx, tx, models.GenerationCreateParams{
			MetaQueryID: mq, ModelID: o.id, Completion: o.text, GenerationTimeMs: int32(o.gen.Milliseconds()),
			ShownAt: []time.Time{shown}, Confidence: &conf, Logprobs: logprobs(o.res), StopReason: &reason,
			QueueMs: &t.QueueMS, PrefillMs: &t.PrefillMS, DecodeMs: &t.DecodeMS,
			TokensCached: &cached, TokensEvaluated: &evald, TokensGenerated: &gend,
			Sampler: sampler, Seed: &seed, TemplateVersion: &tmpl,
			EngineBuild: build, ContextPolicy: qo.contextPolicy, Trigger: qo.trigger,
		}); err != nil {
			return err
		}
	}
	return nil
}

// parsedCompletion is a completion request body parsed, validated and
// redacted: the work that needs no caller, done during authentication.
type parsedCompletion struct {
	r       *completionRequest
	red     *redactedContext
	err     error // a 422; r and red are nil
	parseMS float64
}

// parseCompletionBody parses, validates and redacts a completion request.
// It runs before the caller is known (guardOverlap), so it has no side
// effects: its result is used only once authentication has passed.
func (s *Server) parseCompletionBody(ctx context.Context, body []byte) any {
	t := time.Now()
	out := &parsedCompletion{}
	f, err := jsonBytes(body)
	if err != nil {
		out.err = err
		return out
	}
	r := parseCompletionRequest(f)
	if err := f.err(); err != nil {
		out.err = err
		return out
	}
	out.parseMS = msSince(t)
	out.r, out.red = r, s.redactContext(ctx, r.Context)
	return out
}

// completionRequest handles POST /api/completion/request. Its body was
// parsed and redacted while the caller was authenticated (guardOverlap).
func (s *Server) completionRequest(c *fiber.Ctx) error {
	st := timing(c)
	lap := time.Now()
	pc := overlapped(c).(*parsedCompletion)
	if pc.err != nil {
		return pc.err
	}
	st.lap(StageBodyWait, &lap)
	st.add(StageParse, pc.parseMS)
	res, err := s.runCompletion(c.UserContext(), principal(c), pc.r, nil, st, pc.red)
	if err != nil {
		return pipelineError(err, MsgGenerateCompletionsError)
	}
	setServerTiming(c)
	return c.JSON(fiber.Map{"message": MsgCompletion, "data": fiber.Map{"meta_query_id": res.MetaQueryID, "completions": res.Items}})
}

// pipelineError keeps API errors (4xx) and wraps the rest as the
// endpoint's 500.
func pipelineError(err error, msg string) error {
	var ae *apiError
	var ve *validationError
	if errors.As(err, &ae) || errors.As(err, &ve) {
		return err
	}
	return internal(msg, err)
}

// completionGet handles GET /api/completion/{query_id}: the owner only.
func (s *Server) completionGet(c *fiber.Ctx) error {
	id, err := pathUUID(c, "query_id")
	if err != nil {
		return err
	}
	data, err := s.getCompletion(c.UserContext(), principal(c), id)
	if err != nil {
		return pipelineError(err, MsgRetrieveCompletionsError)
	}
	return c.JSON(fiber.Map{"message": MsgCompletion, "data": data})
}

func (s *Server) getCompletion(ctx context.Context, p *Principal, id uuid.UUID) (fiber.Map, error) {
	mq, err := s.q.MetaQueryGetByID(ctx, s.db, id)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return nil, fail(fiber.StatusNotFound, MsgQueryNotFound)
	} else if err != nil {
		return nil, err
	}
	if mq.UserID == nil || *mq.UserID != p.UserID {
		return nil, fail(fiber.StatusForbidden, MsgNoAccessToQuery)
	}
	gens, err := s.q.GenerationListByMetaQuery(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	items := make([]fiber.Map, 0, len(gens))
	for _, g := range gens {
		items = append(items, fiber.Map{"model_id": g.ModelID, "model_name": g.ModelName, "completion": g.Completion,
			"generation_time": g.GenerationTimeMs, "confidence": g.Confidence, "logprobs": g.Logprobs,
			"was_accepted": g.WasAccepted, "shown_at": g.ShownAt})
	}
	return fiber.Map{"meta_query_id": id, "query_type": mq.QueryType, "completions": items}, nil
}

// feedback is FeedbackCompletion.
type feedback struct {
	MetaQueryID uuid.UUID
	ModelID     int64
	WasAccepted bool
	GroundTruth string
	ShownAt     []time.Time
}

func parseFeedback(f *fields) *feedback {
	fb := &feedback{}
	fb.MetaQueryID, _ = f.uuidField("meta_query_id", true)
	fb.ModelID, _ = f.integer("model_id", true, 0)
	fb.WasAccepted, _ = f.boolean("was_accepted", true)
	if f.has("ground_truth") {
		fb.GroundTruth, _ = f.str("ground_truth", false, 0, 0)
	}
	fb.ShownAt = f.timeList("shown_at")
	return fb
}

// completionFeedback handles POST /api/completion/feedback.
func (s *Server) completionFeedback(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	fb := parseFeedback(f)
	if err := f.err(); err != nil {
		return err
	}
	if err := s.recordFeedback(c.UserContext(), principal(c), fb); err != nil {
		return pipelineError(err, MsgFeedbackRecordingError)
	}
	return c.JSON(fiber.Map{"message": MsgCompletionFeedback, "data": fiber.Map{"meta_query_id": fb.MetaQueryID, "model_id": fb.ModelID}})
}

// recordFeedback sets acceptance, appends shown_at and stores the redacted
// ground truth with the job that derives its figures, in one transaction;
// only the query's owner may.
func (s *Server) recordFeedback(ctx context.Context, p *Principal, fb *feedback) error {
	mq, err := s.q.MetaQueryGetByID(ctx, s.db, fb.MetaQueryID)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return fail(fiber.StatusNotFound, MsgGenerationNotFound)
	} else if err != nil {
		return err
	}
	if mq.UserID == nil || *mq.UserID != p.UserID {
		return fail(fiber.StatusForbidden, MsgNoAccessToFeedback)
	}
	truth := ""
	if fb.GroundTruth != "" {
		truth, _ = s.plugin.redactor.Text(ctx, pgText(fb.GroundTruth))
	}
	return db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		n, err := s.q.GenerationRecordFeedback(ctx, tx, models.GenerationRecordFeedbackParams{
			WasAccepted: fb.WasAccepted, ShownAt: nonNilTimes(fb.ShownAt), MetaQueryID: fb.MetaQueryID, ModelID: fb.ModelID})
		if err != nil {
			return err
		}
		if n == 0 {
			return fail(fiber.StatusNotFound, MsgGenerationNotFound)
		}
		if truth != "" {
			gt, err := s.q.GroundTruthCreate(ctx, tx, models.GroundTruthCreateParams{MetaQueryID: fb.MetaQueryID, ModelID: &fb.ModelID, GroundTruth: truth})
			if err != nil {
				return err
			}
			// Its figures are derived by a job stored with it (truth_job.go).
			return s.queueTruthMatchTx(ctx, tx, gt.GroundTruthID)
		}
		return nil
	})
}

func nonNilTimes(t []time.Time) []time.Time {
	if t == nil {
		return []time.Time{}
	}
	return t
}
