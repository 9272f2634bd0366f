import { useState, type FormEvent } from "react";
import { ApiError, fmtMs, fmtTime, post } from "../api";
import { Alert, Badge, Loading, PageHead, Problem, statusTone } from "../components/ui";
import { useGet } from "../hooks";

type Overall = { tasks: number; exact_match_rate: number; mean_edit_similarity: number; latency_p50_ms: number; latency_p95_ms: number };
type Run = {
  eval_run_id: number;
  status: string;
  error: string | null;
  model_name: string;
  arm: string | null;
  repo: string;
  seed: number;
  task_count: number;
  started_at: string | null;
  finished_at: string | null;
  overall: Overall | null;
};
type Model = { model_id: number; model_name: string; is_chat: boolean; loaded: boolean };

export function AdminEval() {
  const runs = useGet<{ runs: Run[] }>("/api/eval/runs?limit=50");
  const models = useGet<{ models: Model[] }>("/api/config/models");
  const [repo, setRepo] = useState("");
  const [modelId, setModelId] = useState<number | "">("");
  const [tasks, setTasks] = useState("");
  const [note, setNote] = useState<{ kind: "ok" | "error"; text: string } | null>(null);
  const servable = (models.data?.models ?? []).filter((m) => !m.is_chat && m.loaded);

  async function start(e: FormEvent) {
    e.preventDefault();
    setNote(null);
    try {
      const body: Record<string, unknown> = { repo, model_id: Number(modelId || servable[0]?.model_id) };
      if (tasks) body.tasks = Number(tasks);
      const r = await post<{ eval_run_id: number }>("/api/eval/runs", body);
      setNote({ kind: "ok", text: `Run ${r.eval_run_id} queued.` });
      runs.reload();
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  return (
    <>
      <PageHead title="Evaluation" lead="Offline evaluation runs: completions on tasks cut from a repository, scored against the code that was there." />
      {note && <Alert kind={note.kind}>{note.text}</Alert>}
      <section className="card">
        <h3>New run</h3>
        <form className="form form-row" onSubmit={start} aria-label="Start an evaluation run">
          <label className="grow">
            Repository (a directory under EVAL_ROOT)
            <input name="repo" required value={repo} onChange={(e) => setRepo(e.target.value)} placeholder="my-repo" />
          </label>
          <label>
            Model
            <select value={modelId} onChange={(e) => setModelId(e.target.value ? Number(e.target.value) : "")}>
              {servable.map((m) => (
                <option key={m.model_id} value={m.model_id}>
                  {m.model_name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Tasks
            <input type="number" min={1} value={tasks} onChange={(e) => setTasks(e.target.value)} placeholder="default" />
          </label>
          <button type="submit" className="btn btn-primary" disabled={servable.length === 0}>
            Start run
          </button>
        </form>
      </section>
      <Problem error={runs.error} />
      {runs.loading && !runs.data && <Loading />}
      {runs.data && (
        <section className="card">
          <h3>Runs</h3>
          {runs.data.runs.length === 0 ? (
            <p className="empty">No runs yet.</p>
          ) : (
            <div className="table-wrap">
              <table data-table="eval-runs">
                <thead>
                  <tr>
                    <th scope="col">Run</th>
                    <th scope="col">Status</th>
                    <th scope="col">Model</th>
                    <th scope="col">Repository</th>
                    <th scope="col" className="num">Tasks</th>
                    <th scope="col" className="num">Exact match</th>
                    <th scope="col" className="num">Edit similarity</th>
                    <th scope="col" className="num">p50 / p95</th>
                    <th scope="col">Finished</th>
                  </tr>
                </thead>
                <tbody>
                  {runs.data.runs.map((r) => (
                    <tr key={r.eval_run_id}>
                      <td>{r.eval_run_id}</td>
                      <td>
                        <Badge tone={statusTone(r.status)}>{r.status}</Badge>
                        {r.error && <div className="muted small">{r.error}</div>}
                      </td>
                      <td>
                        {r.model_name}
                        {r.arm && <span className="muted"> · {r.arm}</span>}
                      </td>
                      <td>
                        <code>{r.repo}</code>
                      </td>
                      <td className="num">{r.overall?.tasks ?? r.task_count}</td>
                      <td className="num">{r.overall ? `${(r.overall.exact_match_rate * 100).toFixed(1)} %` : "–"}</td>
                      <td className="num">{r.overall ? r.overall.mean_edit_similarity.toFixed(3) : "–"}</td>
                      <td className="num">{r.overall ? `${fmtMs(r.overall.latency_p50_ms)} / ${fmtMs(r.overall.latency_p95_ms)}` : "–"}</td>
                      <td>{fmtTime(r.finished_at)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      )}
    </>
  );
}
