// Themes: the system's (prefers-color-scheme) until the user picks one with
// the toggle; the pick is remembered in localStorage.

export type Theme = "light" | "dark";
const KEY = "code4me-theme";

export function systemTheme(): Theme {
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function storedTheme(): Theme | null {
  const t = localStorage.getItem(KEY);
  return t === "light" || t === "dark" ? t : null;
}

export function applyTheme(t: Theme) {
  document.documentElement.dataset.theme = t;
}

export function currentTheme(): Theme {
  return storedTheme() ?? systemTheme();
}

export function setTheme(t: Theme) {
  localStorage.setItem(KEY, t);
  applyTheme(t);
  window.dispatchEvent(new Event("code4me-theme"));
}

// followSystem keeps the page on the system's theme while the user has not
// picked one.
export function followSystem() {
  applyTheme(currentTheme());
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    if (!storedTheme()) {
      applyTheme(systemTheme());
      window.dispatchEvent(new Event("code4me-theme"));
    }
  });
}
