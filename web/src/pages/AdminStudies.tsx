import { useState, type FormEvent } from "react";
import { ApiError, fmtInt, fmtMs, fmtTime, get, post } from "../api";
import { Alert, Badge, Loading, PageHead, Problem, statusTone } from "../components/ui";
import { useGet } from "../hooks";

type Study = {
  study_id: string;
  name: string;
  description: string | null;
  status: string;
  unit: string;
  starts_at: string;
  ends_at: string | null;
  participants?: number;
  creator_name?: string;
};
type Config = { config_id: number; config_data: unknown };
type Estimate = { estimate: number | null; low: number | null; high: number | null } | null;
type ArmResult = {
  arm_id: number;
  name: string;
  config_id: number;
  is_baseline: boolean;
  units: number;
  queries: number;
  shown: number;
  accepted: number;
  acceptance_rate: Estimate;
  total_serving_ms: { n: number; mean: Estimate; p50: number | null; p95: number | null };
  vs_baseline: null | { acceptance_rate_diff: Estimate; total_serving_ms_mean_diff: Estimate };
};

type ArmForm = { name: string; config_id: number; weight: number; baseline: boolean };

// interval shows an estimate with its interval below it.
function interval(e: Estimate, f: (v: number) => string) {
  if (!e || e.estimate == null) return "–";
  if (e.low == null || e.high == null) return f(e.estimate);
  return (
    <>
      <span className="ci-est">{f(e.estimate)}</span> <span className="ci-range">[{f(e.low)}, {f(e.high)}]</span>
    </>
  );
}
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
const pp = (v: number) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}pp`;
const ms = (v: number) => `${v.toFixed(0)}ms`;
const dms = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(0)}ms`;

// IntervalBar draws an estimate and its interval on [0, 1].
function IntervalBar({ e }: { e: Estimate }) {
  if (!e || e.estimate == null) return null;
  const lo = e.low ?? e.estimate;
  const hi = e.high ?? e.estimate;
  return (
    <svg className="interval" viewBox="0 0 100 12" preserveAspectRatio="none" aria-hidden="true">
      <line x1="0" x2="100" y1="6" y2="6" className="interval-axis" />
      <rect x={lo * 100} width={Math.max((hi - lo) * 100, 0.5)} y="3" height="6" rx="2" className="interval-range" />
      <circle cx={e.estimate * 100} cy="6" r="2.6" className="interval-point" />
    </svg>
  );
}

