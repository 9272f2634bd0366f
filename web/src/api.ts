// The API client: same-origin requests that carry the login's cookies
// (auth_token, session_token: HttpOnly, so this code never sees them).

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

// errorText reads the message of an error answer: {"message"} from the
// plugin routes, {"detail": text} from admin routes, {"detail": [...]} for
// validation errors.
function errorText(status: number, body: unknown): string {
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    if (typeof b.message === "string") return b.message;
    if (typeof b.detail === "string") return b.detail;
    if (Array.isArray(b.detail) && b.detail.length > 0) {
      const d = b.detail[0] as { loc?: unknown[]; msg?: string };
      const field = Array.isArray(d.loc) ? d.loc.filter((x) => x !== "body" && x !== "query").join(".") : "";
      return field ? `${field}: ${d.msg ?? "invalid"}` : (d.msg ?? "Invalid input");
    }
  }
  return `Request failed (${status})`;
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) throw new ApiError(res.status, errorText(res.status, data));
  return data as T;
}

export const get = <T,>(path: string) => api<T>("GET", path);
export const post = <T,>(path: string, body?: unknown) => api<T>("POST", path, body ?? {});
export const put = <T,>(path: string, body?: unknown) => api<T>("PUT", path, body);
export const del = <T,>(path: string) => api<T>("DELETE", path);

export type User = {
  user_id: string;
  email: string;
  name: string;
  verified: boolean;
  is_admin: boolean;
  joined_at: string;
  config_id: number;
};

// Formatting helpers shared by the pages.
export const fmtInt = (n: number | null | undefined) => (n == null ? "–" : n.toLocaleString("en-US"));
export const fmtPct = (r: number | null | undefined) => (r == null ? "–" : `${(r * 100).toFixed(1)} %`);
export const fmtMs = (ms: number | null | undefined) => (ms == null ? "–" : `${Math.round(ms).toLocaleString("en-US")} ms`);
export const fmtDay = (iso: string) => iso.slice(0, 10);
export const fmtTime = (iso: string | null | undefined) =>
  iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "–";
