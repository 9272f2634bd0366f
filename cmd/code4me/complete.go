package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/code4me/code4me/engine"
)

func runComplete(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("complete", flag.ContinueOnError)
	model := fs.String("model", "tiny", "model: GGUF path, added or pulled name, or synthetic shape")
	prefixFile := fs.String("prefix-file", "", "file with the text before the cursor (required)")
	suffixFile := fs.String("suffix-file", "", "file with the text after the cursor")
	maxTokens := fs.Int("max-tokens", 64, "tokens to generate at most")
	temp := fs.Float64("temperature", 0, "sampling temperature; 0 is greedy")
	seed := fs.Uint("seed", 0, "sampling seed")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *prefixFile == "" {
		fmt.Fprintln(os.Stderr, "code4me complete: --prefix-file is required")
		return errUsage
	}
	prefix, err := os.ReadFile(*prefixFile)
	if err != nil {
		return err
	}
	var suffix []byte
	if *suffixFile != "" {
		if suffix, err = os.ReadFile(*suffixFile); err != nil {
			return err
		}
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
	cfg.NParallel = 1
	e, err := newEngine(cfg, log, []modelRef{ref})
	if err != nil {
		return err
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res, err := e.Complete(ctx, ref.Name, engine.Request{
		Prefix:      string(prefix),
		Suffix:      string(suffix),
		FilePath:    *prefixFile,
		MaxTokens:   *maxTokens,
		CachePrompt: true,
		Sampling:    engine.SamplingParams{Temperature: float32(*temp), Seed: uint32(*seed)},
	})
	if err != nil {
		return err
	}
	if res.Err != nil && res.Stop == engine.StopError {
		return res.Err
	}
	fmt.Println(res.Text)
	t := res.Timings
	label := ""
	if ref.Synthetic {
		label = " (synthetic model: random weights)"
	}
	fmt.Fprintf(os.Stderr, "model %s%s\nstop %s, confidence %.3f\nprompt %d tokens (%d cached, %d evaluated), generated %d\nqueue %.1f ms, prefill %.1f ms, decode %.1f ms, total %.1f ms",
		ref.Name, label, res.Stop, res.Confidence, t.PromptTokens, t.CachedTokens, t.EvaluatedTokens, t.GeneratedTokens, t.QueueMS, t.PrefillMS, t.DecodeMS, t.TotalMS)
	if t.DecodeMS > 0 && t.GeneratedTokens > 1 {
		fmt.Fprintf(os.Stderr, " (%.1f tokens/s)", float64(t.GeneratedTokens-1)/(t.DecodeMS/1000))
	}
	fmt.Fprintln(os.Stderr)
	return nil
}
