import { isCallerReplySubject, replyPrefix } from "../core/protocol/index.js";
import { badOption, naming, opt } from "./errors.js";
import { applyLimit, planBatches } from "./pacing.js";
import type { RequestMode, RequestOptions } from "./types.js";

/** Choria's request TTL in seconds. */
export const DEFAULT_TTL_S = 60;

/** The request options a check settles: the mode, and the TTL that goes on the wire. */
export interface CheckedRequestOptions {
  mode: RequestMode;
  ttlS: number;
}

const BROADCAST = opt("mode=broadcast");
const SERVICE = opt("mode=service");

function checkCombinations(o: RequestOptions, mode: RequestMode): void {
  const paced = o.batchSize !== undefined || o.canary !== undefined;
  if (paced && mode !== "direct") {
    const which = o.batchSize !== undefined ? "batchSize" : "canary";
    throw badOption(
      which,
      naming`${opt("batchSize")} and ${opt("canary")} need direct mode (not ${BROADCAST} or ${SERVICE})`,
    );
  }
  // A broadcast reaches every matching node, so a subset cannot be picked.
  if (o.limit !== undefined && mode !== "direct") {
    throw badOption("limit", naming`${opt("limit")} needs direct mode (not ${BROADCAST} or ${SERVICE})`);
  }
  // Nothing waits for replies with replyTo, so nothing could judge a canary or a retry.
  if (o.replyTo !== undefined && (paced || o.retries)) {
    throw badOption(
      "replyTo",
      naming`${opt("replyTo")} cannot be combined with ${opt("batchSize")}, ${opt("canary")} or ${opt("retries")}`,
    );
  }
}

/**
 * The one check of a request's options, made before anything is sent (discovery is
 * already traffic): the mode and what combines with it, retries, the TTL (whole
 * seconds on the wire; `defaultTtlS` when the call sets none), the limit, batch and
 * canary sizes, and the reply subject's syntax. Throws ClientError `bad_option` whose
 * `option` names the property at fault. Whether a reply subject lies in the caller's
 * inbox depends on the caller: see checkReplyTo.
 */
export function checkRequestOptions(o: RequestOptions, defaultTtlS = DEFAULT_TTL_S): CheckedRequestOptions {
  const mode = o.mode ?? "direct";
  if (mode !== "direct" && mode !== "broadcast" && mode !== "service") {
    throw badOption("mode", naming`unknown request mode "${String(mode)}"`);
  }
  checkCombinations(o, mode);
  if (o.retries !== undefined && (!Number.isInteger(o.retries) || o.retries < 0)) {
    throw badOption("retries", naming`${opt("retries")}: ${o.retries} is not a whole number`);
  }
  const ttlS = o.ttlS ?? defaultTtlS;
  if (!Number.isInteger(ttlS) || ttlS < 1) {
    throw badOption("ttlS", naming`${opt("ttlS")}: ${ttlS} is not a whole number of seconds (at least 1)`);
  }
  if (o.limit !== undefined) applyLimit([], o.limit, o.limitMethod, o.limitSeed);
  planBatches([], o.batchSize, o.canary);
  if (o.replyTo !== undefined && !/^[^\s*>]+$/.test(o.replyTo)) {
    throw badOption(
      "replyTo",
      naming`${opt("replyTo")}: "${o.replyTo}" is not a NATS subject without wildcards`,
    );
  }
  return { mode, ttlS };
}

/**
 * Nodes answer only inside the caller's private inbox (anything else could be a
 * re-wrapped request answering a third party), so a reply subject elsewhere is
 * refused before sending.
 */
export function checkReplyTo(replyTo: string | undefined, collective: string, callerId: string): void {
  if (replyTo === undefined || isCallerReplySubject(replyTo, callerId)) return;
  throw badOption(
    "replyTo",
    naming`${opt("replyTo")}: "${replyTo}" is not under this caller's inbox ${replyPrefix(collective, callerId)}.; nodes refuse any other reply subject`,
  );
}
