// The agent is SIGKILLed at random moments of install and of uninstall (seeded, delays spread over the
// whole run), and at the exact instants where a kill is most dangerous (the agent's test-only
// KATA_DEPLOY_TEST_CRASH_AT hook): after every kill the runtime config parses and names no missing file;
// re-running converges to the uninterrupted result byte for byte. Two agents at once are serialized by
// the host lock, also while one of them removes the directory the lock is on (KATA_DEPLOY_TEST_STOP_AT).
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { artifacts, isolatedEnv, makeHost, missingReferences, removeTempDirs, runAgent, runAgentAsync, seededRandom, snapshot, spawnAgent, tempDir, type Entry } from "./agent-harness";

const KILLS_PER_PHASE = Number(process.env.KATA_DEPLOY_FAULT_KILLS ?? "60");

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

/** The installed host without our state directory (its inode numbers and timestamps differ run to run). */
const installedSnapshot = (root: string): Record<string, Entry> => snapshot(root, (rel) => rel === "opt/kata/.kata-deploy");
/** Everything, reserved names and an empty state directory included: what uninstall must give back. */
const hostSnapshot = (root: string): Record<string, Entry> => snapshot(root);

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

describe("agent fault tolerance @integration", function () {
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
        installed = installedSnapshot(reference);
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
          assert.deepEqual(installedSnapshot(root), installed, `re-run after a kill at ${delay.toFixed(0)} ms differs from an uninterrupted install`);
          fs.rmSync(root, { recursive: true, force: true });
        }
      });

      // Catches directories made before they are journalled: a kill in between would leave directories
      // no record names, which the later uninstall would then leave behind.
      it(`SIGKILL at ${kills} random moments of install: the re-run records every directory made, so uninstall leaves nothing`, async function () {
        const random = seededRandom(testCase.seed + 2);
        for (let i = 0; i < kills; i++) {
          const root = copyHost(template);
          const delay = startupMs * 0.7 + random() * (installMs - startupMs * 0.7);
          await killAfter(installArgs(root), delay);
          assert.equal(runAgent(installArgs(root)).code, 0);
          assert.equal(runAgent(uninstallArgs(root)).code, 0);
          assert.deepEqual(hostSnapshot(root), original, `uninstall after a kill of install at ${delay.toFixed(0)} ms and its re-run leaves something behind`);
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

/** Runs the agent with a test-only hook that SIGKILLs it at `point`; asserts it really died there. */
function crashAt(point: string, args: string[]): void {
  const run = runAgent(args, isolatedEnv({ KATA_DEPLOY_TEST_CRASH_AT: point }));
  assert.equal(run.code, null, `the agent never reached ${point} (exit ${run.code}):\n${run.stdout}${run.stderr}`);
}

/** Names in `dir` that only an interrupted create or removal of the prefix leaves (reserved by the agent). */
function reservedNames(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => /^\.kata-deploy-(creating|removing)-/.test(name));
}

describe("agent fault tolerance: kills at the instants the prefix and its record appear and vanish @integration", function () {
  this.timeout(5 * 60_000);
  after(removeTempDirs);

  const config = { "/etc/containerd/config.toml": "version = 3\n" };
  const configs = ["/etc/containerd/config.toml"];
  const installArgs = (root: string): string[] => ["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc"];
  const uninstallArgs = (root: string): string[] => ["uninstall", "--runtime", "containerd", "--host-root", root];

  /**
   * Host shapes that decide what uninstall removes: both /opt and /opt/kata ours; /opt already there
   * with someone's file (only /opt/kata is ours); /opt/kata already there (nothing of the chain is ours,
   * so only the record goes, in place).
   */
  const shapes: { name: string; files: Record<string, string>; dirs: string[]; trashIn: string }[] = [
    { name: "/opt and /opt/kata created by the agent", files: config, dirs: [], trashIn: "" },
    { name: "/opt/kata created in an existing /opt that holds another file", files: { ...config, "/opt/other/README": "not ours\n" }, dirs: [], trashIn: "opt" },
    { name: "/opt/kata there before the agent", files: config, dirs: ["/opt/kata"], trashIn: "" },
  ];

  for (const shape of shapes) {
    describe(shape.name, function () {
      let template: string;
      let installedTemplate: string;
      let original: Record<string, Entry>;
      let installed: Record<string, Entry>;

      before(function () {
        template = makeHost(shape.files);
        for (const dir of shape.dirs) fs.mkdirSync(path.join(template, dir), { recursive: true });
        original = hostSnapshot(template);
        installedTemplate = copyHost(template);
        assert.equal(runAgent(installArgs(installedTemplate)).code, 0);
        installed = installedSnapshot(installedTemplate);
        const reference = copyHost(installedTemplate);
        assert.equal(runAgent(uninstallArgs(reference)).code, 0);
        assert.deepEqual(hostSnapshot(reference), original, "an uninterrupted uninstall gives the host back");
      });

      const prefixCreated = shape.dirs.length === 0;
      const uninstallPoints = prefixCreated ? ["uninstall:removing-prefix", "uninstall:renamed-to-trash", "uninstall:removing-trash", "uninstall:trash-removed"] : ["uninstall:removing-prefix", "uninstall:state-unlinked"];

      for (const point of uninstallPoints) {
        for (const rerun of ["uninstall", "install, then uninstall"]) {
          it(`uninstall killed at ${point}; ${rerun} again converges to the uninterrupted result`, function () {
            const root = copyHost(installedTemplate);
            crashAt(point, uninstallArgs(root));
            assertLoadable(root, configs, `uninstall killed at ${point}`);
            // Check the kill left what this instant is about, so the re-run really has something to converge from.
            const trash = reservedNames(path.join(root, shape.trashIn));
            if (point === "uninstall:renamed-to-trash" || point === "uninstall:removing-trash") {
              assert.equal(trash.length, 1, "the prefix tree was renamed to a reserved name");
              assert.ok(!fs.existsSync(path.join(root, "opt/kata")), "and is gone from its place, record included");
              const statusRun = runAgent(["status", "--host-root", root]);
              assert.equal((JSON.parse(statusRun.stdout) as { installed: boolean }).installed, false);
              assert.deepEqual(reservedNames(path.join(root, shape.trashIn)), trash, "status changes nothing");
            } else if (point === "uninstall:state-unlinked") {
              assert.deepEqual(fs.readdirSync(path.join(root, "opt/kata")), [".kata-deploy"], "killed with the record gone and its directory left");
            } else if (point === "uninstall:trash-removed") {
              assert.deepEqual(trash, []);
            } else {
              assert.ok(fs.existsSync(path.join(root, "opt/kata/.kata-deploy/state.json")), "killed before the record went");
            }
            if (rerun === "uninstall") {
              const again = runAgent(uninstallArgs(root));
              assert.equal(again.code, 0, again.stderr);
            } else {
              const reinstall = runAgent(installArgs(root));
              assert.equal(reinstall.code, 0, reinstall.stderr);
              assert.deepEqual(installedSnapshot(root), installed, "the install after the kill gives the installed host");
              assert.equal(runAgent(uninstallArgs(root)).code, 0);
            }
            assert.deepEqual(hostSnapshot(root), original, `after a kill at ${point} and ${rerun}, the host differs from an uninterrupted uninstall`);
          });
        }
      }

      if (prefixCreated) {
        it("install killed with the prefix and its record built under a reserved name: a re-run installs, uninstall leaves nothing", function () {
          const root = copyHost(template);
          crashAt("install:prefix-staged", installArgs(root));
          assert.equal(reservedNames(path.join(root, shape.trashIn)).length, 1, "the new tree is still under its reserved name");
          assert.ok(!fs.existsSync(path.join(root, "opt/kata")), "and not at its place yet");
          assert.equal(runAgent(installArgs(root)).code, 0);
          assert.deepEqual(installedSnapshot(root), installed);
          assert.equal(runAgent(uninstallArgs(root)).code, 0);
          assert.deepEqual(hostSnapshot(root), original);
        });
      }
    });
  }

  /** A process stopped by SIGSTOP (its /proc state is T). */
  async function waitStopped(pid: number): Promise<void> {
    for (let i = 0; i < 300; i++) {
      if (/^\d+ \(.*\) T /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"))) return;
      await sleep(20);
    }
    throw new Error(`agent ${pid} never stopped at its test point`);
  }

  /** Until some process waits (blocked) for a flock on the inode of `dir`. */
  async function waitForLockWaiter(dir: string): Promise<void> {
    const ino = fs.statSync(dir).ino;
    for (let i = 0; i < 300; i++) {
      const blocked = fs.readFileSync("/proc/locks", "utf8").split("\n").filter((line) => /->\s+FLOCK/.test(line));
      if (blocked.some((line) => line.split(/\s+/).some((field) => field.endsWith(`:${ino}`)))) return;
      await sleep(20);
    }
    throw new Error(`nobody waits for the lock on ${dir}`);
  }

  for (const waiter of ["install", "uninstall"]) {
    it(`an ${waiter} waiting for the lock while the holder removes the prefix (the locked directory) ${waiter === "install" ? "creates it afresh" : "finds nothing to do"}`, async function () {
      const original = hostSnapshot(makeHost(config));
      const root = makeHost(config);
      assert.equal(runAgent(installArgs(root)).code, 0);
      const installed = installedSnapshot(root);
      // The holder stops with the lock held, just before it removes the prefix with the record.
      const holder = spawnAgent(uninstallArgs(root), isolatedEnv({ KATA_DEPLOY_TEST_STOP_AT: "uninstall:removing-prefix" }));
      const holderExit = new Promise<number | null>((resolve) => holder.on("exit", (code) => resolve(code)));
      await waitStopped(holder.pid as number);
      const second = runAgentAsync(waiter === "install" ? installArgs(root) : uninstallArgs(root));
      await waitForLockWaiter(root); // the host lock is on the host root directory
      holder.kill("SIGCONT");
      assert.equal(await holderExit, 0);
      const result = await second;
      assert.equal(result.code, 0, result.stderr);
      if (waiter === "install") {
        assert.deepEqual(installedSnapshot(root), installed, "the waiting install re-created the prefix and installed");
        assert.equal(runAgent(uninstallArgs(root)).code, 0, "and recorded what it created");
      } else {
        assert.match(result.stdout, /nothing installed/);
      }
      assert.deepEqual(hostSnapshot(root), original);
    });
  }
});
