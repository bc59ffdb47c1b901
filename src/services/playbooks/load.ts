/**
 * Loads a playbook file. YAML goes to parsePlaybookYaml; a TS or JS module is bundled
 * with esbuild (Node 20 cannot import TypeScript) with `chorus` left as an import of this
 * package's own entry, so the book shares the running library's code, then imported; its
 * default export (definePlaybook's result or a plain definition) is validated again so the
 * IR's source is the file.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { LOADING_FILE } from "./define.js";
import { PlaybookError } from "./errors.js";
import type { Playbook } from "./types.js";
import { validatePlaybook } from "./validate.js";
import { parsePlaybookYaml } from "./yaml.js";

const YAML_EXT = [".yaml", ".yml"];
const MODULE_EXT = [".ts", ".mts", ".js", ".mjs"];

export interface LoadOptions {
  /**
   * The module `import … from "chorus"` means: this package's entry by default (dist/index.js
   * when running built, src/index.ts when running from source, as under vitest).
   */
  chorusEntry?: string;
}

function defaultEntry(): string {
  const js = fileURLToPath(new URL("../../index.js", import.meta.url));
  return existsSync(js) ? js : fileURLToPath(new URL("../../index.ts", import.meta.url));
}

export async function loadPlaybook(file: string, opts: LoadOptions = {}): Promise<Playbook> {
  const ext = extname(file).toLowerCase();
  if (YAML_EXT.includes(ext)) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      throw new PlaybookError("bad_playbook", `${file}: cannot read: ${(e as Error).message}`, { cause: e });
    }
    return parsePlaybookYaml(text, file);
  }
  if (!MODULE_EXT.includes(ext)) {
    throw new PlaybookError(
      "bad_playbook",
      `${file}: unknown playbook type ${ext || "(no extension)"} (expected ${[...YAML_EXT, ...MODULE_EXT].join(", ")})`,
    );
  }
  if (!existsSync(file)) throw new PlaybookError("bad_playbook", `${file}: no such file`);
  const exported = await importModule(file, opts.chorusEntry ?? defaultEntry());
  if (exported === undefined || exported === null) {
    throw new PlaybookError(
      "bad_playbook",
      `${file}: has no default export (write \`export default definePlaybook({ … })\`)`,
    );
  }
  return validatePlaybook(exported, file);
}

async function importModule(file: string, entry: string): Promise<unknown> {
  const { build } = await import("esbuild");
  const abs = resolve(file);
  const entryDir = dirname(entry);
  const entryExt = extname(entry);
  let code: string;
  try {
    const out = await build({
      entryPoints: [abs],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      write: false,
      logLevel: "silent",
      sourcemap: "inline",
      // the book's own import.meta.url, not the temporary file's
      define: { "import.meta.url": JSON.stringify(pathToFileURL(abs).href) },
      plugins: [
        {
          name: "chorus",
          setup(b) {
            // keep `chorus` an import of the running package so the book and the runner share code
            b.onResolve({ filter: /^chorus(\/.*)?$/ }, (args) => {
              const sub = /^chorus\/clients\/(.+)$/.exec(args.path);
              const target = sub ? join(entryDir, "client", "generated", `${sub[1]}${entryExt}`) : entry;
              if (!sub && args.path !== "chorus") return undefined;
              return { path: pathToFileURL(target).href, external: true };
            });
          },
        },
      ],
    });
    code = out.outputFiles[0]?.text ?? "";
  } catch (e) {
    const first = (
      e as { errors?: { text: string; location?: { file: string; line: number; column: number } }[] }
    ).errors?.[0];
    // esbuild names files relative to the working directory; name the book as the caller did
    const loc = first?.location;
    const at = loc ? (resolve(loc.file) === abs ? file : resolve(loc.file)) : file;
    const where = loc ? `${at}:${loc.line}:${loc.column + 1}` : file;
    throw new PlaybookError("bad_playbook", `${where}: ${first?.text ?? (e as Error).message}`, { cause: e });
  }

  const dir = await mkdtemp(join(tmpdir(), "chorus-playbook-"));
  const tmp = join(dir, "playbook.mjs");
  const g = globalThis as { [LOADING_FILE]?: string };
  const before = g[LOADING_FILE];
  try {
    await writeFile(tmp, code);
    g[LOADING_FILE] = file;
    const mod = (await import(pathToFileURL(tmp).href)) as { default?: unknown };
    return mod.default;
  } catch (e) {
    // a PlaybookError from definePlaybook, possibly another copy of this module's class
    const err = e as { code?: unknown; message?: string };
    if (e instanceof PlaybookError) throw e;
    if (err.code === "bad_playbook" && typeof err.message === "string") {
      throw new PlaybookError("bad_playbook", err.message, { cause: e });
    }
    throw new PlaybookError("bad_playbook", `${file}: ${err.message ?? String(e)}`, { cause: e });
  } finally {
    if (before === undefined) delete g[LOADING_FILE];
    else g[LOADING_FILE] = before;
    await rm(dir, { recursive: true, force: true });
  }
}
