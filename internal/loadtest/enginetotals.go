package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
)

// EngineTotals is what one model's engine did during the typing, from the
// counters /api/ping reports before and after it: every request, those
// superseded or cancelled included, which the stored generations leave
// out. It shows whether the engine kept up: the tokens it evaluated and
// generated against its decode time.
type EngineTotals struct {
	Model                    string
	Requests                 uint64
	Prompt, Cached, Restored uint64 // prompt tokens; from the KV cache; of those, copied back from host memory
	Evaluated, Generated     uint64
	DecodeMS                 float64 // time in decode calls
	Saves, Restores          uint64  // prompts saved to host memory; copied back
}

// engineCounters are one model's cumulative counters in /api/ping.
type engineCounters struct {
	Name            string  `json:"name"`
	Requests        uint64  `json:"requests"`
	PromptTokens    uint64  `json:"prompt_tokens"`
	CachedTokens    uint64  `json:"cached_tokens"`
	EvaluatedTokens uint64  `json:"evaluated_tokens"`
	GeneratedTokens uint64  `json:"generated_tokens"`
	DecodeMS        float64 `json:"decode_ms"`
	PromptCache     struct {
		Bytes          int64  `json:"bytes"`
		Saves          uint64 `json:"saves"`
		Restores       uint64 `json:"restores"`
		RestoredTokens uint64 `json:"restored_tokens"`
	} `json:"prompt_cache"`
}

// engineCountersNow reads /api/ping's model counters (nil when the server
// does not report them).
func engineCountersNow(ctx context.Context, c *client) map[string]engineCounters {
	a := c.do(ctx, "GET", "/api/ping", nil)
	if a.err != nil || a.status != http.StatusOK {
		return nil
	}
	var ping struct {
		Details struct {
			Models []engineCounters `json:"models"`
		} `json:"details"`
	}
	if json.Unmarshal(a.body, &ping) != nil {
		return nil
	}
	out := map[string]engineCounters{}
	for _, m := range ping.Details.Models {
		out[m.Name] = m
	}
	return out
}

// engineTotals are the counters' growth from before to after, by model.
func engineTotals(before, after map[string]engineCounters) []EngineTotals {
	var out []EngineTotals
	for name, a := range after {
		b := before[name]
		out = append(out, EngineTotals{Model: name, Requests: a.Requests - b.Requests,
			Prompt: a.PromptTokens - b.PromptTokens, Cached: a.CachedTokens - b.CachedTokens,
			Restored:  a.PromptCache.RestoredTokens - b.PromptCache.RestoredTokens,
			Evaluated: a.EvaluatedTokens - b.EvaluatedTokens, Generated: a.GeneratedTokens - b.GeneratedTokens,
			DecodeMS: a.DecodeMS - b.DecodeMS,
			Saves:    a.PromptCache.Saves - b.PromptCache.Saves, Restores: a.PromptCache.Restores - b.PromptCache.Restores})
	}
	slices.SortFunc(out, func(x, y EngineTotals) int {
		if x.Model < y.Model {
			return -1
		}
		return 1
	})
	return out
}

// writeEngineTotals writes the table of what each model's engine did.
func writeEngineTotals(w io.Writer, ts []EngineTotals, elapsedS float64) {
	if len(ts) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThe engines' work during the typing, every request (from /api/ping's counters):\n\n")
	fmt.Fprintln(w, "| model | requests | prompt tokens | from the KV cache | of those restored from host memory (restores, saves) | evaluated | generated | decode time | tokens per second of decode |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, t := range ts {
		perS := 0.0
		if t.DecodeMS > 0 {
			perS = float64(t.Evaluated+t.Generated) / (t.DecodeMS / 1000)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d (%d, %d) | %d | %d | %.1f s (%.0f %% of %.0f s) | %.0f |\n", t.Model, t.Requests, t.Prompt, t.Cached,
			t.Restored, t.Restores, t.Saves, t.Evaluated, t.Generated, t.DecodeMS/1000, 100*t.DecodeMS/1000/max(elapsedS, 1e-9), elapsedS, perS)
	}
}
