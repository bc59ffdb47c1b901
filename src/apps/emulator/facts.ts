// Deterministic, varied facts so filters have something to select on in demos and tests.
const OS = ["linux", "linux", "linux", "freebsd", "windows"];
const ROLES = ["web", "db", "cache", "queue", "batch"];
const LOCATIONS = ["lon", "nyc", "ams", "sin"];
const ENVS = ["production", "production", "staging", "development"];
// Shared by every node's facts (read-only to filters): one array instead of 50 000.
const INTERFACES = Object.freeze(["lo", "eth0"]);

/** node-00001.emulated.chorus style names; sortable for up to 99 999 nodes. */
export function emulatedIdentity(i: number): string {
  return `node-${String(i).padStart(5, "0")}.emulated.chorus`;
}

export function emulatedFacts(i: number): Record<string, unknown> {
  const pick = <T>(xs: T[], salt: number): T => xs[(i * 7 + salt) % xs.length] as T;
  return {
    index: i,
    os: pick(OS, 0),
    role: pick(ROLES, 1),
    location: pick(LOCATIONS, 2),
    environment: pick(ENVS, 3),
    cores: 2 ** (i % 5),
    memory_gb: 4 * (1 + (i % 8)),
    kernel: `6.${i % 10}.${i % 7}`,
    network: { interfaces: INTERFACES, primary: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
  };
}
