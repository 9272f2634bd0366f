import { useEffect, useMemo, useState } from "react";
import { fmtInt, fmtMs, fmtPct, get } from "../api";
import { Chart, palette } from "../components/Chart";
import { Loading, PageHead, Problem, Stat } from "../components/ui";

// The stages a request passes, in order, as GET /api/admin/overview names them.
const stageNames = ["redact_ms", "context_ms", "queue_ms", "prefill_ms", "decode_ms"] as const;
type StageName = (typeof stageNames)[number];
const stageLabels: Record<StageName, string> = { redact_ms: "redact", context_ms: "context", queue_ms: "queue", prefill_ms: "prefill", decode_ms: "decode" };
type Pctl = { p50: number | null; p95: number | null };

// The overview's figures over one window, whichever route answered them.
// stages: each stage's percentiles per bucket (GET /api/admin/overview
// only, so the last hour and day).
type ModelSeries = {
  name: string;
  acceptance: (number | null)[];
  p50: (number | null)[];
  p95: (number | null)[];
  stages?: Record<StageName, { p50: (number | null)[]; p95: (number | null)[] }>;
};
type Overview = {
  x: number[]; // bucket starts, UNIX seconds
  step: number; // bucket length, seconds
  rps: number[];
  acceptance: (number | null)[];
  requests: number;
  shown: number;
  accepted: number;
  models: ModelSeries[];
};

// GET /api/admin/overview (the last hour or day, per model).
type AdminBucket = {
  start: string;
  requests: number;
  shown: number;
  accepted: number;
  acceptance_rate: number | null;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  stages: Record<StageName, Pctl>;
};
type AdminOverview = { bucket_s: number; from: string; to: string; models: { model_id: number; model_name: string; buckets: AdminBucket[] }[] };

async function fromAdminOverview(window: "hour" | "day"): Promise<Overview> {
  const o = await get<AdminOverview>(`/api/admin/overview?window=${window}`);
  const n = o.models[0]?.buckets.length ?? 0;
  const x = Array.from({ length: n }, (_, i) => Date.parse(o.models[0].buckets[i].start) / 1000);
  const sum = (i: number, f: (b: AdminBucket) => number) => o.models.reduce((a, m) => a + f(m.buckets[i]), 0);
  const shownAt = x.map((_, i) => sum(i, (b) => b.shown));
  const acceptedAt = x.map((_, i) => sum(i, (b) => b.accepted));
  return {
    x,
    step: o.bucket_s,
    rps: x.map((_, i) => sum(i, (b) => b.requests) / o.bucket_s),
    acceptance: x.map((_, i) => (shownAt[i] ? acceptedAt[i] / shownAt[i] : null)),
    requests: x.reduce((a, _, i) => a + sum(i, (b) => b.requests), 0),
    shown: shownAt.reduce((a, b) => a + b, 0),
    accepted: acceptedAt.reduce((a, b) => a + b, 0),
    models: o.models.map((m) => ({
      name: m.model_name,
      acceptance: m.buckets.map((b) => b.acceptance_rate),
      p50: m.buckets.map((b) => b.latency_p50_ms),
      p95: m.buckets.map((b) => b.latency_p95_ms),
      stages: Object.fromEntries(
        stageNames.map((st) => [st, { p50: m.buckets.map((b) => b.stages[st].p50), p95: m.buckets.map((b) => b.stages[st].p95) }]),
      ) as ModelSeries["stages"],
    })),
  };
}

// GET /api/analytics/trends (completion queries, any window), per model.
type Stage = { n: number; p50: number | null; p95: number | null };
type TrendBucket = { bucket: string; completions: number; shown: number; accepted: number; acceptance_rate: number | null; total_serving_ms: Stage };
type Trends = { buckets: TrendBucket[] };

async function fromTrends(hours: number, granularity: "hour" | "day"): Promise<Overview> {
  const to = new Date();
  to.setUTCMinutes(60, 0, 0);
  const from = new Date(to.getTime() - hours * 3600_000);
  const w = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  const step = granularity === "hour" ? 3600 : 86400;
  const [all, m] = await Promise.all([
    get<Trends>(`/api/analytics/trends?granularity=${granularity}&${w}`),
    get<{ models: { model_id: number; model_name: string }[] }>(`/api/analytics/models?${w}`),
  ]);
  const per = await Promise.all(
    m.models.map(async (model) => ({ model, t: await get<Trends>(`/api/analytics/trends?granularity=${granularity}&model_id=${model.model_id}&${w}`) })),
  );
  return {
    x: all.buckets.map((b) => Date.parse(b.bucket) / 1000),
    step,
    rps: all.buckets.map((b) => b.completions / step),
    acceptance: all.buckets.map((b) => b.acceptance_rate),
    requests: all.buckets.reduce((a, b) => a + b.completions, 0),
    shown: all.buckets.reduce((a, b) => a + b.shown, 0),
    accepted: all.buckets.reduce((a, b) => a + b.accepted, 0),
    models: per.map(({ model, t }) => ({
      name: model.model_name,
      acceptance: t.buckets.map((b) => b.acceptance_rate),
      p50: t.buckets.map((b) => b.total_serving_ms.p50),
      p95: t.buckets.map((b) => b.total_serving_ms.p95),
    })),
  };
}

