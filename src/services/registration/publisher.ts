import { encodeRegistrationMessage, registrationSubject, type RegistrationCredential } from "./message.js";

export interface RegistrationPublisherOptions {
  identity: string;
  collective: string;
  /** custom subject; default `<collective>.broadcast.agent.registration` */
  target?: string;
  /** default 300 s (registerinterval) */
  intervalMs?: number;
  /** wait a random part of the interval before the first publish (registration_splay) */
  splay?: boolean;
  /** how often the payload is rebuilt to spot a size change; 0 = never (default 10 s) */
  changeCheckMs?: number;
  /** each source builds one payload per round; undefined = nothing to send */
  sources: (() => Uint8Array | undefined)[];
  credential: RegistrationCredential;
  publish: (subject: string, data: Uint8Array) => void;
  onError?: (err: Error) => void;
}

/**
 * Publishes registration payloads every interval, and at once when a payload's
 * size changes. Fire and forget: registration is lossy by design (core NATS, no
 * acks, no retries); the next interval repairs anything lost.
 */
export class RegistrationPublisher {
  private readonly o: RegistrationPublisherOptions;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly lastSize: (number | undefined)[];
  private _published = 0;
  private running = false;

  constructor(o: RegistrationPublisherOptions) {
    this.o = o;
    this.lastSize = o.sources.map(() => undefined);
  }

  get published(): number {
    return this._published;
  }

  get subject(): string {
    return this.o.target ?? registrationSubject(this.o.collective);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const interval = this.o.intervalMs ?? 300_000;
    const first = this.o.splay === false ? 0 : Math.floor(Math.random() * interval);
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    const kick = setTimeout(() => {
      if (!this.running) return;
      this.publishAll(false);
      every(interval, () => this.publishAll(false));
    }, first);
    kick.unref();
    this.timers.push(kick);
    const check = this.o.changeCheckMs ?? 10_000;
    if (check > 0) every(check, () => this.publishAll(true));
  }

  stop(): void {
    this.running = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers.length = 0;
  }

  /** One round; with onlyChanged, only payloads whose size differs from the last one sent. */
  publishAll(onlyChanged = false): number {
    let n = 0;
    this.o.sources.forEach((source, i) => {
      try {
        const payload = source();
        if (!payload) return;
        // Before the first round nothing counts as a change: the splay decides when that goes.
        if (onlyChanged && (this.lastSize[i] === undefined || this.lastSize[i] === payload.length)) return;
        this.lastSize[i] = payload.length;
        this.o.publish(
          this.subject,
          encodeRegistrationMessage({
            payload,
            identity: this.o.identity,
            collective: this.o.collective,
            credential: this.o.credential,
          }),
        );
        this._published++;
        n++;
      } catch (err) {
        this.o.onError?.(err as Error);
      }
    });
    return n;
  }
}