function Results({ study }: { study: Study }) {
  const { data, error, loading } = useGet<{ arms: ArmResult[]; from: string; to: string }>(`/api/analytics/studies/${study.study_id}/evaluation`);
  return (
    <section className="card" data-state="study-results">
      <h3>Results: {study.name}</h3>
      <Problem error={error} />
      {loading && !data && <Loading />}
      {data && (
        <>
          <p className="muted small">
            Exposed queries from {fmtTime(data.from)} to {fmtTime(data.to)} · 95 % intervals (Wilson for rates, Student's t for means,
            Newcombe and Welch for differences)
          </p>
          <div className="table-wrap">
            <table data-table="study-arms">
              <thead>
                <tr>
                  <th scope="col">Arm</th>
                  <th scope="col" className="num">{study.unit}s</th>
                  <th scope="col" className="num">Queries</th>
                  <th scope="col" className="num">Shown</th>
                  <th scope="col" className="num">Accepted</th>
                  <th scope="col">Acceptance [95 % CI]</th>
                  <th scope="col" className="ci-bar"><span className="sr-only">Interval</span></th>
                  <th scope="col">vs baseline</th>
                  <th scope="col">Serving mean [95 % CI]</th>
                  <th scope="col">vs baseline</th>
                </tr>
              </thead>
              <tbody>
                {data.arms.map((a) => (
                  <tr key={a.arm_id}>
                    <th scope="row">
                      {a.name} {a.is_baseline && <Badge tone="accent">baseline</Badge>}
                    </th>
                    <td className="num">{fmtInt(a.units)}</td>
                    <td className="num">{fmtInt(a.queries)}</td>
                    <td className="num">{fmtInt(a.shown)}</td>
                    <td className="num">{fmtInt(a.accepted)}</td>
                    <td className="ci">{interval(a.acceptance_rate, pct)}</td>
                    <td className="ci-bar">
                      <IntervalBar e={a.acceptance_rate} />
                    </td>
                    <td className="ci">{a.vs_baseline ? interval(a.vs_baseline.acceptance_rate_diff, pp) : "–"}</td>
                    <td className="ci">{interval(a.total_serving_ms.mean, ms)}</td>
                    <td className="ci">{a.vs_baseline ? interval(a.vs_baseline.total_serving_ms_mean_diff, dms) : "–"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <p className="muted small">p50/p95 serving time: {data.arms.map((a) => `${a.name} ${fmtMs(a.total_serving_ms.p50)} / ${fmtMs(a.total_serving_ms.p95)}`).join(" · ")}</p>
        </>
      )}
    </section>
  );
}

export function AdminStudies() {
  const list = useGet<{ studies: Study[] }>("/api/analytics/studies");
  const configs = useGet<{ configs: Config[] }>("/api/config/");
  const [selected, setSelected] = useState<Study | null>(null);
  const [creating, setCreating] = useState(false);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [unit, setUnit] = useState("user");
  const [arms, setArms] = useState<ArmForm[]>([
    { name: "control", config_id: 1, weight: 1, baseline: true },
    { name: "treatment", config_id: 1, weight: 1, baseline: false },
  ]);
  const [note, setNote] = useState<{ kind: "ok" | "error"; text: string } | null>(null);

  const configIds = configs.data?.configs.map((c) => c.config_id) ?? [1];

  async function create(e: FormEvent) {
    e.preventDefault();
    setNote(null);
    try {
      await post("/api/analytics/studies", { name, description: description || undefined, unit, arms });
      setNote({ kind: "ok", text: `Study “${name}” created as a draft.` });
      setCreating(false);
      setName("");
      setDescription("");
      list.reload();
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  async function act(s: Study, action: "start" | "pause" | "end") {
    setNote(null);
    try {
      await post(`/api/analytics/studies/${s.study_id}/${action}`);
      const d = await get<{ study: Study }>(`/api/analytics/studies/${s.study_id}`);
      setNote({ kind: "ok", text: `Study “${s.name}” is ${d.study.status}.` });
      list.reload();
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  const setArm = (i: number, patch: Partial<ArmForm>) =>
    setArms((cur) => cur.map((a, j) => (j === i ? { ...a, ...patch } : patch.baseline ? { ...a, baseline: false } : a)));

  return (
    <>
      <PageHead
        title="Studies"
        lead="A/B studies: each arm serves its config to the users, sessions or requests randomised into it."
        actions={
          <button type="button" className="btn btn-primary" data-action="new-study" onClick={() => setCreating((c) => !c)}>
            {creating ? "Close" : "New study"}
          </button>
        }
      />
      {note && <Alert kind={note.kind}>{note.text}</Alert>}
      {creating && (
        <section className="card">
          <h3>New study</h3>
          <form className="form" onSubmit={create} aria-label="Create a study">
            <div className="form-row">
              <label className="grow">
                Name
                <input name="study-name" required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} />
              </label>
              <label>
                Randomise by
                <select name="unit" value={unit} onChange={(e) => setUnit(e.target.value)}>
                  <option value="user">user</option>
                  <option value="session">session</option>
                  <option value="request">request</option>
                </select>
              </label>
            </div>
            <label>
              Description
              <textarea name="description" rows={2} maxLength={5000} value={description} onChange={(e) => setDescription(e.target.value)} />
            </label>
            <fieldset>
              <legend>Arms</legend>
              {arms.map((a, i) => (
                <div className="form-row arm" key={i}>
                  <label className="grow">
                    Name
                    <input required value={a.name} onChange={(e) => setArm(i, { name: e.target.value })} />
                  </label>
                  <label>
                    Config
                    <select value={a.config_id} onChange={(e) => setArm(i, { config_id: Number(e.target.value) })}>
                      {configIds.map((id) => (
                        <option key={id} value={id}>
                          config {id}
                        </option>
                      ))}
                    </select>
                  </label>
                  <label>
                    Weight
                    <input type="number" min={1} value={a.weight} onChange={(e) => setArm(i, { weight: Number(e.target.value) })} />
                  </label>
                  <label className="check">
                    <input type="radio" name="baseline" checked={a.baseline} onChange={() => setArm(i, { baseline: true })} /> baseline
                  </label>
                  {arms.length > 1 && (
                    <button type="button" className="btn btn-ghost" onClick={() => setArms((cur) => cur.filter((_, j) => j !== i))}>
                      Remove
                    </button>
                  )}
                </div>
              ))}
              <button type="button" className="btn btn-ghost" onClick={() => setArms((cur) => [...cur, { name: `arm ${cur.length + 1}`, config_id: 1, weight: 1, baseline: false }])}>
                Add arm
              </button>
            </fieldset>
            <button className="btn btn-primary" type="submit">
              Create study
            </button>
          </form>
        </section>
      )}
      <Problem error={list.error} />
      {list.loading && !list.data && <Loading />}
      {list.data && (
        <section className="card">
          {list.data.studies.length === 0 ? (
            <p className="empty">No studies yet.</p>
          ) : (
            <div className="table-wrap">
              <table data-table="studies">
                <thead>
                  <tr>
                    <th scope="col">Study</th>
                    <th scope="col">Status</th>
                    <th scope="col">Unit</th>
                    <th scope="col" className="num">Participants</th>
                    <th scope="col">Starts</th>
                    <th scope="col">Ends</th>
                    <th scope="col"><span className="sr-only">Actions</span></th>
                  </tr>
                </thead>
                <tbody>
                  {list.data.studies.map((s) => (
                    <tr key={s.study_id} data-study={s.name}>
                      <th scope="row">
                        <button type="button" className="link" onClick={() => setSelected(s)}>
                          {s.name}
                        </button>
                        {s.description && <div className="muted small">{s.description}</div>}
                      </th>
                      <td>
                        <Badge tone={statusTone(s.status)}>
                          <span data-status>{s.status}</span>
                        </Badge>
                      </td>
                      <td>{s.unit}</td>
                      <td className="num">{fmtInt(s.participants ?? 0)}</td>
                      <td>{fmtTime(s.starts_at)}</td>
                      <td>{fmtTime(s.ends_at)}</td>
                      <td className="right nowrap">
                        {(s.status === "draft" || s.status === "paused") && (
                          <button type="button" className="btn btn-small" data-action="start" onClick={() => act(s, "start")}>
                            Start
                          </button>
                        )}
                        {s.status === "running" && (
                          <button type="button" className="btn btn-small" data-action="pause" onClick={() => act(s, "pause")}>
                            Pause
                          </button>
                        )}{" "}
                        {s.status !== "ended" && (
                          <button type="button" className="btn btn-small btn-ghost" data-action="end" onClick={() => act(s, "end")}>
                            End
                          </button>
                        )}{" "}
                        <button type="button" className="btn btn-small btn-ghost" data-action="results" onClick={() => setSelected(s)}>
                          Results
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      )}
      {selected && <Results key={selected.study_id} study={selected} />}
    </>
  );
}
