export { brokerSettings, type BrokerSettings } from "../core/config/index.js";
export {
  clientCertRequired,
  clusterNameOf,
  renderNatsConfig,
  renderX509EdgeConfig,
  serverName,
  type RenderOptions,
} from "./nats-config.js";
export { checkBrokerFiles, x509EdgePermissions } from "./x509-edge.js";
export {
  BrokerSupervisor,
  findNatsServer,
  freeLoopbackPort,
  restartOnlyChanges,
  type BrokerExit,
  type BrokerReload,
  type BrokerLogLevel,
  type BrokerLogger,
  type BrokerSupervisorEvents,
  type BrokerSupervisorOptions,
} from "./supervisor.js";
export { BrokerMetrics, type BrokerMetricsOptions, type BrokerMetricsSource } from "./metrics.js";
export {
  BrokerError,
  loadNatsTrust,
  normaliseNatsTrust,
  renderTrustFragment,
  type NatsTrustMaterial,
} from "./trust.js";
export {
  AdapterManager,
  AdapterMetrics,
  StreamAdapter,
  type AdapterOutput,
  type AdapterStats,
  type StreamAdapterOptions,
} from "./adapters.js";
export { INGEST_BATCH, IngestPool, type IngestPoolOptions } from "./adapter-worker.js";
export {
  brokerStatus,
  monitorUrlOf,
  renderBrokerStatus,
  type BrokerStatus,
  type LeafStatus,
  type ReplicaStatus,
  type RouteStatus,
  type StreamStatus,
} from "./status.js";
