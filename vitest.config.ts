import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration suites start their own nats-server and spend most of their time waiting on
    // brokers and timers, so a third worker on two cores pays: the whole suite took 354 s
    // with three against 558 s with two (2026-12-06), and the per-file times summed about the same.
    maxWorkers: 3,
  },
});
