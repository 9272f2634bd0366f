package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/workload"
)

func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "server" {
		return runBenchServer(ctx, args[1:])
	}
	if len(args) == 0 || args[0] != "engine" {
		fmt.Fprintln(os.Stderr, "usage: code4me bench engine|server [flags]")
		return errUsage
	}
	fs := flag.NewFlagSet("bench engine", flag.ContinueOnError)
	model := fs.String("model", "qwen2.5-coder-0.5b:q8_0", "model: synthetic shape[:type], GGUF path or pulled name")
	keys := fs.Int("keystrokes", 24, "keystrokes per typist")
	keysOff := fs.Int("keystrokes-nocache", 6, "keystrokes per typist with prefix reuse off (each re-evaluates the whole prompt)")
	typists := fs.String("typists", "1,4,8", "concurrent typists to measure")
	maxTokens := fs.Int("max-tokens", 16, "tokens generated per keystroke")
	maxPrefix := fs.Int("max-prefix", 3072, "bytes of prefix in the editor window")
	maxSuffix := fs.Int("max-suffix", 768, "bytes of suffix in the editor window")
	slots := fs.Int("slots", 0, "the model's slots (0: as many as the most typists); fewer slots than typists measure the prompt cache in host memory (ENGINE_PROMPT_CACHE_MIB=0 turns it off)")
	out := fs.String("out", "", "also append the markdown table to this file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the measured runs to this file")
	verbose := fs.Bool("v", false, "print every keystroke's timings to stderr")
	cold := fs.Bool("cold4", false, "instead: four users open new files at once (prompts of max-prefix+max-suffix bytes), "+
		"round-robin prefill vs earliest deadline first (bench_cold.go)")
	deadline := fs.Duration("deadline", 30*time.Second, "-cold4: each request's deadline")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	benchVerbose = *verbose
	var counts []int
	for _, s := range strings.Split(*typists, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n < 1 {
			return fmt.Errorf("--typists: %q is not a positive number", s)
		}
		counts = append(counts, n)
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	ref, err := resolveModel(ctx, cfg, *model)
	if err != nil {
		return err
	}
	if *cold {
		text, err := benchCold(ctx, cfg, log, ref, *maxPrefix, *maxSuffix, *maxTokens, *deadline)
		if err != nil {
			return err
		}
		return report(text, *out)
	}
	most := slices.Max(counts)
	cfg.NParallel = most
	if *slots > 0 {
		cfg.NParallel = *slots
	}
	cfg.NCtx = 4096
	e, err := newEngine(cfg, log, []modelRef{ref})
	if err != nil {
		return err
	}
	defer e.Close()
	ws, err := workload.Build(filepath.Join(runtime.GOROOT(), "src"), most, workload.Options{Files: 1, Keystrokes: max(*keys, *keysOff) + 1, MaxPrefix: *maxPrefix, MaxSuffix: *maxSuffix})
	if err != nil {
		return err
	}
	var rows []benchRow
	for _, reuse := range []bool{true, false} {
		for _, n := range counts {
			k := *keys
			if !reuse {
				k = *keysOff
			}
			if k == 0 {
				continue
			}
			// Warm the model's slots with each typist's first keystroke's file
			// context so "reuse on" measures steady-state typing.
			// One typist: each of the typists of the largest run in turn,
			// alone, so the baseline types the same keystrokes.
			typ, conc := ws[:n], true
			if n == 1 && reuse {
				typ, conc = ws[:most], false
			}
			r, err := benchRun(ctx, e, ref.Name, typ, k, *maxTokens, reuse, conc)
			if err != nil {
				return err
			}
			rows = append(rows, r)
			fmt.Fprintf(os.Stderr, "done: reuse=%v typists=%d (%.0f %% of the time in llama_decode)\n", reuse, n, 100*r.decodeShare)
		}
	}
	var b strings.Builder
	label := ref.Name
	if ref.Synthetic {
		label += " (synthetic weights, real shape)"
	}
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Engine typing benchmark: model %s, %d generated tokens per keystroke, window %d/%d bytes prefix/suffix, %d slots, %s, GOMAXPROCS %d, commit %s, host %s, %s\n\n",
		label, *maxTokens, *maxPrefix, *maxSuffix, cfg.NParallel, cpuModel(), runtime.GOMAXPROCS(0), buildVersion(), host, time.Now().UTC().Format("2006-01-02"))
	b.WriteString("| prefix reuse | typists | keystrokes | p50 ms | p95 ms | p99 ms | prompt tokens/keystroke | from cache | evaluated/keystroke | generated tok/s, whole run | generated tok/s, all typing | tokens/decode |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		who := strconv.Itoa(r.typists)
		if !r.concurrent && r.alone > 1 {
			who = fmt.Sprintf("1 (each of %d in turn)", r.alone)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %.1f %% | %.1f | %.1f | %.1f | %.1f |\n",
			map[bool]string{true: "on", false: "off"}[r.reuse], who, r.keystrokes, r.p50, r.p95, r.p99, r.promptPer, 100*r.cachedShare, r.evalPer, r.genTPS, r.steadyTPS, r.perDecode)
	}
	one, eight := findRow(rows, true, 1), findRow(rows, true, most)
	if one != nil && eight != nil && most > 1 {
		fmt.Fprintf(&b, "\nGenerated tokens/s, %d typists at once vs one typist at a time over the same keystrokes (reuse on): %.2f× while all %d type, %.2f× over the whole run (its tail has fewer typists)\n",
			most, eight.steadyTPS/one.genTPS, most, eight.genTPS/one.genTPS)
	}
	on, off := findRow(rows, true, 1), findRow(rows, false, 1)
	if on != nil && off != nil {
		fmt.Fprintf(&b, "Keystroke p50 with reuse off vs on (1 typist): %.1f×\n", off.p50/on.p50)
	}
	return report(b.String(), *out)
}

