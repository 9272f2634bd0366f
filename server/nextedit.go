package server

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/catalog"
)

// Next-edit suggestions: the model rewrites the editable region around
// the cursor, given the user's recent edits, and the answer is the
// rewritten region with a unified diff against the region it was shown.
//
//   - POST /v1/next-edit: this server's own shape (nextEditRequest).
//   - POST /v1/next-edit/feedback: whether the suggestion was taken.
//   - Tabby's POST /v1/completions with mode "next_edit_suggestion"
//     (tabbyapi.go) and Zed's Zeta prompts sent as plain OpenAI completions
//     (isZetaPrompt, openaiapi.go) run through the same pipeline.
//
// Every part of the request (region, text around it, edits, snippets,
// path) is redacted before the prompt is written from it, so a secret in
// an edit's diff reaches the model as a redaction marker, and the diff of
// the answer is computed against the redacted region, so it never echoes a
// secret back. The prompt is the model's whole input, in the format of its
// catalog entry or family (nextedit_format.go); it is stored like a
// completion query: meta_query, the prompt as the context's prefix, the
// snippets as context files, and a generation whose sampler's mode is
// "next-edit", so that feedback and ground truth work as for completions.

// nextEditKind is completionRequest.Kind of a next-edit suggestion.
const nextEditKind = "next-edit"

// nextEditRequest is a parsed next-edit request.
type nextEditRequest struct {
	model  RegisteredModel
	format string
	in     nextEditInput
	gen    clientGen
}

// nextEditResult is a next-edit suggestion.
type nextEditResult struct {
	queryID uuid.UUID
	model   string
	format  string
	// region is the region the model was shown (redacted), rewritten the
	// region it wrote back (redacted), diff the unified diff between them
	// ("" when the model changed nothing).
	region, rewritten, diff string
	// start and end are the byte offsets of the changed span in the region
	// as the client sent it, and text its replacement; ok false when the
	// span touches text that was redacted (the replacement would write the
	// redaction marker into the user's file) or nothing changed.
	start, end int
	text       string
	ok         bool
	finish     string
	timings    engine.Timings
}

func (s *Server) nextEditRoutes() {
	errs := s.clientErrors(writeOpenAIError)
	s.app.Post("/v1/next-edit", errs, s.openGuard(ClassS), s.nextEdit)
	s.app.Post("/v1/next-edit/feedback", errs, s.openGuard(ClassS), s.nextEditFeedback)
}

// parseNextEdit reads POST /v1/next-edit's body.
func (s *Server) parseNextEdit(f *fields) (*nextEditRequest, string, error) {
	r := &nextEditRequest{}
	var name, format string
	if f.has("model") {
		name, _ = f.str("model", false, 0, 0)
	}
	if f.has("prompt_format") {
		format, _ = f.str("prompt_format", false, 0, 0)
		if format != "" && !slices.Contains(catalog.NextEditFormats, format) {
			f.add("literal_error", "prompt_format", "Input should be 'zeta', 'sweep' or 'tabby'", format, nil)
		}
	}
	r.in.path, _ = f.str("path", true, 1, 0)
	var raw string
	if ef := f.object("excerpt", true); ef != nil {
		if ef.has("before") {
			r.in.before, _ = ef.str("before", false, 0, 0)
		}
		if ef.has("after") {
			r.in.after, _ = ef.str("after", false, 0, 0)
		}
		raw, _ = ef.str("region", true, 0, 0)
		if cur, ok := ef.integerIn("cursor", true, 0, math.MaxInt32); ok {
			if int(cur) > utf8.RuneCountInString(raw) {
				ef.add("less_than_equal", "cursor", "Input should be at most the region's length in characters", cur, nil)
			} else {
				r.in.cursor = len(string([]rune(raw)[:cur]))
			}
		}
		r.in.startOfFile = ef.optBool("start_of_file", false)
	}
	r.in.region = raw
	if f.has("original_region") {
		r.in.original, _ = f.str("original_region", false, 0, 0)
	}
	for _, ef := range f.objectList("edits", false) {
		e := editEvent{path: r.in.path}
		if ef.has("path") {
			e.path, _ = ef.str("path", false, 0, 0)
		}
		e.diff, _ = ef.str("diff", true, 0, 0)
		r.in.edits = append(r.in.edits, e)
	}
	for _, sf := range f.objectList("snippets", false) {
		var c engine.Chunk
		c.Path, _ = sf.str("path", true, 0, 0)
		c.Text, _ = sf.str("text", true, 0, 0)
		r.in.snippets = append(r.in.snippets, c)
	}
	if v := optInt(f, "max_tokens", 1, math.MaxInt32); v != nil {
		r.gen.maxTokens = int(*v)
	}
	r.gen.opts.temperature = f.optFloat("temperature", 0, 2)
	r.gen.opts.topP = f.optFloat("top_p", 0, 1)
	r.gen.opts.seed = optSeed(f, "seed")
	if err := f.err(); err != nil {
		return nil, "", err
	}
	m, err := s.nextEditModel(name)
	if err != nil {
		return nil, "", err
	}
	r.model = m
	r.format = format
	if r.format == "" {
		r.format = nextEditFormatOf(m)
	}
	return r, raw, nil
}

