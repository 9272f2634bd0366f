import type { ReactNode } from "react";
import { ApiError } from "../api";

export function PageHead({ title, lead, actions }: { title: string; lead?: ReactNode; actions?: ReactNode }) {
  return (
    <header className="page-head">
      <div>
        <h1>{title}</h1>
        {lead && <p className="lead">{lead}</p>}
      </div>
      {actions && <div className="actions">{actions}</div>}
    </header>
  );
}

export function Stat({ label, value, hint, id }: { label: string; value: ReactNode; hint?: string; id?: string }) {
  return (
    <div className="stat" data-stat={id}>
      <div className="stat-label">{label}</div>
      <div className="stat-value">{value}</div>
      {hint && <div className="stat-hint">{hint}</div>}
    </div>
  );
}

export function Alert({ kind = "error", children }: { kind?: "error" | "ok" | "info"; children: ReactNode }) {
  return (
    <div className={`alert alert-${kind}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </div>
  );
}

// Problem shows a failed load: 403 and 404 of the admin API say what they mean.
export function Problem({ error }: { error: Error | null }) {
  if (!error) return null;
  if (error instanceof ApiError && error.status === 403)
    return <Alert>Admin privileges required: this page is for administrators.</Alert>;
  if (error instanceof ApiError && error.status === 404)
    return <Alert kind="info">This server does not offer this data yet ({error.message}).</Alert>;
  return <Alert>{error.message}</Alert>;
}

export function Loading() {
  return <p className="muted">Loading…</p>;
}

export function Badge({ tone = "neutral", children }: { tone?: "neutral" | "ok" | "warn" | "bad" | "accent"; children: ReactNode }) {
  return <span className={`badge badge-${tone}`}>{children}</span>;
}

export function statusTone(s: string): "neutral" | "ok" | "warn" | "bad" | "accent" {
  switch (s) {
    case "running":
    case "finished":
    case "ready":
      return "ok";
    case "paused":
    case "queued":
      return "warn";
    case "failed":
    case "ended":
      return "bad";
    case "draft":
      return "accent";
  }
  return "neutral";
}
