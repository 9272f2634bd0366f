import { fmtTime } from "../api";
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
  models: { model_id: number; name: string }[] | null;
};

type Model = { model_id: number; model_name: string; family: string; is_chat: boolean; is_synthetic: boolean; loaded: boolean; registered_at: string; last_loaded_at: string | null };

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
                  <th scope="col">Last loaded</th>
                </tr>
              </thead>
              <tbody>
                {data.models.map((m) => (
                  <tr key={m.model_id}>
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
