/** Why the decoder refused a message (before any node looked at it). */
export type RejectReason =
  | "malformed"
  | "schema"
  | "protocol"
  | "too_large"
  | "too_deep"
  | "bad_signature"
  | "untrusted_caller"
  | "expired_token"
  | "caller_mismatch"
  | "no_fleet_management"
  // protocol v1 (x509)
  | "wrong_protocol"
  | "untrusted_certificate"
  | "expired_certificate"
  | "not_allow_listed";

/** Why a node dropped a verified request without answering it. */
export type NodeDropReason =
  | "wrong_collective"
  | "unknown_agent"
  | "unsupported_filter"
  | "timeout"
  | "reply_error"
  | "replayed"
  | "replay_forgotten"
  | "reply_not_caller"
  | "ttl_too_long"
  | "classes_unknown";

export type DropReason = RejectReason | NodeDropReason;

export const REJECT_REASONS: readonly RejectReason[] = [
  "malformed",
  "schema",
  "protocol",
  "too_large",
  "too_deep",
  "bad_signature",
  "untrusted_caller",
  "expired_token",
  "caller_mismatch",
  "no_fleet_management",
  "wrong_protocol",
  "untrusted_certificate",
  "expired_certificate",
  "not_allow_listed",
];

export const DROP_REASONS: readonly DropReason[] = [
  ...REJECT_REASONS,
  "wrong_collective",
  "unknown_agent",
  "unsupported_filter",
  "timeout",
  "reply_error",
  "replayed",
  "replay_forgotten",
  "reply_not_caller",
  "ttl_too_long",
  "classes_unknown",
];

/** A copy of a node's counters; names follow go-choria's server statistics. */
export interface ServerStats {
  /** every message received */
  total: number;
  /** messages whose security checks passed */
  validated: number;
  /** messages refused by decoding or security checks */
  unvalidated: number;
  /** validated requests whose filter matched this node */
  passed: number;
  /** validated requests whose filter did not match */
  filtered: number;
  /** replies published */
  replies: number;
  /** requests outside their TTL window */
  ttlexpired: number;
  /** lifecycle events published (startup, alive, shutdown) */
  events: number;
  /** per reason counts of messages dropped without a reply */
  dropped: Record<DropReason, number>;
  /** requests dispatched to each agent */
  agents: Record<string, number>;
}

/** Mutable counters for one node; plain fields so 50 000 of them stay cheap. */
export class NodeStats {
  total = 0;
  validated = 0;
  unvalidated = 0;
  passed = 0;
  filtered = 0;
  replies = 0;
  ttlexpired = 0;
  events = 0;
  /** Unix ms of the last message received; 0 = none yet. */
  lastMessage = 0;
  // Created lazily: most nodes never drop anything.
  private dropped: Partial<Record<DropReason, number>> | undefined;
  private agents: Map<string, number> | undefined;

  drop(reason: DropReason): void {
    this.dropped ??= {};
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
  }

  dispatched(agent: string): void {
    this.agents ??= new Map();
    this.agents.set(agent, (this.agents.get(agent) ?? 0) + 1);
  }

  snapshot(): ServerStats {
    const dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, this.dropped?.[r] ?? 0])) as Record<
      DropReason,
      number
    >;
    return {
      total: this.total,
      validated: this.validated,
      unvalidated: this.unvalidated,
      passed: this.passed,
      filtered: this.filtered,
      replies: this.replies,
      ttlexpired: this.ttlexpired,
      events: this.events,
      dropped,
      agents: Object.fromEntries(this.agents ?? []),
    };
  }
}
