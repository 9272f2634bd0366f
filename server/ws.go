package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// WebSockets (spec §4, with W1–W7 fixed). The three endpoints authenticate
// at connect time exactly like HTTP SP routes (cookies, the token headers or
// a Bearer API key) and are rate-limited like them. A failed check still
// completes the handshake, then sends {"error": <message>} and closes
// normally, as the original did.
//
// Client frames are JSON objects with one recognised key and an optional
// "request_id" (a string; the server makes one up when it is missing):
//
//	{"request_id": "r1", "completion_request": {...RequestCompletion}}
//	{"request_id": "r2", "completion_feedback": {...FeedbackCompletion}}
//	{"request_id": "r3", "multi_file_context_update": {...}}
//	{"request_id": "r4", "chat_request": {...}} / "chat_get": {"page_number": 1} / "chat_delete": {"chat_id": "..."}
//	{"cancel": "r1"} or {"cancel": {"request_id": "r1"}}
//
// Server frames are JSON encoded once and always carry request_id:
//
//	{"type": "completion_token", "request_id", "model_id", "text", "replace"}  redacted text as it is generated
//	{"type": "chat_token", ...}                                                 the same for chat
//	{"type": "completion_result" | "completion_feedback_result" | "multi_file_context_update_result" |
//	         "chat_result" | "chat_get_result" | "chat_delete_result",
//	 "request_id", "status_code", "content"}   content is the HTTP endpoint's body
//	{"type": "cancelled", "request_id"}         a cancelled or superseded request (nothing stored)
//	{"type": "error", "request_id", "status_code"?, "error"}
//
// A new completion_request on a connection cancels the previous one, in the
// engine too. One goroutine reads each connection; requests run in their
// own goroutines, writes are serialised, and closing the connection cancels
// and waits for every request of it.

type wsKind int

const (
	wsCompletion wsKind = iota
	wsChat
	wsContext
)

var wsKeys = map[wsKind][]string{
	wsCompletion: {"completion_request", "completion_feedback"},
	wsContext:    {"multi_file_context_update"},
	wsChat:       {"chat_request", "chat_get", "chat_delete"},
}

const (
	localsWSAuthErr = "code4me.ws.autherr"
	wsWriteTimeout  = 10 * time.Second
	wsReadLimit     = 8 << 20
)

func (s *Server) wsRoutes(api fiber.Router) {
	api.Get("/ws/completion", s.wsUpgrade, websocket.New(s.wsServe(wsCompletion)))
	api.Get("/ws/chat", s.wsUpgrade, websocket.New(s.wsServe(wsChat)))
	api.Get("/ws/completion/multi-file-context", s.wsUpgrade, websocket.New(s.wsServe(wsContext)))
}

// wsUpgrade authenticates and rate-limits the handshake. Only a rate-limit
// refusal answers HTTP (429); an auth failure is reported on the socket.
func (s *Server) wsUpgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return fiber.ErrUpgradeRequired
	}
	p, counted, err := s.authenticate(c.UserContext(), c, ClassSP)
	// The rate limit as guard applies it; the auth failure is answered on
	// the socket below, not here.
	if rlErr := s.admit(c, ClassSP, p, counted, nil); rlErr != nil {
		return rlErr
	}
	if err != nil {
		msg := MsgInvalidOrExpiredSession
		var ae *apiError
		if errors.As(err, &ae) && ae.status < 500 {
			msg = ae.msg
		} else {
			s.log.Warn("ws: authentication failed", slog.String("error", err.Error()))
		}
		c.Locals(localsWSAuthErr, msg)
		return c.Next()
	}
	c.Locals(localsPrincipal, p)
	return c.Next()
}

// wsConn is one connection.
type wsConn struct {
	s    *Server
	c    *websocket.Conn
	kind wsKind

	ctx    context.Context // ends when the connection closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	wmu sync.Mutex // serialises writes

	mu         sync.Mutex
	inflight   map[string]context.CancelFunc
	completion string // request id of the running completion_request
	// p is the Principal the connection's last check gave (at connect,
	// then with each message), and epoch the count of its project's
	// context updates through this server read before that check
	// (principalCache.epochOf).
	p     *Principal
	epoch ctxEpoch
}

