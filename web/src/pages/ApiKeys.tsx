import { useState, type FormEvent } from "react";
import { ApiError, del, fmtTime, post } from "../api";
import { Alert, Badge, Loading, PageHead, Problem } from "../components/ui";
import { useGet } from "../hooks";

type Key = {
  api_key_id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at: string | null;
};

export function ApiKeys() {
  const { data, error, loading, reload } = useGet<{ api_keys: Key[] }>("/api/user/api-keys");
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(["completions"]);
  const [expires, setExpires] = useState("");
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  const [formError, setFormError] = useState("");
  const [confirm, setConfirm] = useState<string | null>(null);
  const [copied, setCopied] = useState(false);

  async function create(e: FormEvent) {
    e.preventDefault();
    setFormError("");
    try {
      const body: Record<string, unknown> = { name, scopes };
      if (expires) body.expires_in_days = Number(expires);
      const r = await post<{ api_key: string }>("/api/user/api-keys", body);
      setCreated({ name, key: r.api_key });
      setCopied(false);
      setName("");
      reload();
    } catch (err) {
      setFormError(err instanceof ApiError ? err.message : String(err));
    }
  }

  async function revoke(id: string) {
    await del(`/api/user/api-keys/${id}`);
    setConfirm(null);
    reload();
  }

  const toggle = (s: string) => setScopes((cur) => (cur.includes(s) ? cur.filter((x) => x !== s) : [...cur, s]));
  const live = (data?.api_keys ?? []).filter((k) => !k.revoked_at);

  return (
    <>
      <PageHead title="API keys" lead="Keys let editor plugins and scripts call the API as you, with Authorization: Bearer." />
      {created && (
        <div className="card reveal" data-state="key-created">
          <h3>Key “{created.name}” created</h3>
          <p className="muted">Copy it now: it is shown only once and cannot be read back.</p>
          <div className="secret">
            <code data-secret="api-key">{created.key}</code>
            <button
              type="button"
              className="btn"
              onClick={async () => {
                await navigator.clipboard?.writeText(created.key).catch(() => undefined);
                setCopied(true);
              }}
            >
              {copied ? "Copied" : "Copy"}
            </button>
          </div>
          <button type="button" className="btn btn-ghost" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      <section className="card">
        <h3>New key</h3>
        <form className="form form-row" onSubmit={create} aria-label="Create an API key">
          {formError && <Alert>{formError}</Alert>}
          <label className="grow">
            Name
            <input name="key-name" required maxLength={100} placeholder="laptop, CI, …" value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <fieldset>
            <legend>Scopes</legend>
            <label className="check">
              <input type="checkbox" name="scope-completions" checked={scopes.includes("completions")} onChange={() => toggle("completions")} /> completions
            </label>
            <label className="check">
              <input type="checkbox" name="scope-account" checked={scopes.includes("account")} onChange={() => toggle("account")} /> account
            </label>
          </fieldset>
          <label>
            Expires in (days)
            <input name="expires" type="number" min={1} max={36500} placeholder="never" value={expires} onChange={(e) => setExpires(e.target.value)} />
          </label>
          <button className="btn btn-primary" type="submit" disabled={scopes.length === 0}>
            Create key
          </button>
        </form>
      </section>
      <Problem error={error} />
      {loading && !data && <Loading />}
      {data && (
        <section className="card">
          <h3>Your keys</h3>
          {live.length === 0 ? (
            <p className="empty">No active keys.</p>
          ) : (
            <div className="table-wrap">
              <table data-table="api-keys">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Key</th>
                    <th scope="col">Scopes</th>
                    <th scope="col">Created</th>
                    <th scope="col">Last used</th>
                    <th scope="col">Expires</th>
                    <th scope="col"><span className="sr-only">Actions</span></th>
                  </tr>
                </thead>
                <tbody>
                  {live.map((k) => (
                    <tr key={k.api_key_id} data-key={k.name}>
                      <th scope="row">{k.name}</th>
                      <td>
                        <code>{k.prefix}…</code>
                      </td>
                      <td>
                        {k.scopes.map((s) => (
                          <Badge key={s} tone={s === "account" ? "warn" : "accent"}>
                            {s}
                          </Badge>
                        ))}
                      </td>
                      <td>{fmtTime(k.created_at)}</td>
                      <td>{fmtTime(k.last_used_at)}</td>
                      <td>{k.expires_at ? fmtTime(k.expires_at) : "never"}</td>
                      <td className="right">
                        {confirm === k.api_key_id ? (
                          <>
                            <button type="button" className="btn btn-danger" data-action="confirm-revoke" onClick={() => revoke(k.api_key_id)}>
                              Revoke now
                            </button>{" "}
                            <button type="button" className="btn btn-ghost" onClick={() => setConfirm(null)}>
                              Cancel
                            </button>
                          </>
                        ) : (
                          <button type="button" className="btn" data-action="revoke" onClick={() => setConfirm(k.api_key_id)}>
                            Revoke
                          </button>
                        )}
                      </td>
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
