// Shared by the tests of the prebuilt bundles (tests/pulumi/*-bundle-check.test.ts, tests/package/package.test.ts):
// files of a given age for the staleness checks, and a wait script run against an API that is not there.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";

/** Writes `file` with an mtime (and atime) `secondsAgo` in the past. */
export function writeAged(file: string, secondsAgo: number): void {
  fs.writeFileSync(file, "x");
  const when = new Date(Date.now() - secondsAgo * 1000);
  fs.utimesSync(file, when, when);
}

/** A kubeconfig whose server nothing listens on (port 1): a wait script gets as far as its first request. */
const UNREACHABLE_KUBECONFIG = JSON.stringify({
  apiVersion: "v1",
  kind: "Config",
  clusters: [{ name: "none", cluster: { server: "https://127.0.0.1:1" } }],
  users: [{ name: "u", user: { token: "t" } }],
  contexts: [{ name: "none", context: { cluster: "none", user: "u" } }],
  "current-context": "none",
});

/**
 * Runs a wait script as the Command provider does (`node <script>` in `cwd`, with only the stored environment)
 * against that kubeconfig, with a 0.2 s timeout polling every 0.1 s: it must fail naming the unreachable API.
 */
export function runWaitScriptWithoutApi(script: string, cwd: string): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [script], {
    cwd,
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "", HOME: "/nonexistent", KATA_DEPLOY_KUBECONFIG: UNREACHABLE_KUBECONFIG, KATA_DEPLOY_RUNTIMES: "containerd", KATA_DEPLOY_TIMEOUT_SECONDS: "0.2", KATA_DEPLOY_POLL_SECONDS: "0.1" },
  });
  return { status: result.status, stderr: result.stderr };
}
