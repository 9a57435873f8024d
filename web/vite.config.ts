import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The web UI builds on its own (offline): `npm run build:web` writes web/dist, which `snapkeeper serve`
// serves at `/`. During development, `npx vite --config web/vite.config.ts` proxies the API to a daemon.
const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: './',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true },
  server: {
    proxy: {
      '/api': process.env.SNAPKEEPER_API ?? 'http://127.0.0.1:8470',
      '/healthz': process.env.SNAPKEEPER_API ?? 'http://127.0.0.1:8470',
    },
  },
});
