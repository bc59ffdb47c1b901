import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

export interface JsonPostOptions {
  /** PEM CA bundle file that must have issued an https server's certificate; default: the system CAs */
  caFile?: string | undefined;
  timeoutMs?: number | undefined;
}

export interface JsonResponse {
  status: number;
  /** the parsed body; undefined when it was not JSON */
  body: unknown;
  text: string;
}

// A signer or login answer is a token or a secure request: small. Bound what is buffered.
const MAX_BODY = 4 * 1024 * 1024;

/**
 * POSTs `body` as JSON. https always verifies the server certificate (against
 * `caFile` when given): Choria's HTTP signer skips that check, which would let
 * anyone on the path collect login passwords and signing tokens.
 */
export function postJson(url: string, body: unknown, opts: JsonPostOptions = {}): Promise<JsonResponse> {
  const u = new URL(url);
  const data = Buffer.from(JSON.stringify(body));
  const https = u.protocol === "https:";
  const ca = https && opts.caFile !== undefined ? readFileSync(opts.caFile) : undefined;
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      u,
      {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": data.length },
        ...(ca && { ca }),
        ...(https && { rejectUnauthorized: true, minVersion: "TLSv1.2" as const }),
        timeout: opts.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) {
            req.destroy(new Error(`response larger than ${MAX_BODY} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${opts.timeoutMs ?? 10_000} ms`)));
    req.on("error", reject);
    req.end(data);
  });
}