// report prints a benchmark's tables and, when path is set, appends them
// to that file.
func report(text, path string) error {
	fmt.Print(text)
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, "\n"+text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchVerbose: print every keystroke (bench engine -v).
var benchVerbose bool

type benchRow struct {
	reuse               bool
	concurrent          bool // the typists typed at once, else one after another
	alone               int  // typists that typed (one after another unless concurrent)
	typists, keystrokes int
	steadyTPS           float64 // generated tok/s while every typist typed
	p50, p95, p99       float64
	promptPer, evalPer  float64
	cachedShare, genTPS float64
	perDecode           float64 // mean tokens per llama_decode call
	decodeShare         float64 // share of wall time inside llama_decode
}

func findRow(rows []benchRow, reuse bool, n int) *benchRow {
	for i := range rows {
		if rows[i].reuse == reuse && rows[i].typists == n {
			return &rows[i]
		}
	}
	return nil
}

// benchRun lets the typists type k keystrokes each, closed loop: a
// typist's next keystroke is sent when its previous completion returns.
// Concurrent, all type at once; otherwise one after another, each alone
// (the one-typist baseline over the same keystrokes as the concurrent
// runs, so both do the same work: the same window moves and new lines).
func benchRun(ctx context.Context, e *engine.Engine, model string, ws []workload.Typist, k, maxTokens int, reuse, concurrent bool) (benchRow, error) {
	type sample struct {
		ms                        float64
		end                       time.Time
		prompt, cached, eval, gen int
	}
	var mu sync.Mutex
	var samples []sample
	var firstErr error
	// Warm-up: the first keystroke of each typist fills its slot; not measured.
	var wg sync.WaitGroup
	for _, ty := range ws {
		wg.Go(func() {
			_, err := e.Complete(ctx, model, benchReq(ty.Keystrokes[0], ty.ID, maxTokens, reuse))
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return benchRow{}, firstErr
	}
	st0 := modelStats(e, model)
	start := time.Now()
	var firstDone time.Time // when the first typist typed its last keystroke
	typeAll := func(ty workload.Typist) {
		for _, ks := range ty.Keystrokes[1:min(k+1, len(ty.Keystrokes))] {
			t0 := time.Now()
			res, err := e.Complete(ctx, model, benchReq(ks, ty.ID, maxTokens, reuse))
			now := time.Now()
			ms := float64(now.Sub(t0).Microseconds()) / 1000
			mu.Lock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if err == nil {
				t := res.Timings
				if benchVerbose {
					fmt.Fprintf(os.Stderr, "typist %d: %.0f ms, prompt %d, cached %d, shifted %d, evaluated %d, generated %d\n",
						ty.ID, ms, t.PromptTokens, t.CachedTokens, t.ShiftedTokens, t.EvaluatedTokens, t.GeneratedTokens)
				}
				samples = append(samples, sample{ms, now, t.PromptTokens, t.CachedTokens, t.EvaluatedTokens, t.GeneratedTokens})
			}
			mu.Unlock()
		}
		mu.Lock()
		if firstDone.IsZero() {
			firstDone = time.Now()
		}
		mu.Unlock()
	}
	for _, ty := range ws {
		if concurrent {
			wg.Go(func() { typeAll(ty) })
		} else {
			typeAll(ty)
		}
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	st1 := modelStats(e, model)
	if firstErr != nil {
		return benchRow{}, firstErr
	}
	lat := make([]float64, len(samples))
	var prompt, cached, eval, gen, genAll int
	for i, s := range samples {
		lat[i] = s.ms
		prompt += s.prompt
		cached += s.cached
		eval += s.eval
		gen += s.gen
		if !s.end.After(firstDone) {
			genAll += s.gen
		}
	}
	slices.Sort(lat)
	n := float64(len(samples))
	row := benchRow{
		reuse: reuse, typists: len(ws), concurrent: concurrent, alone: len(ws), keystrokes: len(samples),
		p50: pct(lat, 50), p95: pct(lat, 95), p99: pct(lat, 99),
		promptPer: float64(prompt) / n, evalPer: float64(eval) / n,
		cachedShare: float64(cached) / max(float64(prompt), 1),
		genTPS:      float64(gen) / wall,
		perDecode:   float64(st1.DecodeTokens-st0.DecodeTokens) / max(float64(st1.Decodes-st0.Decodes), 1),
		decodeShare: (st1.DecodeMS - st0.DecodeMS) / 1000 / wall,
	}
	if !concurrent {
		row.typists = 1
	}
	row.steadyTPS = row.genTPS
	if concurrent && len(ws) > 1 {
		// While every typist types: the tokens of the keystrokes that
		// ended before the first typist finished, over that time. After
		// it, fewer typists share the engine (the run's tail).
		row.steadyTPS = float64(genAll) / firstDone.Sub(start).Seconds()
	}
	return row, nil
}

func modelStats(e *engine.Engine, model string) engine.Stats {
	for _, st := range e.Stats() {
		if st.Model == model {
			return st
		}
	}
	return engine.Stats{}
}

func benchReq(ks workload.Keystroke, typist, maxTokens int, reuse bool) engine.Request {
	return engine.Request{
		Prefix:       ks.Prefix,
		Suffix:       ks.Suffix,
		FilePath:     ks.File,
		RepoName:     "go",
		MaxTokens:    maxTokens,
		CachePrompt:  reuse,
		// The typist's key, as the server keys a completion by session and
		// file: the scheduler sends it back to its own slot (and saved
		// prompt). A typist waits for each answer, so none is superseded.
		SupersedeKey: "typist-" + strconv.Itoa(typist),
		// Generate exactly maxTokens on random weights: no EOS/stop rules.
		Mode: engine.ModeMultiLine,
	}
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}
