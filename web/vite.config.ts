// Vite builds web/dist: one small entry chunk (Preact, the API client, the pages).
import { defineConfig } from "vite";

export default defineConfig({
  // Relative asset URLs: the same build works at / (make run) and under a CloudFront path.
  base: "./",
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
  build: {
    target: "es2022",
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    // Budget from issue 13: under 250 KB gzip of JavaScript on first load.
    chunkSizeWarningLimit: 250,
  },
  server: {
    // `npm run dev` against a running `make run`: the same paths the static server proxies.
    proxy: {
      "/rpc": "http://127.0.0.1:8000",
      "/openrpc.json": "http://127.0.0.1:8000",
      "/ws": { target: "ws://127.0.0.1:8001", ws: true, rewrite: (path) => path.replace(/^\/ws/, "/api") },
    },
  },
});
