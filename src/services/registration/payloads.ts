import { readFileSync, statSync } from "node:fs";
import { gunzipSync, gzipSync } from "node:zlib";

export const INVENTORY_PROTOCOL = "choria:registration:inventorycontent:1";
export const FILE_CONTENT_PROTOCOL = "choria:registration:filecontent:1";

/** go-choria's registration.InventoryData. */
export interface InventoryData {
  agents: string[];
  classes: string[];
  facts: Record<string, unknown>;
  status: Record<string, unknown>;
  collectives: string[];
  build_info: Record<string, unknown>;
  machines: unknown[];
}

// Go marshals []byte as base64; zcontent is gzip (the schema text says zlib, the code is gzip).
function contentFields(json: Buffer, compress: boolean): { content?: string; zcontent?: string } {
  return compress ? { zcontent: gzipSync(json).toString("base64") } : { content: json.toString("base64") };
}

/** `{protocol:"choria:registration:inventorycontent:1", content|zcontent}` as bytes. */
export function inventoryContentPayload(data: InventoryData, compress = true): Buffer {
  const json = Buffer.from(JSON.stringify(data));
  return Buffer.from(JSON.stringify({ protocol: INVENTORY_PROTOCOL, ...contentFields(json, compress) }));
}

/**
 * Watches one file for file_content registration: the payload carries the file,
 * its mtime and whether it changed since the previous payload.
 */
export class FileContentSource {
  readonly file: string;
  private readonly compress: boolean;
  private lastMtime = -1;

  constructor(file: string, compress = true) {
    this.file = file;
    this.compress = compress;
  }

  /** The payload, or undefined when the file cannot be read (nothing to publish this round). */
  payload(): Buffer | undefined {
    let mtime: number;
    let body: Buffer;
    try {
      mtime = Math.floor(statSync(this.file).mtimeMs / 1000);
      body = readFileSync(this.file);
    } catch {
      return undefined;
    }
    const updated = this.lastMtime !== -1 && mtime !== this.lastMtime;
    this.lastMtime = mtime;
    return Buffer.from(
      JSON.stringify({
        protocol: FILE_CONTENT_PROTOCOL,
        file: this.file,
        mtime,
        updated,
        ...contentFields(body, this.compress),
      }),
    );
  }
}

/** Decodes either payload kind back to its JSON content (for consumers and tests). */
export function decodeRegistrationPayload(bytes: Uint8Array): {
  protocol: string;
  content: unknown;
  raw: Record<string, unknown>;
} {
  const raw = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
  const protocol = String(raw.protocol);
  let body: Buffer | undefined;
  if (typeof raw.zcontent === "string") {
    body = gunzipSync(Buffer.from(raw.zcontent, "base64"));
  } else if (typeof raw.content === "string") body = Buffer.from(raw.content, "base64");
  let content: unknown = body;
  if (body && protocol === INVENTORY_PROTOCOL) content = JSON.parse(body.toString("utf8"));
  return { protocol, content, raw };
}
