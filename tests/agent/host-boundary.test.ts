// The agent stays inside its host root and never destroys what is not its own (issue 10), through the
// real CLI on temp host roots: symlinked prefixes resolved as the host kernel resolves them, foreign
// files in the prefix refused, one host lock for every prefix, limits as one-line refusals, extended
// attributes and hard links on configs, and checks made before anything is copied.
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { IN_CI, commandWorks, requireTool } from "../support/env";
import { artifacts, isolatedEnv, makeHost, removeTempDirs, runAgent, runAgentAsync, snapshot, spawnAgent, tempDir, type AgentRun } from "./agent-harness";

const CONTAINERD_V3 = 'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n';
const CONTAINERD_V2 = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n';
const CRIO = "[crio.runtime]\n";

const install = (root: string, runtime = "containerd", ...extra: string[]): string[] => [
  "install", "--runtime", runtime, "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu", ...extra,
];
const uninstall = (root: string, runtime = "containerd", ...extra: string[]): string[] => ["uninstall", "--runtime", runtime, "--host-root", root, ...extra];

function ok(result: AgentRun): void {
  assert.equal(result.code, 0, `agent failed:\n${result.stderr}\n${result.stdout}`);
}

/** Exit 1 with exactly one stderr line matching every pattern. */
function refused(result: AgentRun, ...patterns: RegExp[]): string {
  assert.equal(result.code, 1, `expected a refusal (exit 1):\n${result.stderr}\n${result.stdout}`);
  const lines = result.stderr.split("\n").filter((line) => line !== "");
  assert.equal(lines.length, 1, `exactly one stderr line, got:\n${result.stderr}`);
  for (const pattern of patterns) assert.match(lines[0], pattern);
  return lines[0];
}

/** A directory of this machine outside every host root, with a decoy where a symlinked prefix would lead. */
function outsideWithDecoy(): { dir: string; decoy: string; before: ReturnType<typeof snapshot> } {
  const dir = tempDir("outside");
  const decoy = path.join(dir, "kata/bin/kata-runtime");
  fs.mkdirSync(path.dirname(decoy), { recursive: true });
  fs.writeFileSync(decoy, "#!/bin/sh\necho 'not kata-deploy's: must survive'\n");
  return { dir, decoy, before: snapshot(dir) };
}

describe("agent host boundary: paths resolve inside the host root", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  const linkShapes: { name: string; link: (root: string, outside: string) => string }[] = [
    { name: "/opt is an absolute symlink (re-rooted at the host root)", link: (_root, outside) => outside },
    // From <root>/opt, enough `..` to climb above this machine's `/`: the host clamps them at its root.
    { name: "/opt is a relative symlink whose `..` climb above the root (clamped at the root)", link: (_root, outside) => `${"../".repeat(12)}${outside.slice(1)}` },
  ];
  for (const shape of linkShapes) {
    it(`${shape.name}: install and uninstall never touch the link's target outside the root`, function () {
      const outside = outsideWithDecoy();
      const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
      // The host sees the same path under its own root; give it that directory so the link is valid there.
      fs.mkdirSync(path.join(root, outside.dir), { recursive: true });
      fs.symlinkSync(shape.link(root, outside.dir), path.join(root, "opt"));
      const original = snapshot(root);
      ok(runAgent(install(root)));
      assert.deepEqual(snapshot(outside.dir), outside.before, "nothing written outside the host root");
      assert.ok(fs.existsSync(path.join(root, outside.dir, "kata/bin/containerd-shim-kata-v2")), "the release is where the host sees /opt/kata");
      assert.ok(fs.existsSync(path.join(root, outside.dir, "kata/.kata-deploy/state.json")), "and its record with it");
      assert.match(fs.readFileSync(path.join(root, "etc/containerd/conf.d/99-kata-deploy.toml"), "utf8"), /runtime_path = "\/opt\/kata\/bin\/containerd-shim-kata-v2"/);
      ok(runAgent(["status", "--host-root", root, "--ready", "--runtime", "containerd"]));
      ok(runAgent(uninstall(root)));
      assert.deepEqual(snapshot(outside.dir), outside.before, "nothing deleted outside the host root");
      assert.deepEqual(snapshot(root), original, "the host root is back as it was");
    });
  }

  it("/opt links to a directory that exists only inside the host root: install works there, uninstall restores", function () {
    const only = `/kata-inside-only-${randomBytes(4).toString("hex")}`;
    assert.ok(!fs.existsSync(only));
    const root = makeHost({ "/etc/crio/crio.conf": CRIO });
    fs.mkdirSync(path.join(root, only));
    fs.symlinkSync(only, path.join(root, "opt"));
    const original = snapshot(root);
    ok(runAgent(install(root, "crio")));
    assert.ok(fs.existsSync(path.join(root, only, "kata/bin/containerd-shim-kata-v2")));
    assert.ok(!fs.existsSync(only), "nothing created at that path outside the root");
    ok(runAgent(uninstall(root, "crio")));
    assert.deepEqual(snapshot(root), original);
  });

  it("a prefix that resolves to the host's / is refused in one line", function () {
    const root = makeHost({ "/etc/crio/crio.conf": CRIO });
    // `..` from /kata is the host's / (and, for an agent that followed links here instead of as the
    // host does, only the temp host root: never point a test link at this machine's real `/`).
    fs.symlinkSync("..", path.join(root, "kata"));
    const before = snapshot(root);
    refused(runAgent(install(root, "crio", "--prefix", "/kata")), /--prefix \/kata: resolves to \/ on the host/);
    assert.deepEqual(snapshot(root), before);
  });
});

