package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/testenv"
	"github.com/code4me/code4me/internal/workload"
)

// The server benchmarks replay one typing workload (a developer retyping
// a region of a Go standard-library file, one FIM request per keystroke)
// through POST /api/completion/request, with auth, redaction, context and
// persistence on, and straight into the engine with the same request, on
// the tiny synthetic model. Compare the two in one run:
//
//	go test -run XXX -bench 'CompletionRequest|EngineOnly|RedactKeystroke' -benchtime 200x ./server/
//
// Each reports p50/p95 per keystroke next to the mean.

func benchKeystrokes(b *testing.B) []workload.Keystroke {
	b.Helper()
	ty, err := workload.Build(filepath.Join(runtime.GOROOT(), "src", "net", "http"), 1,
		workload.Options{Files: 1, Keystrokes: 400, MaxPrefix: 4 << 10, MaxSuffix: 2 << 10})
	if err != nil {
		b.Fatal(err)
	}
	return ty[0].Keystrokes
}

// timed runs f once per iteration and reports latency percentiles.
func timed(b *testing.B, f func(i int)) {
	f(0)
	lat := make([]time.Duration, 0, b.N)
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		t0 := time.Now()
		f(i)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
}

// benchServer is a server with a logged-in plugin that has a project.
func benchServer(b *testing.B) (*Server, map[string]string, int64) {
	b.Helper()
	eng, _ := sharedEngine(b)
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	cfg.DataDir = b.TempDir()
	cfg.DefaultRatePerHour = 1 << 30
	srv, err := New(Deps{Config: cfg, DB: testenv.Pool(b), Redis: testenv.Redis(b), Engine: eng, JobQueue: testQueue()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	cookies := map[string]string{}
	email := fmt.Sprintf("bench-%d@example.com", time.Now().UnixNano())
	benchDo(b, srv, cookies, "POST", "/api/user/create", map[string]any{"email": email, "name": "Bench", "password": testPassword, "config_id": 1}, 201)
	benchDo(b, srv, cookies, "POST", "/api/user/authenticate", map[string]any{"email": email, "password": testPassword}, 200)
	benchDo(b, srv, cookies, "GET", "/api/session/acquire", nil, 200)
	benchDo(b, srv, cookies, "POST", "/api/project/create", map[string]any{"project_name": "bench"}, 201)
	m, ok := srv.plugin.models.ByName("tiny-coder")
	if !ok {
		b.Fatal("tiny-coder not registered")
	}
	return srv, cookies, m.ID
}

func benchDo(b *testing.B, srv *Server, cookies map[string]string, method, path string, body any, want int) []byte {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	res, err := srv.App().Test(req, -1)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		b.Fatalf("%s %s = %d %s", method, path, res.StatusCode, raw)
	}
	for _, ck := range res.Cookies() {
		cookies[ck.Name] = ck.Value
	}
	return raw
}

// BenchmarkCompletionRequest: one keystroke through the whole server.
func BenchmarkCompletionRequest(b *testing.B) {
	ks := benchKeystrokes(b)
	srv, cookies, id := benchServer(b)
	timed(b, func(i int) {
		k := ks[i%len(ks)]
		body := completionBody([]int64{id}, k.Prefix, k.Suffix)
		body["context"].(map[string]any)["file_name"] = k.File
		benchDo(b, srv, cookies, "POST", "/api/completion/request", body, 200)
	})
}

// BenchmarkEngineOnly: the same keystrokes and engine requests, without
// the server.
func BenchmarkEngineOnly(b *testing.B) {
	ks := benchKeystrokes(b)
	eng, _ := sharedEngine(b)
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	limit := LimitsOf(cfg).CompletionTokens
	timed(b, func(i int) {
		k := ks[i%len(ks)]
		_, err := eng.Complete(context.Background(), "tiny-coder", FIMRequest(k.Prefix, k.Suffix, k.File, nil, nil, "bench", limit, uint32(i)))
		if err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkRedactKeystroke16KiB: redacting a 16 KiB prefix (with planted
// secrets) as it grows by one character per keystroke, as the pipeline
// does.
func BenchmarkRedactKeystroke16KiB(b *testing.B) {
	srv, _, _ := benchServer(b)
	ks := benchKeystrokes(b)
	_, _, _, code := plantedSecrets()
	base := code
	for len(base) < 16<<10 {
		base += ks[len(ks)-1].Prefix
	}
	base = base[:16<<10]
	timed(b, func(i int) {
		p := ks[i%len(ks)].Prefix
		srv.plugin.redactor.Text(context.Background(), base+p[len(p)-min(len(p), 256):])
	})
}

// parseBodies is the request bodies of 200 keystrokes shaped as make
// bench-server's: a 12 KiB prefix, a 4 KiB suffix, context file names and
// both telemetries.
func parseBodies(b *testing.B) [][]byte {
	ty, err := workload.Build(filepath.Join(runtime.GOROOT(), "src"), 1,
		workload.Options{Files: 1, Keystrokes: 200, MaxPrefix: 12 << 10, MaxSuffix: 4 << 10})
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for _, k := range ty[0].Keystrokes {
		j, _ := json.Marshal(map[string]any{
			"model_ids": []int64{1},
			"context": map[string]any{"prefix": k.Prefix, "suffix": k.Suffix, "file_name": k.File, "selected_text": "",
				"context_files": []string{"a.go", "b.go"}},
			"store_context": true,
			"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 1,
				"file_path": k.File, "caret_line": 10, "document_char_length": 100, "relative_document_position": 0.5},
			"behavioral_telemetry": map[string]any{"time_since_last_shown": 180, "time_since_last_accepted": 5000, "typing_speed": 5.5},
		})
		out = append(out, j)
	}
	return out
}

// BenchmarkParseCompletionBody: checking and taking apart a keystroke's
// body (no redaction), which the request waits for before the model.
func BenchmarkParseCompletionBody(b *testing.B) {
	bodies := parseBodies(b)
	timed(b, func(i int) {
		f, err := jsonBytes(bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		parseCompletionRequest(f)
		if err := f.err(); err != nil {
			b.Fatal(err)
		}
	})
}
