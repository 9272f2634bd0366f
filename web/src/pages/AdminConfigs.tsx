import { useState, type FormEvent } from "react";
import { ApiError, del, post } from "../api";
import { Alert, Loading, PageHead, Problem } from "../components/ui";
import { useGet } from "../hooks";

type Config = { config_id: number; config_data: unknown };

export function AdminConfigs() {
  const { data, error, loading, reload } = useGet<{ configs: Config[] }>("/api/config/");
  const [text, setText] = useState('{\n  "max_tokens": 64\n}');
  const [note, setNote] = useState<{ kind: "ok" | "error"; text: string } | null>(null);

  async function create(e: FormEvent) {
    e.preventDefault();
    setNote(null);
    try {
      let body: unknown = text;
      try {
        const parsed = JSON.parse(text);
        if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) body = parsed;
      } catch {
        /* HOCON: sent as text, checked by the server */
      }
      const r = await post<{ config_id: number }>("/api/config/", { config_data: body });
      setNote({ kind: "ok", text: `Config ${r.config_id} created.` });
      reload();
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  async function remove(id: number) {
    setNote(null);
    try {
      await del(`/api/config/${id}`);
      reload();
    } catch (err) {
      setNote({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    }
  }

  return (
    <>
      <PageHead title="Configs" lead="Configurations users and study arms run with (JSON or HOCON)." />
      {note && <Alert kind={note.kind}>{note.text}</Alert>}
      <Problem error={error} />
      {loading && !data && <Loading />}
      {data && (
        <div className="configs">
          {data.configs.map((c) => (
            <section className="card" key={c.config_id}>
              <header className="card-head">
                <h3>Config {c.config_id}</h3>
                <button type="button" className="btn btn-small btn-ghost" onClick={() => remove(c.config_id)}>
                  Delete
                </button>
              </header>
              <pre className="code">{typeof c.config_data === "string" ? c.config_data : JSON.stringify(c.config_data, null, 2)}</pre>
            </section>
          ))}
        </div>
      )}
      <section className="card">
        <h3>New config</h3>
        <form className="form" onSubmit={create} aria-label="Create a config">
          <textarea className="code" rows={8} value={text} onChange={(e) => setText(e.target.value)} spellCheck={false} />
          <button type="submit" className="btn btn-primary">
            Create config
          </button>
        </form>
      </section>
    </>
  );
}
