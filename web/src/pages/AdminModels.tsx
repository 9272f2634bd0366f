import { fmtTime } from "../api";
import { AdminTable } from "../components/AdminTable";
import { Badge, Loading, PageHead, Problem } from "../components/ui";
import { useGet } from "../hooks";

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
        <AdminTable<Record<string, unknown>>
          resource="workers"
          columns={[
            { key: "worker_id", label: "Worker", render: (r) => String(r.worker_id ?? r.id ?? r.name ?? "–") },
            { key: "address", label: "Address", render: (r) => String(r.address ?? r.addr ?? r.url ?? "–") },
            { key: "models", label: "Models", render: (r) => (Array.isArray(r.models) ? r.models.map((m) => (typeof m === "object" && m ? String((m as Record<string, unknown>).name ?? (m as Record<string, unknown>).model_name ?? "") : String(m))).join(", ") : String(r.models ?? "–")) },
            { key: "status", label: "State", render: (r) => <Badge tone={r.status === "up" || r.healthy === true ? "ok" : "neutral"}>{String(r.status ?? (r.healthy === true ? "healthy" : r.healthy === false ? "unhealthy" : "–"))}</Badge> },
            { key: "last_seen_at", label: "Last seen", render: (r) => fmtTime((r.last_seen_at ?? r.heartbeat_at ?? r.updated_at) as string | null) },
          ]}
        />
      </section>
    </>
  );
}
