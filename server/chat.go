package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// Chat, as the Code4me V2 plugins call it, with the original's chat bugs
// fixed (docs/compatibility.md lists them):
//
//   - the prompt uses the model's own chat template (GGUF
//     tokenizer.chat_template, rendered by the engine); a model without one
//     the backend recognises gets ChatML for qwen and generic models and a
//     plain "### Role" layout for other families;
//   - messages, prefix, suffix, selected text and completions are redacted
//     like code; the context files are rendered as text, never as list reprs;
//   - each model's prompt is built from the request alone, so parallel
//     models cannot see each other's edits;
//   - every turn's messages are stored, so the history shows what the user
//     wrote, with the turn's real time, whether or not the context was
//     stored; a page below 1 is a 422;
//   - deleting a chat deletes its queries, generations and messages.

// defaultSystemPrompt is the system prompt Code4me V2 seeded for its chat
// models, kept so that studies compare like with like.
const defaultSystemPrompt = "You are a helpful assistant that provides information and answers questions to the best of your ability. Please respond in a clear and concise manner."

const titleInstruction = "Before you answer, give a very short 3-6 word title for the user's question inside [Title] tags, for example: [Title] How to use Python? [/Title]"

const untitledChat = "Untitled Chat"

const chatPageSize = 10

// maxChatPage is the last page whose row offset fits the query's int4
// offset: (maxChatPage-1)*chatPageSize <= MaxInt32. A later page is a 422.
const maxChatPage = math.MaxInt32/chatPageSize + 1

var titleTag = regexp.MustCompile(`(?s)\[Title\](.*?)\[/Title\]\s*`)

// chatTemplateName names the chat format used for a family.
func chatTemplateName(f engine.Family, chat bool) string {
	if !chat {
		return ""
	}
	if f == engine.FamilyQwen || f == engine.FamilyGeneric || f == engine.FamilyNone {
		return "chatml/v1"
	}
	return "plain/v1"
}

// neutralise keeps user text from forming control tokens (the prompt is
// tokenized with special-token parsing).
func neutralise(s string) string { return strings.ReplaceAll(s, "<|", "< |") }

// chatTemplateID names the chat format a model's prompts use, for the
// generation's template_version: "gguf:" and a hash of the model's own
// template, or the fallback layout's name.
func (s *Server) chatTemplateID(m RegisteredModel) string {
	if r := s.plugin.runner; r != nil {
		if t := r.ChatTemplate(m.Name); t != "" {
			if _, err := r.ChatPrompt(m.Name, []engine.ChatMessage{{Role: "user", Content: "x"}}, true); err == nil {
				return chatTemplateHash(t)
			}
		}
	}
	return chatTemplateName(m.Family, true)
}

// modelChatPrompt renders the prompt with the model's own chat template,
// falling back to chatPrompt when it has none the engine can render. User
// text is neutralised first in both cases.
func (s *Server) modelChatPrompt(m RegisteredModel, systemText string, msgs []chatMessage) string {
	if s.plugin.runner != nil {
		turns := make([]engine.ChatMessage, 0, len(msgs)+1)
		turns = append(turns, engine.ChatMessage{Role: "system", Content: neutralise(systemText)})
		for _, msg := range msgs {
			turns = append(turns, engine.ChatMessage{Role: msg.Role, Content: neutralise(msg.Content)})
		}
		if p, err := s.plugin.runner.ChatPrompt(m.Name, turns, true); err == nil {
			return p
		}
	}
	return chatPrompt(m, systemText, msgs)
}

// chatPrompt renders the fallback layout. It reads its arguments and never
// modifies them.
func chatPrompt(m RegisteredModel, systemText string, msgs []chatMessage) string {
	var b strings.Builder
	chatml := chatTemplateName(m.Family, true) == "chatml/v1"
	turn := func(role, content string) {
		if chatml {
			b.WriteString("<|im_start|>" + role + "\n" + neutralise(content) + "<|im_end|>\n")
		} else {
			b.WriteString("### " + strings.ToUpper(role[:1]) + role[1:] + "\n" + neutralise(content) + "\n\n")
		}
	}
	turn("system", systemText)
	for _, msg := range msgs {
		turn(msg.Role, msg.Content)
	}
	if chatml {
		b.WriteString("<|im_start|>assistant\n")
	} else {
		b.WriteString("### Assistant\n")
	}
	return b.String()
}

