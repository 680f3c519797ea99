// Benchmark (npm run bench): the agent's artifact install against `cp -a` + `sync` of the same
// release-like tree (>= 300 MB, a few large images/kernels, ~2,000 small files), alternated, median of
// RUNS runs each, on the same file system. Reports:
//   - install / (cp -a + sync), excluding the agent's process start-up (measured separately; goal <= 1.15)
//   - a no-op re-install as a fraction of a fresh install (goal <= 0.10)
// Not a timed test: numbers go into docs/node-agent.md.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { AGENT_BUNDLE as BUILT_BUNDLE } from "../support/build-agent";
import { makeKataArtifacts, RELEASE_LIKE } from "../support/kata-artifacts";

const AGENT_BUNDLE = process.env.KATA_DEPLOY_TEST_BUNDLE ?? BUILT_BUNDLE;
const RUNS = Number(process.env.BENCH_RUNS ?? "5");

function timed(work: () => void): number {
  const started = performance.now();
  work();
  return performance.now() - started;
}

const loadAverage = (): string => os.loadavg().map((value) => value.toFixed(2)).join(" ");

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function agent(args: string[]): void {
  const result = spawnSync(process.execPath, [AGENT_BUNDLE, ...args], { encoding: "utf8", env: { ...process.env, KUBECONFIG: "", KUBERNETES_SERVICE_HOST: "" } });
  if (result.status !== 0) throw new Error(`agent ${args.join(" ")} failed:\n${result.stderr}`);
}

function treeBytes(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) {
      bytes += fs.statSync(path.join(entry.parentPath, entry.name)).size;
      files++;
    }
  }
  return { bytes, files };
}

function main(): void {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "kata-bench-"));
  try {
    const artifacts = makeKataArtifacts(path.join(work, "artifacts"), RELEASE_LIKE);
    const { bytes, files } = treeBytes(path.join(artifacts, "opt/kata"));
    console.log(`tree: ${(bytes / (1 << 20)).toFixed(0)} MiB in ${files} files; ${RUNS} runs each, alternated; fs: ${execFileSync("df", ["--output=fstype", work], { encoding: "utf8" }).split("\n")[1].trim()}`);
    console.log(`bundle: ${AGENT_BUNDLE} (${(fs.statSync(AGENT_BUNDLE).size / 1024).toFixed(0)} KiB); node ${process.version}; ${os.availableParallelism()} CPUs; load average before: ${loadAverage()}`);
    execFileSync("sync");

    const startup: number[] = [];
    const cp: number[] = [];
    const install: number[] = [];
    const noop: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const cpRoot = path.join(work, `cp-${run}`);
      fs.mkdirSync(path.join(cpRoot, "opt"), { recursive: true });
      execFileSync("sync");
      cp.push(
        timed(() => {
          execFileSync("cp", ["-a", path.join(artifacts, "opt/kata"), path.join(cpRoot, "opt/kata")]);
          execFileSync("sync");
        }),
      );
      fs.rmSync(cpRoot, { recursive: true, force: true });

      const host = path.join(work, `host-${run}`);
      fs.mkdirSync(host);
      startup.push(timed(() => agent(["status", "--host-root", host])));
      execFileSync("sync");
      const args = ["install", "--runtime", "crio", "--host-root", host, "--artifacts", artifacts, "--shims", "qemu", "--restart", "none"];
      install.push(timed(() => agent(args)));
      noop.push(timed(() => agent(args)));
      fs.rmSync(host, { recursive: true, force: true });
      execFileSync("sync");
    }
    const s = median(startup);
    const c = median(cp);
    const i = median(install);
    const n = median(noop);
    const fmt = (ms: number): string => `${(ms / 1000).toFixed(3)} s`;
    console.log(`agent process start-up (status on an empty host): median ${fmt(s)}   [${startup.map(fmt).join(", ")}]`);
    console.log(`cp -a + sync:                                      median ${fmt(c)}   [${cp.map(fmt).join(", ")}]`);
    console.log(`kata-deploy install (fresh):                       median ${fmt(i)}   [${install.map(fmt).join(", ")}]`);
    console.log(`kata-deploy install (no-op re-install):            median ${fmt(n)}   [${noop.map(fmt).join(", ")}]`);
    console.log(`ratio install / (cp -a + sync), excluding start-up: ${((i - s) / c).toFixed(3)}  (goal <= 1.15; including start-up ${(i / c).toFixed(3)})`);
    console.log(`load average after: ${loadAverage()}`);
    console.log(`no-op re-install / fresh install:                   ${(n / i).toFixed(3)}  (goal <= 0.10; excluding start-up ${((n - s) / (i - s)).toFixed(3)})`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main();
