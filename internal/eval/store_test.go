package eval

import (
	"context"
	"strings"
	"testing"

	"github.com/code4me/code4me/internal/testenv"
)

func TestStore(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Pool(t)
	sha := strings.Repeat("ab", 32)
	info := RunInfo{ModelName: "store-test", ModelSHA256: sha, Arm: "b", Seed: 42, Repo: "/src/x", MaxTokens: 16}
	results := []Result{
		{Task: Task{Index: 0, File: "a.go", Language: "go", Kind: SingleLine, Expected: "x := 1"}, Output: "x := 1", Exact: true, EditSimilarity: 1, LatencyMS: 12.5, PromptTokens: 30, GeneratedTokens: 4},
		{Task: Task{Index: 1, File: "b.py", Language: "python", Kind: Span, Expected: "return y"}, Output: "return z", EditSimilarity: 0.875, LatencyMS: 20, PromptTokens: 40, GeneratedTokens: 5},
	}
	s := Summarize(results)
	id, err := Begin(ctx, pool, info, len(results))
	if err != nil {
		t.Fatal(err)
	}
	if err := Finish(ctx, pool, id, results, s); err != nil {
		t.Fatal(err)
	}
	run, err := q.EvalRunGetByID(ctx, pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if run.FinishedAt == nil || run.ModelName != "store-test" || run.ModelSha256 != sha || run.Arm != "b" || run.Seed != 42 || run.Repo != "/src/x" || run.TaskCount != 2 || run.MaxTokens != 16 {
		t.Errorf("run = %+v", run)
	}
	if run.ExactMatchRate == nil || *run.ExactMatchRate != 0.5 || *run.MeanEditSimilarity != 0.9375 || *run.LatencyP50Ms != 12.5 || *run.LatencyP99Ms != 20 {
		t.Errorf("run figures = %v %v %v %v", run.ExactMatchRate, run.MeanEditSimilarity, run.LatencyP50Ms, run.LatencyP99Ms)
	}
	rows, err := q.EvalResultListByRun(ctx, pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].Kind != "span" || rows[1].Language != "python" || rows[1].Output != "return z" || rows[1].Expected != "return y" ||
		rows[1].EditSimilarity != 0.875 || rows[1].Exact || !rows[0].Exact || rows[0].PromptTokens != 30 || rows[1].GeneratedTokens != 5 || rows[0].LatencyMs != 12.5 {
		t.Errorf("results = %+v", rows)
	}
	cmp, err := q.EvalCompare(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var mine int
	for _, c := range cmp {
		if c.ModelName == "store-test" {
			mine++
			if c.Runs != 1 || c.Tasks != 1 || c.Arm != "b" {
				t.Errorf("compare row %+v", c)
			}
		}
	}
	if mine != 2 {
		t.Errorf("EvalCompare has %d rows of the run, want 2 (one per kind and language)", mine)
	}

	// A result the table refuses: the run stays unfinished, with no rows.
	bad := []Result{{Task: Task{Index: 0, File: "a.go", Language: "go", Kind: "line"}}}
	id2, err := Begin(ctx, pool, info, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := Finish(ctx, pool, id2, bad, Summarize(bad)); err == nil {
		t.Fatal("Finish stored an unknown kind")
	}
	run, err = q.EvalRunGetByID(ctx, pool, id2)
	if err != nil {
		t.Fatal(err)
	}
	rows, err = q.EvalResultListByRun(ctx, pool, id2)
	if err != nil {
		t.Fatal(err)
	}
	if run.FinishedAt != nil || len(rows) != 0 {
		t.Errorf("failed Finish left finished_at %v and %d rows", run.FinishedAt, len(rows))
	}
}