// wsGoroutines counts the goroutines serving WebSockets (connection
// readers and their requests); tests check it returns to zero.
var wsGoroutines atomic.Int64

func (s *Server) wsServe(kind wsKind) func(*websocket.Conn) {
	return func(c *websocket.Conn) {
		wsGoroutines.Add(1)
		defer wsGoroutines.Add(-1)
		w := &wsConn{s: s, c: c, kind: kind, inflight: map[string]context.CancelFunc{}}
		w.ctx, w.cancel = context.WithCancel(context.Background())
		defer func() {
			w.cancel()
			w.wg.Wait()
		}()
		if msg, ok := c.Locals(localsWSAuthErr).(string); ok {
			w.send(fiber.Map{"error": msg})
			w.wmu.Lock()
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			w.wmu.Unlock()
			return
		}
		p, _ := c.Locals(localsPrincipal).(*Principal)
		if p == nil {
			return
		}
		// Each message checks the session and project again, and the
		// check's context version is what the next request starts with
		// (principal). The count is read after the connect-time check: an
		// update in between is caught by the first message's check.
		w.p, w.epoch = p, w.s.principals.epochOf(p.ProjectID)
		c.SetReadLimit(wsReadLimit)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			if !w.dispatch(data) {
				return
			}
		}
	}
}

// send writes one frame; a failed write ends the connection's requests.
func (w *wsConn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.s.log.Error("ws: encode frame", slog.String("error", err.Error()))
		return
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.c.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	if err := w.c.WriteMessage(websocket.TextMessage, b); err != nil {
		w.cancel()
		w.wakeReader()
	}
}

// wakeReader makes the connection's blocked read fail, so that its
// handler returns and fasthttp closes the connection (closing a hijacked
// connection from here does nothing while the handler runs).
func (w *wsConn) wakeReader() { w.c.SetReadDeadline(time.Now()) }

// truthy reports whether a frame value counts as present (spec §4.2).
func truthy(raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case "", "null", "{}", `""`, "false", "[]", "0":
		return false
	}
	return true
}

// dispatch handles one client frame; false ends the connection.
func (w *wsConn) dispatch(data []byte) bool {
	// Checked and split like an HTTP body; the members alias data, which
	// the reader does not reuse.
	frame, ok := jsonObject(data)
	if !ok {
		w.send(fiber.Map{"type": "error", "request_id": nil, "error": "Invalid websocket request: not a JSON object"})
		return true
	}
	id := requestID(frame["request_id"])
	if raw, ok := frame["cancel"]; ok && truthy(raw) {
		target := requestID(raw)
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) == nil {
			target = requestID(obj["request_id"])
		} else if string(raw) == "true" {
			target = id
		}
		w.cancelRequest(target)
		return true
	}
	if id == "" {
		id = uuid.NewString()
	}
	for _, key := range wsKeys[w.kind] {
		raw, ok := frame[key]
		if !ok || !truthy(raw) {
			continue
		}
		// Each message re-checks the connection's session and project
		// (they may have ended since connect) and refreshes them. A
		// completion starts while they are checked, with the Principal of
		// the last check; its tokens and result wait for this one
		// (speculate.go). Other requests start after their check.
		p := w.principal()
		var g *authGate
		if key == "completion_request" {
			g = w.recheck(p)
		} else if confirmed, err := w.check(p); err != nil {
			w.refuse(id)
			return false
		} else {
			p = confirmed
		}
		w.start(id, key, raw, p, g)
		return true
	}
	w.send(fiber.Map{"type": "error", "request_id": id, "error": "Invalid websocket request"})
	return true
}

// refuse answers a request whose session or project has ended; the
// connection ends after it.
func (w *wsConn) refuse(id string) {
	w.send(fiber.Map{"type": "error", "request_id": id, "status_code": fiber.StatusUnauthorized, "error": MsgInvalidOrExpiredSession})
}