// chatSystemText is the system message: the client's own (else the
// default), the project context, the cursor position and, while the chat
// has no title, the title instruction.
func chatSystemText(system string, files []contextFile, c contextData, askTitle bool) string {
	var b strings.Builder
	b.WriteString(system)
	if len(files) > 0 {
		b.WriteString("\n\nFiles of the user's project:\n")
		for _, f := range files {
			b.WriteString("\n### " + f.name + "\n" + f.content + "\n")
		}
	}
	if c.Prefix != "" || c.Suffix != "" {
		b.WriteString("\n\nThe file open in the editor is " + c.FileName + ". Code before the cursor:\n```\n" + c.Prefix +
			"\n```\nCode after the cursor:\n```\n" + c.Suffix + "\n```")
	}
	if c.SelectedText != "" {
		b.WriteString("\n\nThe user selected this code; treat it as the main subject:\n```\n" + c.SelectedText + "\n```")
	}
	if askTitle {
		b.WriteString("\n\n" + titleInstruction)
	}
	return b.String()
}

// runChat runs a chat turn: redaction, models, storage in one transaction.
func (s *Server) runChat(ctx context.Context, p *Principal, r *chatRequest, sink tokenSink) (fiber.Map, error) {
	existing, err := s.q.ChatGetByID(ctx, s.db, r.ChatID)
	found := err == nil
	if err != nil && !errors.Is(db.Translate(err), db.ErrNotFound) {
		return nil, err
	}
	if found && (existing.UserID == nil || *existing.UserID != p.UserID || existing.ProjectID != p.ProjectID) {
		return nil, fail(fiber.StatusForbidden, MsgNoAccessToQuery)
	}
	if len(r.Context.ContextFiles) == 0 {
		r.Context.ContextFiles = []string{"*"}
	}
	pr, err := s.prepare(ctx, p, r.Context, r.Contextual, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := pr.waitState(); err != nil {
		return nil, err
	}
	t := time.Now()
	msgs := make([]chatMessage, 0, len(r.Messages))
	system := defaultSystemPrompt
	for i, m := range r.Messages {
		red, _ := s.plugin.redactor.Text(ctx, pgText(m.Content))
		if i == 0 && m.Role == "system" {
			system = red
			continue
		}
		msgs = append(msgs, chatMessage{m.Role, red})
	}
	pr.redactMS += msSince(t)
	askTitle := !found || existing.Title == untitledChat
	sys := chatSystemText(system, pr.files, pr.ctx, askTitle)

	outs := s.runModels(ctx, r.ModelIDs, chatTimeout, true, func(m RegisteredModel) engine.Request {
		return engine.Request{Raw: true, Prefix: s.modelChatPrompt(m, sys, msgs), Sampling: withSeed(defaultSampling, s.plugin.seed()),
			MaxTokens: s.plugin.limits.ChatTokens, Stop: []string{"<|im_end|>", "<|im_start|>", "\n### User"}, CachePrompt: true}
	}, sink)
	if ctx.Err() != nil {
		return nil, errCancelled
	}
	if err := allOverloaded(outs); err != nil {
		return nil, err
	}
	title := ""
	for _, o := range outs {
		if !o.ok() {
			continue
		}
		if m := titleTag.FindStringSubmatch(o.text); m != nil {
			if title == "" {
				title = strings.TrimSpace(m[1])
			}
			o.text = strings.TrimSpace(titleTag.ReplaceAllString(o.text, ""))
		}
	}
	if len(title) > 200 {
		title = title[:200]
	}
	mq := uuid.New()
	total := msSince(pr.t0)
	var chatTitle string
	err = db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		want := title
		if want == "" {
			want = untitledChat
		}
		row, err := s.q.ChatUpsert(ctx, tx, models.ChatUpsertParams{ChatID: r.ChatID, ProjectID: p.ProjectID, UserID: p.UserID, Title: want})
		if errors.Is(db.Translate(err), db.ErrNotFound) {
			return fail(fiber.StatusForbidden, MsgNoAccessToQuery)
		} else if err != nil {
			return err
		}
		chatTitle = row.Title
		if row.Title == untitledChat && title != "" {
			if err := s.q.ChatUpdateTitle(ctx, tx, models.ChatUpdateTitleParams{ChatID: r.ChatID, Title: title}); err != nil {
				return err
			}
			chatTitle = title
		}
		if err := s.createMetaQuery(ctx, tx, p, pr, mq, "chat", &r.ChatID, &total); err != nil {
			return err
		}
		if err := s.q.ChatQueryCreate(ctx, tx, models.ChatQueryCreateParams{MetaQueryID: mq, WebEnabled: r.WebEnabled}); err != nil {
			return err
		}
		if err := s.storeQueryData(ctx, tx, mq, pr, &r.completionRequest); err != nil {
			return err
		}
		pos := int32(0)
		if system != defaultSystemPrompt {
			if _, err := s.q.ChatMessageCreate(ctx, tx, models.ChatMessageCreateParams{ChatID: r.ChatID, MetaQueryID: mq, Position: pos, Role: "system", Content: system}); err != nil {
				return err
			}
			pos++
		}
		for _, m := range msgs {
			if _, err := s.q.ChatMessageCreate(ctx, tx, models.ChatMessageCreateParams{ChatID: r.ChatID, MetaQueryID: mq, Position: pos, Role: m.Role, Content: m.Content}); err != nil {
				return err
			}
			pos++
		}
		return s.storeGenerations(ctx, tx, mq, pr.t0, outs)
	})
	if err != nil {
		return nil, err
	}
	responses := make([]fiber.Map, 0, len(outs))
	for _, o := range outs {
		if o.ok() {
			responses = append(responses, fiber.Map{"model_id": o.id, "model_name": o.model.Name, "completion": o.text,
				"generation_time": int(o.gen.Milliseconds()), "confidence": o.res.Confidence, "was_accepted": false})
			continue
		}
		it := o.item(MsgChatCompletionErrorItem)
		if o.reason == "Model is not a ChatCompletionModel" {
			it["message"] = o.reason
		}
		responses = append(responses, it)
	}
	return fiber.Map{"chat_id": r.ChatID, "title": chatTitle, "history": []fiber.Map{{
		"user_message":        fiber.Map{"role": "user", "content": lastUser(msgs), "timestamp": pr.t0, "meta_query_id": mq},
		"assistant_responses": responses,
	}}}, nil
}

