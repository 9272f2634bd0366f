import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The server embeds the build (server/webui/dist) and serves it under /app/;
// `npm run dev` proxies the API to a server on localhost:8008.
export default defineConfig({
  plugins: [react()],
  base: "/app/",
  build: {
    outDir: "../server/webui/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: { "/api": "http://localhost:8008", "/admin": "http://localhost:8008" },
  },
});
