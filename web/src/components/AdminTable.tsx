import { useEffect, useState, type ReactNode } from "react";
import { ApiError, get } from "../api";
import { Loading, Problem } from "./ui";

export type Column<T> = { key: string; label: string; render?: (row: T) => ReactNode; num?: boolean };

type Page<T> = { items: T[]; next_cursor: string | null };

// AdminTable lists /api/admin/<resource> a page at a time (cursor paging).
export function AdminTable<T extends Record<string, unknown>>({
  resource,
  columns,
  query = "",
  tick = 0,
}: {
  resource: string;
  columns: Column<T>[];
  query?: string;
  tick?: number;
}) {
  const [rows, setRows] = useState<T[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);

  async function load(cursor: string | null) {
    setLoading(true);
    try {
      const sep = query ? `&${query}` : "";
      const p = await get<Page<T>>(`/api/admin/${resource}?limit=50${sep}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      setRows((cur) => (cursor ? [...cur, ...p.items] : p.items));
      setNext(p.next_cursor);
      setError(null);
    } catch (e) {
      setError(e instanceof ApiError ? e : new Error(String(e)));
    } finally {
      setLoading(false);
    }
  }

  useEffect(() => {
    void load(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [resource, query, tick]);

  if (error) return <Problem error={error} />;
  if (loading && rows.length === 0) return <Loading />;
  return (
    <>
      {rows.length === 0 ? (
        <p className="empty">Nothing here yet.</p>
      ) : (
        <div className="table-wrap">
          <table data-table={resource}>
            <thead>
              <tr>
                {columns.map((c) => (
                  <th key={c.key} scope="col" className={c.num ? "num" : undefined}>
                    {c.label}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r, i) => (
                <tr key={i}>
                  {columns.map((c) => (
                    <td key={c.key} className={c.num ? "num" : undefined}>
                      {c.render ? c.render(r) : String(r[c.key] ?? "–")}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {next && (
        <button type="button" className="btn" onClick={() => load(next)} disabled={loading}>
          Load more
        </button>
      )}
    </>
  );
}
