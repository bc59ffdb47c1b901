import type { Logger } from "pino";
import type { Config } from "../core/config/index.js";
import { LifecycleReporter } from "../services/lifecycle/index.js";
import {
  FileContentSource,
  RegistrationPublisher,
  inventoryContentPayload,
  registrationSettings,
  type RegistrationSettings,
} from "../services/registration/index.js";
import type { NodeRuntime } from "./node.js";

/** Lifecycle knobs a Server takes; false turns lifecycle events off. */
export interface ServerLifecycleOptions {
  /** default 30 min */
  aliveIntervalMs?: number;
  /** default: the interval */
  aliveFirstDelayMaxMs?: number;
  /** bare JSON instead of CloudEvents (plugin.choria.legacy_lifecycle_format) */
  legacyFormat?: boolean;
  /** "server" unless told otherwise */
  component?: string;
}

export interface NodeMetadataOptions {
  node: NodeRuntime;
  publish: (subject: string, data: Uint8Array) => void;
  token: string;
  sign: (data: Uint8Array) => Uint8Array;
  /** a v1 (x509) node's certificate: registration then goes out as protocol v1 */
  pubcert?: string;
  log: Logger;
  lifecycle?: false | ServerLifecycleOptions;
  /** explicit settings; otherwise read from config (off when neither has any) */
  registration?: RegistrationSettings;
  config?: Config;
}

/** What a running server publishes about itself: lifecycle events and registration. */
export interface NodeMetadata {
  readonly lifecycle: LifecycleReporter | undefined;
  readonly registrations: RegistrationPublisher[];
  /** publishes shutdown and stops the timers; flush the connection afterwards */
  stop(): void;
}

function lifecycleFromConfig(cfg: Config | undefined): ServerLifecycleOptions {
  if (!cfg) return {};
  return {
    legacyFormat: cfg.bool("plugin.choria.legacy_lifecycle_format", false),
    ...(cfg.has("plugin.chorus.lifecycle.alive_interval") && {
      aliveIntervalMs: cfg.duration("plugin.chorus.lifecycle.alive_interval"),
    }),
  };
}

/** Starts lifecycle (startup now, alive later) and registration for one node. */
export function startNodeMetadata(o: NodeMetadataOptions): NodeMetadata {
  const node = o.node;
  let lifecycle: LifecycleReporter | undefined;
  if (o.lifecycle !== false) {
    const lo = { ...lifecycleFromConfig(o.config), ...(o.lifecycle ?? {}) };
    lifecycle = new LifecycleReporter({
      identity: node.identity,
      component: lo.component ?? "server",
      version: node.host.version,
      // counted for rpcutil daemon_stats "events" once the publish did not throw
      publish: (subject, data) => {
        o.publish(subject, data);
        node.counters.events++;
      },
      ...(lo.aliveIntervalMs !== undefined && { aliveIntervalMs: lo.aliveIntervalMs }),
      ...(lo.aliveFirstDelayMaxMs !== undefined && { aliveFirstDelayMaxMs: lo.aliveFirstDelayMaxMs }),
      ...(lo.legacyFormat !== undefined && { legacyFormat: lo.legacyFormat }),
      onError: (err, ev) =>
        o.log.warn({ err: err.message, protocol: ev.protocol }, "could not publish lifecycle event"),
    });
    lifecycle.start();
  }

  const rs = o.registration ?? (o.config ? registrationSettings(o.config) : undefined);
  // One publisher per payload kind, since each may have its own target.
  const registrations: RegistrationPublisher[] = [];
  const publisher = (source: () => Uint8Array | undefined, target: string | undefined) => {
    if (!rs) return;
    const p = new RegistrationPublisher({
      identity: node.identity,
      collective: rs.collective ?? node.mainCollective,
      ...(target !== undefined && { target }),
      intervalMs: rs.intervalMs,
      splay: rs.splay,
      changeCheckMs: rs.changeCheckMs,
      sources: [source],
      credential: { token: o.token, sign: o.sign, ...(o.pubcert !== undefined && { pubcert: o.pubcert }) },
      publish: o.publish,
      onError: (err) => o.log.warn({ err: err.message }, "could not publish registration"),
    });
    p.start();
    registrations.push(p);
  };
  if (rs?.kinds.includes("inventory_content")) {
    publisher(
      () =>
        inventoryContentPayload(
          {
            agents: node.agents,
            classes: node.classes,
            facts: node.facts,
            collectives: [...node.collectives],
            status: {
              identity: node.identity,
              uptime: Math.floor((Date.now() - node.host.startTime) / 1000),
              connected_server: node.host.connectedServer(),
              provisioning_mode: false,
              stats: node.stats,
            },
            build_info: { version: node.host.version, implementation: "chorus" },
            machines: node.machineStates().map((m) => ({ name: m.name, version: m.version, state: m.state })),
          },
          rs.inventoryCompression,
        ),
      rs.inventoryTarget,
    );
  }
  if (rs?.kinds.includes("file_content") && rs.fileContentFile) {
    const fc = new FileContentSource(rs.fileContentFile, rs.fileContentCompression);
    publisher(() => fc.payload(), rs.fileContentTarget);
  }

  return {
    lifecycle,
    registrations,
    stop() {
      for (const r of registrations) r.stop();
      lifecycle?.stop();
    },
  };
}
