import { useState, type FormEvent } from "react";
import { ApiError, fmtTime, get, post } from "../api";
import { Alert, Badge, Loading, PageHead, Problem } from "../components/ui";
import { useGet } from "../hooks";

type Project = { project_id: string; project_name: string; role: string; created_at: string };

export function Projects() {
  const { data, error, loading, reload } = useGet<{ projects: Project[] }>("/api/user/projects");
  const [name, setName] = useState("");
  const [formError, setFormError] = useState("");

  async function create(e: FormEvent) {
    e.preventDefault();
    setFormError("");
    try {
      await get("/api/session/acquire"); // a project is created in the login's session
      await post("/api/project/create", { project_name: name });
      setName("");
      reload();
    } catch (err) {
      setFormError(err instanceof ApiError ? err.message : String(err));
    }
  }

  return (
    <>
      <PageHead title="Projects" lead="Projects group the files your plugin sends as context. Plugins create them as you open repositories." />
      <section className="card">
        <form className="form form-row" onSubmit={create} aria-label="Create a project">
          {formError && <Alert>{formError}</Alert>}
          <label className="grow">
            New project
            <input name="project-name" required maxLength={100} placeholder="my-repository" value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <button className="btn btn-primary" type="submit">
            Create project
          </button>
        </form>
      </section>
      <Problem error={error} />
      {loading && !data && <Loading />}
      {data && (
        <section className="card">
          {data.projects.length === 0 ? (
            <p className="empty">No projects yet.</p>
          ) : (
            <div className="table-wrap">
              <table data-table="projects">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Your role</th>
                    <th scope="col">Created</th>
                    <th scope="col">Id</th>
                  </tr>
                </thead>
                <tbody>
                  {data.projects.map((p) => (
                    <tr key={p.project_id}>
                      <th scope="row">{p.project_name}</th>
                      <td>
                        <Badge>{p.role}</Badge>
                      </td>
                      <td>{fmtTime(p.created_at)}</td>
                      <td>
                        <code className="small">{p.project_id}</code>
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
