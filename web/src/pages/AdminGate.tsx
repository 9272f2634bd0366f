import { Outlet } from "react-router-dom";
import { useAuth } from "../auth";
import { Alert, PageHead } from "../components/ui";

// AdminGate shows the admin pages to admins only. The API refuses the
// others anyway (403); this says so before asking it.
export function AdminGate() {
  const { user } = useAuth();
  if (!user?.is_admin) {
    return (
      <div data-state="admin-denied">
        <PageHead title="Administration" />
        <Alert>Admin privileges required: this page is for administrators. Ask an admin of this server to grant you access.</Alert>
      </div>
    );
  }
  return <Outlet />;
}
