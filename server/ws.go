package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/jsonscan"
	"github.com/code4me/code4me/internal/ratelimit"
)

// WebSockets, as the Code4me V2 plugins use them, with the original's
// WebSocket bugs fixed (docs/compatibility.md). The three endpoints authenticate
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
//	{"type": "error", "request_id", "status_code"?, "error", "retry_after"?}  retry_after: seconds, with a rate limit's 429
//
// A new completion_request on a connection cancels the previous one, in the
// engine too. One goroutine reads each connection; requests run in their
// own goroutines, writes are serialised, and closing the connection cancels
// and waits for every request of it.
//
// Limits, each answered by an error frame that leaves the connection open:
//
//   - Every request frame counts against the rate limit of the HTTP route
//     it stands for (wsRoutes), for the connection's user, in the Redis
//     round trip that re-checks the session before the request starts:
//     over it, status_code 429 and retry_after (seconds), and nothing of
//     the request runs.
//   - At most WS_MAX_IN_FLIGHT requests of a connection run at once; a
//     request frame over it gets status_code 429 and starts nothing. A
//     request stops counting when it ends or is cancelled or superseded, so
//     a completion_request that supersedes the running one always starts.
//
// The handshake is refused with 403 when it carries an Origin header that
// CORS_ALLOWED_ORIGINS does not list ("*" allows any); editor plugins send
// none. A frame larger than MAX_BODY_BYTES closes the connection with 1009
// (message too big) before it is read.

type wsKind int

const (
	wsCompletion wsKind = iota
	wsChat
	wsContext
)

// wsRoutes maps each request key to the template of the HTTP route it
// stands for, whose rate limit it counts against.
var wsRoutes = map[string]string{
	"completion_request":        "/api/completion/request",
	"completion_feedback":       "/api/completion/feedback",
	"multi_file_context_update": "/api/completion/multi-file-context/update",
	"chat_request":              "/api/chat/request",
	"chat_get":                  "/api/chat/get/:page_number",
	"chat_delete":               "/api/chat/delete/:chat_id",
}

// MsgTooManyInFlight answers a request frame over WS_MAX_IN_FLIGHT.
const MsgTooManyInFlight = "Too many requests in flight on this connection. Wait for an answer or cancel a request."

// MsgOriginNotAllowed answers a WebSocket handshake from an origin that
// CORS_ALLOWED_ORIGINS does not list.
const MsgOriginNotAllowed = "Origin not allowed"

var wsKeys = map[wsKind][]string{
	wsCompletion: {"completion_request", "completion_feedback"},
	wsContext:    {"multi_file_context_update"},
	wsChat:       {"chat_request", "chat_get", "chat_delete"},
}

const (
	localsWSAuthErr = "code4me.ws.autherr"
	localsWSIP      = "code4me.ws.ip"
	wsWriteTimeout  = 10 * time.Second
)

func (s *Server) wsRoutes(api fiber.Router) {
	api.Get("/ws/completion", s.wsUpgrade, websocket.New(s.wsServe(wsCompletion)))
	api.Get("/ws/chat", s.wsUpgrade, websocket.New(s.wsServe(wsChat)))
	api.Get("/ws/completion/multi-file-context", s.wsUpgrade, websocket.New(s.wsServe(wsContext)))
}

// wsUpgrade checks the Origin, then authenticates and rate-limits the
// handshake. Only a refused origin (403), a rate-limit refusal (429) and an
// unavailable dependency (503) answer HTTP; an auth failure is reported on
// the socket.
func (s *Server) wsUpgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return fiber.ErrUpgradeRequired
	}
	if !s.wsOriginAllowed(c.Get(fiber.HeaderOrigin)) {
		return fail(fiber.StatusForbidden, MsgOriginNotAllowed)
	}
	c.Locals(localsWSIP, s.clientIP(c))
	p, counted, err := s.authenticate(c.UserContext(), c, ClassSP)
	// The rate limit as guard applies it; the auth failure is answered on
	// the socket below, not here.
	if rlErr := s.admit(c, ClassSP, p, counted, nil); rlErr != nil {
		return rlErr
	}
	if _, down := unavailableDep(err); down {
		return err // 503 with Retry-After, before the upgrade
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

// wsOriginAllowed reports whether a handshake with this Origin header may
// open a WebSocket: one without Origin (editor plugins, any non-browser
// client) or from an origin CORS_ALLOWED_ORIGINS lists. A page of another
// site must not open a socket that the browser authenticates with the
// user's cookies.
func (s *Server) wsOriginAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
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

	ip netip.Addr // the client's, counted when a check finds no session

	mu       sync.Mutex
	inflight map[string]*wsRequest
	// active counts the requests in inflight that are not ended: what
	// WS_MAX_IN_FLIGHT bounds.
	active     int
	completion string // request id of the running completion_request

	// p is the Principal the connection's last check gave (at connect,
	// then with each message). Only the reader uses it.
	p *Principal
}

