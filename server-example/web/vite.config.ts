// Builds the chat's web app into dist/, which tidewire-server embeds and
// serves at `/`. `npm run dev` serves it with hot reload and forwards the
// socket.io path and the development token endpoint to a running server
// (TIDEWIRE_URL, by default the README's http://127.0.0.1:3000).
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const server = process.env.TIDEWIRE_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // The bundle is committed and compared in `make test`: no source maps
    // (absolute paths would differ between machines), no inlined assets.
    sourcemap: false,
    assetsInlineLimit: 0,
  },
  server: {
    proxy: {
      "/socket.io": { target: server, ws: true },
      "/dev/token": { target: server },
    },
  },
});
