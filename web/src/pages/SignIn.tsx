import { useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate } from "react-router-dom";
import { ApiError, get, post } from "../api";
import { useAuth } from "../auth";
import { Alert } from "../components/ui";
import { AuthFrame } from "./AuthFrame";

export function SignIn() {
  const { refresh } = useAuth();
  const navigate = useNavigate();
  const loc = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const next = new URLSearchParams(loc.search).get("next") ?? "/usage";

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await post("/api/user/authenticate", { email, password });
      // A session for this login: sign-out ends it with the login.
      await get("/api/session/acquire");
      await refresh();
      navigate(next.startsWith("/") ? next : "/usage", { replace: true });
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <AuthFrame title="Sign in" lead="Welcome back. Sign in to see your completions and manage your keys.">
      <form onSubmit={submit} className="form" aria-label="Sign in">
        {error && <Alert>{error}</Alert>}
        <label>
          Email
          <input name="email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        <button className="btn btn-primary btn-block" type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
      <p className="muted center">
        New here? <Link to="/signup">Create an account</Link>
      </p>
    </AuthFrame>
  );
}