const ranges: Record<string, () => Promise<Overview>> = {
  "1 hour": () => fromAdminOverview("hour"),
  "24 hours": () => fromAdminOverview("day"),
  "7 days": () => fromTrends(24 * 7, "hour"),
  "30 days": () => fromTrends(24 * 30, "day"),
};

const fmtRps = (v: number | null) => (v == null ? "–" : v === 0 ? "0" : v.toPrecision(2));

export function AdminOverview() {
  const [range, setRange] = useState("24 hours");
  const [data, setData] = useState<Overview | null>(null);
  const [loaded, setLoaded] = useState("");
  const [error, setError] = useState<Error | null>(null);

  useEffect(() => {
    let live = true;
    ranges[range]()
      .then((d) => {
        if (live) {
          setData(d);
          setLoaded(range);
          setError(null);
        }
      })
      .catch((e: Error) => live && setError(e));
    return () => {
      live = false;
    };
  }, [range]);

  const span = useMemo(() => (data ? data.x.length * data.step : 1), [data]);
  const xLabel = data && data.step < 86400 ? "Time (UTC)" : "Day (UTC)";
  const fmtX = (v: number) => {
    const iso = new Date(v * 1000).toISOString();
    return data && data.step < 86400 ? `${iso.slice(0, 10)} ${iso.slice(11, 16)}` : iso.slice(0, 10);
  };

  return (
    <>
      <PageHead
        title="Overview"
        lead="Traffic, acceptance and latency across every user and model."
        actions={
          <div className="seg" role="group" aria-label="Window">
            {Object.keys(ranges).map((k) => (
              <button key={k} type="button" aria-pressed={range === k} onClick={() => setRange(k)}>
                {k}
              </button>
            ))}
          </div>
        }
      />
      <Problem error={error} />
      {!data && !error && <Loading />}
      {data && (
        <>
          <div className="stats" data-window={loaded}>
            <Stat id="requests" label="Requests" value={fmtInt(data.requests)} hint={`last ${range}`} />
            <Stat id="rps" label="Mean requests/s" value={fmtRps(data.requests / span)} />
            <Stat id="acceptance" label="Acceptance" value={fmtPct(data.shown ? data.accepted / data.shown : null)} hint="accepted / shown" />
            <Stat id="models" label="Models answering" value={fmtInt(data.models.length)} />
          </div>
          <div className="grid-2">
            <Chart
              id="overview-rps"
              title="Requests per second"
              subtitle="Mean per bucket, every model"
              x={data.x}
              time
              xStep={data.step}
              xLabel={xLabel}
              xFormat={fmtX}
              height={220}
              series={[{ label: "requests/s", values: data.rps, color: palette[0], format: fmtRps }]}
            />
            <Chart
              id="overview-acceptance"
              title="Acceptance"
              subtitle="Accepted / shown, all models and per model"
              x={data.x}
              time
              xStep={data.step}
              xLabel={xLabel}
              xFormat={fmtX}
              height={220}
              yRange={[0, 1]}
              series={[
                { label: "all models", values: data.acceptance, color: palette[0], format: fmtPct },
                ...data.models.map((m, i) => ({ label: m.name, values: m.acceptance, color: palette[(i + 1) % palette.length], format: fmtPct, dashed: true })),
              ]}
            />
          </div>
          <Chart
            id="overview-latency"
            title="Latency per model"
            subtitle="p50 (solid) and p95 (dashed) of the time to answer a request"
            x={data.models.length ? data.x : []}
            time
            xStep={data.step}
            xLabel={xLabel}
            xFormat={fmtX}
            series={data.models.flatMap((m, i) => [
              { label: `${m.name} p50`, values: m.p50, color: palette[i % palette.length], format: fmtMs },
              { label: `${m.name} p95`, values: m.p95, color: palette[i % palette.length], format: fmtMs, dashed: true },
            ])}
            empty="No model answered in this window."
          />
          {data.models.length > 0 && !data.models[0].stages && (
            <section className="card" data-chart="overview-stages">
              <h3>Latency per stage</h3>
              <p className="empty">Each stage&apos;s latency is shown over the last hour and the last 24 hours.</p>
            </section>
          )}
          {data.models.map((m, i) =>
            m.stages ? (
              <Chart
                key={m.name}
                id={`overview-stages-${i}`}
                title={`Latency per stage: ${m.name}`}
                subtitle="p50 (solid) and p95 (dashed) of redaction, context, queue, prefill and decode"
                x={data.x}
                time
                xStep={data.step}
                xLabel={xLabel}
                xFormat={fmtX}
                height={220}
                series={stageNames.flatMap((st, k) => [
                  { label: `${stageLabels[st]} p50`, values: m.stages![st].p50, color: palette[k % palette.length], format: fmtMs },
                  { label: `${stageLabels[st]} p95`, values: m.stages![st].p95, color: palette[k % palette.length], format: fmtMs, dashed: true },
                ])}
              />
            ) : null,
          )}
        </>
      )}
    </>
  );
}
