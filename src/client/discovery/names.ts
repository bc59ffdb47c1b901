/**
 * What the caller's options call the discovery method and its options, so that an
 * error names the property the caller set: `Client.discover` and `discoverOffline`
 * take `method` and `options`, `Client.request` takes `discoveryMethod` and
 * `discoveryOptions`.
 */
export interface DiscoveryNames {
  method: string;
  options: string;
}

export const DISCOVER_NAMES: DiscoveryNames = { method: "method", options: "options" };
export const REQUEST_NAMES: DiscoveryNames = { method: "discoveryMethod", options: "discoveryOptions" };
