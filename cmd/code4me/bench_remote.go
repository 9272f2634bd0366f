package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/internal/workload"
	"github.com/code4me/code4me/server"
)

// remoteBenchOptions are the flags of `bench server -remote`.
type remoteBenchOptions struct {
	model                string
	threads, keys        int
	maxPrefix, maxSuffix int
	nFiles, fileBytes    int
	storeCtx             bool
	typists              []int
	trips                int // samples of each notification
	out                  string
}

// The two paths of `bench server -remote`.
const (
	pathDirect = iota // serve with the in-process engine
	pathRemote        // serve --engine=remote, one `code4me worker` process
)

// runBenchRemote is `bench server -remote`: the typing workload through
// POST /api/completion/request of two servers on the same private
// Postgres and Redis, one with the model in process (the direct path) and
// one sending every request to the worker tier (Deps.Remote), served by
// one `code4me worker` process started from this binary. Each keystroke
// goes to both, which goes first rotating, for each count of typists
// (typing at once, closed loop). The worker is a separate process, as in
// a deployment: its engine, River client and Redis publisher do not share
// this process's scheduler, and replies cross a process boundary.
func runBenchRemote(ctx context.Context, o remoteBenchOptions) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tmp, err := os.MkdirTemp("", "code4me-bench-remote-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o711); err != nil { // see runBenchServer
		return err
	}
	most := slices.Max(o.typists)
	// Private services in tmp, as in runBenchServer; the worker gets the
	// same settings through its environment.
	cfg.DataDir = tmp
	cfg.DatabaseURL, cfg.DBHost, cfg.RedisURL, cfg.RedisHost = "", "", "", ""
	cfg.DefaultRatePerHour = 1 << 30
	cfg.RatePerHourByRoute = nil
	cfg.NThreads = o.threads
	cfg.NParallel = most
	cfg.NCtx = 4096
	// Both paths lay out the whole context files: the remote path has no
	// engine to embed with, so retrieval would make the prompts differ.
	cfg.RetrievalTopK = 0

	ref, err := resolveModel(ctx, cfg, o.model)
	if err != nil {
		return err
	}
	direct := ref
	direct.Name += "-direct"
	e, err := newEngine(cfg, log, []modelRef{direct})
	if err != nil {
		return err
	}
	defer e.Close()

	root := filepath.Join(runtime.GOROOT(), "src")
	ws, err := workload.Build(root, most, workload.Options{Files: 1, Keystrokes: o.keys + 1, MaxPrefix: o.maxPrefix, MaxSuffix: o.maxSuffix})
	if err != nil {
		return err
	}
	files, err := benchContextFiles(root, ws[0].Keystrokes[0].File, o.nFiles, o.fileBytes)
	if err != nil {
		return err
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}

	svc, err := startServices(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer svc.stop(log)
	reg, err := server.RegisterModels(ctx, svc.pool, e, nil, server.LimitsOf(cfg))
	if err != nil {
		return err
	}
	dm, ok := reg.ByName(direct.Name)
	if !ok {
		return fmt.Errorf("model %s not registered", direct.Name)
	}

	wk, err := startBenchWorker(cfg, svc, o.model)
	if err != nil {
		return err
	}
	defer wk.stop()
	rc, err := remote.NewClient(ctx, svc.pool, svc.rdb, log)
	if err != nil {
		return err
	}
	defer rc.Close()
	fmt.Fprintln(os.Stderr, "waiting for the worker to load the model")
	remoteID, err := wk.waitServing(ctx, rc, ref.Name, most)
	if err != nil {
		return err
	}

	// Both servers give every request the same sampler seed, so a
	// keystroke generates the same tokens on both paths.
	seed := func() uint32 { return 0x9e3779b9 }
	var bases [2]string
	for p, d := range []server.Deps{
		pathDirect: {Config: cfg, Log: log, DB: svc.pool, Redis: svc.rdb, Engine: e, Models: reg, Seed: seed},
		pathRemote: {Config: cfg, Log: log, DB: svc.pool, Redis: svc.rdb, Remote: rc, Seed: seed},
	} {
		srv, err := server.New(d)
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
		bases[p] = "http://" + ln.Addr().String()
	}

	// Each typist is a user with its own session and project. The servers
	// share Redis and Postgres, so its cookies hold on both.
	clients := make([][2]*benchClient, most)
	for t := range clients {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return err
		}
		hc := &http.Client{Jar: jar, Timeout: time.Minute}
		for p := range bases {
			clients[t][p] = &benchClient{base: bases[p], hc: hc}
		}
		if err := clients[t][pathDirect].login(ctx, files); err != nil {
			return err
		}
	}

	var phases []remotePhase
	for _, n := range o.typists {
		ph, err := runRemotePhase(ctx, svc, ws[:n], clients[:n], [2]int64{dm.ID, remoteID}, names, o.storeCtx)
		if err != nil {
			return fmt.Errorf("%d typist(s): %w", n, err)
		}
		phases = append(phases, ph)
		fmt.Fprintf(os.Stderr, "done: %d typist(s)\n", n)
	}
	trips, err := wakeUps(ctx, svc, o.trips)
	if err != nil {
		return err
	}
	return report(remoteReport(o, ref, files, wk.pid(), phases, trips), o.out)
}

