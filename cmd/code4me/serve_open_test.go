package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/testenv"
)

// TestServeOpenClients runs `code4me serve --open` as a process with no
// model configured and LLAMA_LISTEN set, as one user runs it for the
// editor clients on their machine: the second listener serves the
// llama.cpp API; a request from this machine without a key is served as
// OPEN_USER's and stored with the client named; and chat works out of the
// box, answered by the synthetic chat model serve loads beside the
// synthetic completion model, both reported synthetic in /api/ping.
func TestServeOpenClients(t *testing.T) {
	if testing.Short() {
		t.Skip("llama.cpp integration test")
	}
	dbURL := testenv.DatabaseURL(t)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	port, llamaPort := freeTCPPort(t), freeTCPPort(t)
	openUser := "open-" + uuid.NewString()[:8] + "@code4me.localhost"
	p := startTierProc(t, "serve --open", "DATABASE_URL="+dbURL, "REDIS_URL="+testenv.RedisURL(t),
		"SERVER_HOST=127.0.0.1", fmt.Sprintf("SERVER_PORT=%d", port), fmt.Sprintf("LLAMA_LISTEN=127.0.0.1:%d", llamaPort),
		"OPEN_USER="+openUser, "MODELS=", "MODEL_DIR="+filepath.Join(cache, "code4me-test-models", "serve"), "SYNTHETIC_MODEL=tiny",
		"ENGINE_PARALLEL=1", "ENGINE_THREADS=1", "DEFAULT_MAX_REQUEST_RATE_PER_HOUR=100000", "EMAIL_HOST=", "LOG_LEVEL=warn")
	base, llama := fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", llamaPort)

	hc := &http.Client{Timeout: 2 * time.Minute}
	// call sends body (nil: a GET) without credentials and returns the
	// status and the raw answer.
	call := func(url, body string, header ...string) (int, []byte) {
		t.Helper()
		method, rd := "GET", io.Reader(nil)
		if body != "" {
			method, rd = "POST", strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, url, rd)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return res.StatusCode, raw
	}

	// Ready once /api/ping answers 200 (migrations checked, models loaded).
	var ping struct {
		Details struct {
			Models []struct {
				Name      string `json:"name"`
				Synthetic bool   `json:"synthetic"`
			} `json:"models"`
		} `json:"details"`
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if res, err := http.Get(base + "/api/ping"); err == nil {
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				if err := json.Unmarshal(raw, &ping); err != nil {
					t.Fatalf("/api/ping: %v: %s", err, raw)
				}
				break
			}
		}
		if !p.running() {
			t.Fatalf("code4me serve --open exited before it was ready: %v", p.err)
		}
		if time.Now().After(deadline) {
			t.Fatal("code4me serve --open not ready after 3 minutes")
		}
	}
	models := map[string]bool{}
	for _, m := range ping.Details.Models {
		models[m.Name] = m.Synthetic
	}
	if len(models) != 2 || !models["synthetic-tiny"] || !models["synthetic-tiny-chat"] {
		t.Fatalf("/api/ping models %+v, want synthetic-tiny and synthetic-tiny-chat, both synthetic", ping.Details.Models)
	}

	// LLAMA_LISTEN serves the llama.cpp API.
	if status, raw := call(llama+"/health", ""); status != 200 || string(raw) != `{"status":"ok"}` {
		t.Fatalf("GET /health on LLAMA_LISTEN = %d %s", status, raw)
	}
	// llama.vim's request, with its empty api_key's empty bearer token.
	infill := `{"input_prefix":"def add(a, b):\n","input_suffix":"\n","input_extra":[],"prompt":"    return ","n_predict":4,` +
		`"n_indent":4,"top_k":40,"top_p":0.99,"stream":false,"samplers":["top_k","top_p","infill"],"cache_prompt":true,` +
		`"t_max_prompt_ms":500,"t_max_predict_ms":1000,"response_fields":["content","timings/prompt_n","tokens_cached"]}`
	status, raw := call(llama+"/infill", infill, "User-Agent", "curl/8.5.0", "Authorization", "Bearer ")
	var answer map[string]any
	if err := json.Unmarshal(raw, &answer); status != 200 || err != nil || len(answer) != 3 {
		t.Fatalf("POST /infill without a key = %d %s, want 200 with the 3 response_fields", status, raw)
	}
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var client, completion, model string
		if err := conn.QueryRow(ctx, `SELECT q.client, g.completion, m.name FROM meta_query q JOIN users u USING (user_id)
			JOIN generation g USING (meta_query_id) JOIN model m ON m.model_id = g.model_id WHERE u.email = $1`, openUser).
			Scan(&client, &completion, &model); err != nil {
			t.Fatalf("the open user's query: %v", err)
		}
		if client != "llama.vim" || model != "synthetic-tiny" || completion != answer["content"] {
			t.Fatalf("stored client %q model %q completion %q; answered %s", client, model, completion, raw)
		}
	}()

	// Chat out of the box: OpenAI's chat without a model name goes to the
	// synthetic chat model.
	status, raw = call(base+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hello"}],"max_tokens":4}`)
	var chat struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role    string  `json:"role"`
				Content *string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(raw, &chat); status != 200 || err != nil || chat.Object != "chat.completion" ||
		chat.Model != "synthetic-tiny-chat" || len(chat.Choices) != 1 || chat.Choices[0].Message.Role != "assistant" ||
		chat.Choices[0].Message.Content == nil {
		t.Fatalf("POST /v1/chat/completions = %d %s, want the synthetic chat model's answer", status, raw)
	}

	// A request that could come through a proxy is not the open user's.
	if status, raw := call(llama+"/infill", infill, "X-Forwarded-For", "203.0.113.9"); status != 401 {
		t.Fatalf("POST /infill through a proxy = %d %s, want 401", status, raw)
	}
}
