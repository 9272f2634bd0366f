import { useCallback, useEffect, useState } from "react";
import { ApiError, get } from "./api";

export type Loaded<T> = {
  data: T | null;
  error: ApiError | Error | null;
  loading: boolean;
  reload: () => void;
};

// useGet loads path (null: nothing) and reloads it on reload().
export function useGet<T>(path: string | null): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(path != null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path == null) return;
    let live = true;
    setLoading(true);
    get<T>(path)
      .then((d) => {
        if (live) {
          setData(d);
          setError(null);
        }
      })
      .catch((e: Error) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [path, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}
