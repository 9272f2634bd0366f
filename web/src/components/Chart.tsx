import { useEffect, useRef, useState } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export type Series = {
  label: string;
  values: (number | null)[];
  color: string;
  format?: (v: number | null) => string;
  dashed?: boolean;
  points?: boolean; // markers only, no line
};

type Props = {
  id: string; // names the chart for tests and screenshots: data-chart
  title: string;
  subtitle?: string;
  // x: UNIX seconds (time: true) or plain numbers.
  x: number[];
  time?: boolean;
  // xStep: the seconds between buckets of a time axis (3600, 86400), so
  // ticks fall on whole buckets.
  xStep?: number;
  xLabel: string;
  xFormat: (v: number) => string;
  series: Series[];
  height?: number;
  yRange?: [number, number];
  empty?: string;
};

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// Chart draws series over x with uPlot, with a toggle to a <table> of the
// same numbers (the table is what screen readers and tests read).
export function Chart(p: Props) {
  const [view, setView] = useState<"chart" | "table">("chart");
  const box = useRef<HTMLDivElement>(null);
  const [themeTick, setThemeTick] = useState(0);

  useEffect(() => {
    const on = () => setThemeTick((t) => t + 1);
    window.addEventListener("code4me-theme", on);
    return () => window.removeEventListener("code4me-theme", on);
  }, []);

  useEffect(() => {
    const el = box.current;
    if (view !== "chart" || !el || p.x.length === 0) return;
    const axisColor = cssVar("--muted");
    const gridColor = cssVar("--grid");
    const axis: uPlot.Axis = {
      stroke: axisColor,
      grid: { stroke: gridColor, width: 1 },
      ticks: { stroke: gridColor, width: 1 },
      font: "12px Inter, system-ui, sans-serif",
    };
    const step = p.xStep ?? 86400;
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 280),
      height: p.height ?? 260,
      // Buckets are UTC hours and days: the axis is in UTC too.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: { time: !!p.time }, y: p.yRange ? { range: p.yRange } : { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        {
          ...axis,
          space: 90,
          incrs: p.time ? [1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 720, 1440].map((k) => k * step) : undefined,
          // Time axes: uPlot's own labels (date, then year below); others: xFormat.
          values: p.time ? undefined : (_u, vals) => vals.map((v) => p.xFormat(v)),
        },
        { ...axis, size: 72, values: (_u, vals) => vals.map((v) => (p.series[0]?.format ? p.series[0].format(v) : String(v))) },
      ],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: p.xLabel, value: (_u, v) => (v == null ? "–" : p.xFormat(v)) },
        ...p.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          fill: s.points ? undefined : s.color + "1a",
          dash: s.dashed ? [6, 4] : undefined,
          paths: s.points ? () => null : undefined,
          points: { show: s.points ? true : p.x.length < 40, size: s.points ? 8 : 5, fill: s.color },
          spanGaps: true,
          value: (_u: uPlot, v: number | null) => (s.format ? s.format(v) : v == null ? "–" : String(v)),
        })),
      ],
    };
    const data = [p.x, ...p.series.map((s) => s.values)] as uPlot.AlignedData;
    const plot = new uPlot(opts, data, el);
    const ro = new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 280), height: p.height ?? 260 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [view, p, themeTick]);

  return (
    <section className="card chart" data-chart={p.id} aria-label={p.title}>
      <header className="card-head">
        <div>
          <h3>{p.title}</h3>
          {p.subtitle && <p className="muted small">{p.subtitle}</p>}
        </div>
        <div className="seg" role="group" aria-label="View">
          <button type="button" aria-pressed={view === "chart"} onClick={() => setView("chart")}>
            Chart
          </button>
          <button type="button" aria-pressed={view === "table"} onClick={() => setView("table")} data-action="table-view">
            Table
          </button>
        </div>
      </header>
      {p.x.length === 0 ? (
        <p className="empty">{p.empty ?? "No data in this window yet."}</p>
      ) : view === "chart" ? (
        <div className="plot" ref={box} />
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{p.xLabel}</th>
                {p.series.map((s) => (
                  <th scope="col" key={s.label} className="num">
                    {s.label}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {p.x.map((xv, i) => (
                <tr key={i}>
                  <th scope="row">{p.xFormat(xv)}</th>
                  {p.series.map((s) => (
                    <td key={s.label} className="num">
                      {s.format ? s.format(s.values[i]) : (s.values[i] ?? "–")}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

// Palette of series colours that read on both themes.
export const palette = ["#6366f1", "#10b981", "#f59e0b", "#ef4444", "#06b6d4", "#a855f7", "#84cc16", "#ec4899"];
