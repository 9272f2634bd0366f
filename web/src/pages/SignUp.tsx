import { useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { ApiError, post } from "../api";
import { Alert } from "../components/ui";
import { AuthFrame } from "./AuthFrame";

const passwordRule = "At least 8 characters without spaces, with an upper-case letter, a lower-case letter and a digit.";

export function SignUp() {
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [sent, setSent] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await post("/api/user/create", { name, email, password, config_id: 1 });
      setSent(email);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  if (sent) {
    return (
      <AuthFrame title="Check your inbox">
        <div data-state="signup-sent">
          <Alert kind="ok">
            Your account is created. We sent a verification link to <strong>{sent}</strong>.
          </Alert>
          <p>Open the link in the mail to verify your address; it expires after a while, and you can ask for a new one from your account page.</p>
          <Link className="btn btn-primary btn-block" to="/signin">
            Continue to sign in
          </Link>
        </div>
      </AuthFrame>
    );
  }

  return (
    <AuthFrame title="Create your account" lead="Completions, usage and API keys for your editor plugins.">
      <form onSubmit={submit} className="form" aria-label="Sign up">
        {error && <Alert>{error}</Alert>}
        <label>
          Name
          <input name="name" autoComplete="name" required minLength={3} maxLength={50} value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <label>
          Email
          <input name="email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="new-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
          <span className="hint">{passwordRule}</span>
        </label>
        <button className="btn btn-primary btn-block" type="submit" disabled={busy}>
          {busy ? "Creating…" : "Create account"}
        </button>
      </form>
      <p className="muted center">
        Have an account? <Link to="/signin">Sign in</Link>
      </p>
    </AuthFrame>
  );
}
