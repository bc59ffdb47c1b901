export {
  LIFECYCLE_SOURCE,
  LIFECYCLE_TYPES,
  LifecycleError,
  decodeLifecycleEvent,
  encodeLifecycleEvent,
  eventType,
  lifecycleSubject,
  newLifecycleEvent,
  protocolFor,
  type GovernorEventType,
  type LifecycleEvent,
  type LifecycleType,
  type NewEventFields,
} from "./events.js";
export {
  ALIVE_INTERVAL_MS,
  LifecycleReporter,
  type LifecyclePublish,
  type LifecycleReporterOptions,
} from "./reporter.js";
export {
  LifecycleTally,
  identityMatcher,
  lifecycleWatchSubject,
  watchLifecycle,
  type LifecycleFilter,
  type TallyOptions,
} from "./watch.js";
