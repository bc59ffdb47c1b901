import {
  encodeLifecycleEvent,
  lifecycleSubject,
  newLifecycleEvent,
  type LifecycleEvent,
  type LifecycleType,
  type NewEventFields,
} from "./events.js";

/** Where events go; a NATS connection's publish fits. */
export type LifecyclePublish = (subject: string, data: Uint8Array) => void;

export const ALIVE_INTERVAL_MS = 30 * 60_000;

export interface LifecycleReporterOptions {
  identity: string;
  /** "server", or "provision_mode_server" in provisioning mode */
  component: string;
  version: string;
  publish: LifecyclePublish;
  /** default 30 min, as go-choria since 0.29.4 */
  aliveIntervalMs?: number;
  /** first alive comes after a random delay up to this (default: the interval) so a fleet restart does not send them all at once */
  aliveFirstDelayMaxMs?: number;
  legacyFormat?: boolean;
  /** told about publish failures; lifecycle events are best effort */
  onError?: (err: Error, ev: LifecycleEvent) => void;
}

/** Publishes a component's startup, periodic alive, and shutdown events. */
export class LifecycleReporter {
  private readonly o: LifecycleReporterOptions;
  private timer: NodeJS.Timeout | undefined;
  private _sent = 0;

  constructor(o: LifecycleReporterOptions) {
    this.o = o;
  }

  get sent(): number {
    return this._sent;
  }

  /** Publishes one event of `type` for this component (extras such as governor fields from `extra`). */
  publish(type: LifecycleType, extra: Partial<NewEventFields> = {}): LifecycleEvent {
    const ev = newLifecycleEvent(type, {
      identity: this.o.identity,
      component: this.o.component,
      version: this.o.version,
      ...extra,
    });
    try {
      this.o.publish(
        lifecycleSubject(ev),
        encodeLifecycleEvent(ev, { legacy: this.o.legacyFormat ?? false }),
      );
      this._sent++;
    } catch (err) {
      this.o.onError?.(err as Error, ev);
    }
    return ev;
  }

  /** startup now, then alive after a random delay and every interval after that. */
  start(): void {
    this.publish("startup");
    const interval = this.o.aliveIntervalMs ?? ALIVE_INTERVAL_MS;
    const first = Math.floor(Math.random() * (this.o.aliveFirstDelayMaxMs ?? interval));
    const tick = (delay: number) => {
      this.timer = setTimeout(() => {
        this.publish("alive");
        tick(interval);
      }, delay);
      // a pending alive must not keep a stopping process alive
      this.timer.unref();
    };
    tick(first);
  }

  /** Stops the alive timer and publishes shutdown (flush the connection afterwards). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.publish("shutdown");
  }
}
