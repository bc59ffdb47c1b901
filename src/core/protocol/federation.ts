import type { TransportHeaders } from "./types.js";

/**
 * Federation and hop headers live only on the transport layer in Chorus (go-choria
 * also keeps a copy on its Request/Reply objects and moves it with CopyFederationData);
 * these functions are go-choria's Federable methods over anything carrying such headers.
 */
export interface Federable {
  headers: TransportHeaders;
}

/** One network hop: [incoming endpoint, processing identity, outgoing endpoint]. */
export type NetworkHop = [string, string, string];

/** A message is federated when it carries a federation header, even an empty one. */
export function isFederated(m: Federable): boolean {
  return m.headers.federation !== undefined;
}

/** The federation request id; undefined when not federated, "" when federated without one. */
export function federationRequestId(m: Federable): string | undefined {
  const f = m.headers.federation;
  return f === undefined ? undefined : (f.request ?? "");
}

/** The reply subject the federation broker recorded; undefined when not federated. */
export function federationReplyTo(m: Federable): string | undefined {
  const f = m.headers.federation;
  return f === undefined ? undefined : (f.reply ?? "");
}

/** The identities the federation broker should deliver to; undefined when not federated. */
export function federationTargets(m: Federable): string[] | undefined {
  const f = m.headers.federation;
  return f === undefined ? undefined : (f.targets ?? []);
}

function federation(m: Federable): NonNullable<TransportHeaders["federation"]> {
  return (m.headers.federation ??= {});
}

/** Each setter makes the message federated, as in go-choria. */
export function setFederationRequestId(m: Federable, id: string): void {
  federation(m).request = id;
}

export function setFederationReplyTo(m: Federable, reply: string): void {
  federation(m).reply = reply;
}

export function setFederationTargets(m: Federable, targets: readonly string[]): void {
  // A copy: the caller's list stays theirs to change.
  federation(m).targets = [...targets];
}

/** Drops every federation header. */
export function setUnfederated(m: Federable): void {
  delete m.headers.federation;
}

/** Appends a hop; go-choria's wire name for the list is `trace`, its accessors say seen-by. */
export function recordNetworkHop(m: Federable, incoming: string, processor: string, outgoing: string): void {
  (m.headers.trace ??= []).push([incoming, processor, outgoing]);
}

/** The hops recorded so far, oldest first (the live list, or a new empty one). */
export function networkHops(m: Federable): NetworkHop[] {
  return m.headers.trace ?? [];
}

/** go-choria's TransportMessage.SeenBy: the same list as networkHops. */
export const seenBy: (m: Federable) => NetworkHop[] = networkHops;

/**
 * go-choria's CopyFederationData: an unfederated source makes the target unfederated
 * (and copies no hops); a federated one copies reply, request id, targets and appends
 * its hops to the target's.
 */
export function copyFederationData(from: Federable, to: Federable): void {
  const f = from.headers.federation;
  if (f === undefined) {
    setUnfederated(to);
    return;
  }
  setFederationReplyTo(to, f.reply ?? "");
  setFederationRequestId(to, f.request ?? "");
  setFederationTargets(to, f.targets ?? []);
  // A snapshot first, so copying a message onto itself ends.
  for (const [i, p, o] of [...networkHops(from)]) recordNetworkHop(to, i, p, o);
}