// nextEditModel is the completion model a next-edit request names, by
// default the first one.
func (s *Server) nextEditModel(name string) (RegisteredModel, error) {
	m, ok := s.clientModel(name)
	if name == "" {
		m, ok = s.defaultModel(false)
	}
	switch {
	case !ok && name == "":
		return m, &clientErr{status: fiber.StatusNotFound, msg: "This server serves no completion model.", param: "model", code: "model_not_found"}
	case !ok:
		return m, &clientErr{status: fiber.StatusNotFound, msg: fmt.Sprintf("The model '%s' does not exist.", name), param: "model", code: "model_not_found"}
	case m.Chat:
		return m, refuse("model", fmt.Sprintf("'%s' is a chat model: next-edit suggestions need a completion model.", m.Name))
	}
	return m, nil
}

// redactNextEdit redacts every part of in. The cursor keeps its place: the
// region's text before it is redacted on its own, and when a secret spans
// the cursor, the cursor moves to where the redacted texts part.
func (s *Server) redactNextEdit(ctx context.Context, in *nextEditInput) {
	red := func(t string) string {
		out, _ := s.plugin.redactor.Text(ctx, pgText(t))
		return out
	}
	region := red(in.region)
	if region != in.region {
		head := red(in.region[:in.cursor])
		if strings.HasPrefix(region, head) {
			in.cursor = len(head)
		} else {
			in.cursor = commonPrefix(region, head)
		}
	}
	in.region = region
	in.path, in.before, in.after = red(in.path), red(in.before), red(in.after)
	if in.original != "" {
		in.original = red(in.original)
	}
	for i := range in.edits {
		in.edits[i].path, in.edits[i].diff = red(in.edits[i].path), red(in.edits[i].diff)
	}
	if in.tabbyDiff != nil {
		d := red(*in.tabbyDiff)
		in.tabbyDiff = &d
	}
	// The snippets go as the query's context files, which the pipeline
	// redacts; the prompt gets them redacted here.
	for i := range in.snippets {
		in.snippets[i].Path, in.snippets[i].Text = red(in.snippets[i].Path), red(in.snippets[i].Text)
	}
}

// commonPrefix is the length in bytes of the longest common prefix of a and
// b that ends on a character boundary.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	for n > 0 && n < len(a) && !utf8.RuneStart(a[n]) {
		n--
	}
	return n
}

// commonSuffix is the length in bytes of the longest common suffix of a
// and b that starts on a character boundary, at most limit.
func commonSuffix(a, b string, limit int) int {
	n := 0
	for n < limit && n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	for n > 0 && !utf8.RuneStart(a[len(a)-n]) {
		n--
	}
	return n
}

