// Decides what an integration test does when the real software it needs is missing:
// locally it skips with the reason; under CI=true a skip would hide a broken pipeline, so it fails.
import { execFileSync } from "node:child_process";

export const IN_CI = process.env.CI === "true";

/**
 * In a test's (or its describe's) title: the test needs a daemon, an image, a root mount, or minutes
 * (a soak). `npm run test:unit` runs every test without it, `npm run test:integration` every test with
 * it, `npm test` all (docs/contributing.md, "Test tiers").
 */
export const INTEGRATION_TAG = "@integration";

/** True when `cmd args` runs and exits 0. */
export function commandWorks(cmd: string, args: string[] = ["--version"]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Call from a mocha `before`/`it` with its `this`. Skips (locally) or throws (CI) when the tool is absent.
 */
export function requireTool(ctx: Mocha.Context, what: string, available: boolean): void {
  if (process.env.KATA_TEST_TIER === "unit") {
    throw new Error(`this test needs ${what}, so it is not a unit test: add ${INTEGRATION_TAG} to its title or its describe's (docs/contributing.md, "Test tiers")`);
  }
  if (available) return;
  const message = `${what} is not available on this machine`;
  if (IN_CI) throw new Error(`${message}; under CI=true this test must run (see .ci/run)`);
  ctx.skip();
}

export const hasDocker = (): boolean => commandWorks("docker", ["info"]);
export const hasContainerd = (): boolean => commandWorks("containerd", ["--version"]);
