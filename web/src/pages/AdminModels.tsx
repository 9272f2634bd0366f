import { fmtInt, fmtTime } from "../api";
import { AdminTable } from "../components/AdminTable";
import { Badge, Loading, PageHead, Problem } from "../components/ui";
import { useGet } from "../hooks";

type Worker = {
  worker_id: string;
  host: string;
  pid: number;
  version: string;
  draining: boolean;
  alive: boolean;
  heartbeat_at: string;
  heartbeat_age_ms: number;
  slots: number;
  slots_busy: number;
  queue_len: number;
  // The memory of its models, summed; each model's own is null when its
  // worker did not report it.
  weights_bytes: number;
  kv_cells: number;
  models: { model_id: number; name: string; weights_bytes: number | null; kv_cells: number | null }[] | null;
};

// The engine's figures are null for a model this server's own engine has
// not loaded (on an API node of the worker tier, see the workers below).
type Model = {
  model_id: number;
  model_name: string;
  family: string;
  is_chat: boolean;
  is_synthetic: boolean;
  loaded: boolean;
  registered_at: string;
  last_loaded_at: string | null;
  slots: number | null;
  slots_busy: number | null;
  queue_len: number | null;
  weights_bytes: number | null;
  kv_cells: number | null;
};

// fmtBytes writes a size in binary units: 512 B, 3.2 MiB, 4.1 GiB.
function fmtBytes(n: number | null): string {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function AdminModels() {
  const { data, error, loading } = useGet<{ models: Model[] }>("/api/config/models");
  return (
    <>
      <PageHead title="Models & workers" lead="Models this server has registered, and the engine workers serving them." />
      <section className="card">
        <h3>Models</h3>
        <Problem error={error} />
        {loading && !data && <Loading />}
        {data && (
          <div className="table-wrap">
            <table data-table="models">
              <thead>
                <tr>
                  <th scope="col">Id</th>
                  <th scope="col">Name</th>
                  <th scope="col">Family</th>
                  <th scope="col">Kind</th>
                  <th scope="col">State</th>
                  <th scope="col" className="num">Busy / slots</th>
                  <th scope="col" className="num">Queued</th>
                  <th scope="col" className="num">Weights</th>
                  <th scope="col" className="num">KV cells</th>
                  <th scope="col">Last loaded</th>
                </tr>
              </thead>
              <tbody>
                {data.models.map((m) => (
                  <tr key={m.model_id} data-model={m.model_name}>
                    <td>{m.model_id}</td>
                    <th scope="row">{m.model_name}</th>
                    <td>{m.family}</td>
                    <td>
                      {m.is_chat ? "chat" : "completion"}
                      {m.is_synthetic && (
                        <>
                          {" "}
                          <Badge>synthetic</Badge>
                        </>
                      )}
                    </td>
                    <td>{m.loaded ? <Badge tone="ok">loaded</Badge> : <Badge>not loaded</Badge>}</td>
                    <td className="num" data-field="slots">{m.slots == null ? "–" : `${m.slots_busy} / ${m.slots}`}</td>
                    <td className="num">{fmtInt(m.queue_len)}</td>
                    <td className="num" data-field="weights">{fmtBytes(m.weights_bytes)}</td>
                    <td className="num">{fmtInt(m.kv_cells)}</td>
                    <td>{fmtTime(m.last_loaded_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <section className="card">
        <h3>Workers</h3>
        <AdminTable<Worker>
          resource="workers"
          columns={[
            { key: "host", label: "Worker", render: (w) => <code>{`${w.host}:${w.pid}`}</code> },
            { key: "version", label: "Version" },
            { key: "models", label: "Models", render: (w) => (w.models ?? []).map((m) => m.name).join(", ") || "–" },
            { key: "slots", label: "Busy / slots", num: true, render: (w) => `${w.slots_busy} / ${w.slots}` },
            { key: "queue_len", label: "Queued", num: true },
            { key: "weights_bytes", label: "Weights", num: true, render: (w) => fmtBytes(w.weights_bytes) },
            { key: "kv_cells", label: "KV cells", num: true, render: (w) => fmtInt(w.kv_cells) },
            {
              key: "alive",
              label: "State",
              render: (w) => (w.draining ? <Badge tone="warn">draining</Badge> : w.alive ? <Badge tone="ok">alive</Badge> : <Badge tone="bad">silent</Badge>),
            },
            { key: "heartbeat_at", label: "Heartbeat", render: (w) => `${(w.heartbeat_age_ms / 1000).toFixed(1)} s ago` },
          ]}
        />
      </section>
    </>
  );
}
