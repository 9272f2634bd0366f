package eval

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Completion is a model's answer to one task.
type Completion struct {
	Text            string
	PromptTokens    int
	GeneratedTokens int
}

// CompleteFunc completes one task: the in-process engine or a server.
type CompleteFunc func(ctx context.Context, t Task) (Completion, error)

// Result is one scored task.
type Result struct {
	Task
	// Output is the completion cut to as many lines as Expected has, with
	// NUL characters replaced (see Score).
	Output          string  `json:"output"`
	Exact           bool    `json:"exact"`
	EditSimilarity  float64 `json:"edit_similarity"`
	LatencyMS       float64 `json:"latency_ms"` // wall time of the call to CompleteFunc
	PromptTokens    int     `json:"prompt_tokens"`
	GeneratedTokens int     `json:"generated_tokens"`
}

// Run completes the tasks one after another (so each latency is the task's
// alone) and scores them. It stops at the first error, or when ctx is
// cancelled, returning the results so far with the error.
func Run(ctx context.Context, tasks []Task, complete CompleteFunc) ([]Result, error) {
	out := make([]Result, 0, len(tasks))
	for _, t := range tasks {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		start := time.Now()
		c, err := complete(ctx, t)
		ms := float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			return out, fmt.Errorf("eval: task %d (%s): %w", t.Index, t.File, err)
		}
		out = append(out, Score(t, c, ms))
	}
	return out, nil
}

// Score scores one completion of t that took latencyMS. NUL characters
// of the completion, which a source file never holds (files with them are
// not used) and Postgres text cannot store, become U+FFFD first.
func Score(t Task, c Completion, latencyMS float64) Result {
	o := strings.ReplaceAll(cutToLines(c.Text, t.Expected), "\x00", "\uFFFD")
	return Result{
		Task: t, Output: o,
		Exact:          ExactMatch(o, t.Expected),
		EditSimilarity: EditSimilarity(o, t.Expected),
		LatencyMS:      latencyMS,
		PromptTokens:   c.PromptTokens, GeneratedTokens: c.GeneratedTokens,
	}
}

// Figures summarise a group of results.
type Figures struct {
	Kind               Kind    `json:"kind,omitempty"`     // empty in the overall figures
	Language           string  `json:"language,omitempty"` // empty in the overall figures
	Tasks              int     `json:"tasks"`
	ExactMatchRate     float64 `json:"exact_match_rate"` // 0 to 1
	MeanEditSimilarity float64 `json:"mean_edit_similarity"`
	LatencyP50MS       float64 `json:"latency_p50_ms"`
	LatencyP95MS       float64 `json:"latency_p95_ms"`
	LatencyP99MS       float64 `json:"latency_p99_ms"`
}

// Summary is a run's figures, overall and per kind and language.
type Summary struct {
	Overall Figures   `json:"overall"`
	Groups  []Figures `json:"groups"` // sorted by kind (in Kinds order), then language
}

// Summarize computes the figures of results.
func Summarize(results []Result) Summary {
	type key struct {
		k Kind
		l string
	}
	groups := map[key][]Result{}
	for _, r := range results {
		groups[key{r.Kind, r.Language}] = append(groups[key{r.Kind, r.Language}], r)
	}
	s := Summary{Overall: figures(results)}
	for k, rs := range groups {
		f := figures(rs)
		f.Kind, f.Language = k.k, k.l
		s.Groups = append(s.Groups, f)
	}
	slices.SortFunc(s.Groups, func(a, b Figures) int {
		if c := slices.Index(Kinds, a.Kind) - slices.Index(Kinds, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Language, b.Language)
	})
	return s
}

func figures(rs []Result) Figures {
	f := Figures{Tasks: len(rs)}
	if len(rs) == 0 {
		return f
	}
	lat := make([]float64, len(rs))
	var exact int
	var sim float64
	for i, r := range rs {
		lat[i] = r.LatencyMS
		sim += r.EditSimilarity
		if r.Exact {
			exact++
		}
	}
	f.ExactMatchRate = float64(exact) / float64(len(rs))
	f.MeanEditSimilarity = sim / float64(len(rs))
	f.LatencyP50MS, f.LatencyP95MS, f.LatencyP99MS = Percentile(lat, 50), Percentile(lat, 95), Percentile(lat, 99)
	return f
}

// WriteReport writes the summary as a table: one row per kind and language,
// then the overall row.
func WriteReport(w io.Writer, s Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tlanguage\ttasks\texact match %\tedit similarity\tp50 ms\tp95 ms\tp99 ms\t")
	row := func(kind, lang string, f Figures) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.3f\t%.0f\t%.0f\t%.0f\t\n", kind, lang, f.Tasks, 100*f.ExactMatchRate, f.MeanEditSimilarity, f.LatencyP50MS, f.LatencyP95MS, f.LatencyP99MS)
	}
	for _, g := range s.Groups {
		row(string(g.Kind), g.Language, g)
	}
	row("all", "all", s.Overall)
	return tw.Flush()
}
