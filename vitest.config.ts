import { defineConfig } from "vitest/config";

export default defineConfig({
    test: {
        include: ["test/**/*.test.ts"],
        // Native code: each test file in its own process, so a crash names its file and
        // memory measurements are not mixed between files.
        pool: "forks",
        testTimeout: 120_000,
        hookTimeout: 120_000,
        // These machines have 2 cores; the native tests set their own thread counts.
        maxWorkers: 2,
    },
});