describe("agent host boundary: files in the prefix that are not the agent's", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  const foreign: { name: string; setup: (prefix: string) => void; expect: RegExp }[] = [
    {
      name: "a hand-installed bin/kata-runtime",
      setup: (prefix) => {
        fs.mkdirSync(path.join(prefix, "bin"), { recursive: true });
        fs.writeFileSync(path.join(prefix, "bin/kata-runtime"), "#!/bin/sh\necho mine\n", { mode: 0o755 });
      },
      expect: /bin\/kata-runtime \(a file\)/,
    },
    {
      name: "a firmware file at a release path",
      setup: (prefix) => {
        fs.mkdirSync(path.join(prefix, "share/kata-qemu/qemu/dir0"), { recursive: true });
        fs.writeFileSync(path.join(prefix, "share/kata-qemu/qemu/dir0/fw-0.bin"), "vendor firmware");
      },
      expect: /share\/kata-qemu\/qemu\/dir0\/fw-0\.bin \(a file\)/,
    },
    {
      name: "a user's symlink where the release has a directory",
      setup: (prefix) => {
        fs.mkdirSync(path.join(prefix, "share"), { recursive: true });
        fs.mkdirSync(path.join(path.dirname(prefix), "qemu-firmware"));
        fs.symlinkSync("../../qemu-firmware", path.join(prefix, "share/kata-qemu"));
      },
      expect: /share\/kata-qemu \(a symlink\)/,
    },
  ];
  for (const shape of foreign) {
    it(`refuses to install over ${shape.name}, changing nothing`, function () {
      const root = makeHost({ "/etc/crio/crio.conf": CRIO });
      shape.setup(path.join(root, "opt/kata"));
      const before = snapshot(root);
      refused(runAgent(install(root, "crio")), /opt\/kata: holds /, shape.expect, /kata-deploy did not install/);
      assert.deepEqual(snapshot(root), before);
    });
  }

  it("--artifacts pointing at the host's own /opt/kata (a release unpacked there by hand) is refused, and nothing is deleted", function () {
    const root = makeHost({ "/etc/crio/crio.conf": CRIO });
    execFileSync("cp", ["-a", path.join(artifacts(), "opt"), root]);
    const before = snapshot(root);
    refused(runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", root, "--shims", "qemu"]), /is the install prefix \/opt\/kata itself/);
    assert.deepEqual(snapshot(root), before);
    ok(runAgent(uninstall(root, "crio")));
    assert.deepEqual(snapshot(root), before, "uninstall finds nothing of its own and deletes nothing");
  });
});

/** A process stopped by SIGSTOP (its /proc state is T). */
async function waitStopped(pid: number): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (/^\d+ \(.*\) T /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"))) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`agent ${pid} never stopped at its test point`);
}

/** Until some process waits (blocked) for a flock on the inode of `dir`. */
async function waitForLockWaiter(dir: string): Promise<void> {
  const ino = fs.statSync(dir).ino;
  for (let i = 0; i < 3000; i++) {
    const blocked = fs.readFileSync("/proc/locks", "utf8").split("\n").filter((line) => /->\s+FLOCK/.test(line));
    if (blocked.some((line) => line.split(/\s+/).some((field) => field.endsWith(`:${ino}`)))) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`nobody waits for the lock on ${dir}`);
}

