package server

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/eval"
	"github.com/code4me/code4me/internal/testenv"
	"github.com/code4me/code4me/models"
)

// qualityOnTheFlySQL is how the quality figures were read before they
// were derived by the truth_match job: every shown generation of the
// window with the texts and times of the ground truths that apply to it,
// oldest first, compared in Go (qualityOnTheFly). It is kept here only as
// the reference the benchmark measures the stored figures against.
const qualityOnTheFlySQL = `SELECT g.model_id, g.completion, g.was_accepted,
    coalesce(g.feedback_at, g.shown_at[cardinality(g.shown_at)])::timestamptz AS accepted_at,
    coalesce(array_agg(gt.ground_truth ORDER BY gt.truth_timestamp, gt.ground_truth_id)
        FILTER (WHERE gt.ground_truth_id IS NOT NULL), '{}')::text[] AS truths,
    coalesce(array_agg(gt.truth_timestamp ORDER BY gt.truth_timestamp, gt.ground_truth_id)
        FILTER (WHERE gt.ground_truth_id IS NOT NULL), '{}')::timestamptz[] AS truth_times
FROM generation g
JOIN meta_query mq ON mq.meta_query_id = g.meta_query_id
LEFT JOIN ground_truth gt ON gt.meta_query_id = g.meta_query_id AND (gt.model_id IS NULL OR gt.model_id = g.model_id)
WHERE mq.query_type = 'completion' AND cardinality(g.shown_at) > 0
    AND mq.requested_at >= $1 AND mq.requested_at < $2
GROUP BY g.meta_query_id, g.model_id
ORDER BY g.model_id, g.meta_query_id`

// qualityOnTheFly computes one model's figures the old way: per shown
// generation, exact match and edit similarity against its latest ground
// truth, and survival (an LCS) at each horizon.
func qualityOnTheFly(ctx context.Context, srv *Server, from, to time.Time) (qualityFigures, error) {
	rows, err := srv.db.Query(ctx, qualityOnTheFlySQL, from, to)
	if err != nil {
		return qualityFigures{}, err
	}
	defer rows.Close()
	var nS, nA int64
	var emS, esS, emA, esA float64
	survN := make([]int64, len(survivalHorizons))
	survSum := make([]float64, len(survivalHorizons))
	for rows.Next() {
		var model int64
		var completion string
		var accepted bool
		var acceptedAt time.Time
		var truths []string
		var times []time.Time
		if err := rows.Scan(&model, &completion, &accepted, &acceptedAt, &truths, &times); err != nil {
			return qualityFigures{}, err
		}
		if len(truths) == 0 {
			continue
		}
		latest := truths[len(truths)-1]
		em, es := 0.0, eval.EditSimilarity(completion, latest)
		if eval.ExactMatch(completion, latest) {
			em = 1
		}
		nS, emS, esS = nS+1, emS+em, esS+es
		if !accepted {
			continue
		}
		nA, emA, esA = nA+1, emA+em, esA+es
		for k, h := range survivalHorizons {
			if v, ok := survivalBy(completion, acceptedAt, h, truths, times); ok {
				survN[k]++
				survSum[k] += v
			}
		}
	}
	mean := func(sum float64, n int64) float64 {
		if n == 0 {
			return 0
		}
		return sum / float64(n)
	}
	survMean := make([]float64, len(survSum))
	for k := range survSum {
		survMean[k] = mean(survSum[k], survN[k])
	}
	return readQualityFigures(nS, mean(emS, nS), mean(esS, nS), nA, mean(emA, nA), mean(esA, nA), survN, survMean), rows.Err()
}

