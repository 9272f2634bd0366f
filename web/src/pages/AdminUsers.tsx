import { useState } from "react";
import { ApiError, fmtTime, put } from "../api";
import { useAuth } from "../auth";
import { AdminTable } from "../components/AdminTable";
import { Alert, Badge, PageHead } from "../components/ui";

type U = Record<string, unknown>;

export function AdminUsers() {
  const { user } = useAuth();
  const [tick, setTick] = useState(0);
  const [note, setNote] = useState<{ kind: "ok" | "error"; text: string } | null>(null);

  async function setAdmin(u: U, isAdmin: boolean) {
    try {
      await put(`/api/config/users/${u.user_id}/admin`, { is_admin: isAdmin });
      setNote({ kind: "ok", text: `${u.email} is ${isAdmin ? "now an admin" : "no longer an admin"}.` });
      setTick((t) => t + 1);
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  return (
    <>
      <PageHead title="Users" lead="Everyone with an account on this server." />
      {note && <Alert kind={note.kind}>{note.text}</Alert>}
      <section className="card">
        <AdminTable<U>
          resource="users"
          tick={tick}
          columns={[
            { key: "name", label: "Name" },
            { key: "email", label: "Email" },
            { key: "verified", label: "Verified", render: (u) => (u.verified ? <Badge tone="ok">yes</Badge> : <Badge tone="warn">no</Badge>) },
            { key: "joined_at", label: "Joined", render: (u) => fmtTime(u.joined_at as string) },
            { key: "config_id", label: "Config" },
            {
              key: "is_admin",
              label: "Admin",
              render: (u) =>
                u.user_id === user?.user_id ? (
                  <Badge tone="accent">you</Badge>
                ) : (
                  <button type="button" className="btn btn-small" onClick={() => setAdmin(u, !u.is_admin)}>
                    {u.is_admin ? "Revoke admin" : "Make admin"}
                  </button>
                ),
            },
          ]}
        />
      </section>
    </>
  );
}