// runNextEdit redacts in, writes its prompt in r.format, runs the model
// through the completion pipeline and reads the suggestion. clientRegion
// is the region as the client sent it (the replacement's offsets are in
// it).
func (s *Server) runNextEdit(ctx context.Context, p *Principal, r *nextEditRequest, clientRegion string) (*nextEditResult, error) {
	s.redactNextEdit(ctx, &r.in)
	g := r.gen
	g.model, g.kind, g.raw = r.model, nextEditKind, true
	g.prompt = nextEditPrompt(r.format, &r.in)
	g.stop = append(nextEditStops(r.format), g.stop...)
	g.extra = r.in.snippets
	g.fileName = r.in.path
	res, err := s.generate(ctx, p, &g, 0, nil)
	if err != nil {
		return nil, err
	}
	out := &nextEditResult{queryID: res.queryID, model: res.model, format: r.format, region: r.in.region,
		rewritten: r.in.region, finish: res.finish(), timings: res.timings}
	if res.text != "" {
		out.rewritten = nextEditRegion(r.format, res.text, r.in.region)
	}
	out.diff = unifiedDiff(r.in.path, out.region, out.rewritten)
	out.replacement(clientRegion)
	return out, nil
}

// replacement narrows the suggestion to the span of the region it changes
// (the common head and tail left out) and maps it onto the region as the
// client sent it: offsets before the first redacted character are the
// same, those after the last one move by the difference in length.
func (out *nextEditResult) replacement(clientRegion string) {
	a, b := out.region, out.rewritten
	if a == b {
		return
	}
	head := commonPrefix(a, b)
	tail := commonSuffix(a, b, min(len(a), len(b))-head)
	start, end := head, len(a)-tail
	out.text = b[head : len(b)-tail]
	// The redacted part of the region lies within [same, len(a)-sameTail].
	same := commonPrefix(clientRegion, a)
	sameTail := commonSuffix(clientRegion, a, min(len(a), len(clientRegion))-same)
	shift := len(clientRegion) - len(a)
	switch {
	case clientRegion == a:
	case end <= same:
	case start >= len(a)-sameTail:
		start, end = start+shift, end+shift
	default:
		return
	}
	out.start, out.end, out.ok = start, end, true
}

// nextEdit handles POST /v1/next-edit.
func (s *Server) nextEdit(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	r, clientRegion, err := s.parseNextEdit(f)
	if err != nil {
		return err
	}
	r.gen.client = clientName(c, "next-edit")
	res, err := s.runNextEdit(c.UserContext(), principal(c), r, clientRegion)
	if err != nil {
		return err
	}
	var replace any
	if res.ok {
		replace = fiber.Map{"start": runeOffset(clientRegion, res.start), "end": runeOffset(clientRegion, res.end), "text": res.text}
	}
	return c.JSON(fiber.Map{"id": res.queryID, "object": "next_edit", "created": time.Now().Unix(), "model": res.model,
		"prompt_format": res.format, "region": res.rewritten, "diff": res.diff, "replace": replace, "finish_reason": res.finish,
		"usage": fiber.Map{"prompt_tokens": res.timings.PromptTokens, "completion_tokens": res.timings.GeneratedTokens,
			"total_tokens": res.timings.PromptTokens + res.timings.GeneratedTokens}})
}

// runeOffset is byte offset i of s in characters (code points).
func runeOffset(s string, i int) int { return utf8.RuneCountInString(s[:i]) }

// utf16Offset is byte offset i of s in UTF-16 code units, the unit of
// JavaScript's string offsets.
func utf16Offset(s string, i int) int {
	n := 0
	for _, r := range s[:i] {
		n += max(1, utf16.RuneLen(r))
	}
	return n
}

// nextEditFeedback handles POST /v1/next-edit/feedback: whether the
// suggestion id names was taken, and optionally what the user wrote
// (ground truth), recorded for its generation as the plugin's feedback is.
func (s *Server) nextEditFeedback(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	id, _ := f.uuidField("id", true)
	accepted, _ := f.boolean("accepted", true)
	var truth string
	if f.has("ground_truth") {
		truth, _ = f.str("ground_truth", false, 0, 0)
	}
	if err := f.err(); err != nil {
		return err
	}
	p := principal(c)
	gens, err := s.q.GenerationListByMetaQuery(c.UserContext(), s.db, id)
	if err != nil {
		return err
	}
	if len(gens) == 0 {
		return &clientErr{status: fiber.StatusNotFound, msg: MsgGenerationNotFound, param: "id"}
	}
	if err := s.recordFeedback(c.UserContext(), p, &feedback{MetaQueryID: id, ModelID: gens[0].ModelID, WasAccepted: accepted,
		GroundTruth: truth}); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"id": id, "accepted": accepted})
}

