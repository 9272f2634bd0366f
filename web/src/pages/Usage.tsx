import { useMemo, useState } from "react";
import { fmtDay, fmtInt, fmtMs, fmtPct } from "../api";
import { Chart, palette } from "../components/Chart";
import { Loading, PageHead, Problem, Stat } from "../components/ui";
import { useGet } from "../hooks";

type Day = { day: string; completions: number; shown: number; accepted: number; acceptance_rate: number | null; p50_ms: number | null; p95_ms: number | null };
type Lang = { language: string; completions: number; shown: number; accepted: number; acceptance_rate: number | null };
type UsageResp = {
  total: { completions: number; shown: number; accepted: number; acceptance_rate: number | null };
  days: Day[];
  languages: Lang[];
};

const windows = [7, 30, 90];

export function Usage() {
  const [days, setDays] = useState(30);
  // The window ends at the next UTC midnight, so today is in it.
  const path = useMemo(() => {
    const to = new Date();
    to.setUTCHours(24, 0, 0, 0);
    const from = new Date(to.getTime() - days * 86400_000);
    return `/api/user/usage?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  }, [days]);
  const { data, error, loading } = useGet<UsageResp>(path);
  const x = data?.days.map((d) => Date.parse(d.day) / 1000) ?? [];
  const dayFmt = (v: number) => fmtDay(new Date(v * 1000).toISOString());
  const maxLang = Math.max(1, ...(data?.languages.map((l) => l.completions) ?? [1]));

  return (
    <>
      <PageHead
        title="Your usage"
        lead="Completions your editors asked for, how many you saw and how many you kept."
        actions={
          <div className="seg" role="group" aria-label="Window">
            {windows.map((w) => (
              <button key={w} type="button" aria-pressed={days === w} onClick={() => setDays(w)}>
                {w} days
              </button>
            ))}
          </div>
        }
      />
      <Problem error={error} />
      {loading && !data && <Loading />}
      {data && (
        <>
          <div className="stats">
            <Stat id="completions" label="Completions" value={fmtInt(data.total.completions)} hint={`last ${days} days`} />
            <Stat id="shown" label="Shown" value={fmtInt(data.total.shown)} />
            <Stat id="accepted" label="Accepted" value={fmtInt(data.total.accepted)} />
            <Stat id="acceptance" label="Acceptance" value={fmtPct(data.total.acceptance_rate)} hint="accepted / shown" />
          </div>
          <Chart
            id="usage-daily"
            title="Completions per day"
            subtitle="Requested, shown in the editor, and accepted (UTC days)"
            x={x}
            time
            xStep={86400}
            xLabel="Day"
            xFormat={dayFmt}
            series={[
              { label: "Completions", values: data.days.map((d) => d.completions), color: palette[0], format: (v) => fmtInt(v) },
              { label: "Shown", values: data.days.map((d) => d.shown), color: palette[4], format: (v) => fmtInt(v) },
              { label: "Accepted", values: data.days.map((d) => d.accepted), color: palette[1], format: (v) => fmtInt(v) },
            ]}
            empty="No completions in this window yet: install a plugin and start typing."
          />
          <div className="grid-2">
            <Chart
              id="usage-latency"
              title="Latency"
              subtitle="Time to answer a completion, per day"
              x={x}
              time
              xStep={86400}
              xLabel="Day"
              xFormat={dayFmt}
              height={220}
              series={[
                { label: "p50", values: data.days.map((d) => d.p50_ms), color: palette[0], format: fmtMs },
                { label: "p95", values: data.days.map((d) => d.p95_ms), color: palette[2], format: fmtMs, dashed: true },
              ]}
            />
            <section className="card" data-chart="usage-languages" aria-label="Languages">
              <header className="card-head">
                <div>
                  <h3>Languages</h3>
                  <p className="muted small">Completions per language, with acceptance</p>
                </div>
              </header>
              {data.languages.length === 0 ? (
                <p className="empty">No language recorded yet.</p>
              ) : (
                <div className="table-wrap">
                  <table className="bars">
                    <thead>
                      <tr>
                        <th scope="col">Language</th>
                        <th scope="col" className="num">Completions</th>
                        <th scope="col" className="num">Acceptance</th>
                        <th scope="col" className="bar-col"><span className="sr-only">Share</span></th>
                      </tr>
                    </thead>
                    <tbody>
                      {data.languages.map((l) => (
                        <tr key={l.language}>
                          <th scope="row">{l.language}</th>
                          <td className="num">{fmtInt(l.completions)}</td>
                          <td className="num">{fmtPct(l.acceptance_rate)}</td>
                          <td className="bar-col">
                            <progress className="bar" max={maxLang} value={l.completions} />
                          </td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
            </section>
          </div>
        </>
      )}
    </>
  );
}
