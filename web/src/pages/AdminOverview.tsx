import { useEffect, useMemo, useState } from "react";
import { fmtInt, fmtMs, fmtPct, get } from "../api";
import { Chart, palette } from "../components/Chart";
import { Loading, PageHead, Problem, Stat } from "../components/ui";

type Stage = { n: number; p50: number | null; p95: number | null; p99: number | null };
type Bucket = { bucket: string; completions: number; shown: number; accepted: number; acceptance_rate: number | null; users: number; total_serving_ms: Stage };
type Trends = { buckets: Bucket[] };
type ModelRow = { model_id: number; model_name: string; generations: number; shown: number; accepted: number; acceptance_rate: number | null };

const ranges = {
  "24 hours": { hours: 24, granularity: "hour", seconds: 3600 },
  "7 days": { hours: 24 * 7, granularity: "hour", seconds: 3600 },
  "30 days": { hours: 24 * 30, granularity: "day", seconds: 86400 },
} as const;
type Range = keyof typeof ranges;

export function AdminOverview() {
  const [range, setRange] = useState<Range>("7 days");
  const [all, setAll] = useState<Trends | null>(null);
  const [perModel, setPerModel] = useState<{ model: ModelRow; trends: Trends }[]>([]);
  const [models, setModels] = useState<ModelRow[]>([]);
  const [error, setError] = useState<Error | null>(null);
  const r = ranges[range];

  const window = useMemo(() => {
    const to = new Date();
    to.setUTCMinutes(60, 0, 0);
    const from = new Date(to.getTime() - r.hours * 3600_000);
    return `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  }, [r.hours]);

  useEffect(() => {
    let live = true;
    (async () => {
      try {
        const [t, m] = await Promise.all([
          get<Trends>(`/api/analytics/trends?granularity=${r.granularity}&${window}`),
          get<{ models: ModelRow[] }>(`/api/analytics/models?${window}`),
        ]);
        const per = await Promise.all(
          m.models.map(async (model) => ({
            model,
            trends: await get<Trends>(`/api/analytics/trends?granularity=${r.granularity}&model_id=${model.model_id}&${window}`),
          })),
        );
        if (!live) return;
        setAll(t);
        setModels(m.models);
        setPerModel(per);
        setError(null);
      } catch (e) {
        if (live) setError(e as Error);
      }
    })();
    return () => {
      live = false;
    };
  }, [window, r.granularity]);

  const x = all?.buckets.map((b) => Date.parse(b.bucket) / 1000) ?? [];
  const fmtX = (v: number) => {
    const iso = new Date(v * 1000).toISOString();
    return r.granularity === "hour" ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(0, 10);
  };
  const totals = all?.buckets.reduce(
    (a, b) => ({ completions: a.completions + b.completions, shown: a.shown + b.shown, accepted: a.accepted + b.accepted }),
    { completions: 0, shown: 0, accepted: 0 },
  );
  const rps = (n: number) => n / r.seconds;

  return (
    <>
      <PageHead
        title="Overview"
        lead="Traffic, acceptance and latency across every user and model."
        actions={
          <div className="seg" role="group" aria-label="Window">
            {(Object.keys(ranges) as Range[]).map((k) => (
              <button key={k} type="button" aria-pressed={range === k} onClick={() => setRange(k)}>
                {k}
              </button>
            ))}
          </div>
        }
      />
      <Problem error={error} />
      {!all && !error && <Loading />}
      {all && totals && (
        <>
          <div className="stats">
            <Stat id="requests" label="Completions" value={fmtInt(totals.completions)} hint={range} />
            <Stat id="rps" label="Mean requests/s" value={totals.completions ? (totals.completions / (r.hours * 3600)).toPrecision(2) : "0"} />
            <Stat id="acceptance" label="Acceptance" value={fmtPct(totals.shown ? totals.accepted / totals.shown : null)} hint="accepted / shown" />
            <Stat id="models" label="Models answering" value={fmtInt(models.length)} />
          </div>
          <div className="grid-2">
            <Chart
              id="overview-rps"
              title="Requests per second"
              subtitle={`Completion requests, mean per ${r.granularity}`}
              x={x}
              time
              xStep={r.seconds}
              xLabel={r.granularity === "hour" ? "Hour (UTC)" : "Day (UTC)"}
              xFormat={fmtX}
              height={220}
              series={[{ label: "requests/s", values: all.buckets.map((b) => rps(b.completions)), color: palette[0], format: (v) => (v == null ? "–" : v.toFixed(4)) }]}
            />
            <Chart
              id="overview-acceptance"
              title="Acceptance"
              subtitle="Accepted / shown, per model"
              x={x}
              time
              xStep={r.seconds}
              xLabel={r.granularity === "hour" ? "Hour (UTC)" : "Day (UTC)"}
              xFormat={fmtX}
              height={220}
              yRange={[0, 1]}
              series={[
                { label: "all models", values: all.buckets.map((b) => b.acceptance_rate), color: palette[0], format: fmtPct },
                ...perModel.map((pm, i) => ({
                  label: pm.model.model_name,
                  values: pm.trends.buckets.map((b) => b.acceptance_rate),
                  color: palette[(i + 1) % palette.length],
                  format: fmtPct,
                  dashed: true,
                })),
              ]}
            />
          </div>
          <Chart
            id="overview-latency"
            title="Latency per model"
            subtitle="p50 (solid) and p95 (dashed) of the time to answer a completion"
            x={x}
            time
            xStep={r.seconds}
            xLabel={r.granularity === "hour" ? "Hour (UTC)" : "Day (UTC)"}
            xFormat={fmtX}
            series={perModel.flatMap((pm, i) => [
              { label: `${pm.model.model_name} p50`, values: pm.trends.buckets.map((b) => b.total_serving_ms.p50), color: palette[i % palette.length], format: fmtMs },
              { label: `${pm.model.model_name} p95`, values: pm.trends.buckets.map((b) => b.total_serving_ms.p95), color: palette[i % palette.length], format: fmtMs, dashed: true },
            ])}
            empty="No model answered in this window."
          />
        </>
      )}
    </>
  );
}
