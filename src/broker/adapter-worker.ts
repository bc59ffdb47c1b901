import {
  decodeReply,
  decodeRequest,
  decodeSecureReply,
  decodeSecureRequest,
  decodeTransport,
} from "../core/protocol/index.js";
import {
  packBuffers,
  serveWorkerPool,
  unpackBuffers,
  WorkerPool,
  type PackedBuffers,
} from "../core/util/index.js";
import type { AdapterOutput } from "./adapters.js";

/** What converting one ingest message needs: plain data, so a worker thread can get it. */
export interface IngestDecodeOptions {
  /** choria:adapters:<type>:output:1 */
  protocol: string;
  ingestProtocol: "request" | "reply";
  /** `%s` is replaced by the sender */
  streamTopic: string;
}

/** One ingest message ready for its stream: where it goes and the record's JSON bytes. */
export interface IngestItem {
  subject: string;
  record: Buffer;
}

const SUBJECT_TOKEN = /^[^\s*>.]+(\.[^\s*>.]+)*$/;

/** Decodes one ingest message into its stream record; throws on anything unusable. */
export function convertIngest(bytes: Uint8Array, o: IngestDecodeOptions): AdapterOutput {
  // Adapters move data, they do not authorize it: signatures are not checked here
  // (as in go-choria); the broker's ACLs decided who could publish to the subject.
  // Like go-choria (strict mode off), layers that allow it are checked for the fields
  // used rather than against the full schema: it is most of the decode cost.
  const { transport, inner } = decodeTransport(bytes, { strict: false });
  let sender: string;
  let requestid: string;
  let message: Buffer;
  if (o.ingestProtocol === "request") {
    const { requestBytes } = decodeSecureRequest(inner);
    const { request, message: m } = decodeRequest(requestBytes);
    sender = request.sender || transport.headers.sender || "";
    requestid = request.id;
    message = m;
  } else {
    const { replyBytes } = decodeSecureReply(inner, { strict: false });
    const { reply, message: m } = decodeReply(replyBytes, { strict: false });
    sender = reply.sender || transport.headers.sender || "";
    requestid = reply.request;
    message = m;
  }
  // The sender becomes part of a subject: it must be one or more plain tokens.
  if (!SUBJECT_TOKEN.test(sender)) throw new Error(`sender "${sender}" is not usable in a subject`);
  return {
    protocol: o.protocol,
    data: message.toString("utf8"),
    sender,
    time: Math.floor(Date.now() / 1000),
    requestid,
  };
}

/** Inline and worker decoding share this, so both skip exactly the same garbage. */
export function decodeIngest(bytes: Uint8Array, o: IngestDecodeOptions): IngestItem | undefined {
  try {
    const out = convertIngest(bytes, o);
    return { subject: o.streamTopic.replace("%s", out.sender), record: Buffer.from(JSON.stringify(out)) };
  } catch {
    return undefined;
  }
}

/** worker → main: subject per message (null = garbage), the records packed in one transferred buffer */
interface IngestAnswer extends PackedBuffers {
  subjects: (string | null)[];
}

/** Worker-thread side: the pool's entry, called with the decode options. */
export function runAdapterIngestWorker(o: IngestDecodeOptions): void {
  serveWorkerPool((items) => {
    const subjects: (string | null)[] = [];
    const records: string[] = [];
    for (const m of items) {
      let json = "";
      let subject: string | null = null;
      try {
        const out = convertIngest(m, o);
        json = JSON.stringify(out);
        subject = o.streamTopic.replace("%s", out.sender);
      } catch {
        // garbage: counted as bad on the main thread
      }
      subjects.push(subject);
      records.push(json);
    }
    const packed = packBuffers(records);
    return { answer: { subjects, ...packed } satisfies IngestAnswer, transfer: [packed.buf] };
  });
}

function ingestResults(answer: unknown): (IngestItem | undefined)[] {
  const a = answer as IngestAnswer;
  const records = unpackBuffers(a);
  return a.subjects.map((subject, i) =>
    subject === null ? undefined : { subject, record: records[i] as Buffer },
  );
}

export interface IngestPoolOptions {
  size: number;
  decode: IngestDecodeOptions;
  /** a worker with pending batches and no result for this long is given up (default 10 s) */
  stallMs?: number | undefined;
  /** after this many worker failures within a minute the pool is disabled (default 3) */
  maxFailures?: number | undefined;
  /** called for each failed worker, after its pending messages were decoded inline */
  onFailure?: ((why: string, messages: number, disabled: boolean) => void) | undefined;
}

// Messages per postMessage: large enough that its cost is small per message, small
// enough that a batch does not hold the first messages back noticeably.
export const INGEST_BATCH = 128;

/**
 * Decodes ingest messages in worker threads (core/util's WorkerPool) and hands the
 * results back in submission order, so the stream sees the order the broker received.
 * Failed workers' messages are decoded inline (decodeIngest: the same garbage skipped).
 */
export class IngestPool extends WorkerPool<IngestItem | undefined> {
  constructor(o: IngestPoolOptions) {
    super({
      // worker threads cannot load the TypeScript sources: the caller builds a pool only from dist/
      url: import.meta.url,
      entry: "runAdapterIngestWorker",
      workerData: o.decode,
      size: o.size,
      batch: INGEST_BATCH,
      ordered: true,
      inline: (m) => decodeIngest(m, o.decode),
      results: ingestResults,
      stallMs: o.stallMs,
      // a thread still loading its modules gets this long before it counts as stalled
      startupMs: 30_000,
      maxFailures: o.maxFailures,
      onFailure: o.onFailure,
    });
  }
}