// principal returns a copy of the Principal of the connection's last
// check for a request to start with. Its context version is that check's
// unless the project's context was updated through this server since:
// then it is ctxUncached, and the request reads the context from Postgres
// instead of using a copy that is known to be old.
func (w *wsConn) principal() *Principal {
	w.mu.Lock()
	p, epoch := *w.p, w.epoch
	w.mu.Unlock()
	if w.s.principals.epochOf(p.ProjectID) != epoch {
		p.ContextVersion = ctxUncached
	}
	return &p
}

// check looks the connection's session and project tokens (those of p) up
// again and returns the Principal they give now, which the connection
// keeps for its next requests.
func (w *wsConn) check(p *Principal) (*Principal, error) {
	epoch := w.s.principals.epochOf(p.ProjectID)
	sess, proj, err := w.s.tokens.SessionProject(w.ctx, p.SessionToken, p.ProjectToken)
	now, err := sessionPrincipal(sess, proj, ClassSP, err)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.p, w.epoch = now, epoch
	w.mu.Unlock()
	return now, nil
}

// recheck runs check on another goroutine, as the authGate of a request
// started with spec. The check confirms spec when it gives the same
// Principal; another one makes the request run again with it
// (errStalePrincipal). A spec without a usable context version (ctxUncached
// or unknown) read the context from Postgres, so its version is not
// compared.
func (w *wsConn) recheck(spec *Principal) *authGate {
	g := &authGate{spec: spec, done: make(chan struct{}), allowed: true}
	go func() {
		defer close(g.done)
		t0 := time.Now()
		p, err := w.check(spec)
		if err == nil && (spec.ContextVersion == ctxUncached || spec.ContextVersion == "") {
			cp := *p
			cp.ContextVersion = spec.ContextVersion
			p = &cp
		}
		g.p, g.err = p, err
		g.ms = msSince(t0)
	}()
	return g
}

// requestID reads a request id: a string, or any other JSON value as text.
func requestID(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}