// zetaCompletion reports whether an OpenAI completions request is a Zeta
// next-edit prompt (Zed's edit predictions with the zeta prompt format):
// one prompt, no suffix. Such a request is answered as any raw prompt is,
// and recorded as a next-edit suggestion with client "zed".
func zetaCompletion(r *openAIRequest) bool {
	return r.kind == openAICompletions && !r.gen.fim && len(r.prompts) == 1 && isZetaPrompt(r.prompts[0])
}

// Documentation of the next-edit routes.
var nextEditOps = []apiOp{
	{Method: "POST", Path: "/v1/next-edit", Summary: "Next-edit suggestion: the model rewrites the editable region around the cursor",
		Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + openAI422Doc + "The model is given the region, the text around it, the recent edits and related snippets " +
			"in its next-edit prompt format (the catalog's: Sweep's for Qwen2.5-Coder, Zed's Zeta for the others; prompt_format " +
			"overrides it) and rewrites the region. Every part is redacted before the prompt is written, and the diff is computed " +
			"against the redacted region. The suggestion is stored as a completion query (client \"next-edit\", the generation's " +
			"sampler mode \"next-edit\") as the user's consent allows; id is its meta_query_id for POST /v1/next-edit/feedback.",
		Body: []apiField{reqField("path", "string", "the file's path"),
			reqField("excerpt", "object", "{before, region, after, cursor, start_of_file}: the editable region (required), the "+
				"text before and after it, the cursor as an offset in characters (code points) into the region (required), and "+
				"whether before starts at the file's first line"),
			optField("original_region", "string", "the region before the recent edits (default: the region)"),
			optField("edits", "[]object", "{path, diff}: the recent edits, oldest first, each a unified diff (path defaults to path)"),
			optField("snippets", "[]object", "{path, text}: related code"),
			optField("prompt_format", "string", "zeta, sweep or tabby: overrides the model's format"), openAIModelField,
			optField("max_tokens", "integer", "1 or more; capped at the chat answers' limit (CHAT_MAX_TOKENS), its default: "+
				"the region is written back whole"),
			optField("temperature", "number", "0 to 2"), optField("top_p", "number", "0 to 1"), optField("seed", "integer", "")},
		Resp: []apiField{respField("id", "uuid", "the stored query"), respField("object", "string", "\"next_edit\""),
			respField("created", "integer", ""), respField("model", "string", ""), respField("prompt_format", "string", ""),
			respField("region", "string", "the region rewritten (redacted); the region itself when the model changed nothing"),
			respField("diff", "string", "unified diff from the redacted region to region; \"\" when unchanged"),
			respField("replace", "object", "{start, end, text}: the changed span of the region as sent, in characters, and its "+
				"replacement; null when nothing changed or the span touches redacted text"),
			respField("finish_reason", "string", "stop or length"), openAIUsageResp},
		Errors: openAIGenErrors},
	{Method: "POST", Path: "/v1/next-edit/feedback", Summary: "Whether a next-edit suggestion was taken", Auth: ClassS, OK: 200,
		Doc: openAIAuthDoc + "Recorded for the suggestion's generation as the plugin's completion feedback is; ground_truth is " +
			"redacted and stored.",
		Body: []apiField{reqField("id", "uuid", "the suggestion's id"), reqField("accepted", "boolean", ""),
			optField("ground_truth", "string", "what the user wrote in the end")},
		Resp:   []apiField{respField("id", "uuid", ""), respField("accepted", "boolean", "")},
		Errors: clientErrorDocs(openAIShape, map[int]string{404: "No such suggestion.", 403: "The suggestion is another user's."})},
}
