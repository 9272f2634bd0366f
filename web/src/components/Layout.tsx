import { useEffect, useState } from "react";
import { NavLink, Outlet, useNavigate } from "react-router-dom";
import { useAuth } from "../auth";
import { currentTheme, setTheme, type Theme } from "../theme";

export function ThemeToggle() {
  const [theme, setT] = useState<Theme>(currentTheme());
  useEffect(() => {
    const on = () => setT(currentTheme());
    window.addEventListener("code4me-theme", on);
    return () => window.removeEventListener("code4me-theme", on);
  }, []);
  const next: Theme = theme === "dark" ? "light" : "dark";
  return (
    <button type="button" className="theme-toggle" data-action="theme" aria-label={`Switch to the ${next} theme`} title={`Switch to the ${next} theme`} onClick={() => setTheme(next)}>
      {theme === "dark" ? (
        <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><circle cx="12" cy="12" r="4.5" fill="currentColor" /><g stroke="currentColor" strokeWidth="2" strokeLinecap="round"><path d="M12 2v2M12 20v2M2 12h2M20 12h2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4" /></g></svg>
      ) : (
        <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M20 14.5A8.5 8.5 0 0 1 9.5 4a8.5 8.5 0 1 0 10.5 10.5z" fill="currentColor" /></svg>
      )}
      <span>{theme === "dark" ? "Light" : "Dark"}</span>
    </button>
  );
}

export function Logo() {
  return (
    <div className="logo">
      <svg viewBox="0 0 32 32" width="26" height="26" aria-hidden="true"><rect width="32" height="32" rx="7" fill="var(--accent)" /><path d="M12 10l-6 6 6 6M20 10l6 6-6 6" stroke="#fff" strokeWidth="2.6" fill="none" strokeLinecap="round" strokeLinejoin="round" /></svg>
      <span>code4me</span>
    </div>
  );
}

const userNav = [
  ["/usage", "Usage"],
  ["/projects", "Projects"],
  ["/api-keys", "API keys"],
  ["/account", "Account"],
];

const adminNav = [
  ["/admin", "Overview"],
  ["/admin/models", "Models & workers"],
  ["/admin/calibration", "Calibration"],
  ["/admin/studies", "Studies"],
  ["/admin/evaluation", "Evaluation"],
  ["/admin/users", "Users"],
  ["/admin/configs", "Configs"],
];

// Layout is the signed-in frame: the sidebar and the page.
export function Layout() {
  const { user, signOut } = useAuth();
  const navigate = useNavigate();
  return (
    <div className="shell">
      <aside className="sidebar">
        <Logo />
        <nav aria-label="Main">
          <div className="nav-group">You</div>
          {userNav.map(([to, label]) => (
            <NavLink key={to} to={to} end>
              {label}
            </NavLink>
          ))}
          {user?.is_admin && (
            <>
              <div className="nav-group">Admin</div>
              {adminNav.map(([to, label]) => (
                <NavLink key={to} to={to} end>
                  {label}
                </NavLink>
              ))}
              <a href="/admin/jobs" className="external">
                Jobs ↗
              </a>
            </>
          )}
        </nav>
        <div className="sidebar-foot">
          <div className="me">
            <div className="me-name">{user?.name}</div>
            <div className="me-email">{user?.email}</div>
          </div>
          <div className="foot-row">
            <ThemeToggle />
            <button
              type="button"
              className="btn btn-ghost"
              data-action="sign-out"
              onClick={async () => {
                await signOut();
                navigate("/signin");
              }}
            >
              Sign out
            </button>
          </div>
        </div>
      </aside>
      <main className="content">
        <Outlet />
      </main>
    </div>
  );
}