describe("agent host boundary: two prefixes on one host", function () {
  this.timeout(180_000);
  after(removeTempDirs);

  it("a second prefix for the same runtime waits for the host lock, then is refused; the first install is untouched", async function () {
    const original = snapshot(makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 }));
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
    // The first install stops holding the lock, with its prefix built but not yet in place.
    const first = spawnAgent(install(root), isolatedEnv({ KATA_DEPLOY_TEST_STOP_AT: "install:prefix-staged" }));
    const firstExit = new Promise<number | null>((resolve) => first.on("exit", (code) => resolve(code)));
    await waitStopped(first.pid as number);
    const second = runAgentAsync(install(root, "containerd", "--prefix", "/opt/kata2"));
    try {
      await waitForLockWaiter(root); // the host lock is one for every prefix
    } finally {
      first.kill("SIGCONT");
    }
    assert.equal(await firstExit, 0);
    refused(await second, /containerd is already configured for Kata by kata-deploy with --prefix \/opt\/kata /);
    const installed = snapshot(root);
    assert.deepEqual(fs.readdirSync(path.join(root, "opt")), ["kata"], "the refused install left no /opt/kata2");
    assert.doesNotMatch(fs.readFileSync(path.join(root, "etc/containerd/conf.d/99-kata-deploy.toml"), "utf8"), /kata2/);
    ok(runAgent(uninstall(root, "containerd", "--prefix", "/opt/kata2")));
    assert.deepEqual(snapshot(root), installed, "removing the second install leaves the first intact");
    ok(runAgent(uninstall(root)));
    assert.deepEqual(snapshot(root), original);
  });

  for (const order of ["second removed first", "first removed first"] as const) {
    it(`two prefixes for two runtimes (/opt/kata containerd, /opt/kata2 CRI-O), ${order}: each removal leaves the other intact, the last removes the /opt the first created`, function () {
      const files = { "/etc/containerd/config.toml": CONTAINERD_V3, "/etc/crio/crio.conf": CRIO };
      const original = snapshot(makeHost(files));
      const root = makeHost(files);
      ok(runAgent(install(root)));
      const firstOnly = snapshot(root);
      ok(runAgent(install(root, "crio", "--prefix", "/opt/kata2")));
      // Everything but the containerd install: /opt, /opt/kata2/**, the CRI-O drop-in.
      const crioPart = (): ReturnType<typeof snapshot> => snapshot(root, (rel) => rel === "opt/kata" || rel === "etc/containerd");
      const crioInstalled = crioPart();
      if (order === "second removed first") {
        ok(runAgent(uninstall(root, "crio", "--prefix", "/opt/kata2")));
        assert.deepEqual(snapshot(root), firstOnly);
        ok(runAgent(uninstall(root)));
      } else {
        ok(runAgent(uninstall(root)));
        assert.deepEqual(crioPart(), crioInstalled, "the CRI-O install is intact");
        ok(runAgent(uninstall(root, "crio", "--prefix", "/opt/kata2")));
      }
      assert.deepEqual(snapshot(root), original, "no empty /opt left behind");
    });
  }
});

