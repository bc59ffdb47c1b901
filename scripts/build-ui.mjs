// Bundles the web console (web/ui/) into dist/ui-web/: index.html, app.js, app.css.
// Everything is inlined at build time (Preact included, no CDN) so the console works on an
// air-gapped host. The sources live outside src/ because the server's tsc build has no DOM
// or JSX; esbuild type-strips them, `tsc -p web/ui` checks them.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// `--out DIR` lets tests bundle into a temp dir without touching dist/
const outFlag = process.argv.indexOf("--out");
const out =
  outFlag > 0 && process.argv[outFlag + 1] ? process.argv[outFlag + 1] : join(root, "dist", "ui-web");
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: join(root, "web", "ui", "main.tsx") },
  outdir: out,
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  // app.css is its own entry so the page loads it with a <link>, before the script runs
  loader: { ".css": "css" },
  logLevel: "warning",
  legalComments: "none",
});
await build({
  entryPoints: { app: join(root, "web", "ui", "app.css") },
  outdir: out,
  bundle: true,
  minify: true,
  logLevel: "warning",
});

writeFileSync(
  join(out, "index.html"),
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chorus console</title>
<link rel="stylesheet" href="app.css">
<script type="module" src="app.js"></script>
</head>
<body><div id="app"></div></body>
</html>
`,
);
