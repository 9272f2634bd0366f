package loadtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// RouteWSConnect is the WebSocket handshake in the report.
const RouteWSConnect = "GET /api/ws/completion (handshake)"

// wsConn is a user's completion WebSocket: the user's goroutine writes
// request frames, reader reads the answers.
type wsConn struct {
	conn *websocket.Conn
	u    *user
	done chan struct{} // closed when reader has returned

	mu      sync.Mutex
	pending map[string]*wsPending
	broken  bool
}

// wsPending is a completion request sent and not yet answered.
type wsPending struct {
	t0    time.Time
	a     AckedCompletion
	truth string
	pick  bool
}

// dialWS opens /api/ws/completion with the user's credentials.
func (u *user) dialWS(ctx context.Context) (*wsConn, error) {
	base, err := url.Parse(u.o.BaseURL)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for k, v := range u.c.header {
		h[k] = v
	}
	if u.c.jar != nil {
		var cookies []string
		for _, ck := range u.c.jar.Cookies(base) {
			cookies = append(cookies, ck.Name+"="+ck.Value)
		}
		if len(cookies) > 0 {
			h.Set("Cookie", strings.Join(cookies, "; "))
		}
	}
	target := "ws://" + base.Host + base.Path + "/api/ws/completion"
	if base.Scheme == "https" {
		target = "wss://" + base.Host + base.Path + "/api/ws/completion"
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t0 := time.Now()
	conn, res, err := websocket.DefaultDialer.DialContext(dctx, target, h)
	status := 0
	if res != nil {
		status = res.StatusCode
		res.Body.Close()
	}
	u.rep.record(RouteWSConnect, status, time.Since(t0), false)
	if err != nil {
		u.onError(RouteWSConnect, status)
		return nil, err
	}
	w := &wsConn{conn: conn, u: u, pending: map[string]*wsPending{}, done: make(chan struct{})}
	go w.reader()
	return w, nil
}

// wsComplete sends a completion request frame; an error when there is no
// connection and none could be opened, or the write failed.
func (u *user) wsComplete(ctx context.Context, n int, body map[string]any, a AckedCompletion, truth string, pick bool) error {
	if u.sock != nil && u.sock.isBroken() {
		u.sock.close()
		u.sock = nil
	}
	if u.sock == nil {
		s, err := u.dialWS(ctx)
		if err != nil {
			return err
		}
		u.sock = s
	}
	w := u.sock
	id := "k" + itoa(n)
	frame, err := json.Marshal(map[string]any{"request_id": id, "completion_request": body})
	if err != nil {
		return err
	}
	u.inflight.Add(1)
	w.mu.Lock()
	w.pending[id] = &wsPending{t0: time.Now(), a: a, truth: truth, pick: pick}
	w.mu.Unlock()
	w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := w.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
		w.mu.Lock()
		if _, ok := w.pending[id]; ok {
			delete(w.pending, id)
			u.inflight.Done()
		}
		w.broken = true
		w.mu.Unlock()
		return err
	}
	return nil
}

func (w *wsConn) isBroken() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.broken
}

// close closes the connection and waits for the reader; requests still
// pending count as unanswered (status 0).
func (w *wsConn) close() {
	w.conn.Close()
	<-w.done
}

// reader reads frames until the connection ends, then answers every
// pending request as unanswered.
func (w *wsConn) reader() {
	defer close(w.done)
	u := w.u
	for {
		_, data, err := w.conn.ReadMessage()
		if err != nil {
			break
		}
		var f struct {
			Type       string          `json:"type"`
			RequestID  string          `json:"request_id"`
			StatusCode int             `json:"status_code"`
			Content    json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			u.rep.badAnswer(RouteWSCompletion)
			continue
		}
		if f.Type == "completion_token" {
			continue
		}
		w.mu.Lock()
		p, ok := w.pending[f.RequestID]
		delete(w.pending, f.RequestID)
		w.mu.Unlock()
		if !ok {
			continue
		}
		d := time.Since(p.t0)
		switch f.Type {
		case "completion_result":
			u.completionAnswered(RouteWSCompletion, f.StatusCode, f.Content, d, p.a, p.truth, p.pick)
		case "cancelled":
			u.rep.cancelled(RouteWSCompletion, d)
		case "error":
			u.rep.record(RouteWSCompletion, f.StatusCode, d, false)
			u.onError(RouteWSCompletion, f.StatusCode)
		default:
			u.rep.badAnswer(RouteWSCompletion)
		}
		u.inflight.Done()
	}
	w.mu.Lock()
	w.broken = true
	left := w.pending
	w.pending = map[string]*wsPending{}
	w.mu.Unlock()
	for _, p := range left {
		u.rep.record(RouteWSCompletion, 0, time.Since(p.t0), false)
		u.onError(RouteWSCompletion, 0)
		u.inflight.Done()
	}
}