describe("agent host boundary: limits are one-line refusals that change nothing", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  const cases: { name: string; setup: (root: string) => void; args: (root: string) => string[]; env?: (root: string) => Record<string, string>; expect: RegExp[] }[] = [
    {
      name: "daemon.json nested 5,000 deep",
      setup: (root) => {
        fs.mkdirSync(path.join(root, "etc/docker"), { recursive: true });
        fs.writeFileSync(path.join(root, "etc/docker/daemon.json"), `{"x": ${"[".repeat(5000)}${"]".repeat(5000)}}\n`);
      },
      args: (root) => install(root, "docker", "--docker-runtime-form", "shim-v2"),
      expect: [/^kata-deploy: \/etc\/docker\/daemon\.json: line 1, column \d+: nested more than 1000 levels deep/],
    },
    {
      name: "a containerd config over 2 GiB (sparse)",
      setup: (root) => {
        fs.mkdirSync(path.join(root, "etc/containerd"), { recursive: true });
        fs.writeFileSync(path.join(root, "etc/containerd/config.toml"), "version = 2\n");
        fs.truncateSync(path.join(root, "etc/containerd/config.toml"), 3 * 2 ** 30);
      },
      args: (root) => install(root),
      expect: [/^kata-deploy: \/etc\/containerd\/config\.toml: is 3\.0 GiB, more than the 64 MiB kata-deploy reads from a config file/],
    },
    {
      name: "a 700 MiB daemon.json (sparse)",
      setup: (root) => {
        fs.mkdirSync(path.join(root, "etc/docker"), { recursive: true });
        fs.writeFileSync(path.join(root, "etc/docker/daemon.json"), "{}");
        fs.truncateSync(path.join(root, "etc/docker/daemon.json"), 700 * 2 ** 20);
      },
      args: (root) => install(root, "docker", "--docker-runtime-form", "shim-v2"),
      expect: [/^kata-deploy: \/etc\/docker\/daemon\.json: is 700 MiB, more than the 64 MiB/],
    },
    {
      name: "a kubeconfig whose server is http://",
      setup: (root) => {
        fs.writeFileSync(
          path.join(root, "kubeconfig"),
          "apiVersion: v1\nkind: Config\nclusters:\n- name: plain\n  cluster: {server: 'http://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t0ps3cret}\ncontexts:\n- name: c\n  context: {cluster: plain, user: u}\ncurrent-context: c\n",
        );
      },
      args: () => ["label", "--node", "n1"],
      env: (root) => ({ KUBECONFIG: path.join(root, "kubeconfig") }),
      expect: [/^kata-deploy: KUBECONFIG .*kubeconfig: cluster plain has server http:\/\/127\.0\.0\.1:1, plain HTTP, which the Kubernetes client refuses; use the https:\/\//],
    },
  ];
  /** The tree with big files as size + mtime (hashing GiBs of zeros would cost minutes). */
  const cheapSnapshot = (root: string): unknown[] => {
    const big = (rel: string): boolean => fs.lstatSync(path.join(root, rel)).size > 1 << 20;
    const stats = Object.entries(snapshot(root, big));
    const bigOnes = fs.readdirSync(root, { recursive: true, encoding: "utf8" }).filter((rel) => fs.lstatSync(path.join(root, rel)).isFile() && big(rel));
    return [stats, bigOnes.map((rel) => [rel, fs.statSync(path.join(root, rel)).size, fs.statSync(path.join(root, rel)).mtimeMs])];
  };
  for (const kase of cases) {
    it(kase.name, function () {
      const root = makeHost();
      kase.setup(root);
      const before = cheapSnapshot(root);
      const line = refused(runAgent(kase.args(root), isolatedEnv(kase.env?.(root) ?? {})), ...kase.expect);
      assert.doesNotMatch(line, /t0ps3cret/);
      assert.deepEqual(cheapSnapshot(root), before);
    });
  }
});

const python = "/usr/bin/python3";
const xattr = (file: string, name: string, value?: string): string => {
  const script = value === undefined ? "import os,sys; print(os.getxattr(sys.argv[1], sys.argv[2]).decode())" : "import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())";
  return execFileSync(python, ["-c", script, file, name, ...(value === undefined ? [] : [value])], { encoding: "utf8" }).trim();
};

describe("agent host boundary: config file metadata", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  it("keeps a config's extended attributes through install and uninstall (user.* here; SELinux labels go the same way) @integration", function () {
    requireTool(this, "python3 (to set xattrs)", commandWorks(python));
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V2 });
    const config = path.join(root, "etc/containerd/config.toml");
    xattr(config, "user.kata-test", "ops-label");
    ok(runAgent(install(root)));
    assert.match(fs.readFileSync(config, "utf8"), /kata-qemu/);
    assert.equal(xattr(config, "user.kata-test"), "ops-label", "kept on the new file");
    ok(runAgent(uninstall(root)));
    assert.equal(fs.readFileSync(config, "utf8"), CONTAINERD_V2);
    assert.equal(xattr(config, "user.kata-test"), "ops-label", "kept on the restored file");
  });

  it("a hard-linked config is replaced atomically, which splits the link: the agent says so, and the other name keeps the old bytes", function () {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V2 });
    const config = path.join(root, "etc/containerd/config.toml");
    fs.linkSync(config, path.join(root, "etc/containerd/config.toml.orig"));
    const result = runAgent(install(root));
    ok(result);
    assert.match(result.stdout, /\/etc\/containerd\/config\.toml has 2 hard links; it is replaced atomically .* its other names keep the old content/);
    assert.equal(fs.readFileSync(path.join(root, "etc/containerd/config.toml.orig"), "utf8"), CONTAINERD_V2);
    ok(runAgent(uninstall(root)));
    assert.equal(fs.readFileSync(config, "utf8"), CONTAINERD_V2);
  });
});

