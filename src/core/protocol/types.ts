import type { Filter } from "./filter.js";

/** Transport headers; every field is omitempty on the wire, as in go-choria. */
export interface TransportHeaders {
  reply?: string;
  sender?: string;
  /** Hops as [in, processor, out]; go-choria's JSON tag is `trace` (the schema says `seen-by`). */
  trace?: [string, string, string][];
  federation?: { request?: string; reply?: string; targets?: string[] };
}

export interface Transport {
  protocol: string;
  /** base64 of the secure request/reply JSON */
  data: string;
  headers: TransportHeaders;
}

export interface SecureRequest {
  protocol: string;
  /** base64 of the request JSON */
  request: string;
  /** base64 ed25519 signature over the request JSON */
  signature: string;
  /** caller JWT */
  caller: string;
  /** delegated signer JWT */
  signer?: string;
}

export interface Request {
  protocol: string;
  /** base64 payload */
  message: string;
  id: string;
  sender: string;
  caller: string;
  collective: string;
  agent: string;
  ttl: number;
  /** unix nanoseconds */
  time: number;
  filter?: Filter;
}

export interface SecureReply {
  protocol: string;
  /** base64 of the reply JSON */
  reply: string;
  /** base64 sha256 of the reply JSON */
  hash: string;
  /** base64 ed25519 signature over the reply JSON */
  signature?: string;
  /** server JWT */
  sender?: string;
}

export interface Reply {
  protocol: string;
  /** base64 payload */
  message: string;
  request: string;
  sender: string;
  agent: string;
  /** unix nanoseconds */
  time: number;
}