// remotePhase is what one count of typists measured.
type remotePhase struct {
	typists int
	lat     [2][]float64 // per keystroke, sorted
	paired  []float64    // remote minus direct, the same keystroke, sorted
	same    int          // keystrokes with the same completion on both paths
	stages  [2]map[string][]float64
	cache   [2]cacheShare
	// The remote path's keystrokes split at the job's timestamps; jobs is
	// how many keystrokes were matched to their job.
	split map[string][]float64
	jobs  int
}

// benchAnswer is one request of one typist on one path.
type benchAnswer struct {
	send, recv time.Time
	ms         float64
	st         map[string]float64
	text       string
}

// runRemotePhase sends each keystroke of the typists to both paths: all
// typists at once on one path, then on the other, the first path
// alternating. The first keystroke warms the caches and is not measured.
func runRemotePhase(ctx context.Context, svc *services, ws []workload.Typist, clients [][2]*benchClient, ids [2]int64,
	names []string, storeCtx bool) (remotePhase, error) {
	n, keys := len(ws), len(ws[0].Keystrokes)
	ans := make([][2][]benchAnswer, n)
	for t := range ans {
		for p := range ans[t] {
			ans[t][p] = make([]benchAnswer, keys)
		}
	}
	var start time.Time
	for i := range keys {
		for j := range 2 {
			p := (i + j) % 2
			var wg sync.WaitGroup
			errs := make([]error, n)
			for t := range n {
				wg.Go(func() {
					body, err := json.Marshal(benchCompletionBody(ids[p], ws[t].Keystrokes[i], names, storeCtx))
					if err != nil {
						errs[t] = err
						return
					}
					a := &ans[t][p][i]
					a.send = time.Now()
					a.st, a.text, errs[t] = clients[t][p].complete(ctx, body)
					a.recv = time.Now()
					a.ms = float64(a.recv.Sub(a.send).Nanoseconds()) / 1e6
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return remotePhase{}, fmt.Errorf("keystroke %d, %s path: %w", i, pathName(p), err)
			}
		}
		if i == 0 {
			start = time.Now()
		}
		if i%25 == 0 {
			fmt.Fprintf(os.Stderr, "%d typist(s): keystroke %d/%d\n", n, i, keys-1)
		}
	}

	ph := remotePhase{typists: n, stages: [2]map[string][]float64{{}, {}}, split: map[string][]float64{}}
	for t := range n {
		for i := 1; i < keys; i++ {
			d, r := ans[t][pathDirect][i], ans[t][pathRemote][i]
			ph.paired = append(ph.paired, r.ms-d.ms)
			if d.text == r.text {
				ph.same++
			}
			for p, a := range []benchAnswer{d, r} {
				ph.lat[p] = append(ph.lat[p], a.ms)
				for s, v := range a.st {
					ph.stages[p][s] = append(ph.stages[p][s], v)
				}
				ph.stages[p]["gap"] = append(ph.stages[p]["gap"], a.st[server.StageTotal]-onPath(a.st))
				ph.stages[p]["http"] = append(ph.stages[p]["http"], a.ms-a.st[server.StageTotal])
			}
		}
	}
	var err error
	for p := range ids {
		if ph.cache[p], err = cacheShareOf(ctx, svc, ids[p], start); err != nil {
			return ph, err
		}
	}
	if err := splitRemote(ctx, svc, ws, ans, start, &ph); err != nil {
		return ph, err
	}
	for p := range ph.lat {
		slices.Sort(ph.lat[p])
		for _, l := range ph.stages[p] {
			slices.Sort(l)
		}
	}
	slices.Sort(ph.paired)
	for _, l := range ph.split {
		slices.Sort(l)
	}
	return ph, nil
}

func pathName(p int) string { return [2]string{"direct", "remote"}[p] }

// onPath is the time of the Server-Timing stages one after another on a
// completion's path (as in runBenchServer's gap).
func onPath(st map[string]float64) float64 {
	sum := 0.0
	for _, n := range []string{server.StageBodyWait, server.StageContext, server.StageTokenize, server.StageQueue, server.StagePrefill,
		server.StageDecode, server.StageOutput, server.StageStore} {
		sum += st[n]
	}
	return sum
}

// engineStages is the engine's own time in a Server-Timing header: on the
// remote path, the worker's engine's, carried back with its result.
func engineStages(st map[string]float64) float64 {
	return st[server.StageTokenize] + st[server.StageQueue] + st[server.StagePrefill] + st[server.StageDecode]
}

// cacheShare is the prompt tokens of the generations of one model stored
// since some time, and how many came from the KV cache.
type cacheShare struct{ rows, cached, evaluated int64 }

func (c cacheShare) share() float64 { return float64(c.cached) / max(float64(c.cached+c.evaluated), 1) }

// cacheShareOf reads the share from the stored generations, which record
// what the engine that ran each one reported: a prompt token is either
// reused from the KV cache or evaluated. The benchmark's database is
// private, so its diagnostic reads are written here rather than in
// queries/.
func cacheShareOf(ctx context.Context, svc *services, modelID int64, since time.Time) (cacheShare, error) {
	var c cacheShare
	err := svc.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(tokens_cached), 0), coalesce(sum(tokens_evaluated), 0)
		FROM generation WHERE model_id = $1 AND created_at >= $2`, modelID, since).Scan(&c.rows, &c.cached, &c.evaluated)
	return c, err
}

// splitRemote splits each measured remote keystroke at its job's
// timestamps in River's table: created (the insert), attempted (a worker
// fetched it) and finalized (the worker's job ended, after it published
// the result). A job is the keystroke of its typist's file whose request
// was out when it was created. Postgres and this process read the same
// clock.
func splitRemote(ctx context.Context, svc *services, ws []workload.Typist, ans [][2][]benchAnswer, since time.Time, ph *remotePhase) error {
	// River finalizes jobs in batches: wait until every job of the phase is.
	var rows []struct {
		file                          string
		created, attempted, finalized time.Time
	}
	for try := 0; ; try++ {
		rows = rows[:0]
		rs, err := svc.pool.Query(ctx, `SELECT coalesce(args->'request'->>'FilePath', ''), created_at, attempted_at, finalized_at
			FROM river_job WHERE kind = $1 AND created_at >= $2`, remote.JobKind, since)
		if err != nil {
			return err
		}
		pending := 0
		for rs.Next() {
			var r struct {
				file                          string
				created, attempted, finalized time.Time
			}
			var att, fin *time.Time
			if err := rs.Scan(&r.file, &r.created, &att, &fin); err != nil {
				rs.Close()
				return err
			}
			if att == nil || fin == nil {
				pending++
				continue
			}
			r.attempted, r.finalized = *att, *fin
			rows = append(rows, r)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		if pending == 0 || try == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range rows {
		for t, ty := range ws {
			if ty.Keystrokes[0].File != r.file {
				continue
			}
			for i := 1; i < len(ans[t][pathRemote]); i++ {
				a := ans[t][pathRemote][i]
				if r.created.Before(a.send) || r.created.After(a.recv) {
					continue
				}
				ms := func(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1000 }
				eng := engineStages(a.st)
				ph.split["before"] = append(ph.split["before"], ms(a.send, r.created))
				ph.split["pickup"] = append(ph.split["pickup"], ms(r.created, r.attempted))
				ph.split["worker"] = append(ph.split["worker"], ms(r.attempted, r.finalized)-eng)
				ph.split["engine"] = append(ph.split["engine"], eng)
				ph.split["after"] = append(ph.split["after"], ms(r.finalized, a.recv))
				ph.jobs++
			}
		}
	}
	return nil
}

// wakeUps times the two notifications the remote path waits for, between
// two processes after 40 ms idle (the cores asleep, as while a model
// runs elsewhere) and back to back: a Postgres NOTIFY reaching a
// listening connection (how an insert wakes the worker) and a Redis
// PUBLISH reaching a subscriber (how a reply reaches the API node).
func wakeUps(ctx context.Context, svc *services, n int) ([]roundTrip, error) {
	conn, err := svc.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN bench_wake"); err != nil {
		return nil, err
	}
	defer conn.Exec(context.Background(), "UNLISTEN bench_wake")
	sub := svc.rdb.Subscribe(ctx, "code4me:bench-wake")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return nil, err
	}
	msgs := sub.Channel()
	kinds := []struct {
		name string
		do   func() error
	}{
		{"Postgres NOTIFY to a listening connection", func() error {
			if _, err := svc.pool.Exec(ctx, "NOTIFY bench_wake"); err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := conn.Conn().WaitForNotification(wctx)
			return err
		}},
		{"Redis PUBLISH to a subscriber", func() error {
			if err := svc.rdb.Publish(ctx, "code4me:bench-wake", "x").Err(); err != nil {
				return err
			}
			select {
			case <-msgs:
				return nil
			case <-time.After(5 * time.Second):
				return errors.New("no message")
			}
		}},
	}
	probe, err := startRiverProbe(ctx, svc)
	if err != nil {
		return nil, err
	}
	defer probe.stop()
	kinds = append(kinds, struct {
		name string
		do   func() error
	}{"River: a no-op job's insert (its own client, as an API node's) until a worker of this process starts it", probe.roundTrip})
	var out []roundTrip
	for _, idle := range []time.Duration{0, 40 * time.Millisecond} {
		for _, k := range kinds {
			name := k.name + ", back to back"
			if idle > 0 {
				name = fmt.Sprintf("%s, after %v idle", k.name, idle)
			}
			probe.inserts = nil
			r, err := sample(name, n, func() error { time.Sleep(idle); return nil }, k.do)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
			if len(probe.inserts) > 1 {
				ins := roundTrip{name: strings.Replace(name, "until a worker of this process starts it", "until the insert returns (its commit)", 1),
					ms: probe.inserts[1:]}
				slices.Sort(ins.ms)
				out = append(out, ins)
			}
		}
	}
	return out, nil
}

// riverProbe is River's part of the remote path alone: an insert-only
// client, like an API node's, and a client working one queue with a
// worker's fetch settings, whose jobs do nothing.
type riverProbe struct {
	insert, work *river.Client[pgx.Tx]
	started      chan struct{}
	inserts      []float64 // how long each insert took, ms
}

// benchNoop is the probe's job.
type benchNoop struct{}

func (benchNoop) Kind() string { return "bench_noop" }

type benchNoopWorker struct {
	river.WorkerDefaults[benchNoop]
	started chan struct{}
}

func (w *benchNoopWorker) Work(context.Context, *river.Job[benchNoop]) error {
	w.started <- struct{}{}
	return nil
}

const probeQueue = "bench_probe"

func startRiverProbe(ctx context.Context, svc *services) (*riverProbe, error) {
	p := &riverProbe{started: make(chan struct{}, 1)}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &benchNoopWorker{started: p.started}); err != nil {
		return nil, err
	}
	var err error
	// The fetch settings of remote.StartWorker's queues.
	if p.work, err = river.NewClient(riverpgxv5.New(svc.pool), &river.Config{
		Queues: map[string]river.QueueConfig{probeQueue: {MaxWorkers: 1, FetchCooldown: time.Millisecond,
			FetchPollInterval: 200 * time.Millisecond}},
		Workers: workers, FetchCooldown: time.Millisecond, FetchPollInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	}); err != nil {
		return nil, err
	}
	if p.insert, err = river.NewClient(riverpgxv5.New(svc.pool), &river.Config{FetchCooldown: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return nil, err
	}
	if err := p.work.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *riverProbe) roundTrip() error {
	t0 := time.Now()
	if _, err := p.insert.Insert(context.Background(), benchNoop{}, &river.InsertOpts{Queue: probeQueue, MaxAttempts: 1}); err != nil {
		return err
	}
	p.inserts = append(p.inserts, msSince(t0))
	select {
	case <-p.started:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("river probe: the job did not start")
	}
}

func (p *riverProbe) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.work.Stop(ctx)
}

// remoteReport is the markdown of a run.
func remoteReport(o remoteBenchOptions, ref modelRef, files []benchFile, workerPID int, phases []remotePhase, trips []roundTrip) string {
	var b strings.Builder
	label := ref.Name
	if ref.Synthetic {
		label += " (synthetic weights, real shape)"
	}
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Remote typing benchmark: model %s, %d thread(s) per engine, %d slots, window %d/%d bytes prefix/suffix, %d context files of %d bytes, %d keystrokes per typist interleaved direct/remote, context stored: %v; direct: serve with the engine in process; remote: serve with Deps.Remote and one `code4me worker` process (pid %d); %s, GOMAXPROCS %d, commit %s, host %s, %s\n\n",
		label, o.threads, slices.Max(o.typists), o.maxPrefix, o.maxSuffix, len(files), o.fileBytes, o.keys, o.storeCtx, workerPID,
		cpuModel(), runtime.GOMAXPROCS(0), buildVersion(), host, time.Now().UTC().Format("2006-01-02"))
	b.WriteString("| typists | measure | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|\n")
	for _, ph := range phases {
		d, r := ph.lat[pathDirect], ph.lat[pathRemote]
		fmt.Fprintf(&b, "| %d | direct path, per keystroke | %.2f | %.2f | %.2f |\n", ph.typists, pct(d, 50), pct(d, 95), pct(d, 99))
		fmt.Fprintf(&b, "| %d | remote path, per keystroke | %.2f | %.2f | %.2f |\n", ph.typists, pct(r, 50), pct(r, 95), pct(r, 99))
		fmt.Fprintf(&b, "| %d | **remote minus direct** (percentile of each path) | **%.2f** | **%.2f** | %.2f |\n", ph.typists,
			pct(r, 50)-pct(d, 50), pct(r, 95)-pct(d, 95), pct(r, 99)-pct(d, 99))
		fmt.Fprintf(&b, "| %d | remote minus direct, per keystroke (same keystroke and seed) | %.2f | %.2f | %.2f |\n", ph.typists,
			pct(ph.paired, 50), pct(ph.paired, 95), pct(ph.paired, 99))
	}
	b.WriteString("\n| typists | keystrokes | prompt tokens from the KV cache, direct | remote | same completion on both paths |\n|---|---|---|---|---|\n")
	for _, ph := range phases {
		fmt.Fprintf(&b, "| %d | %d | %.1f %% | %.1f %% | %d of %d |\n", ph.typists, len(ph.paired),
			100*ph.cache[pathDirect].share(), 100*ph.cache[pathRemote].share(), ph.same, len(ph.paired))
	}
	b.WriteString("\nTarget: the remote path adds at most 10 ms at p50 and keeps at least 90 % of prompt tokens from the cache.\n")
	for _, ph := range phases {
		added, share := pct(ph.lat[pathRemote], 50)-pct(ph.lat[pathDirect], 50), ph.cache[pathRemote].share()
		fmt.Fprintf(&b, "%d typist(s): adds %.2f ms at p50 (%s), %.1f %% from the cache (%s)\n", ph.typists,
			added, metOrMissed(added <= 10), 100*share, metOrMissed(share >= 0.9))
	}
	for _, ph := range phases {
		fmt.Fprintf(&b, "\nThe remote path's keystrokes split at their River job's timestamps, %d typist(s) (%d of %d keystrokes matched to their job):\n\n",
			ph.typists, ph.jobs, len(ph.paired))
		b.WriteString("| part | p50 ms | p95 ms |\n|---|---|---|\n")
		for _, s := range []struct{ key, name string }{
			{"before", "request sent until the job's insert (HTTP, auth, parse, redaction, context, queue choice)"},
			{"pickup", "insert until a worker fetched the job (commit, NOTIFY, the worker's fetch)"},
			{"worker", "fetched until the job ended, minus the engine's stages (start reply, engine hand-off, result published)"},
			{"engine", "the worker's engine stages (tokenize, queue, prefill, decode)"},
			{"after", "job ended until the response arrived (reply delivery, output redaction, store, HTTP)"},
		} {
			l := ph.split[s.key]
			fmt.Fprintf(&b, "| %s | %.2f | %.2f |\n", s.name, pct(l, 50), pct(l, 95))
		}
		fmt.Fprintf(&b, "\nServer-Timing stages, %d typist(s):\n\n| stage | direct p50 ms | remote p50 ms | direct p95 ms | remote p95 ms |\n|---|---|---|---|---|\n", ph.typists)
		for _, s := range []string{server.StageAuth, server.StageBodyWait, server.StageContext, server.StageTokenize, server.StageQueue,
			server.StagePrefill, server.StageDecode, server.StageOutput, server.StageStore, server.StageTotal, "gap", "http"} {
			d, r := ph.stages[pathDirect][s], ph.stages[pathRemote][s]
			if len(d) == 0 && len(r) == 0 {
				continue
			}
			name := s
			switch s {
			case "gap":
				name = "total minus the stages on its path (on the remote path: the tier)"
			case "http":
				name = "http (client wall minus server total)"
			}
			fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f |\n", name, pct(d, 50), pct(r, 50), pct(d, 95), pct(r, 95))
		}
	}
	b.WriteString("\nNotifications between two processes on this machine in the same run:\n\n| notification | p50 ms | p95 ms |\n|---|---|---|\n")
	for _, t := range trips {
		fmt.Fprintf(&b, "| %s | %.3f | %.3f |\n", t.name, pct(t.ms, 50), pct(t.ms, 95))
	}
	return b.String()
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// workerCommand is the command line of `code4me worker --models model`:
// this binary. A test binary, which runs its tests when started, replaces
// it.
var workerCommand = func(model string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "worker", "--models", model), nil
}

// benchWorker is the `code4me worker` process of the remote path.
type benchWorker struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // why it exited, once exited is closed
}

// startBenchWorker runs this binary's `worker` subcommand on the
// benchmark's services and DATA_DIR, with its engine set up as the
// direct path's (threads, slots, cells per slot); the rest of its
// settings come from the same environment.
func startBenchWorker(cfg config.Config, svc *services, model string) (*benchWorker, error) {
	cmd, err := workerCommand(model)
	if err != nil {
		return nil, err
	}
	// The last value of a repeated variable wins.
	cmd.Env = append(cmd.Environ(), "DATABASE_URL="+svc.pgURL, "REDIS_URL="+svc.redisURL, "DATA_DIR="+cfg.DataDir,
		"ENGINE_THREADS="+strconv.Itoa(cfg.NThreads), "ENGINE_PARALLEL="+strconv.Itoa(cfg.NParallel),
		"ENGINE_CTX="+strconv.Itoa(cfg.NCtx), "LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the worker: %w", err)
	}
	w := &benchWorker{cmd: cmd, exited: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

func (w *benchWorker) pid() int { return w.cmd.Process.Pid }

// waitServing waits until the worker is alive and serves model with slots
// slots, and returns the model's id.
func (w *benchWorker) waitServing(ctx context.Context, rc *remote.Client, model string, slots int) (int64, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		rows, err := rc.Registry(ctx)
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			if r.Alive && !r.Draining && r.ModelName == model && int(r.Pid) == w.pid() {
				if int(r.Slots) != slots {
					return 0, fmt.Errorf("the worker serves %s with %d slots, not %d", model, r.Slots, slots)
				}
				return r.ModelID, nil
			}
		}
		select {
		case <-w.exited:
			return 0, fmt.Errorf("the worker exited: %v", w.err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("the worker did not serve %s within 5 minutes", model)
}

// stop drains the worker (SIGTERM) and waits for it to exit.
func (w *benchWorker) stop() {
	select {
	case <-w.exited:
		return
	default:
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-w.exited
	}
}

// typistCounts parses -typists: a comma-separated list of positive counts.
func typistCounts(s string) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-typists: %q is not a positive number", f)
		}
		counts = append(counts, n)
	}
	return counts, nil
}
