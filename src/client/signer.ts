import { readFileSync } from "node:fs";
import { decodeSecureRequest, decodeRequest } from "../core/protocol/index.js";
import { decodeTokenUnverified, loadSeedFile, sign, tokenExpiry } from "../core/security/index.js";
import { ClientError } from "./errors.js";
import { postJson } from "./http.js";
import type { RequestOptions, RpcResult } from "./types.js";

/** The agent that signs for others; requests to it are signed by the client itself (as go-choria). */
export const REMOTE_SIGNER_AGENT = "aaa_signer";

/** Warn when the login token has less than this left (seconds). */
export const TOKEN_WARN_WITHIN_S = 300;

/** What a signer may use of the client asking it: its own RPC machinery, for the service signer. */
export interface SignerContext {
  rpc(agent: string, action: string, data: Record<string, unknown>, opts: RequestOptions): Promise<RpcResult>;
}

/** Turns v2 request JSON into secure request JSON signed by someone else. */
export interface RequestSigner {
  readonly kind: string;
  sign(request: Buffer, ctx: SignerContext): Promise<Buffer>;
}

export interface RemoteSignerOptions {
  /** HTTP(S) endpoint taking Choria's /choria/v1/sign body; exclusive with `service` */
  url?: string | undefined;
  /** sign through the aaa_signer service agent */
  service?: boolean | undefined;
  /** the login token, read on every signing so a fresh `login` takes effect at once */
  tokenFile: string;
  /** hex ed25519 seed whose public key the token names */
  seedFile: string;
  /** CA bundle for an https signer; the system CAs otherwise */
  caFile?: string | undefined;
  timeoutMs?: number | undefined;
  /** told once per token when it expires within TOKEN_WARN_WITHIN_S */
  onTokenExpiring?: ((expiresAt: Date) => void) | undefined;
  /** ms clock, for tests */
  now?: (() => number) | undefined;
}

function readToken(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new ClientError("no_token", `no login token at ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Choria's signer answers "Request denied"; anything mentioning a denial counts as one. */
function isDenial(status: number, text: string): boolean {
  return status === 403 || /denied/i.test(text);
}

/**
 * The returned bytes must be a secure request for the very request we built: a
 * confused or hostile signer must not make us publish something else.
 */
export function checkSecureRequest(signed: Buffer, request: Buffer, where: string): Buffer {
  let ours: string;
  let theirs: string;
  try {
    ours = decodeRequest(request).request.id;
    theirs = decodeRequest(decodeSecureRequest(signed).requestBytes).request.id;
  } catch (err) {
    throw new ClientError(
      "signer_failed",
      `${where} returned an unusable secure request: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (ours !== theirs)
    throw new ClientError(
      "signer_failed",
      `${where} returned a secure request for request ${theirs}, not ${ours}`,
    );
  return signed;
}

/** A remote (AAA) signer from Choria's request_signer settings. */
export function remoteSigner(opts: RemoteSignerOptions): RequestSigner {
  if ((opts.url === undefined) === !opts.service)
    throw new ClientError("bad_option", "a remote signer needs exactly one of url and service");
  const now = opts.now ?? Date.now;
  let warned: string | undefined;

  /** The token, its expiry checked, and our signature over the request. */
  const credentials = (request: Buffer): { token: string; signature: string } => {
    const token = readToken(opts.tokenFile);
    let exp: number | undefined;
    try {
      exp = tokenExpiry(decodeTokenUnverified(token));
    } catch (err) {
      throw new ClientError(
        "no_token",
        `login token ${opts.tokenFile} is unreadable: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (exp !== undefined) {
      const left = exp - now() / 1000;
      const at = new Date(exp * 1000);
      if (left <= 0) throw new ClientError("token_expired", `token expired at ${at.toISOString()}`);
      if (left <= TOKEN_WARN_WITHIN_S && warned !== token) {
        warned = token;
        opts.onTokenExpiring?.(at);
      }
    }
    const seedHex = loadSeedFile(opts.seedFile).seedHex;
    return { token, signature: sign(seedHex, request).toString("hex") };
  };

  if (opts.url !== undefined) {
    const url = opts.url;
    return {
      kind: "aaa http",
      async sign(request) {
        const { token, signature } = credentials(request);
        let res;
        try {
          res = await postJson(
            url,
            { token, signature, request: request.toString("base64") },
            { caFile: opts.caFile, timeoutMs: opts.timeoutMs },
          );
        } catch (err) {
          throw new ClientError("signer_failed", `remote signer ${url}: ${(err as Error).message}`, {
            cause: err,
          });
        }
        const body = (res.body ?? {}) as { secure_request?: unknown; error?: unknown };
        const error = typeof body.error === "string" && body.error !== "" ? body.error : undefined;
        if (error !== undefined || res.status !== 200) {
          const why = error ?? `HTTP ${res.status}`;
          if (isDenial(res.status, why))
            throw new ClientError("signer_denied", `remote signer ${url} refused the request: ${why}`);
          throw new ClientError("signer_failed", `remote signer ${url}: ${why}`);
        }
        if (typeof body.secure_request !== "string")
          throw new ClientError("signer_failed", `remote signer ${url} returned no secure_request`);
        return Buffer.from(body.secure_request, "base64");
      },
    };
  }

  return {
    kind: "aaa service",
    async sign(request, ctx) {
      const { token, signature } = credentials(request);
      const where = `the ${REMOTE_SIGNER_AGENT} service`;
      let res: RpcResult;
      try {
        res = await ctx.rpc(
          REMOTE_SIGNER_AGENT,
          "sign",
          { request: request.toString("utf8"), token, signature },
          { mode: "service", ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }) },
        );
      } catch (err) {
        throw new ClientError("signer_failed", `${where}: ${(err as Error).message}`, { cause: err });
      }
      const reply = res.replies[0];
      if (!reply) throw new ClientError("signer_failed", `${where} did not answer`);
      if (reply.statuscode !== 0) {
        const why = reply.statusmsg || `status ${reply.statuscode}`;
        if (isDenial(0, why)) throw new ClientError("signer_denied", `${where} refused the request: ${why}`);
        throw new ClientError("signer_failed", `${where}: ${why}`);
      }
      const out = reply.data.secure_request;
      if (typeof out !== "string" || out === "")
        throw new ClientError("signer_failed", `${where} returned no secure_request`);
      return Buffer.from(out, "utf8");
    },
  };
}
