package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/llama"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/workload"
)

// coldUsers is how many users start on new files at once in the cold
// benchmark.
const coldUsers = 4

// benchCold runs the cold-start case: coldUsers users open new files at
// once (prompts of about window bytes, none cached), each with deadline,
// first with the old round-robin prefill order, then with earliest
// deadline first and estimate-based refusal, in one process, each on a
// freshly loaded model that a warm-up request (another file) has measured.
func benchCold(ctx context.Context, cfg config.Config, log *slog.Logger, ref modelRef, maxPrefix, maxSuffix, maxTokens int,
	deadline time.Duration) (string, error) {
	ws, err := workload.Build(filepath.Join(runtime.GOROOT(), "src"), 4*(coldUsers+1), workload.Options{Files: 1, Keystrokes: 1,
		MaxPrefix: maxPrefix, MaxSuffix: maxSuffix, MinFileBytes: maxPrefix + maxSuffix})
	if err != nil {
		return "", err
	}
	llama.SetLogger(log.With(slog.String("component", "llama.cpp")))
	b, err := llama.New(llama.Config{BackendDir: cfg.GGMLBackendDir})
	if err != nil {
		return "", err
	}
	if ws, err = typicalFiles(b, ref, ws, coldUsers+1); err != nil {
		return "", err
	}
	var rows []string
	for _, rr := range []bool{true, false} {
		row, err := coldRun(ctx, b, cfg, log, ref, ws, maxTokens, deadline, rr)
		if err != nil {
			return "", err
		}
		rows = append(rows, row)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	host, _ := os.Hostname()
	var out strings.Builder
	fmt.Fprintf(&out, "Cold starts: %d users open new files at once, model %s, %d generated tokens, %s deadline, %s prompt budget, %d slots, %s, GOMAXPROCS %d, commit %s, host %s, %s, load average after %s\n\n",
		coldUsers, ref.Name, maxTokens, deadline, time.Duration(cfg.PromptBudget)*time.Millisecond, coldUsers, cpuModel(), runtime.GOMAXPROCS(0), buildVersion(), host,
		time.Now().UTC().Format("2006-01-02 15:04 MST"), strings.Join(strings.Fields(string(load))[:3], " "))
	out.WriteString("| prefill order | prompt tokens | prefix tokens the plan cut, each | answered in time | refused at once | past the deadline | answered: ms each | refused after ms | prefill speed tok/s | generation step ms | decode s |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		out.WriteString(r)
	}
	return out.String(), nil
}

// coldRun loads the model with the given prefill order, warms it with one
// request and sends the coldUsers cold prompts at once.
func coldRun(ctx context.Context, b *llama.Backend, cfg config.Config, log *slog.Logger, ref modelRef, ws []workload.Typist,
	maxTokens int, deadline time.Duration, roundRobin bool) (string, error) {
	e := engine.New(b, log)
	defer e.Close()
	s, err := e.Load(engine.ModelSpec{Name: ref.Name, Path: ref.Path,
		Load: engine.LoadOptions{NGPULayers: cfg.NGPULayers, UseMmap: cfg.ModelMmap},
		Sched: engine.Config{NParallel: coldUsers, NCtx: coldUsers * 4096, NBatch: cfg.NBatch, NThreads: cfg.NThreads, MixedPrefill: cfg.MixedPrefill,
			Family: engine.Family(ref.Family), RoundRobinPrefill: roundRobin, Logger: log,
			// The server's prompt budget (ENGINE_PROMPT_BUDGET_MS), within
			// which planning trims a prompt that would not fit; round-robin
			// plans nothing.
			TMaxPrompt: time.Duration(cfg.PromptBudget) * time.Millisecond}}, nil)
	if err != nil {
		return "", err
	}
	warm := benchReq(ws[coldUsers].Keystrokes[0], coldUsers, maxTokens, true)
	if _, err := s.Complete(ctx, warm); err != nil {
		return "", err
	}
	speed, step := s.PrefillSpeed()
	before := s.Stats()
	results := make([]*engine.Result, coldUsers)
	errs := make([]error, coldUsers)
	dctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var wg sync.WaitGroup
	for i := range coldUsers {
		wg.Go(func() { results[i], errs[i] = s.Complete(dctx, benchReq(ws[i].Keystrokes[0], i, maxTokens, true)) })
	}
	wg.Wait()
	after := s.Stats()
	var answered, refused, late int
	var ms, refusedMS []string
	var prompt []int
	var cuts []string
	for i, r := range results {
		if errs[i] != nil {
			return "", errs[i]
		}
		prompt = append(prompt, r.Timings.PromptTokens+r.Trimmed.PrefixTokens)
		cuts = append(cuts, strconv.Itoa(r.Trimmed.PrefixTokens))
		switch {
		case errors.Is(r.Err, engine.ErrDeadline):
			refused++
			refusedMS = append(refusedMS, fmt.Sprintf("%.0f", r.Timings.TotalMS))
		case r.Stop == engine.StopDeadline || r.Stop == engine.StopError || r.Stop == engine.StopCancelled:
			late++
		default:
			answered++
			ms = append(ms, fmt.Sprintf("%.0f", r.Timings.TotalMS))
		}
		if benchVerbose {
			fmt.Fprintf(os.Stderr, "cold round-robin=%v user %d: stop %s err %v prompt %d evaluated %d total %.0f ms prefill %.0f ms\n",
				roundRobin, i, r.Stop, r.Err, r.Timings.PromptTokens, r.Timings.EvaluatedTokens, r.Timings.TotalMS, r.Timings.PrefillMS)
		}
	}
	slices.Sort(prompt)
	order := "earliest deadline first"
	if roundRobin {
		order = "round-robin"
	}
	return fmt.Sprintf("| %s | %d-%d | %s | %d | %d | %d | %s | %s | %.0f | %.1f | %.1f |\n", order, prompt[0], prompt[len(prompt)-1],
		strings.Join(cuts, ", "), answered, refused, late, dash(strings.Join(ms, ", ")), dash(strings.Join(refusedMS, ", ")), speed, float64(step.Microseconds())/1000,
		(after.DecodeMS-before.DecodeMS)/1000), nil
}

// typicalFiles keeps the n typists whose first prompt text has the median
// token counts: a window of a file of numbers tokenizes into several times
// the tokens of one of code.
func typicalFiles(b *llama.Backend, ref modelRef, ws []workload.Typist, n int) ([]workload.Typist, error) {
	m, err := b.Load(ref.Path, engine.LoadOptions{UseMmap: true}, nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	type sized struct {
		w workload.Typist
		n int
	}
	var all []sized
	for _, w := range ws {
		ks := w.Keystrokes[0]
		t, err := m.Tokenize(ks.Prefix+ks.Suffix, false, false)
		if err != nil {
			return nil, err
		}
		all = append(all, sized{w, len(t)})
	}
	slices.SortFunc(all, func(a, b sized) int { return a.n - b.n })
	mid := max(len(all)/2-n/2, 0)
	out := make([]workload.Typist, 0, n)
	for _, s := range all[mid:min(mid+n, len(all))] {
		out = append(out, s.w)
	}
	return out, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