describe("agent host boundary: what can fail late is checked before anything is copied", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  function rootOnly(ctx: Mocha.Context, what: string, setup: () => void): boolean {
    try {
      setup();
      return true;
    } catch (error) {
      if (IN_CI) throw new Error(`${what} failed; CI runs as root and must be able to: ${(error as Error).message}`, { cause: error });
      ctx.skip();
      return false;
    }
  }

  it("an immutable config: refused up front naming the flag, not 'run the agent as root'; no /opt/kata", function () {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V2 });
    const config = path.join(root, "etc/containerd/config.toml");
    rootOnly(this, "chattr +i", () => execFileSync("chattr", ["+i", config]));
    try {
      const before = snapshot(root);
      const line = refused(runAgent(install(root)), /\/etc\/containerd\/config\.toml: is immutable or append-only/, /chattr -i/);
      assert.doesNotMatch(line, /as root/);
      assert.deepEqual(snapshot(root), before);
    } finally {
      execFileSync("chattr", ["-i", config]);
    }
  });

  it("a bind-mounted single config file (rename over it: EBUSY): refused up front; no /opt/kata @integration", function () {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V2 });
    const source = path.join(tempDir("bind-source"), "config.toml");
    fs.writeFileSync(source, CONTAINERD_V2);
    const config = path.join(root, "etc/containerd/config.toml");
    rootOnly(this, "mount --bind", () => execFileSync("mount", ["--bind", source, config]));
    try {
      const before = snapshot(root);
      refused(runAgent(install(root)), /\/etc\/containerd\/config\.toml: is a mount point of its own \(a bind-mounted file\)/);
      assert.deepEqual(snapshot(root), before);
    } finally {
      execFileSync("umount", [config]);
    }
  });

  it("no flock(1): refused before the prefix exists", function () {
    const root = makeHost({ "/etc/crio/crio.conf": CRIO });
    const bin = tempDir("bin");
    for (const tool of ["sh", "cat", "stat", "sync", "cp"]) fs.symlinkSync(execFileSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).trim(), path.join(bin, tool));
    const before = snapshot(root);
    refused(runAgent(install(root, "crio"), isolatedEnv({ PATH: bin })), /cannot take the host lock on .* with flock\(1\)/, /install util-linux/);
    assert.deepEqual(snapshot(root), before);
  });

  it("an unreadable release file (agent not root): refused naming it before anything is copied", function () {
    const root = makeHost({ "/etc/crio/crio.conf": CRIO });
    const release = tempDir("release");
    execFileSync("cp", ["-a", `${artifacts()}/.`, release]);
    const unreadable = path.join(release, "opt/kata/bin/kata-runtime");
    fs.chmodSync(unreadable, 0o000);
    for (const dir of [root, release]) execFileSync("chmod", ["-R", "go+rX", dir]);
    fs.chmodSync(unreadable, 0o000);
    execFileSync("chown", ["-R", "65534:65534", root]);
    const before = snapshot(root);
    const env = isolatedEnv();
    const result = runAsNobody(["install", "--runtime", "crio", "--host-root", root, "--artifacts", release, "--shims", "qemu"], env);
    refused(result, new RegExp(`${unreadable.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: cannot be read \\(EACCES\\)`));
    assert.deepEqual(snapshot(root), before);
  });

  it("ENOSPC while writing a config names the file, and the failed install leaves no /opt/kata @integration", function () {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V2 });
    const dir = path.join(root, "etc/containerd");
    rootOnly(this, "mount -t tmpfs", () => execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]));
    try {
      // A config that fits once, not twice (the new one is written next to it before the rename).
      fs.writeFileSync(path.join(dir, "config.toml"), `${CONTAINERD_V2}${"# padding to fill the file system\n".repeat(1100)}`);
      const before = snapshot(root);
      const line = refused(runAgent(install(root)), /ENOSPC: no space left on device, write '.*\/etc\/containerd\/\.config\.toml\.kata-deploy\.tmp'/);
      assert.doesNotMatch(line, /, write;/);
      assert.deepEqual(snapshot(root), before);
    } finally {
      execFileSync("umount", [dir]);
    }
  });
});

/** Runs the agent as nobody (uid 65534) with setpriv, for permission checks root would bypass. */
function runAsNobody(args: string[], env: NodeJS.ProcessEnv): AgentRun {
  try {
    const stdout = execFileSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, AGENT_FOR_NOBODY(), ...args], { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return { code: 0, stdout, stderr: "" };
  } catch (error) {
    const failed = error as { status: number | null; stdout: string; stderr: string };
    return { code: failed.status, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The bundle, copied where uid 65534 can read it (the worktree may not be readable to it). */
let bundleCopy: string | undefined;
function AGENT_FOR_NOBODY(): string {
  if (bundleCopy === undefined || !fs.existsSync(bundleCopy)) {
    const dir = tempDir("bundle");
    fs.chmodSync(dir, 0o755);
    bundleCopy = path.join(dir, "kata-deploy.cjs");
    fs.copyFileSync(process.env.KATA_DEPLOY_TEST_BUNDLE ?? path.resolve(__dirname, "../../images/kata-deploy/agent/dist/kata-deploy.cjs"), bundleCopy);
    fs.chmodSync(bundleCopy, 0o644);
  }
  return bundleCopy;
}
