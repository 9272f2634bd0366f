import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter, Link, Navigate, Outlet, Route, Routes, useLocation } from "react-router-dom";
import { AuthProvider, useAuth } from "./auth";
import { Layout } from "./components/Layout";
import { Loading, PageHead } from "./components/ui";
import { Account } from "./pages/Account";
import { AdminCalibration } from "./pages/AdminCalibration";
import { AdminConfigs } from "./pages/AdminConfigs";
import { AdminEval } from "./pages/AdminEval";
import { AdminGate } from "./pages/AdminGate";
import { AdminModels } from "./pages/AdminModels";
import { AdminOverview } from "./pages/AdminOverview";
import { AdminStudies } from "./pages/AdminStudies";
import { AdminUsers } from "./pages/AdminUsers";
import { ApiKeys } from "./pages/ApiKeys";
import { Projects } from "./pages/Projects";
import { SignIn } from "./pages/SignIn";
import { SignUp } from "./pages/SignUp";
import { Usage } from "./pages/Usage";
import { followSystem } from "./theme";
import "./style.css";

followSystem();

// The server serves the app at / and under /app/; its routes live under /app.
if (!window.location.pathname.startsWith("/app")) {
  window.history.replaceState(null, "", "/app/" + window.location.search);
}

// SignedIn sends visitors without a login to the sign-in page.
function SignedIn() {
  const { user, loading } = useAuth();
  const loc = useLocation();
  if (loading) return <Loading />;
  if (!user) return <Navigate to={`/signin?next=${encodeURIComponent(loc.pathname)}`} replace />;
  return <Outlet />;
}

function Home() {
  const { user, loading } = useAuth();
  if (loading) return <Loading />;
  return <Navigate to={user ? "/usage" : "/signin"} replace />;
}

function NotFound() {
  return (
    <>
      <PageHead title="Page not found" />
      <p>
        There is no page here. <Link to="/usage">Back to your usage</Link>
      </p>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <BrowserRouter basename="/app">
      <AuthProvider>
        <Routes>
          <Route path="/" element={<Home />} />
          <Route path="/signin" element={<SignIn />} />
          <Route path="/signup" element={<SignUp />} />
          <Route element={<SignedIn />}>
            <Route element={<Layout />}>
              <Route path="/usage" element={<Usage />} />
              <Route path="/projects" element={<Projects />} />
              <Route path="/api-keys" element={<ApiKeys />} />
              <Route path="/account" element={<Account />} />
              <Route path="/admin" element={<AdminGate />}>
                <Route index element={<AdminOverview />} />
                <Route path="models" element={<AdminModels />} />
                <Route path="calibration" element={<AdminCalibration />} />
                <Route path="studies" element={<AdminStudies />} />
                <Route path="evaluation" element={<AdminEval />} />
                <Route path="users" element={<AdminUsers />} />
                <Route path="configs" element={<AdminConfigs />} />
                <Route path="*" element={<NotFound />} />
              </Route>
              <Route path="*" element={<NotFound />} />
            </Route>
          </Route>
        </Routes>
      </AuthProvider>
    </BrowserRouter>
  </StrictMode>,
);
