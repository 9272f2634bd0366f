package loadtest

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"
)

// EngineWork sums the stored generations of a run by how they ended: how
// much of their prompts came from the KV cache and how long their stages
// took. It tells a slow run's causes apart: prompts evaluated from scratch
// (slots thrashing), long queues, or slow decoding.
type EngineWork struct {
	Rows []WorkRow
}

// WorkRow is one stop reason's generations.
type WorkRow struct {
	Stop                        string
	N                           int
	Prompt, Cached, Evaluated   int64 // tokens in all
	Generated                   int64
	EvaluatedP50, EvaluatedP95  float64
	QueueP50, PrefillP50        float64 // ms
	DecodeP50, DecodeMSPerToken float64
}

// ReadEngineWork reads the generations of the server's database; the run
// must have had that database to itself.
func ReadEngineWork(ctx context.Context, pool *pgxpool.Pool) (*EngineWork, error) {
	rs, err := pool.Query(ctx, `
		SELECT coalesce(stop_reason, 'none'), count(*),
		       coalesce(sum(tokens_cached + tokens_evaluated), 0), coalesce(sum(tokens_cached), 0),
		       coalesce(sum(tokens_evaluated), 0), coalesce(sum(tokens_generated), 0),
		       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY tokens_evaluated), 0),
		       coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY tokens_evaluated), 0),
		       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_ms), 0),
		       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY prefill_ms), 0),
		       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY decode_ms), 0),
		       coalesce(sum(decode_ms) / nullif(sum(tokens_generated), 0), 0)
		FROM generation GROUP BY 1 ORDER BY 2 DESC`)
	if err != nil {
		return nil, fmt.Errorf("read engine work: %w", err)
	}
	defer rs.Close()
	w := &EngineWork{}
	for rs.Next() {
		var r WorkRow
		if err := rs.Scan(&r.Stop, &r.N, &r.Prompt, &r.Cached, &r.Evaluated, &r.Generated, &r.EvaluatedP50, &r.EvaluatedP95,
			&r.QueueP50, &r.PrefillP50, &r.DecodeP50, &r.DecodeMSPerToken); err != nil {
			return nil, fmt.Errorf("read engine work: %w", err)
		}
		w.Rows = append(w.Rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read engine work: %w", err)
	}
	return w, nil
}

// Write prints the table.
func (w *EngineWork) Write(out io.Writer) {
	fmt.Fprintln(out, "| generations ended by | n | prompt tokens from cache | evaluated tokens p50 / p95 | generated tokens | queue p50 ms | prefill p50 ms | decode p50 ms | decode ms per token |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range w.Rows {
		share := 0.0
		if r.Prompt > 0 {
			share = 100 * float64(r.Cached) / float64(r.Prompt)
		}
		fmt.Fprintf(out, "| %s | %d | %.1f %% of %d | %.0f / %.0f | %d | %.1f | %.1f | %.1f | %.2f |\n", r.Stop, r.N, share, r.Prompt,
			r.EvaluatedP50, r.EvaluatedP95, r.Generated, r.QueueP50, r.PrefillP50, r.DecodeP50, r.DecodeMSPerToken)
	}
}