// wsRequest is one request of a connection in flight.
type wsRequest struct {
	cancel context.CancelFunc
	ended  bool // cancelled, superseded or finished: no longer active
}

// wsGoroutines counts the goroutines serving WebSockets (connection
// readers and their requests); tests check it returns to zero.
var wsGoroutines atomic.Int64

func (s *Server) wsServe(kind wsKind) func(*websocket.Conn) {
	return func(c *websocket.Conn) {
		wsGoroutines.Add(1)
		defer wsGoroutines.Add(-1)
		w := &wsConn{s: s, c: c, kind: kind, inflight: map[string]*wsRequest{}}
		w.ip, _ = c.Locals(localsWSIP).(netip.Addr)
		w.ctx, w.cancel = context.WithCancel(context.Background())
		s.wsOpened(w) // a drain stops its reads (drain.go)
		defer func() {
			w.cancel()
			w.wg.Wait()
			s.wsClosed(w)
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
		w.p = p
		// A larger frame is refused unread: the reader sends close 1009
		// and the read fails, which ends the connection.
		c.SetReadLimit(int64(s.cfg.MaxBodyBytes))
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				w.drainIfShuttingDown()
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

// truthy reports whether a frame value counts as present: as Code4me V2
// read it, present and not null, false, 0, "", {} or [].
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
	frame, ok := jsonscan.Object(data)
	if !ok {
		w.send(fiber.Map{"type": "error", "request_id": nil, "error": "Invalid websocket request: not a JSON object"})
		return true
	}
	id := requestID(frame["request_id"])
	if !w.payloadUTF8(data) {
		// Text outside the request's payload (its id, a key) is not valid
		// UTF-8; invalid text inside the payload is the request's 422.
		w.send(fiber.Map{"type": "error", "request_id": id, "status_code": fiber.StatusUnprocessableEntity,
			"error": "Invalid websocket request: text is not valid UTF-8"})
		return true
	}
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
		if !w.room(id, key) {
			w.send(fiber.Map{"type": "error", "request_id": id, "status_code": fiber.StatusTooManyRequests, "error": MsgTooManyInFlight})
			return true
		}
		// Each message re-checks the connection's session and project
		// (they may have ended since connect) and counts against the HTTP
		// route's rate limit in the same round trip, before the request
		// starts; the request runs as the Principal the check gives, whose
		// context version picks the cached context files.
		p, counted, err := w.check(key)
		if err != nil {
			return w.refuse(id, err)
		}
		if limit := w.limit(key, counted); !limit.Allowed {
			w.limited(id, limit)
			return true
		}
		w.start(id, key, raw, p)
		return true
	}
	w.send(fiber.Map{"type": "error", "request_id": id, "error": "Invalid websocket request"})
	return true
}

// refuse answers a request whose check failed with err and reports
// whether the connection stays: a session or project that has ended
// answers 401 and ends it; an unavailable Redis or Postgres answers 503
// (errorResponse) and keeps it, for the client to try again.
func (w *wsConn) refuse(id string, err error) bool {
	if _, down := unavailableDep(err); down {
		status, body := w.s.errorResponse(w.ctx, err)
		msg := body.(fiber.Map)["message"]
		w.send(fiber.Map{"type": "error", "request_id": id, "status_code": status, "error": msg})
		return true
	}
	w.send(fiber.Map{"type": "error", "request_id": id, "status_code": fiber.StatusUnauthorized, "error": MsgInvalidOrExpiredSession})
	return false
}

// limited answers a request refused by its route's rate limit; the
// connection stays.
func (w *wsConn) limited(id string, limit ratelimit.Result) {
	w.send(fiber.Map{"type": "error", "request_id": id, "status_code": fiber.StatusTooManyRequests,
		"error": MsgTooManyRequests, "retry_after": limit.RetryAfterSeconds()})
}

// payloadUTF8 reports whether data, a frame holding a JSON object, is
// valid UTF-8 outside the payload of its request key: the payload is
// checked like an HTTP body when the request runs (rawFields).
func (w *wsConn) payloadUTF8(data []byte) bool {
	if utf8.Valid(data) {
		return true
	}
	loc, _, _ := jsonscan.BadUTF8(data)
	if len(loc) < 2 {
		return false // a top-level key or value
	}
	key, _ := loc[0].(string)
	return slices.Contains(wsKeys[w.kind], key)
}

// check looks the connection's session and project tokens up again and
// returns the Principal they give now, which the connection keeps for its
// next check. The same Redis round trip counts the request against the
// rate limit of key's HTTP route, as that route's guard does
// (authSession), and the count is returned (limit gives the verdict).
// Only the reader calls it.
func (w *wsConn) check(key string) (*Principal, *auth.Counted, error) {
	creds := sessionCreds{session: w.p.SessionToken, project: w.p.ProjectToken, route: wsRoutes[key], ip: w.ip}
	now, counted, err := w.s.authSession(w.ctx, creds, ClassSP)
	if err != nil {
		return nil, nil, err
	}
	w.p = now
	return now, counted, nil
}

// limit is the rate limiter's verdict on a request for key counted by
// check (nil: not counted, allowed).
func (w *wsConn) limit(key string, counted *auth.Counted) ratelimit.Result {
	if counted == nil {
		return ratelimit.Result{Allowed: true}
	}
	return w.s.limiter.Result(wsRoutes[key], counted.N, counted.TTL)
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
	defer w.mu.Unlock()
	if r := w.inflight[id]; r != nil {
		w.end(r)
	}
}

// end cancels r, which stops counting as active at once: its goroutine
// returns as soon as it notices. The caller holds w.mu.
func (w *wsConn) end(r *wsRequest) {
	if !r.ended {
		r.ended = true
		w.active--
	}
	r.cancel()
}

// room reports whether a request id for key may start without passing
// WS_MAX_IN_FLIGHT: the requests it would end (the running
// completion_request, which a new one supersedes, and the request of a
// reused id) do not count. Only the reader starts requests, so the answer
// holds until it calls start.
func (w *wsConn) room(id, key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.active
	if r := w.inflight[id]; r != nil && !r.ended {
		n--
	}
	if key == "completion_request" && w.completion != id {
		if r := w.inflight[w.completion]; r != nil && !r.ended {
			n--
		}
	}
	return n < w.s.cfg.WSMaxInFlight
}

// start runs a request in its own goroutine. A completion_request cancels
// the connection's previous one first.
func (w *wsConn) start(id, key string, raw json.RawMessage, p *Principal) {
	ctx, cancel := context.WithCancel(w.ctx)
	r := &wsRequest{cancel: cancel}
	w.mu.Lock()
	if old := w.inflight[id]; old != nil {
		w.end(old) // a reused id replaces its request
	}
	if key == "completion_request" {
		if prev := w.inflight[w.completion]; prev != nil && w.completion != id {
			w.end(prev)
		}
		w.completion = id
	}
	w.inflight[id] = r
	w.active++
	w.mu.Unlock()
	w.wg.Add(1)
	wsGoroutines.Add(1)
	go func() {
		defer wsGoroutines.Add(-1)
		defer w.wg.Done()
		defer func() {
			w.mu.Lock()
			if w.inflight[id] == r {
				delete(w.inflight, id)
			}
			w.end(r)
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
				err = pipelineError(err, MsgMultiFileContextUpdateError) // 413, 422 past the bounds
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
			page, _ = f.integerIn("page_number", false, 1, maxChatPage)
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
	if m, ok := jsonscan.Split(raw); ok {
		if err := unicodeErr(raw); err != nil {
			return nil, err
		}
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