func (w *wsConn) cancelRequest(id string) {
	w.mu.Lock()
	cancel := w.inflight[id]
	w.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// start runs a request in its own goroutine. A completion_request cancels
// the connection's previous one first.
func (w *wsConn) start(id, key string, raw json.RawMessage, p *Principal, g *authGate) {
	ctx, cancel := context.WithCancel(withGate(w.ctx, g))
	w.mu.Lock()
	if old := w.inflight[id]; old != nil {
		old() // a reused id replaces its request
	}
	w.inflight[id] = cancel
	if key == "completion_request" {
		if prev := w.inflight[w.completion]; prev != nil && w.completion != id {
			prev()
		}
		w.completion = id
	}
	w.mu.Unlock()
	w.wg.Add(1)
	wsGoroutines.Add(1)
	go func() {
		defer wsGoroutines.Add(-1)
		defer w.wg.Done()
		defer func() {
			cancel()
			w.mu.Lock()
			if w.inflight[id] != nil {
				delete(w.inflight, id)
			}
			w.mu.Unlock()
		}()
		w.run(ctx, id, key, raw, p)
	}()
}

// run executes one request as p and sends its frames.
func (w *wsConn) run(ctx context.Context, id, key string, raw json.RawMessage, p *Principal) {
	var content any
	var err error
	f, perr := rawFields(raw)
	if perr != nil {
		w.result(id, key, nil, perr)
		return
	}
	switch key {
	case "completion_request":
		r := parseCompletionRequest(f)
		if err = f.err(); err == nil {
			var res *completionResult
			sink := w.tokens(id, "completion_token")
			res, err = w.s.runCompletion(ctx, p, r, sink, nil, nil)
			if errors.Is(err, errStalePrincipal) {
				// Confirmed with another context version (an update
				// through another server): nothing was sent or stored.
				w.s.principals.stale.Add(1)
				res, err = w.s.runCompletion(withoutGate(ctx), gateFrom(ctx).p, r, sink, nil, nil)
			}
			if err == nil {
				content = fiber.Map{"message": MsgCompletion, "data": fiber.Map{"meta_query_id": res.MetaQueryID, "completions": res.Items}}
			} else {
				err = pipelineError(err, MsgGenerateCompletionsError)
			}
		}
	case "completion_feedback":
		fb := parseFeedback(f)
		if err = f.err(); err == nil {
			if err = w.s.recordFeedback(ctx, p, fb); err == nil {
				content = fiber.Map{"message": MsgCompletionFeedback, "data": fiber.Map{"meta_query_id": fb.MetaQueryID, "model_id": fb.ModelID}}
			} else {
				err = pipelineError(err, MsgFeedbackRecordingError)
			}
		}
	case "multi_file_context_update":
		ups := parseContextUpdates(f)
		if err = f.err(); err == nil {
			var data map[string][]string
			if data, err = w.s.updateContext(ctx, p, ups); err == nil {
				content = fiber.Map{"message": MsgMultiFileContextUpdate, "data": data}
			} else {
				err = internal(MsgMultiFileContextUpdateError, err)
			}
		}
	case "chat_request":
		r := parseChatRequest(f)
		if err = f.err(); err == nil {
			if content, err = w.s.runChat(ctx, p, r, w.tokens(id, "chat_token")); err != nil {
				err = pipelineError(err, MsgGenerateChatError)
			}
		}
	case "chat_get":
		page := int64(1)
		if f.has("page_number") {
			page, _ = f.integer("page_number", false, 1)
		}
		if err = f.err(); err == nil {
			if content, err = w.s.chatPage(ctx, p, int(page)); err != nil {
				err = internal(MsgRetrieveChatError, err)
			}
		}
	case "chat_delete":
		chatID, _ := f.uuidField("chat_id", true)
		if err = f.err(); err == nil {
			if err = w.s.deleteChat(ctx, p, chatID); err == nil {
				content = fiber.Map{"message": MsgDeleteChat}
			} else {
				err = pipelineError(err, MsgDeleteChatError)
			}
		}
	}
	if err := gateFrom(ctx).verdict(); err != nil && !errors.Is(err, errStalePrincipal) {
		// The session or project ended: nothing of the request was sent,
		// and the connection ends as when a check fails before a request.
		w.refuse(id)
		w.cancel()
		w.wakeReader()
		return
	}
	if ctx.Err() != nil && w.ctx.Err() == nil {
		w.send(fiber.Map{"type": "cancelled", "request_id": id})
		return
	}
	w.result(id, key, content, err)
}

// result sends a request's final frame, mapping err like HTTP does.
func (w *wsConn) result(id, key string, content any, err error) {
	if w.ctx.Err() != nil {
		return // the connection is gone
	}
	typ := key + "_result"
	if key == "completion_request" {
		typ = "completion_result"
	} else if key == "chat_request" {
		typ = "chat_result"
	}
	status := fiber.StatusOK
	if err != nil {
		var body any
		status, body = w.s.errorResponse(w.ctx, err)
		if status >= 500 {
			w.s.log.Error("ws: request failed", slog.String("key", key), slog.Int("status", status), slog.String("error", err.Error()))
		}
		content = body
	}
	w.send(fiber.Map{"type": typ, "request_id": id, "status_code": status, "content": content})
}

// tokens returns the sink that streams a request's redacted text.
func (w *wsConn) tokens(id, typ string) tokenSink {
	return func(modelID int64, text string, replace bool) {
		w.send(fiber.Map{"type": typ, "request_id": id, "model_id": modelID, "text": text, "replace": replace})
	}
}

// rawFields reads a frame's payload like a JSON request body.
func rawFields(raw json.RawMessage) (*fields, error) {
	errs := []fieldError{}
	f := &fields{loc: []any{"body"}, errs: &errs}
	if escapedNUL(raw) {
		return nil, errNUL
	}
	// raw is part of a frame that decoded, so it is valid JSON.
	if m, ok := splitObject(raw); ok {
		f.raw, f.inputRaw = m, raw
		return f, nil
	}
	if err := json.Unmarshal(raw, &f.raw); err != nil || f.raw == nil {
		return nil, invalid("model_attributes_type", []any{"body"},
			"Input should be a valid dictionary or object to extract fields from", rawInput(raw))
	}
	f.input = rawInput(raw)
	return f, nil
}
