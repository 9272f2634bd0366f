package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/workload"
	"github.com/code4me/code4me/server"
)

// runBenchServer replays the typing workload through POST
// /api/completion/request (auth, rate limit, redaction, multi-file context
// and persistence on, over loopback HTTP, on private Postgres and Redis)
// and, keystroke by keystroke in the same run, sends the bare engine the
// same engine request, and (HTTP only) the floor pipeline of floorServer.
// The paths use their own instances of the same model file, so each sees
// its own cache state, that of its previous keystroke; which path goes
// first rotates. It prints latency percentiles of each, the overhead of
// the platform and of the floor pipeline over the bare engine, the stages
// of the Server-Timing header, and the engine's own stages in the server
// against the bare engine's. With -remote it compares the direct path with
// the worker tier's instead (runBenchRemote).
func runBenchServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench server", flag.ContinueOnError)
	model := fs.String("model", "tiny", "model: synthetic shape[:type], GGUF path or pulled name")
	threads := fs.Int("threads", 1, "CPU threads for inference (more than the free cores makes ggml spin-wait)")
	keys := fs.Int("keystrokes", 150, "measured keystrokes (after one warm-up)")
	maxPrefix := fs.Int("max-prefix", 12<<10, "bytes of prefix in the editor window")
	maxSuffix := fs.Int("max-suffix", 4<<10, "bytes of suffix in the editor window")
	nFiles := fs.Int("context-files", 2, "multi-file context files sent with every keystroke")
	fileBytes := fs.Int("context-file-bytes", 4<<10, "bytes of each context file")
	storeCtx := fs.Bool("store-context", true, "ask the server to store each keystroke's context (the user consents)")
	wsPath := fs.Bool("ws", false, "send the keystrokes over /api/ws/completion (streamed) instead of POST /api/completion/request")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured keystrokes to this file")
	out := fs.String("out", "", "also append the markdown tables to this file")
	remotePath := fs.Bool("remote", false, "compare the direct path (the engine in process) with the remote path (serve --engine=remote and one code4me worker process), over HTTP")
	typists := fs.String("typists", "1,4", "with -remote: concurrent typists to measure")
	trips := fs.Int("round-trips", 200, "with -remote: samples of each notification timed after the keystrokes")
	retrieval := fs.Bool("retrieval", false, "lay out the context files' chunks nearest to the cursor (RETRIEVAL_TOP_K 8, embedded by the model itself) instead of the whole files; the bare engine still gets the whole files")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *remotePath {
		if *wsPath || *cpuProfile != "" {
			fmt.Fprintln(os.Stderr, "bench server: -remote runs over HTTP, without -ws or -cpuprofile")
			return errUsage
		}
		counts, err := typistCounts(*typists)
		if err != nil {
			return err
		}
		return runBenchRemote(ctx, remoteBenchOptions{model: *model, threads: *threads, keys: *keys, maxPrefix: *maxPrefix,
			maxSuffix: *maxSuffix, nFiles: *nFiles, fileBytes: *fileBytes, storeCtx: *storeCtx, typists: counts, trips: max(*trips, 2), out: *out})
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	if cfg.LogLevel == "" || strings.EqualFold(cfg.LogLevel, "info") || strings.EqualFold(cfg.LogLevel, "debug") {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	tmp, err := os.MkdirTemp("", "code4me-bench-server-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Searchable, so that when this process is root the postgres user's
	// cluster lives in tmp and goes with it, rather than under the system
	// root (devsvc).
	if err := os.Chmod(tmp, 0o711); err != nil {
		return err
	}
	// Private services in tmp, whatever the environment configures: the
	// benchmark writes thousands of rows and must not touch real data.
	cfg.DataDir = tmp
	cfg.DatabaseURL, cfg.DBHost, cfg.RedisURL, cfg.RedisHost = "", "", "", ""
	cfg.DefaultRatePerHour = 1 << 30
	cfg.RatePerHourByRoute = nil
	cfg.NThreads = *threads
	cfg.NParallel = 1
	cfg.NCtx = 4096
	cfg.RetrievalTopK = 0

	ref, err := resolveModel(ctx, cfg, *model)
	if err != nil {
		return err
	}
	bare := ref
	bare.Name += "-bare"
	floorRef := ref
	floorRef.Name += "-floor"
	e, err := newEngine(cfg, log, []modelRef{ref, bare, floorRef})
	if err != nil {
		return err
	}
	defer e.Close()

	root := filepath.Join(runtime.GOROOT(), "src")
	ws, err := workload.Build(root, 1, workload.Options{Files: 1, Keystrokes: *keys + 1, MaxPrefix: *maxPrefix, MaxSuffix: *maxSuffix})
	if err != nil {
		return err
	}
	ks := ws[0].Keystrokes
	files, err := benchContextFiles(root, ks[0].File, *nFiles, *fileBytes)
	if err != nil {
		return err
	}

	svc, err := startServices(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer svc.stop(log)
	lim := server.LimitsOf(cfg)
	reg, err := server.RegisterModels(ctx, svc.pool, e, nil, lim)
	if err != nil {
		return err
	}
	m, ok := reg.ByName(ref.Name)
	if !ok {
		return fmt.Errorf("model %s not registered", ref.Name)
	}
	// Each keystroke's server request and bare engine request share a
	// sampler seed, so both generate the same tokens and the difference
	// of their times is the platform's alone.
	var seed atomic.Uint32
	if *retrieval {
		cfg.RetrievalTopK, cfg.EmbeddingModel = 8, ref.Name
	}
	srv, err := server.New(server.Deps{Config: cfg, Log: log, DB: svc.pool, Redis: svc.rdb, Engine: e, Models: reg, Seed: seed.Load})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(ln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	cl, err := newBenchClient("http://" + ln.Addr().String())
	if err != nil {
		return err
	}
	if err := cl.login(ctx, files); err != nil {
		return err
	}
	if *retrieval {
		if err := waitEmbedded(ctx, svc); err != nil {
			return err
		}
	}
	var floorSrv *floorServer
	if !*wsPath {
		if floorSrv, err = startFloorServer(e, floorRef.Name, svc); err != nil {
			return err
		}
		defer floorSrv.app.Shutdown()
	}
	var sock *benchWS
	if *wsPath {
		if sock, err = cl.dialWS(ln.Addr().String()); err != nil {
			return err
		}
		defer sock.conn.Close()
	}

	names := make([]string, len(files))
	extra := make([]engine.Chunk, len(files))
	ctxBytes := 0
	for i, f := range files {
		names[i] = f.name
		extra[i] = engine.Chunk{Path: f.name, Text: f.text}
		ctxBytes += len(f.text)
	}
	var srvLat, engLat, inSrv, paired, firstTok, floorPaired []float64
	same := 0
	stages := map[string][]float64{}
	// Each engine stage inside the server minus the same stage of the bare
	// engine's run of the same keystroke: where the engine itself runs
	// slower when the platform works beside it.
	engStages := []string{server.StageTokenize, server.StageQueue, server.StagePrefill, server.StageDecode}
	engDiff := map[string][]float64{}
	var genTokens, cachedTokens, promptTokens int
	var srvStats0 engine.Stats // the server's model after the warm-up
	var prof *os.File
	for i, k := range ks {
		body, err := json.Marshal(benchCompletionBody(m.ID, k, names, *storeCtx))
		if err != nil {
			return err
		}
		seed.Store(uint32(i) * 2654435761)
		req := server.FIMRequest(k.Prefix, k.Suffix, k.File, extra, nil, "bare\x00"+k.File, lim.CompletionTokens, seed.Load())
		var sMS, eMS, firstMS float64
		var st map[string]float64
		var text string
		var res *engine.Result
		runServer := func() error {
			if sock != nil {
				var err error
				sMS, firstMS, text, err = sock.complete(i, body)
				return err
			}
			t0 := time.Now()
			h, out, err := cl.complete(ctx, body)
			sMS = msSince(t0)
			st, text = h, out
			return err
		}
		runEngine := func() error {
			t0 := time.Now()
			r, err := e.Complete(ctx, bare.Name, req)
			eMS = msSince(t0)
			res = r
			if err == nil && r.Stop == engine.StopError {
				err = r.Err
			}
			return err
		}
		var floorMS float64
		var floorRes floorAnswer
		runs := []func() error{runServer, runEngine}
		if floorSrv != nil {
			runs = append(runs, func() error {
				t0 := time.Now()
				var err error
				floorRes, err = floorSrv.complete(ctx, cl, body, req)
				floorMS = msSince(t0)
				return err
			})
		}
		// Which path goes first rotates.
		for j := range runs {
			if err := runs[(i+j)%len(runs)](); err != nil {
				return fmt.Errorf("keystroke %d: %w", i, err)
			}
		}
		if i == 0 { // warm-up: fills both caches and the server's
			if sc, err := e.Get(ref.Name); err == nil {
				srvStats0 = sc.Stats()
			}
			if *cpuProfile != "" {
				if prof, err = os.Create(*cpuProfile); err != nil {
					return err
				}
				pprof.StartCPUProfile(prof)
			}
			continue
		}
		srvLat = append(srvLat, sMS)
		engLat = append(engLat, eMS)
		paired = append(paired, sMS-eMS)
		if floorSrv != nil {
			floorPaired = append(floorPaired, floorMS-eMS)
			stages["floorcommit"] = append(stages["floorcommit"], floorRes.CommitMS)
		}
		if text == res.Text {
			same++
		}
		genTokens += res.Timings.GeneratedTokens
		cachedTokens += res.Timings.CachedTokens
		promptTokens += res.Timings.PromptTokens
		if i%25 == 0 {
			fmt.Fprintf(os.Stderr, "keystroke %d/%d\n", i, len(ks)-1)
		}
		if sock != nil {
			if firstMS > 0 {
				firstTok = append(firstTok, firstMS)
			}
			continue // no Server-Timing over the WebSocket
		}
		engIn := st[server.StageTokenize] + st[server.StageQueue] + st[server.StagePrefill] + st[server.StageDecode]
		inSrv = append(inSrv, sMS-engIn)
		bt := res.Timings
		for j, v := range []float64{bt.TokenizeMS, bt.QueueMS, bt.PrefillMS, bt.DecodeMS} {
			engDiff[engStages[j]] = append(engDiff[engStages[j]], st[engStages[j]]-v)
		}
		engDiff["engine"] = append(engDiff["engine"], engIn-engineMS(bt))
		if floorSrv != nil {
			engDiff["floor"] = append(engDiff["floor"], floorRes.EngineMS-engineMS(bt))
		}
		engDiff["outside"] = append(engDiff["outside"], eMS-engineMS(bt))
		for n, v := range st {
			stages[n] = append(stages[n], v)
		}
		stages["http"] = append(stages["http"], sMS-st[server.StageTotal])
		inPath := 0.0
		for _, n := range []string{server.StageBodyWait, server.StageContext, server.StageTokenize, server.StageQueue, server.StagePrefill, server.StageDecode, server.StageOutput, server.StageStore} {
			inPath += st[n]
		}
		stages["gap"] = append(stages["gap"], st[server.StageTotal]-inPath)
	}
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}

	floor, err := roundTrips(ctx, cl, svc)
	if err != nil {
		return err
	}

	n := len(srvLat)
	for _, l := range [][]float64{srvLat, engLat, inSrv, paired, firstTok, floorPaired} {
		slices.Sort(l)
	}
	for _, l := range stages {
		slices.Sort(l)
	}
	for _, l := range engDiff {
		slices.Sort(l)
	}
	var b strings.Builder
	label := ref.Name
	if ref.Synthetic {
		label += " (synthetic weights, real shape)"
	}
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Server typing benchmark: model %s, %d thread(s), window %d/%d bytes prefix/suffix, %d context files of %d bytes (%.1f KiB of context per keystroke), %d keystrokes interleaved server/engine, context stored: %v, %s, GOMAXPROCS %d, commit %s, host %s, %s\n\n",
		label, *threads, *maxPrefix, *maxSuffix, len(files), *fileBytes, float64(len(ks[len(ks)-1].Prefix)+len(ks[len(ks)-1].Suffix)+ctxBytes)/1024,
		n, *storeCtx, cpuModel(), runtime.GOMAXPROCS(0), buildVersion(), host, time.Now().UTC().Format("2006-01-02"))
	path := "server (HTTP, auth, redaction, context, persistence)"
	if sock != nil {
		path = "server over the WebSocket (streamed; auth, redaction, context, persistence)"
	}
	b.WriteString("| path | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| engine alone | %.2f | %.2f | %.2f |\n", pct(engLat, 50), pct(engLat, 95), pct(engLat, 99))
	fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f |\n", path, pct(srvLat, 50), pct(srvLat, 95), pct(srvLat, 99))
	fmt.Fprintf(&b, "| **server minus engine alone, per keystroke** (same request and seed) | **%.2f** | %.2f | %.2f |\n", pct(paired, 50), pct(paired, 95), pct(paired, 99))
	if sock != nil {
		fmt.Fprintf(&b, "| first token frame after the request frame (%d keystrokes streamed one) | %.2f | %.2f | %.2f |\n", len(firstTok), pct(firstTok, 50), pct(firstTok, 95), pct(firstTok, 99))
	} else {
		fmt.Fprintf(&b, "| server minus its own engine time, per request | %.2f | %.2f | %.2f |\n", pct(inSrv, 50), pct(inSrv, 95), pct(inSrv, 99))
		fmt.Fprintf(&b, "| floor pipeline (HTTP, engine, one committed INSERT, nothing else) minus engine alone, per keystroke | %.2f | %.2f | %.2f |\n", pct(floorPaired, 50), pct(floorPaired, 95), pct(floorPaired, 99))
	}
	fmt.Fprintf(&b, "\nServer/engine p50: %.3f×; engine: %.1f generated tokens, %.0f of %.0f prompt tokens from cache per keystroke; the server answered the bare engine's completion on %d of %d keystrokes\n",
		pct(srvLat, 50)/pct(engLat, 50), float64(genTokens)/float64(n), float64(cachedTokens)/float64(n), float64(promptTokens)/float64(n), same, n)
	if sc, err := e.Get(ref.Name); err == nil {
		s1 := sc.Stats()
		cached, prompt := s1.CachedTokens-srvStats0.CachedTokens, s1.PromptTokens-srvStats0.PromptTokens
		fmt.Fprintf(&b, "\nThe server's model (retrieval %v): %.0f of %.0f prompt tokens from cache per keystroke (%.1f %%)\n",
			*retrieval, float64(cached)/float64(n), float64(prompt)/float64(n), 100*float64(cached)/float64(max(prompt, 1)))
	}
	b.WriteString("\n")
	if sock == nil {
		b.WriteString("| stage (Server-Timing) | p50 ms | p95 ms |\n|---|---|---|\n")
	}
	for _, s := range []string{server.StageAuth, server.StageRateLimit, server.StageBodyWait, server.StageParse, server.StageLookup, server.StageRedact,
		server.StageContext, server.StageTokenize, server.StageQueue, server.StagePrefill, server.StageDecode, server.StageOutput,
		server.StageStore, server.StageTotal, "gap", "http", "floorcommit"} {
		l := stages[s]
		if len(l) == 0 {
			continue
		}
		name := s
		switch s {
		case "http":
			name = "http (client wall minus server total)"
		case "gap":
			name = "total minus the stages on its path (handoffs between them)"
		case "floorcommit":
			name = "(floor pipeline: its commit of one narrow row, after its engine)"
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f |\n", name, pct(l, 50), pct(l, 95))
	}
	if len(engDiff["engine"]) > 0 {
		b.WriteString("\nThe engine's own stages, server's run minus the bare engine's run of the same keystroke (positive: slower inside the server):\n\n| engine stage | p50 ms | p95 ms |\n|---|---|---|\n")
		for _, s := range append(engStages, "engine") {
			fmt.Fprintf(&b, "| %s | %.2f | %.2f |\n", s, pct(engDiff[s], 50), pct(engDiff[s], 95))
		}
		if l := engDiff["floor"]; len(l) > 0 {
			fmt.Fprintf(&b, "| (floor pipeline's engine, all stages, minus the bare engine's) | %.2f | %.2f |\n", pct(l, 50), pct(l, 95))
		}
		fmt.Fprintf(&b, "| (bare engine: Complete's wall minus its stages) | %.2f | %.2f |\n", pct(engDiff["outside"], 50), pct(engDiff["outside"], 95))
	}
	b.WriteString("\nRound trips on this machine in the same run (the floor under the stages above):\n\n| round trip | p50 ms | p95 ms |\n|---|---|---|\n")
	for _, f := range floor {
		fmt.Fprintf(&b, "| %s | %.3f | %.3f |\n", f.name, pct(f.ms, 50), pct(f.ms, 95))
	}
	return report(b.String(), *out)
}

// floorServer is the least a completion server can do per keystroke under
// this project's rules: receive the request over HTTP, run the model,
// commit one row before answering (nothing is acknowledged before it is
// durable) and answer. It parses
// nothing, checks nobody and redacts nothing (the engine request is handed
// over in process), so its time over the bare engine's is the floor of the
// round trips on this machine, measured beside the real server.
type floorServer struct {
	app  *fiber.App
	base string
	next chan engine.Request // the engine request of the request being sent
}

func startFloorServer(e *engine.Engine, model string, svc *services) (*floorServer, error) {
	ctx := context.Background()
	if _, err := svc.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_floor_completion (id uuid PRIMARY KEY, completion text NOT NULL)`); err != nil {
		return nil, err
	}
	f := &floorServer{app: fiber.New(fiber.Config{DisableStartupMessage: true}), next: make(chan engine.Request, 1)}
	f.app.Post("/floor", func(c *fiber.Ctx) error {
		r, err := e.Complete(c.UserContext(), model, <-f.next)
		if err == nil && r.Stop == engine.StopError {
			err = r.Err
		}
		if err != nil {
			return err
		}
		id, t0 := uuid.New(), time.Now()
		if _, err := svc.pool.Exec(c.UserContext(), `INSERT INTO bench_floor_completion VALUES ($1, $2)`, id, strings.ReplaceAll(r.Text, "\x00", "\uFFFD")); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"id": id, "completion": r.Text, "commit_ms": msSince(t0), "engine_ms": engineMS(r.Timings)})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go f.app.Listener(ln)
	f.base = "http://" + ln.Addr().String()
	return f, nil
}

// engineMS is the time of an engine request's stages.
func engineMS(t engine.Timings) float64 { return t.TokenizeMS + t.QueueMS + t.PrefillMS + t.DecodeMS }

// floorAnswer is what the floor server reports of a request.
type floorAnswer struct {
	CommitMS float64 `json:"commit_ms"` // its commit
	EngineMS float64 `json:"engine_ms"` // the engine's stages
}

// complete sends body to the floor server, which runs req.
func (f *floorServer) complete(ctx context.Context, cl *benchClient, body []byte, req engine.Request) (floorAnswer, error) {
	f.next <- req
	var res floorAnswer
	_, raw, err := cl.doURL(ctx, "POST", f.base+"/floor", body, 200)
	if err != nil {
		return res, fmt.Errorf("floor server: %w", err)
	}
	return res, json.Unmarshal(raw, &res)
}

// roundTrip is the latencies of one kind of round trip, sorted.
type roundTrip struct {
	name string
	ms   []float64
}

// roundTrips times the cheapest request of each kind the server makes per
// keystroke: an HTTP request to /api/ping, a Redis PING, a Postgres
// SELECT 1, and a Postgres commit of one small row, with its WAL flush and
// without; then the durable commit after idling, primed by each of two
// other requests.
func roundTrips(ctx context.Context, cl *benchClient, svc *services) ([]roundTrip, error) {
	// The benchmark's database is private and thrown away with it.
	if _, err := svc.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_floor (v int)`); err != nil {
		return nil, err
	}
	kinds := []struct {
		name string
		do   func() error
	}{
		{"HTTP GET /api/ping (loopback, same client)", func() error { _, _, err := cl.do(ctx, "GET", "/api/ping", nil, 200); return err }},
		{"Redis PING", func() error { return svc.rdb.Ping(ctx).Err() }},
		{"Postgres SELECT 1", func() error { _, err := svc.pool.Exec(ctx, "SELECT 1"); return err }},
		{"Postgres INSERT of one row, committed (WAL flush)", func() error {
			_, err := svc.pool.Exec(ctx, "INSERT INTO bench_floor VALUES (1)")
			return err
		}},
		// The same commit without waiting for the WAL flush (the setting
		// is local to the statement's implicit transaction): the difference
		// is what this machine's disk adds to every durable commit.
		{"Postgres INSERT of one row, committed without the WAL flush (synchronous_commit off)", func() error {
			_, err := svc.pool.Exec(ctx, "WITH s AS (SELECT set_config('synchronous_commit', 'off', true)) INSERT INTO bench_floor SELECT 1 FROM s")
			return err
		}},
	}
	var out []roundTrip
	for _, idle := range []time.Duration{0, 40 * time.Millisecond} {
		for _, k := range kinds {
			name := k.name + ", back to back"
			if idle > 0 {
				name = fmt.Sprintf("%s, after %v idle", k.name, idle)
			}
			r, err := sample(name, 200, func() error { time.Sleep(idle); return nil }, k.do)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	// What wakes up after idle: the durable commit again, 40 ms after the
	// last request, but 1 ms after a first request that either only wakes
	// Postgres (SELECT 1) or also flushes the WAL (a committed INSERT).
	// Only the second makes the commit cheap when what sleeps is this
	// machine's write path to its disk, not the Postgres process.
	selectOne, commit := kinds[2], kinds[3]
	for _, first := range []struct {
		name string
		do   func() error
	}{selectOne, commit} {
		r, err := sample(fmt.Sprintf("%s, after 40ms idle, 1 ms after a %s", commit.name, first.name), 100, func() error {
			time.Sleep(40 * time.Millisecond)
			if err := first.do(); err != nil {
				return fmt.Errorf("%s: %w", first.name, err)
			}
			time.Sleep(time.Millisecond)
			return nil
		}, commit.do)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// sample times do n+1 times, each after before (not timed), and keeps all
// but the first time, sorted.
func sample(name string, n int, before, do func() error) (roundTrip, error) {
	r := roundTrip{name: name}
	for i := 0; i <= n; i++ {
		if err := before(); err != nil {
			return r, err
		}
		t0 := time.Now()
		if err := do(); err != nil {
			return r, fmt.Errorf("%s: %w", name, err)
		}
		if i > 0 {
			r.ms = append(r.ms, msSince(t0))
		}
	}
	slices.Sort(r.ms)
	return r, nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Nanoseconds()) / 1e6 }

// benchFile is a multi-file context file: its name and text.
type benchFile struct{ name, text string }

// benchContextFiles takes the first size bytes (whole lines) of n source
// files other than skip.
func benchContextFiles(root, skip string, n, size int) ([]benchFile, error) {
	all, err := workload.SourceFiles(root, size)
	if err != nil {
		return nil, err
	}
	var out []benchFile
	for i := 0; i < len(all) && len(out) < n; i += max(len(all)/(n+1), 1) {
		rel, _ := filepath.Rel(root, all[i])
		if rel == skip {
			continue
		}
		b, err := os.ReadFile(all[i])
		if err != nil {
			return nil, err
		}
		t := string(b[:min(size, len(b))])
		if j := strings.LastIndexByte(t, '\n'); j > 0 {
			t = t[:j]
		}
		out = append(out, benchFile{rel, t})
	}
	if len(out) < n {
		return nil, fmt.Errorf("only %d context files of %d bytes under %s", len(out), size, root)
	}
	return out, nil
}

func benchCompletionBody(modelID int64, k workload.Keystroke, files []string, storeContext bool) map[string]any {
	return map[string]any{
		"model_ids": []int64{modelID},
		"context": map[string]any{"prefix": k.Prefix, "suffix": k.Suffix, "file_name": k.File, "selected_text": "",
			"context_files": files},
		"store_context": storeContext,
		"contextual_telemetry": map[string]any{"version_id": 1, "trigger_type_id": 1, "language_id": 1,
			"file_path": k.File, "caret_line": strings.Count(k.Prefix, "\n"), "document_char_length": len(k.Prefix) + len(k.Suffix),
			"relative_document_position": float64(len(k.Prefix)) / float64(max(len(k.Prefix)+len(k.Suffix), 1))},
		"behavioral_telemetry": map[string]any{"time_since_last_shown": 180, "time_since_last_accepted": 5000, "typing_speed": 5.5},
	}
}

// benchClient is a plugin over HTTP: cookies for auth, session and project.
type benchClient struct {
	base string
	hc   *http.Client
}

func newBenchClient(base string) (*benchClient, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	return &benchClient{base: base, hc: &http.Client{Jar: jar, Timeout: time.Minute}}, nil
}

// do sends a JSON request and returns the response's headers and body,
// failing unless the status is want.
func (c *benchClient) do(ctx context.Context, method, path string, body []byte, want int) (http.Header, []byte, error) {
	return c.doURL(ctx, method, c.base+path, body, want)
}

// doURL is do for a URL of any server.
func (c *benchClient) doURL(ctx context.Context, method, target string, body []byte, want int) (http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, err
	}
	if res.StatusCode != want {
		return nil, nil, fmt.Errorf("%s %s = %d %s", method, target, res.StatusCode, raw)
	}
	return res.Header, raw, nil
}

// login creates a user who stores context, logs in, acquires a session,
// creates a project and uploads the context files.
func (c *benchClient) login(ctx context.Context, files []benchFile) error {
	const pw = "Bench-Passw0rd"
	email := fmt.Sprintf("bench-%d@example.com", time.Now().UnixNano())
	steps := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/api/user/create", map[string]any{"email": email, "name": "Bench", "password": pw, "config_id": 1}, 201},
		{"POST", "/api/user/authenticate", map[string]any{"email": email, "password": pw}, 200},
		{"PUT", "/api/user/update", map[string]any{"preference": map[string]any{"store_context": true,
			"store_contextual_telemetry": true, "store_behavioral_telemetry": true}}, 201},
		{"GET", "/api/session/acquire", nil, 200},
		{"POST", "/api/project/create", map[string]any{"project_name": "bench"}, 201},
	}
	ups := map[string]any{}
	for _, f := range files {
		ups[f.name] = []map[string]any{{"change_type": "insert", "start_line": 0, "end_line": 0, "new_lines": strings.Split(f.text, "\n")}}
	}
	steps = append(steps, struct {
		method, path string
		body         any
		want         int
	}{"POST", "/api/completion/multi-file-context/update", map[string]any{"context_updates": ups}, 200})
	for _, s := range steps {
		var body []byte
		if s.body != nil {
			body, _ = json.Marshal(s.body)
		}
		if _, _, err := c.do(ctx, s.method, s.path, body, s.want); err != nil {
			return err
		}
	}
	return nil
}

// complete sends one completion request and returns its Server-Timing
// stages and the completion.
func (c *benchClient) complete(ctx context.Context, body []byte) (map[string]float64, string, error) {
	h, raw, err := c.do(ctx, "POST", "/api/completion/request", body, 200)
	if err != nil {
		return nil, "", err
	}
	var res completionAnswer
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, "", err
	}
	text, ok := res.only()
	if !ok {
		return nil, "", fmt.Errorf("completion failed: %s", raw)
	}
	st := parseServerTiming(h.Get("Server-Timing"))
	if len(st) == 0 {
		return nil, "", errors.New("response has no Server-Timing header")
	}
	return st, text, nil
}

// completionAnswer is what the benchmark reads of a completion answer (the
// HTTP body, the WebSocket result frame's content).
type completionAnswer struct {
	Data struct {
		Completions []struct {
			Completion string `json:"completion"`
			Error      string `json:"error"`
		} `json:"completions"`
	} `json:"data"`
}

// only returns the answer's one completion; false when it has not
// exactly one, or an error item.
func (b *completionAnswer) only() (string, bool) {
	cs := b.Data.Completions
	if len(cs) != 1 || cs[0].Error != "" {
		return "", false
	}
	return cs[0].Completion, true
}

// benchWS is the plugin's completion WebSocket.
type benchWS struct{ conn *websocket.Conn }

// dialWS opens /api/ws/completion with the client's cookies.
func (c *benchClient) dialWS(addr string) (*benchWS, error) {
	u, err := url.Parse(c.base)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for _, ck := range c.hc.Jar.Cookies(u) {
		h.Add("Cookie", ck.String())
	}
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/ws/completion", h)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	return &benchWS{conn: conn}, nil
}

// complete sends keystroke i's completion_request and reads its frames up
// to the result: the milliseconds to the result and to the first token
// frame (0 when none came), and the completion.
func (w *benchWS) complete(i int, body []byte) (total, first float64, text string, err error) {
	id := "k" + strconv.Itoa(i)
	frame := append(append([]byte(`{"request_id":"`+id+`","completion_request":`), body...), '}')
	w.conn.SetReadDeadline(time.Now().Add(time.Minute))
	t0 := time.Now()
	if err := w.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
		return 0, 0, "", err
	}
	for {
		_, data, err := w.conn.ReadMessage()
		if err != nil {
			return 0, 0, "", err
		}
		var f struct {
			Type       string           `json:"type"`
			RequestID  string           `json:"request_id"`
			StatusCode int              `json:"status_code"`
			Content    completionAnswer `json:"content"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return 0, 0, "", err
		}
		switch {
		case f.RequestID != id:
			return 0, 0, "", fmt.Errorf("websocket: frame for %q while waiting for %q: %s", f.RequestID, id, data)
		case f.Type == "completion_token" && first == 0:
			first = msSince(t0)
		case f.Type == "completion_result":
			text, ok := f.Content.only()
			if f.StatusCode != 200 || !ok {
				return 0, 0, "", fmt.Errorf("websocket: completion failed: %s", data)
			}
			return msSince(t0), first, text, nil
		case f.Type != "completion_token":
			return 0, 0, "", fmt.Errorf("websocket: unexpected frame %s", data)
		}
	}
}

// parseServerTiming reads `name;dur=ms, ...`.
func parseServerTiming(h string) map[string]float64 {
	out := map[string]float64{}
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "dur="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					out[name] = f
				}
			}
		}
	}
	return out
}

// waitEmbedded waits until the embedding job has embedded every chunk of
// the context files (-retrieval).
func waitEmbedded(ctx context.Context, svc *services) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		var all, pending int
		if err := svc.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE embedding IS NULL) FROM project_context_chunk`).Scan(&all, &pending); err != nil {
			return err
		}
		if all > 0 && pending == 0 {
			fmt.Fprintf(os.Stderr, "%d context chunks embedded\n", all)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("bench server: the context chunks were not embedded in 10 minutes")
}
