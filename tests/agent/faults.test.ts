// The agent is SIGKILLed at random moments of install and of uninstall (seeded, delays spread over the
// whole run): after every kill the runtime config parses and names no missing file; re-running converges
// to the uninterrupted result byte for byte. Two agents at once are serialized by the host lock.
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { artifacts, isolatedEnv, makeHost, missingReferences, removeTempDirs, runAgent, runAgentAsync, seededRandom, snapshot, spawnAgent, tempDir, type Entry } from "./agent-harness";

const KILLS_PER_PHASE = Number(process.env.KATA_DEPLOY_FAULT_KILLS ?? "40");

interface Case {
  name: string;
  runtime: string;
  files: Record<string, string>;
  configs: string[];
  extra: string[];
  seed: number;
}

const CASES: Case[] = [
  {
    name: "containerd v3 (drop-in, import entry in the main file)",
    runtime: "containerd",
    files: { "/etc/containerd/config.toml": 'version = 3\n# ops\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n' },
    configs: ["/etc/containerd/config.toml"],
    extra: [],
    seed: 0x6b617461,
  },
  {
    name: "containerd v2 (main file edited in place)",
    runtime: "containerd",
    files: { "/etc/containerd/config.toml": 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n' },
    configs: ["/etc/containerd/config.toml"],
    extra: [],
    seed: 0x32,
  },
  {
    name: "Docker daemon.json",
    runtime: "docker",
    files: { "/etc/docker/daemon.json": '{\n  "log-driver": "journald"\n}\n' },
    configs: ["/etc/docker/daemon.json"],
    extra: ["--docker-runtime-form", "shim-v2"],
    seed: 0x646f636b,
  },
];

/** The host without our state directory (its inode numbers and timestamps differ run to run). */
const hostSnapshot = (root: string): Record<string, Entry> => snapshot(root, (rel) => rel === "opt/kata/.kata-deploy");

function copyHost(template: string): string {
  const root = tempDir("fault");
  execFileSync("cp", ["-a", `${template}/.`, root]);
  return root;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function killAfter(args: string[], delayMs: number): Promise<void> {
  const child = spawnAgent(args);
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  await Promise.race([sleep(delayMs), exited]);
  child.kill("SIGKILL");
  await exited;
}

function assertLoadable(root: string, configs: string[], context: string): void {
  let missing: string[];
  try {
    missing = missingReferences(root, configs);
  } catch (error) {
    throw new Error(`${context}: a config does not parse: ${(error as Error).message}`, { cause: error });
  }
  assert.deepEqual(missing, [], `${context}: the config references missing files`);
}

function timeIt(work: () => void): number {
  const started = performance.now();
  work();
  return performance.now() - started;
}

describe("agent fault tolerance", function () {
  this.timeout(30 * 60_000);
  after(removeTempDirs);

  for (const testCase of CASES) {
    describe(testCase.name, function () {
      const kills = testCase.runtime === "docker" ? Math.max(10, Math.round(KILLS_PER_PHASE / 2)) : KILLS_PER_PHASE;
      let template: string;
      let installArgs: (root: string) => string[];
      let uninstallArgs: (root: string) => string[];
      let installed: Record<string, Entry>;
      let original: Record<string, Entry>;
      let startupMs: number;
      let installMs: number;
      let uninstallMs: number;

      before(function () {
        template = makeHost(testCase.files);
        installArgs = (root) => ["install", "--runtime", testCase.runtime, "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc", ...testCase.extra];
        uninstallArgs = (root) => ["uninstall", "--runtime", testCase.runtime, "--host-root", root];
        original = hostSnapshot(template);
        const reference = copyHost(template);
        startupMs = timeIt(() => runAgent(["status", "--host-root", reference]));
        installMs = timeIt(() => assert.equal(runAgent(installArgs(reference)).code, 0));
        installed = hostSnapshot(reference);
        uninstallMs = timeIt(() => assert.equal(runAgent(uninstallArgs(reference)).code, 0));
        assert.deepEqual(hostSnapshot(reference), original, "uninterrupted uninstall restores the host");
      });

      it(`SIGKILL at ${kills} random moments of install: always loadable, re-run converges`, async function () {
        const random = seededRandom(testCase.seed);
        for (let i = 0; i < kills; i++) {
          const root = copyHost(template);
          // Spread over the whole run, most of it after Node's start-up (where the work happens).
          const delay = startupMs * 0.7 + random() * (installMs - startupMs * 0.7);
          await killAfter(installArgs(root), delay);
          assertLoadable(root, testCase.configs, `install killed after ${delay.toFixed(0)} ms`);
          const rerun = runAgent(installArgs(root));
          assert.equal(rerun.code, 0, `re-run after a kill at ${delay.toFixed(0)} ms failed:\n${rerun.stderr}`);
          assert.deepEqual(hostSnapshot(root), installed, `re-run after a kill at ${delay.toFixed(0)} ms differs from an uninterrupted install`);
          fs.rmSync(root, { recursive: true, force: true });
        }
      });

      it(`SIGKILL at ${kills} random moments of uninstall: always loadable, re-run converges`, async function () {
        const random = seededRandom(testCase.seed + 1);
        const installedTemplate = copyHost(template);
        assert.equal(runAgent(installArgs(installedTemplate)).code, 0);
        for (let i = 0; i < kills; i++) {
          const root = copyHost(installedTemplate);
          const delay = startupMs * 0.7 + random() * (uninstallMs - startupMs * 0.7);
          await killAfter(uninstallArgs(root), delay);
          assertLoadable(root, testCase.configs, `uninstall killed after ${delay.toFixed(0)} ms`);
          const rerun = runAgent(uninstallArgs(root));
          assert.equal(rerun.code, 0, `re-run after a kill at ${delay.toFixed(0)} ms failed:\n${rerun.stderr}`);
          assert.deepEqual(hostSnapshot(root), original, `re-run after a kill at ${delay.toFixed(0)} ms differs from an uninterrupted uninstall`);
          fs.rmSync(root, { recursive: true, force: true });
        }
      });
    });
  }

  it("two agents at once are serialized by the host lock and both succeed", async function () {
    const daemonJson = '{\n  "log-driver": "journald"\n}\n';
    const containerdToml = "version = 3\n";
    const root = makeHost({ "/etc/docker/daemon.json": daemonJson, "/etc/containerd/config.toml": containerdToml });
    const original = hostSnapshot(root);
    const env = isolatedEnv();
    for (let round = 0; round < 3; round++) {
      const [a, b] = await Promise.all([
        runAgentAsync(["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts()], env),
        runAgentAsync(["install", "--runtime", "docker", "--host-root", root, "--artifacts", artifacts(), "--docker-runtime-form", "runc"], env),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const status = JSON.parse(runAgent(["status", "--host-root", root]).stdout) as { runtimes: Record<string, { status: string }> };
      assert.deepEqual(Object.keys(status.runtimes).sort(), ["containerd", "docker"]);
      assertLoadable(root, ["/etc/containerd/config.toml", "/etc/docker/daemon.json"], "after concurrent installs");
      const [c, d] = await Promise.all([
        runAgentAsync(["uninstall", "--runtime", "containerd", "--host-root", root], env),
        runAgentAsync(["uninstall", "--runtime", "docker", "--host-root", root], env),
      ]);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(d.code, 0, d.stderr);
      assert.deepEqual(hostSnapshot(root), original, "after both uninstalls the host is as before");
    }
  });

  it("the lock is released the instant its holder is SIGKILLed", async function () {
    const root = makeHost({ "/etc/docker/daemon.json": "{}\n" });
    const child = spawnAgent(["install", "--runtime", "docker", "--host-root", root, "--artifacts", artifacts(), "--docker-runtime-form", "runc", "--daemon"]);
    // Wait until the holder is past its work (status shows it installed), then kill it mid-daemon.
    for (let i = 0; i < 100 && runAgent(["status", "--host-root", root, "--ready", "--runtime", "docker"]).code !== 0; i++) await sleep(100);
    child.kill("SIGKILL");
    const started = performance.now();
    assert.equal(runAgent(["uninstall", "--runtime", "docker", "--host-root", root]).code, 0);
    assert.ok(performance.now() - started < 10_000, "no stale-lock wait");
    assert.equal(fs.readFileSync(path.join(root, "etc/docker/daemon.json"), "utf8"), "{}\n");
  });
});
