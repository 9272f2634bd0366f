package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"time"
)

// client is one user's HTTP side: a cookie jar for session users, headers
// for key users.
type client struct {
	base   string
	hc     *http.Client
	jar    http.CookieJar
	header http.Header
}

func newClient(base string, hc *http.Client) *client {
	jar, _ := cookiejar.New(nil)
	return &client{base: base, hc: hc, jar: jar, header: http.Header{}}
}

// answer is one HTTP answer: status 0 when none came (err says why).
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// do sends a JSON request (body nil: none) and reads the whole answer.
func (c *client) do(ctx context.Context, method, path string, body any) answer {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return answer{err: err}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return answer{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.jar != nil {
		for _, ck := range c.jar.Cookies(req.URL) {
			req.AddCookie(ck)
		}
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return answer{status: res.StatusCode, err: err}
	}
	if c.jar != nil {
		c.jar.SetCookies(req.URL, res.Cookies())
	}
	return answer{status: res.StatusCode, header: res.Header, body: raw}
}

// setup sends a request of the sign-up and login sequence, retrying while
// the server answers 429 or 503 (with its Retry-After, at most 5 s) or
// does not answer, until ctx ends; it fails on any other status than want.
func (u *user) setup(ctx context.Context, method, path string, body any, want int, out any) error {
	route := method + " " + path
	for {
		t0 := time.Now()
		a := u.c.do(ctx, method, path, body)
		if a.status == 0 && ctx.Err() != nil {
			return ctx.Err() // the run was cancelled: not the server's doing
		}
		u.rep.record(route, a.status, time.Since(t0), false)
		if a.status != want {
			u.onError(route, a.status)
		}
		switch {
		case a.status == want:
			if out != nil {
				if err := json.Unmarshal(a.body, out); err != nil {
					return fmt.Errorf("%s: %w", route, err)
				}
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case a.status == 0 || a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable:
			wait := time.Second
			if s, err := strconv.Atoi(a.header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(min(s, 5)) * time.Second
			}
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
		default:
			return fmt.Errorf("%s = %d %s", route, a.status, truncate(a.body, 200))
		}
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// models are the model ids the users request.
type models struct {
	name     string
	id       int64
	chatName string // "" when the server serves no chat model
	chatID   int64
}

// probeMaxID is the highest model id the probe asks for.
const probeMaxID = 64

// resolveModels finds the ids of the completion model (o.Model, or the
// first completion model /api/ping lists) and of the first chat model. The
// plugin API has no public model list with ids, so a throw-away user sends
// one completion request naming ids 1 to probeMaxID: the answer names every
// model the server knows, and says which are chat models.
func resolveModels(ctx context.Context, hc *http.Client, o Options) (*models, error) {
	c := newClient(o.BaseURL, hc)
	var ping struct {
		Details struct {
			Models []struct {
				Name string `json:"name"`
			} `json:"models"`
		} `json:"details"`
	}
	a := c.do(ctx, "GET", "/api/ping", nil)
	if a.err != nil || a.status != http.StatusOK {
		return nil, fmt.Errorf("loadtest: GET /api/ping: %d %v", a.status, a.err)
	}
	if err := json.Unmarshal(a.body, &ping); err != nil {
		return nil, fmt.Errorf("loadtest: GET /api/ping: %w", err)
	}
	u := &user{c: c, rep: newReport(o), email: fmt.Sprintf("load-probe-%d@example.com", time.Now().UnixNano())}
	if err := u.signup(ctx); err != nil {
		return nil, fmt.Errorf("loadtest: probe user: %w", err)
	}
	ids := make([]int64, probeMaxID)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	body := map[string]any{"model_ids": ids,
		"context":              map[string]any{"prefix": "package main\n\nfunc main() {\n\t", "suffix": "\n}\n", "file_name": "main.go"},
		"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 1},
		"behavioral_telemetry": map[string]any{}}
	var res struct {
		Data struct {
			Completions []struct {
				ModelID   int64  `json:"model_id"`
				ModelName string `json:"model_name"`
				Error     string `json:"error"`
			} `json:"completions"`
		} `json:"data"`
	}
	if err := u.setup(ctx, "POST", "/api/completion/request", body, http.StatusOK, &res); err != nil {
		return nil, fmt.Errorf("loadtest: model probe: %w", err)
	}
	m := &models{}
	completion := map[string]int64{}
	for _, it := range res.Data.Completions {
		switch {
		case it.Error == "unknown model":
		case it.Error == "model is a chat model, not a completion model":
			if m.chatName == "" {
				m.chatName, m.chatID = it.ModelName, it.ModelID
			}
		default:
			completion[it.ModelName] = it.ModelID
		}
	}
	want := o.Model
	if want == "" {
		for _, pm := range ping.Details.Models {
			if _, ok := completion[pm.Name]; ok {
				want = pm.Name
				break
			}
		}
	}
	id, ok := completion[want]
	if !ok {
		if o.Model != "" {
			return nil, fmt.Errorf("loadtest: the server serves no completion model %q", o.Model)
		}
		return nil, errors.New("loadtest: the server serves no completion model")
	}
	m.name, m.id = want, id
	return m, nil
}
