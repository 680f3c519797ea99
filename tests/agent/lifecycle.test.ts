// install → (re-install) → uninstall through the real CLI on temp host roots: byte-for-byte restore,
// idempotence (no restart on a no-op), third-party edits kept, artifacts (links, modes, skip, stale
// removal, mount point emptied), and restart failure → rollback at the systemd boundary.
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { IN_CI } from "../support/env";
import { makeKataArtifacts, TINY } from "../support/kata-artifacts";
import { artifacts, fakeDockerEngine, fakeSystemd, isolatedEnv, makeHost, missingReferences, removeTempDirs, runAgent, runAgentAsync, snapshot, tempDir } from "./agent-harness";

const CONTAINERD_V2 = [
  "# managed by ops",
  "version = 2",
  "",
  '[plugins."io.containerd.grpc.v1.cri"]',
  '  sandbox_image = "registry.k8s.io/pause:3.9"',
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
  '  runtime_type = "io.containerd.runc.v2"',
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
  "  SystemdCgroup = true",
  "",
].join("\n");
const CONTAINERD_V3 = 'version = 3\n\n# mirrors\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n';
const DAEMON_JSON = '{\n    "log-driver": "journald",\n    "registry-mirrors": ["https://mirror.example"]\n}\n';

interface Shape {
  name: string;
  runtime: "containerd" | "crio" | "docker";
  files: Record<string, string>;
  /** Config files to parse and check for dangling references. */
  configs: string[];
  extra?: string[];
  /** A third-party edit to make between install and uninstall, and how to see it survived. */
  edit: { file: string; apply: (text: string) => string; kept: (text: string) => boolean };
}

const SHAPES: Shape[] = [
  {
    name: "containerd v2 main file",
    runtime: "containerd",
    files: { "/etc/containerd/config.toml": CONTAINERD_V2 },
    configs: ["/etc/containerd/config.toml"],
    edit: { file: "/etc/containerd/config.toml", apply: (t) => t.replace("pause:3.9", "pause:3.10"), kept: (t) => t.includes("pause:3.10") },
  },
  {
    name: "containerd v3 drop-in + import",
    runtime: "containerd",
    files: { "/etc/containerd/config.toml": CONTAINERD_V3 },
    configs: ["/etc/containerd/config.toml"],
    edit: { file: "/etc/containerd/config.toml", apply: (t) => `${t}\n# tuned by ops\n`, kept: (t) => t.includes("# tuned by ops") },
  },
  {
    name: "CRI-O drop-in",
    runtime: "crio",
    files: { "/etc/crio/crio.conf": '[crio.runtime]\ndefault_runtime = "crun"\n' },
    configs: ["/etc/crio/crio.conf.d/99-kata-deploy.toml"],
    edit: { file: "/etc/crio/crio.conf", apply: (t) => `${t}# ops\n`, kept: (t) => t.includes("# ops") },
  },
  {
    name: "Docker daemon.json (shim-v2)",
    runtime: "docker",
    files: { "/etc/docker/daemon.json": DAEMON_JSON },
    configs: ["/etc/docker/daemon.json"],
    extra: ["--docker-runtime-form", "shim-v2"],
    edit: {
      file: "/etc/docker/daemon.json",
      apply: (t) => t.replace('"log-driver": "journald"', '"log-driver": "local"'),
      kept: (t) => t.includes('"log-driver": "local"'),
    },
  },
];

const read = (root: string, hostPath: string): string => fs.readFileSync(path.join(root, hostPath), "utf8");
const installArgs = (shape: Shape, root: string, ...more: string[]): string[] => [
  "install", "--runtime", shape.runtime, "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc", ...(shape.extra ?? []), ...more,
];
const uninstallArgs = (shape: Shape, root: string, ...more: string[]): string[] => ["uninstall", "--runtime", shape.runtime, "--host-root", root, ...more];

function ok(result: { code: number | null; stderr: string; stdout: string }): void {
  assert.equal(result.code, 0, `agent failed:\n${result.stderr}\n${result.stdout}`);
}