func lastUser(msgs []chatMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}

// chatRequestHandler handles POST /api/chat/request.
func (s *Server) chatRequestHandler(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	r := parseChatRequest(f)
	if err := f.err(); err != nil {
		return err
	}
	res, err := s.runChat(c.UserContext(), principal(c), r, nil)
	if err != nil {
		return pipelineError(err, MsgGenerateChatError)
	}
	return c.JSON(res)
}

// parsePage reads a page number in [1, maxChatPage].
func parsePage(raw string) (int, error) {
	n, err := strconv.Atoi(raw)
	if err != nil {
		return 0, invalid("int_parsing", []any{"path", "page_number"}, "Input should be a valid integer, unable to parse string as an integer", raw)
	}
	if n < 1 {
		return 0, &validationError{errs: []fieldError{{Type: "greater_than_equal", Loc: []any{"path", "page_number"},
			Msg: "Input should be greater than or equal to 1", Input: raw, Ctx: map[string]any{"ge": 1}}}}
	}
	if n > maxChatPage {
		return 0, &validationError{errs: []fieldError{{Type: "less_than_equal", Loc: []any{"path", "page_number"},
			Msg: fmt.Sprintf("Input should be less than or equal to %d", maxChatPage), Input: raw, Ctx: map[string]any{"le": maxChatPage}}}}
	}
	return n, nil
}

// chatGet handles GET /api/chat/get/{page_number}.
func (s *Server) chatGet(c *fiber.Ctx) error {
	page, err := parsePage(c.Params("page_number"))
	if err != nil {
		return err
	}
	res, err := s.chatPage(c.UserContext(), principal(c), page)
	if err != nil {
		return pipelineError(err, MsgRetrieveChatError)
	}
	return c.JSON(res)
}

