import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { ApiError, get, put, type User } from "./api";

type Auth = {
  user: User | null;
  loading: boolean;
  refresh: () => Promise<User | null>;
  signOut: () => Promise<void>;
};

const AuthContext = createContext<Auth>({
  user: null,
  loading: true,
  refresh: async () => null,
  signOut: async () => {},
});

// AuthProvider knows who is signed in: GET /api/user/get with the login's
// cookie, read once at start and after sign-in.
export function AuthProvider({ children }: { children: ReactNode }) {
  const [user, setUser] = useState<User | null>(null);
  const [loading, setLoading] = useState(true);

  const refresh = useCallback(async () => {
    try {
      const r = await get<{ user?: User } & User>("/api/user/get");
      const u = (r.user ?? r) as User;
      setUser(u);
      return u;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      setUser(null);
      return null;
    } finally {
      setLoading(false);
    }
  }, []);

  const signOut = useCallback(async () => {
    // Ending the session ends the login and clears the cookies; a login
    // without a session gets one first so that it can be ended.
    try {
      await put("/api/session/deactivate/");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        try {
          await get("/api/session/acquire");
          await put("/api/session/deactivate/");
        } catch {
          /* the login is gone already */
        }
      }
    }
    setUser(null);
  }, []);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  return <AuthContext.Provider value={{ user, loading, refresh, signOut }}>{children}</AuthContext.Provider>;
}

export const useAuth = () => useContext(AuthContext);