describe("agent lifecycle on containerd, CRI-O and Docker host shapes", function () {
  after(removeTempDirs);

  for (const shape of SHAPES) {
    describe(shape.name, function () {
      it("install adds the kata runtimes, references only existing files; uninstall restores the host byte for byte", function () {
        const root = makeHost(shape.files);
        const before = snapshot(root);
        ok(runAgent(installArgs(shape, root)));
        const all = shape.configs.flatMap((config) => [config]);
        assert.deepEqual(missingReferences(root, all), [], "every referenced path must exist under the host root");
        const configText = shape.configs.map((c) => read(root, c)).join("\n") + (shape.runtime === "containerd" ? collectImports(root) : "");
        assert.match(configText, /kata-qemu/);
        assert.match(configText, /kata-fc/);
        assert.ok(fs.existsSync(path.join(root, "opt/kata/bin/containerd-shim-kata-v2")));
        ok(runAgent(uninstallArgs(shape, root)));
        assert.deepEqual(snapshot(root), before, "uninstall must give the host back byte for byte (configs, /opt/kata, directories)");
      });

      it("install twice = install once, byte for byte, and the no-op re-install restarts nothing", function () {
        const root = makeHost(shape.files);
        const systemd = fakeSystemd(root);
        const env = isolatedEnv(systemd.env);
        ok(runAgent(installArgs(shape, root, "--restart", "systemd"), env));
        const restarts = (): number => systemd.calls().filter((call) => /^(restart|reload) /.test(call)).length;
        assert.equal(restarts(), 1, `one restart/reload on the first install: ${systemd.calls().join("; ")}`);
        const once = snapshot(root);
        ok(runAgent(installArgs(shape, root, "--restart", "systemd"), env));
        assert.deepEqual(snapshot(root), once);
        assert.equal(restarts(), 1, `no restart on a no-op re-install: ${systemd.calls().join("; ")}`);
        assert.equal(runAgent(["status", "--host-root", root, "--ready", "--runtime", shape.runtime]).code, 0);
      });

      it("uninstall keeps a third-party edit made after install and removes only our stanzas", function () {
        const root = makeHost(shape.files);
        ok(runAgent(installArgs(shape, root)));
        const file = path.join(root, shape.edit.file);
        fs.writeFileSync(file, shape.edit.apply(fs.readFileSync(file, "utf8")));
        ok(runAgent(uninstallArgs(shape, root)));
        const after = fs.readFileSync(file, "utf8");
        assert.ok(shape.edit.kept(after), `the edit must survive:\n${after}`);
        assert.doesNotMatch(after, /kata-qemu|kata-deploy/);
        assert.equal(after, shape.edit.apply(shape.files[shape.edit.file] ?? ""), "the file is the original plus their edit");
      });

      it("re-installing with fewer shims removes the stanzas no longer wanted", function () {
        const root = makeHost(shape.files);
        ok(runAgent(installArgs(shape, root)));
        ok(runAgent([...installArgs(shape, root), "--shims", "qemu"]));
        const text = shape.configs.map((c) => read(root, c)).join("\n") + (shape.runtime === "containerd" ? collectImports(root) : "");
        assert.match(text, /kata-qemu/);
        assert.doesNotMatch(text, /kata-fc/);
        ok(runAgent(uninstallArgs(shape, root)));
        for (const [hostPath, content] of Object.entries(shape.files)) assert.equal(read(root, hostPath), content);
      });
    });
  }

  describe("artifacts", function () {
    it("preserves symlinks and modes, skips unchanged files, removes files a new release no longer ships", function () {
      const root = makeHost();
      const release1 = makeKataArtifacts(tempDir("rel1"), TINY, "3.23.0");
      const shape = SHAPES[2];
      ok(runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", release1, "--shims", "qemu"]));
      // Besides the record, the prefix holds Kata's configuration per handler (kata-config.test.ts checks it).
      const ours = (rel: string): boolean => rel.startsWith(".kata-deploy") || rel.startsWith("share/defaults/kata-containers/runtimes");
      const installed = snapshot(path.join(root, "opt/kata"), ours);
      assert.deepEqual(installed, snapshot(path.join(release1, "opt/kata")), "the installed tree equals the release (content, modes, links)");
      assert.equal(fs.readlinkSync(path.join(root, "opt/kata/share/kata-containers/vmlinux.container")), "vmlinux-6.12.28-153");

      const qemu = path.join(root, "opt/kata/bin/qemu-system-x86_64");
      const inodeBefore = fs.statSync(qemu).ino;
      const rerun = runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", release1, "--shims", "qemu"]);
      ok(rerun);
      assert.match(rerun.stdout, /0 file\(s\) copied/);
      assert.equal(fs.statSync(qemu).ino, inodeBefore, "an unchanged file is not rewritten");

      // A new release: one file changed, one gone. The changed file gets a new inode (rename, no "text file busy").
      const release2 = makeKataArtifacts(tempDir("rel2"), TINY, "3.24.0");
      fs.rmSync(path.join(release2, "opt/kata/bin/kata-collect-data.sh"));
      fs.rmSync(path.join(release2, "opt/kata/share/kata-qemu"), { recursive: true });
      const shim = path.join(root, "opt/kata/bin/containerd-shim-kata-v2");
      const shimInode = fs.statSync(shim).ino;
      ok(runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", release2, "--shims", "qemu"]));
      assert.notEqual(fs.statSync(shim).ino, shimInode);
      assert.match(fs.readFileSync(shim, "utf8"), /3\.24\.0/);
      assert.ok(!fs.existsSync(path.join(root, "opt/kata/bin/kata-collect-data.sh")), "a file the new release no longer ships is removed");
      assert.ok(!fs.existsSync(path.join(root, "opt/kata/share/kata-qemu")), "directories of the old release are removed");
      assert.deepEqual(snapshot(path.join(root, "opt/kata"), ours), snapshot(path.join(release2, "opt/kata")));
      ok(runAgent(uninstallArgs(shape, root)));
      assert.deepEqual(fs.readdirSync(root), [], "opt/ and opt/kata were created by us and are removed");
    });

    it("empties a mount point at the prefix instead of removing it, and keeps files that are not ours @integration", function () {
      const root = makeHost();
      const prefix = path.join(root, "opt/kata");
      fs.mkdirSync(prefix, { recursive: true });
      try {
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", prefix]);
      } catch {
        if (IN_CI) throw new Error("mount(8) of a tmpfs failed; CI runs as root and must be able to");
        this.skip();
      }
      try {
        fs.writeFileSync(path.join(prefix, "NOTES.txt"), "operator's file\n");
        ok(runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu"]));
        ok(runAgent(["uninstall", "--runtime", "crio", "--host-root", root]));
        assert.deepEqual(fs.readdirSync(prefix), ["NOTES.txt"]);
        fs.rmSync(path.join(prefix, "NOTES.txt"));
        ok(runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu"]));
        ok(runAgent(["uninstall", "--runtime", "crio", "--host-root", root]));
        assert.deepEqual(fs.readdirSync(prefix), [], "the mount point is emptied");
        assert.match(execFileSync("findmnt", ["-n", "-o", "TARGET", prefix], { encoding: "utf8" }), /opt\/kata/, "and still mounted");
      } finally {
        execFileSync("umount", [prefix]);
      }
    });

    it("keeps the artifacts while another runtime still uses them", function () {
      const root = makeHost({ "/etc/docker/daemon.json": DAEMON_JSON });
      ok(runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu"]));
      ok(runAgent(["install", "--runtime", "docker", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu", "--docker-runtime-form", "runc"]));
      ok(runAgent(["uninstall", "--runtime", "crio", "--host-root", root]));
      assert.ok(fs.existsSync(path.join(root, "opt/kata/bin/containerd-shim-kata-v2")));
      assert.deepEqual(missingReferences(root, ["/etc/docker/daemon.json"]), []);
      ok(runAgent(["uninstall", "--runtime", "docker", "--host-root", root]));
      assert.ok(!fs.existsSync(path.join(root, "opt")));
      assert.equal(read(root, "/etc/docker/daemon.json"), DAEMON_JSON);
    });
  });

  describe("restart through systemd", function () {
    it("rolls back when the runtime does not come back with the new config, and exits non-zero naming the unit", function () {
      const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
      const before = snapshot(root, (rel) => rel.startsWith("opt"));
      // The fake containerd "fails to start" whenever its config imports our drop-in.
      const systemd = fakeSystemd(root, { hostPath: "/etc/containerd/config.toml", needle: "kata-deploy" });
      const result = runAgent(["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts(), "--restart", "systemd"], isolatedEnv(systemd.env));
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stderr.trim(), /^kata-deploy: containerd: did not come back healthy .*restored the previous \/etc\/containerd\/config\.toml/);
      assert.deepEqual(snapshot(root, (rel) => rel.startsWith("opt")), before, "the configs are back to the bytes before the install");
      const restarts = systemd.calls().filter((call) => call.startsWith("restart "));
      assert.deepEqual(restarts, ["restart containerd", "restart containerd"], "restarted with the new config, then again with the old one");
      assert.equal(runAgent(["status", "--host-root", root, "--ready", "--runtime", "containerd"]).code, 1, "not ready after a rollback");
    });

    it("kata-deploy-docker install|remove runs the seed's Docker flow (reload, then restore)", function () {
      const root = makeHost({ "/etc/docker/daemon.json": DAEMON_JSON });
      const systemd = fakeSystemd(root);
      const env = isolatedEnv(systemd.env);
      ok(runAgent(["docker", "install", "--host-root", root, "--artifacts", artifacts(), "--docker-runtime-form", "shim-v2"], env));
      const daemon = JSON.parse(read(root, "/etc/docker/daemon.json")) as { runtimes: Record<string, { runtimeType: string }> };
      assert.deepEqual(Object.keys(daemon.runtimes).sort(), ["kata-fc", "kata-qemu"]);
      assert.equal(daemon.runtimes["kata-qemu"].runtimeType, "/opt/kata/bin/containerd-shim-kata-v2");
      ok(runAgent(["docker", "remove", "--host-root", root], env));
      assert.equal(read(root, "/etc/docker/daemon.json"), DAEMON_JSON);
      // install; removal: the step that makes dockerd drop the runtimes (see below), then the restore.
      assert.deepEqual(systemd.calls().filter((call) => /^(reload|restart) /.test(call)), ["reload docker", "reload docker", "reload docker"]);
    });
  });
});

describe("agent lifecycle: Docker version detection and runtime verification", function () {
  after(removeTempDirs);
  const dockerInstall = (root: string, ...more: string[]): string[] => ["install", "--runtime", "docker", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc", ...more];
  type DaemonJson = { runtimes: Record<string, { runtimeType?: string; path?: string; runtimeArgs?: string[]; options?: { ConfigPath?: string } }> };

  it("without a Docker socket, assumes Docker >= 23 (shim-v2) and says how to override and how to verify", async function () {
    const root = makeHost({ "/etc/docker/daemon.json": DAEMON_JSON });
    const result = await runAgentAsync(dockerInstall(root));
    assert.equal(result.code, 0, result.stderr);
    const daemon = JSON.parse(read(root, "/etc/docker/daemon.json")) as DaemonJson;
    assert.deepEqual(daemon.runtimes["kata-qemu"], {
      runtimeType: "/opt/kata/bin/containerd-shim-kata-v2",
      // The handler's own copy of the release's configuration, next to its config.d (lifecycle/kata-config.ts).
      options: { ConfigPath: "/opt/kata/share/defaults/kata-containers/runtimes/docker/kata-qemu/configuration-qemu.toml" },
    });
    const assumed = result.stdout.split("\n").filter((line) => /assuming Docker >= 23/.test(line));
    assert.equal(assumed.length, 1, result.stdout);
    assert.match(assumed[0], /--docker-runtime-form runc for Docker < 23/);
    assert.match(assumed[0], /mount \/var\/run\/docker\.sock/);
    assert.equal(result.stderr, "");
  });

  it("reads the version over the Engine API socket: Docker 20.10 gets the runc form", async function () {
    const root = makeHost({ "/etc/docker/daemon.json": DAEMON_JSON });
    const engine = await fakeDockerEngine(root, { version: "20.10.24+dfsg1", reloads: true });
    try {
      const result = await runAgentAsync(dockerInstall(root));
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(engine.requests, ["GET /version"], "--restart none: only the version is read");
      const daemon = JSON.parse(read(root, "/etc/docker/daemon.json")) as DaemonJson;
      // Docker < 23 ignores runtimeType; the runc form names an OCI runtime binary.
      assert.equal(daemon.runtimes["kata-qemu"].runtimeType, undefined);
      assert.equal(daemon.runtimes["kata-qemu"].path, "/opt/kata/bin/kata-runtime");
      assert.match(result.stdout, /docker 20\.10 \(from Docker Engine API at .*docker\.sock\): runc runtime form/);
    } finally {
      await engine.close();
    }
  });

  it("with the socket, verifies after the reload that the daemon lists the Kata runtimes (GET /info)", async function () {
    const root = makeHost({ "/etc/docker/daemon.json": DAEMON_JSON });
    const engine = await fakeDockerEngine(root, { version: "26.1.5+dfsg1", reloads: true });
    const systemd = fakeSystemd(root);
    try {
      const result = await runAgentAsync(dockerInstall(root, "--restart", "systemd"), isolatedEnv(systemd.env));
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(systemd.calls().filter((call) => /^(reload|restart) /.test(call)), ["reload docker"]);
      assert.ok(engine.requests.includes("GET /info"), engine.requests.join(", "));
      assert.match(result.stdout, /verified: docker lists kata-qemu, kata-fc \(GET \/info on .*docker\.sock\)/);
      assert.equal((JSON.parse(read(root, "/etc/docker/daemon.json")) as DaemonJson).runtimes["kata-fc"].runtimeType, "/opt/kata/bin/containerd-shim-kata-v2");
    } finally {
      await engine.close();
    }
  });

  it("removal makes dockerd drop the runtimes with a reload (it keeps them when daemon.json loses the `runtimes` key), then restores the file exactly", async function () {
    const root = makeHost({ "/etc/docker/daemon.json": DAEMON_JSON });
    // A daemon that, like dockerd, replaces its runtime table on reload only when the file sets `runtimes`.
    const engine = await fakeDockerEngine(root, { version: "26.1.5", reloads: true, keepsRuntimesWithoutKey: true });
    const systemd = fakeSystemd(root);
    const env = isolatedEnv(systemd.env);
    try {
      assert.equal((await runAgentAsync(dockerInstall(root, "--restart", "systemd"), env)).code, 0);
      const result = await runAgentAsync(["uninstall", "--runtime", "docker", "--host-root", root, "--restart", "systemd"], env);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(read(root, "/etc/docker/daemon.json"), DAEMON_JSON, "byte for byte the original");
      assert.match(result.stdout, /verified: docker no longer lists kata-qemu, kata-fc/);
      assert.deepEqual(engine.loadedRuntimes().filter((name) => name.startsWith("kata-")), [], "the daemon no longer has them");
    } finally {
      await engine.close();
    }
  });

  it("with the socket, a daemon that does not pick up the runtimes fails the install and gets its daemon.json back", async function () {
    const root = makeHost({ "/etc/docker/daemon.json": DAEMON_JSON });
    const engine = await fakeDockerEngine(root, { version: "26.1.5", reloads: false });
    const systemd = fakeSystemd(root);
    try {
      const result = await runAgentAsync(dockerInstall(root, "--restart", "systemd"), isolatedEnv(systemd.env));
      assert.equal(result.code, 1, result.stdout);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^kata-deploy: docker: did not come back healthy .*does not list runtime\(s\) kata-qemu, kata-fc.*restored the previous \/etc\/docker\/daemon\.json/);
      assert.equal(read(root, "/etc/docker/daemon.json"), DAEMON_JSON, "daemon.json is back byte for byte");
      assert.deepEqual(systemd.calls().filter((call) => /^(reload|restart) /.test(call)), ["reload docker", "reload docker"], "reloaded with the new file, then with the old one");
    } finally {
      await engine.close();
    }
  });
});

describe("agent lifecycle: planner notices", function () {
  after(removeTempDirs);

  it("logs that a platform's own `untrusted` runtime is left alone (and keeps it)", function () {
    const platformUntrusted = `${CONTAINERD_V2}[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.untrusted]\n  runtime_type = "io.containerd.runc.v2"\n`;
    const root = makeHost({ "/etc/containerd/config.toml": platformUntrusted });
    const result = runAgent(["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts()]);
    assert.equal(result.code, 0, result.stderr);
    const notices = result.stdout.split("\n").filter((line) => line.includes("notice:"));
    assert.equal(notices.length, 1, result.stdout);
    assert.match(notices[0], /containerd config: runtime `untrusted` is already defined at \/etc\/containerd\/config\.toml:\d+/);
    const runtimes = (parseToml(read(root, "/etc/containerd/config.toml")) as { plugins: Record<string, { containerd: { runtimes: Record<string, { runtime_type: string }> } }> }).plugins["io.containerd.grpc.v1.cri"].containerd.runtimes;
    assert.equal(runtimes.untrusted.runtime_type, "io.containerd.runc.v2");
    assert.ok(runtimes["kata-qemu"]);
  });
});

/** The text of every file the containerd main config imports (to look for our stanzas in drop-ins). */
function collectImports(root: string): string {
  const main = parseToml(read(root, "/etc/containerd/config.toml")) as { imports?: string[] };
  return (main.imports ?? []).filter((entry) => fs.existsSync(path.join(root, entry))).map((entry) => read(root, entry)).join("\n");
}