// BenchmarkAnalyticsQuality: the quality figures of one model over
// 2,000 shown generations with one or two ground truths each (completions
// of about 60 characters, ground truths of about 70), computed on the fly
// (the reference above) and aggregated in SQL over the rows the
// truth_match job stored. Both must give the same figures.
func BenchmarkAnalyticsQuality(b *testing.B) {
	const n = 2000
	ctx := context.Background()
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	cfg.DataDir = b.TempDir()
	srv, err := New(Deps{Config: cfg, DB: testenv.Pool(b), Redis: testenv.Redis(b), JobQueue: testQueue()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })

	// A window of its own: a random day of 1950–1959.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	from := time.Date(1950+rng.IntN(10), 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(360))
	to := from.Add(24 * time.Hour)
	var model int64
	if err := srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ('bench-quality', 'test', $1) RETURNING model_id",
		strings.Repeat("0", 32)+strings.ReplaceAll(uuid.NewString(), "-", "")).Scan(&model); err != nil {
		b.Fatal(err)
	}
	words := []string{"return", "x", "+", "1", "for", "i", "in", "range(n):", "print(x)", "self.value", "=", "None", "if", "not", "items:"}
	text := func(k int) string {
		var sb strings.Builder
		for sb.Len() < k {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	var mqs []uuid.UUID
	var ats []time.Time
	var comps []string
	var accepted []bool
	for i := range n {
		mqs = append(mqs, uuid.New())
		ats = append(ats, from.Add(time.Duration(i)*time.Second*30))
		comps = append(comps, text(60))
		accepted = append(accepted, rng.IntN(3) != 0)
	}
	exec := func(sql string, args ...any) {
		if _, err := srv.db.Exec(ctx, sql, args...); err != nil {
			b.Fatal(err)
		}
	}
	exec(`INSERT INTO meta_query (meta_query_id, query_type, config_id, server_version, requested_at)
		SELECT id, 'completion', 1, 'bench', at FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)`, mqs, ats)
	exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted, feedback_at)
		SELECT id, $2, c, 10, ARRAY[at + interval '1 second'], acc, at + interval '2 seconds'
		FROM unnest($1::uuid[], $3::text[], $4::timestamptz[], $5::bool[]) AS u(id, c, at, acc)`, mqs, model, comps, ats, accepted)
	var tMQ []uuid.UUID
	var tText []string
	var tAt []time.Time
	for i := range n {
		for range 1 + rng.IntN(2) {
			t := text(70)
			if rng.IntN(4) == 0 {
				t = comps[i]
			}
			tMQ, tText, tAt = append(tMQ, mqs[i]), append(tText, t), append(tAt, ats[i].Add(time.Duration(5+rng.IntN(700))*time.Second))
		}
	}
	rows, err := srv.db.Query(ctx, `INSERT INTO ground_truth (meta_query_id, model_id, ground_truth, truth_timestamp)
		SELECT id, $2, t, at FROM unnest($1::uuid[], $3::text[], $4::timestamptz[]) AS u(id, t, at) RETURNING ground_truth_id`,
		tMQ, model, tText, tAt)
	if err != nil {
		b.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		srv.db.Exec(context.Background(), `DELETE FROM meta_query WHERE meta_query_id = ANY($1)`, mqs)
		srv.db.Exec(context.Background(), `DELETE FROM model WHERE model_id = $1`, model)
	})
	for _, id := range ids { // what the truth_match jobs do
		if err := srv.deriveTruthMatch(ctx, id); err != nil {
			b.Fatal(err)
		}
	}

	// Fresh statistics, as autovacuum keeps them, so that the planner
	// sees the table sizes.
	exec(`ANALYZE meta_query, generation, ground_truth, generation_truth_match`)

	derived := func() qualityFigures {
		rs, err := srv.q.AnalyticsQuality(ctx, srv.db, models.AnalyticsQualityParams{FromTime: from, ToTime: to, HorizonsS: survivalHorizonsS()})
		if err != nil || len(rs) != 1 {
			b.Fatalf("%d rows, %v", len(rs), err)
		}
		r := rs[0]
		return readQualityFigures(r.NShown, r.EmShown, r.EsShown, r.NAccepted, r.EmAccepted, r.EsAccepted, r.SurvivalN, r.SurvivalMean)
	}
	ref, err := qualityOnTheFly(ctx, srv, from, to)
	if err != nil {
		b.Fatal(err)
	}
	got := derived()
	same := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || math.Abs(*x-*y) < 1e-9) }
	if got.Shown.N != n || got.Shown.N != ref.Shown.N || got.Accepted.N != ref.Accepted.N ||
		!same(got.Shown.ExactMatch, ref.Shown.ExactMatch) || !same(got.Shown.EditSimilarity, ref.Shown.EditSimilarity) ||
		!same(got.Accepted.ExactMatch, ref.Accepted.ExactMatch) || !same(got.Accepted.EditSimilarity, ref.Accepted.EditSimilarity) {
		b.Fatalf("derived %+v, on the fly %+v", got, ref)
	}
	for k := range got.Survival {
		if got.Survival[k].N != ref.Survival[k].N || !same(got.Survival[k].Mean, ref.Survival[k].Mean) {
			b.Fatalf("survival %d: derived %+v, on the fly %+v", k, got.Survival[k], ref.Survival[k])
		}
	}

	b.Run("on-the-fly", func(b *testing.B) {
		timed(b, func(int) {
			if _, err := qualityOnTheFly(ctx, srv, from, to); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("derived", func(b *testing.B) {
		timed(b, func(int) { derived() })
	})
}