// chatPage returns one page of the caller's chats in the active project,
// newest first, each with its turns oldest first.
func (s *Server) chatPage(ctx context.Context, p *Principal, page int) (fiber.Map, error) {
	chats, err := s.q.ChatGetPage(ctx, s.db, models.ChatGetPageParams{UserID: p.UserID, ProjectID: p.ProjectID,
		PageSize: chatPageSize, PageOffset: int32((page - 1) * chatPageSize)})
	if err != nil {
		return nil, fmt.Errorf("chat page: %w", err)
	}
	ids := make([]uuid.UUID, len(chats))
	for i, ch := range chats {
		ids[i] = ch.ChatID
	}
	turns, err := s.q.ChatTurnListByChats(ctx, s.db, ids)
	if err != nil {
		return nil, fmt.Errorf("chat turns: %w", err)
	}
	msgs, err := s.q.ChatMessageListByChats(ctx, s.db, ids)
	if err != nil {
		return nil, fmt.Errorf("chat messages: %w", err)
	}
	turnIDs := make([]uuid.UUID, len(turns))
	for i, t := range turns {
		turnIDs[i] = t.MetaQueryID
	}
	gens, err := s.q.GenerationListByMetaQueries(ctx, s.db, turnIDs)
	if err != nil {
		return nil, fmt.Errorf("chat generations: %w", err)
	}
	userMsg := map[uuid.UUID]string{}
	for _, m := range msgs {
		if m.Role == "user" {
			userMsg[m.MetaQueryID] = m.Content // the last user message of the turn wins
		}
	}
	answers := map[uuid.UUID][]fiber.Map{}
	for _, g := range gens {
		answers[g.MetaQueryID] = append(answers[g.MetaQueryID], fiber.Map{"model_id": g.ModelID, "model_name": g.ModelName,
			"completion": g.Completion, "generation_time": g.GenerationTimeMs, "confidence": g.Confidence, "was_accepted": g.WasAccepted})
	}
	history := map[uuid.UUID][]fiber.Map{}
	for _, t := range turns {
		if t.ChatID == nil {
			continue
		}
		resp := answers[t.MetaQueryID]
		if resp == nil {
			resp = []fiber.Map{}
		}
		history[*t.ChatID] = append(history[*t.ChatID], fiber.Map{
			"user_message":        fiber.Map{"role": "user", "content": userMsg[t.MetaQueryID], "timestamp": t.RequestedAt, "meta_query_id": t.MetaQueryID},
			"assistant_responses": resp,
		})
	}
	items := make([]fiber.Map, 0, len(chats))
	for _, ch := range chats {
		h := history[ch.ChatID]
		if h == nil {
			h = []fiber.Map{}
		}
		items = append(items, fiber.Map{"chat_id": ch.ChatID, "title": ch.Title, "created_at": ch.CreatedAt, "history": h})
	}
	return fiber.Map{"page": page, "per_page": chatPageSize, "items": items}, nil
}

// chatDelete handles DELETE /api/chat/delete/{chat_id}.
func (s *Server) chatDelete(c *fiber.Ctx) error {
	id, err := pathUUID(c, "chat_id")
	if err != nil {
		return err
	}
	if err := s.deleteChat(c.UserContext(), principal(c), id); err != nil {
		return pipelineError(err, MsgDeleteChatError)
	}
	return c.JSON(fiber.Map{"message": MsgDeleteChat})
}

// deleteChat deletes the caller's chat with everything recorded in it.
func (s *Server) deleteChat(ctx context.Context, p *Principal, id uuid.UUID) error {
	ch, err := s.q.ChatGetByID(ctx, s.db, id)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return fail(fiber.StatusNotFound, MsgQueryNotFound)
	} else if err != nil {
		return err
	}
	if ch.UserID == nil || *ch.UserID != p.UserID || ch.ProjectID != p.ProjectID {
		return fail(fiber.StatusForbidden, MsgNoAccessToQuery)
	}
	n, err := s.q.ChatDelete(ctx, s.db, models.ChatDeleteParams{ChatID: id, UserID: p.UserID, ProjectID: p.ProjectID})
	if err != nil {
		return err
	}
	if n == 0 {
		return fail(fiber.StatusNotFound, MsgQueryNotFound)
	}
	return nil
}
