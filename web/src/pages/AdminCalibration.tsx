import { fmtPct } from "../api";
import { Chart, palette } from "../components/Chart";
import { Loading, PageHead, Problem, Stat } from "../components/ui";
import { useGet } from "../hooks";

type Bin = { bin: number; lower: number; upper: number; n: number; mean_confidence: number; accept_rate: number };
type Model = { model_id: number; model_name: string; n: number; ece: number; brier: number; bins: Bin[] };

const BINS = 10;

export function AdminCalibration() {
  const { data, error, loading } = useGet<{ models: Model[] }>(`/api/analytics/calibration?bins=${BINS}`);
  // One x per bin (its middle), so every model's bins line up.
  const x = Array.from({ length: BINS }, (_, b) => (b + 0.5) / BINS);
  return (
    <>
      <PageHead title="Calibration" lead="Does a completion's confidence predict whether it is accepted? A calibrated model sits on the diagonal." />
      <Problem error={error} />
      {loading && !data && <Loading />}
      {data && (
        <>
          <div className="stats">
            {data.models.map((m) => (
              <Stat key={m.model_id} label={m.model_name} value={`ECE ${m.ece.toFixed(3)}`} hint={`Brier ${m.brier.toFixed(3)} · ${m.n} shown`} />
            ))}
          </div>
          <Chart
            id="calibration"
            title="Reliability diagram"
            subtitle="Acceptance rate per confidence bin (last 30 days)"
            x={data.models.length ? x : []}
            xLabel="Confidence"
            xFormat={(v) => v.toFixed(2)}
            yRange={[0, 1]}
            height={320}
            series={[
              { label: "perfect", values: x, color: "#94a3b8", dashed: true, format: (v) => (v == null ? "–" : v.toFixed(2)) },
              ...data.models.map((m, i) => ({
                label: m.model_name,
                values: x.map((_, b) => m.bins.find((bin) => bin.bin === b)?.accept_rate ?? null),
                color: palette[i % palette.length],
                format: fmtPct,
              })),
            ]}
            empty="No shown completion with a confidence yet."
          />
        </>
      )}
    </>
  );
}
