import { useState } from "react";
import { useNavigate } from "react-router-dom";
import { ApiError, del, fmtTime, post } from "../api";
import { useAuth } from "../auth";
import { Alert, Badge, PageHead } from "../components/ui";

export function Account() {
  const { user, signOut } = useAuth();
  const navigate = useNavigate();
  const [note, setNote] = useState<{ kind: "ok" | "error"; text: string } | null>(null);
  const [confirmEmail, setConfirmEmail] = useState("");
  const [deleteData, setDeleteData] = useState(true);
  if (!user) return null;

  async function resend() {
    try {
      const r = await post<{ message: string }>("/api/user/verify/resend");
      setNote({ kind: "ok", text: r.message });
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  async function remove() {
    try {
      await del(`/api/user/delete?delete_data=${deleteData}`);
      await signOut();
      navigate("/signin", { replace: true });
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  return (
    <>
      <PageHead title="Account" />
      {note && <Alert kind={note.kind}>{note.text}</Alert>}
      <section className="card">
        <h3>Profile</h3>
        <dl className="facts">
          <dt>Name</dt>
          <dd>{user.name}</dd>
          <dt>Email</dt>
          <dd>
            {user.email}{" "}
            {user.verified ? (
              <Badge tone="ok">verified</Badge>
            ) : (
              <>
                <Badge tone="warn">not verified</Badge>{" "}
                <button type="button" className="btn btn-small" onClick={resend}>
                  Resend the link
                </button>
              </>
            )}
          </dd>
          <dt>Member since</dt>
          <dd>{fmtTime(user.joined_at)}</dd>
          <dt>Role</dt>
          <dd>{user.is_admin ? <Badge tone="accent">admin</Badge> : "user"}</dd>
        </dl>
      </section>
      <section className="card">
        <h3>Your data</h3>
        <p className="muted">
          Everything the server holds about you — queries, generations, telemetry, projects, chats — as one JSON document.
        </p>
        <a className="btn" href="/api/user/export" download data-action="export">
          Download my data
        </a>
      </section>
      <section className="card danger-zone">
        <h3>Delete account</h3>
        <p className="muted">Deleting your account signs you out everywhere and revokes every API key at once. This cannot be undone.</p>
        <label className="check">
          <input type="checkbox" checked={deleteData} onChange={(e) => setDeleteData(e.target.checked)} /> Also delete my queries and
          telemetry (otherwise they are kept without your identity)
        </label>
        <label>
          Type your email to confirm
          <input name="confirm-email" value={confirmEmail} onChange={(e) => setConfirmEmail(e.target.value)} placeholder={user.email} />
        </label>
        <button type="button" className="btn btn-danger" disabled={confirmEmail !== user.email} onClick={remove} data-action="delete-account">
          Delete my account
        </button>
      </section>
    </>
  );
}
