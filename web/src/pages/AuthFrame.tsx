import type { ReactNode } from "react";
import { Logo, ThemeToggle } from "../components/Layout";

// AuthFrame is the centred card of the signed-out pages.
export function AuthFrame({ title, lead, children }: { title: string; lead?: string; children: ReactNode }) {
  return (
    <div className="auth">
      <div className="auth-top">
        <Logo />
        <ThemeToggle />
      </div>
      <div className="auth-card card">
        <h1>{title}</h1>
        {lead && <p className="lead">{lead}</p>}
        {children}
      </div>
      <p className="auth-foot muted small">Self-hosted code completion · <a href="/docs">API reference</a></p>
    </div>
  );
}
