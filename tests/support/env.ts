// Decides what an integration test does when the real software it needs is missing:
// locally it skips with the reason; under CI=true a skip would hide a broken pipeline, so it fails.
import { execFileSync } from "node:child_process";

export const IN_CI = process.env.CI === "true";

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
  if (available) return;
  const message = `${what} is not available on this machine`;
  if (IN_CI) throw new Error(`${message}; under CI=true this test must run (see .ci/run)`);
  ctx.skip();
}

export const hasDocker = (): boolean => commandWorks("docker", ["info"]);
export const hasContainerd = (): boolean => commandWorks("containerd", ["--version"]);
