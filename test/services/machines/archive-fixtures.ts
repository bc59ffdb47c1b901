import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export const sha256 = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");

/** Builds `<name>/` with files and a SHA256SUMS over them, as a tar.gz; returns its path and checksums. */
export function makeArchive(
  root: string,
  name: string,
  files: Record<string, string>,
  o: { sums?: string; extra?: (buildDir: string) => string[] } = {},
): { file: string; checksum: string; sumsChecksum: string } {
  const build = mkdtempSync(join(root, "build-"));
  const dir = join(build, name);
  mkdirSync(dir);
  for (const [f, content] of Object.entries(files)) writeFileSync(join(dir, f), content);
  const sums =
    o.sums ??
    Object.entries(files)
      .map(([f, c]) => `${sha256(c)}  ${f}\n`)
      .join("");
  writeFileSync(join(dir, "SHA256SUMS"), sums);
  const file = join(root, `${name}-${readdirSync(root).length}.tgz`);
  execFileSync("tar", ["-czPf", file, "-C", build, name, ...(o.extra?.(build) ?? [])]);
  return { file, checksum: sha256(readFileSync(file)), sumsChecksum: sha256(sums) };
}

/** A loopback HTTP server serving files by name; counts requests and can require basic auth. */
export async function fileServer(
  files: Map<string, string>,
  auth?: string,
): Promise<{ url: (name: string) => string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    hits++;
    if (auth && req.headers.authorization !== `Basic ${Buffer.from(auth).toString("base64")}`) {
      res.writeHead(401).end();
      return;
    }
    const f = files.get((req.url ?? "").slice(1));
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/gzip" }).end(readFileSync(f));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    hits: () => hits,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
