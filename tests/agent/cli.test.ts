// The agent's command-line contract and its refusals: every bad input is refused with exactly one
// stderr line that names the file (or flag) and the problem, and the host is left byte-for-byte as it was.
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { IN_CI } from "../support/env";
import { AGENT_BUNDLE, artifacts, makeHost, removeTempDirs, runAgent, runAgentProcess, snapshot, spawnAgent } from "./agent-harness";

const V2_WITH_MIRROR = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://mirror.example"]\n';

interface Refusal {
  name: string;
  files?: Record<string, string>;
  /** Extra setup on the host root (symlinks, directories). */
  setup?: (root: string) => void;
  args: (root: string) => string[];
  /** What the single stderr line must contain (the file or flag, and the problem). */
  expect: RegExp[];
}

const install = (runtime: string, root: string, ...extra: string[]): string[] => ["install", "--runtime", runtime, "--host-root", root, "--artifacts", artifacts(), ...extra];

const CORPUS: Refusal[] = [
  { name: "unknown command", args: () => ["frobnicate"], expect: [/unknown command frobnicate/] },
  { name: "unknown option", args: (root) => [...install("containerd", root), "--colour", "blue"], expect: [/--colour/] },
  { name: "unknown runtime", args: (root) => install("podman", root), expect: [/--runtime podman: must be one of containerd, crio, docker/] },
  { name: "missing --runtime", args: (root) => ["install", "--host-root", root, "--artifacts", artifacts()], expect: [/--runtime is required/] },
  { name: "missing --host-root", args: () => ["install", "--runtime", "crio", "--artifacts", artifacts()], expect: [/--host-root is required/] },
  { name: "host root is not a directory", args: (root) => install("crio", path.join(root, "nope")), expect: [/--host-root .*nope: not a directory/] },
  { name: "artifacts without opt/kata", args: (root) => ["install", "--runtime", "crio", "--host-root", root, "--artifacts", root], expect: [/--artifacts .*: has no opt\/kata directory/] },
  { name: "default shim not among shims", args: (root) => install("crio", root, "--shims", "qemu", "--default-shim", "fc"), expect: [/--default-shim fc: must be one of --shims \(qemu\)/] },
  { name: "shim the release does not ship", args: (root) => install("crio", root, "--shims", "qemu,nosuch"), expect: [/--shims nosuch: the artifacts have no .*configuration-nosuch\.toml/] },
  { name: "shim listed twice", args: (root) => install("crio", root, "--shims", "qemu,qemu"), expect: [/--shims qemu,qemu: lists a shim twice/] },
  { name: "restart mode", args: (root) => install("crio", root, "--restart", "sometimes"), expect: [/--restart sometimes: must be one of none, systemd/] },
  { name: "relative prefix", args: (root) => install("crio", root, "--prefix", "opt/kata"), expect: [/--prefix opt\/kata: must be an absolute directory/] },
  { name: "bad label prefix", args: (root) => install("crio", root, "--label-prefix", "Not A Domain"), expect: [/--label-prefix Not A Domain/] },
  // Startup taints (issue 12 point 5): checked before anything is installed.
  { name: "startup taint with an unknown effect", args: (root) => install("crio", root, "--startup-taints", "example.com/kata-not-ready:NoRun"), expect: [/--startup-taints example\.com\/kata-not-ready:NoRun: entry "example\.com\/kata-not-ready:NoRun": effect "NoRun" is not one of NoSchedule, PreferNoSchedule, NoExecute/] },
  { name: "startup taint key that is not a qualified name", args: (root) => install("crio", root, "--startup-taints", "Example.com/kata"), expect: [/--startup-taints Example\.com\/kata: entry "Example\.com\/kata": "Example\.com\/kata" is not a taint key/] },
  { name: "startup taint listed twice", args: (root) => install("crio", root, "--startup-taints", "example.com/a,example.com/a:NoSchedule"), expect: [/entry "example\.com\/a:NoSchedule": overlaps an earlier entry for key example\.com\/a/] },
  {
    name: "malformed containerd TOML",
    files: { "/etc/containerd/config.toml": 'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n' },
    args: (root) => install("containerd", root),
    expect: [/\/etc\/containerd\/config\.toml: /],
  },
  {
    name: "duplicate containerd table",
    files: { "/etc/containerd/config.toml": "version = 2\n[plugins.x]\na = 1\n[plugins.x]\nb = 2\n" },
    args: (root) => install("containerd", root),
    expect: [/\/etc\/containerd\/config\.toml: /],
  },
  {
    name: "containerd config is a directory",
    setup: (root) => fs.mkdirSync(path.join(root, "etc/containerd/config.toml"), { recursive: true }),
    args: (root) => install("containerd", root),
    expect: [/\/etc\/containerd\/config\.toml: is a directory/],
  },
  {
    name: "containerd config is a symlink loop",
    setup: (root) => {
      fs.mkdirSync(path.join(root, "etc/containerd"), { recursive: true });
      fs.symlinkSync("loop.toml", path.join(root, "etc/containerd/config.toml"));
      fs.symlinkSync("config.toml", path.join(root, "etc/containerd/loop.toml"));
    },
    args: (root) => install("containerd", root),
    expect: [/\/etc\/containerd\/config\.toml: too many levels of symbolic links/],
  },
  {
    name: "containerd config is not UTF-8",
    setup: (root) => {
      fs.mkdirSync(path.join(root, "etc/containerd"), { recursive: true });
      fs.writeFileSync(path.join(root, "etc/containerd/config.toml"), Buffer.from([0x76, 0x65, 0x72, 0xff, 0xfe, 0x0a]));
    },
    args: (root) => install("containerd", root),
    expect: [/\/etc\/containerd\/config\.toml: is not valid UTF-8/],
  },
  {
    name: "malformed daemon.json",
    files: { "/etc/docker/daemon.json": '{\n  "log-driver": "json-file",\n' },
    args: (root) => install("docker", root, "--docker-runtime-form", "shim-v2"),
    expect: [/\/etc\/docker\/daemon\.json: /],
  },
  {
    name: "daemon.json that is not an object",
    files: { "/etc/docker/daemon.json": "[1, 2]\n" },
    args: (root) => install("docker", root, "--docker-runtime-form", "shim-v2"),
    expect: [/\/etc\/docker\/daemon\.json: /],
  },
  { name: "status --ready without --runtime", args: (root) => ["status", "--host-root", root, "--ready"], expect: [/--runtime is required/] },
  { name: "label without Kubernetes", args: () => ["label"], expect: [/label needs a Kubernetes API/] },
];

describe("agent CLI: refusals leave the host untouched", function () {
  after(removeTempDirs);

  for (const refusal of CORPUS) {
    it(`refuses: ${refusal.name}`, function () {
      const root = makeHost(refusal.files ?? {});
      refusal.setup?.(root);
      const before = snapshot(root);
      const result = runAgent(refusal.args(root));
      assert.notEqual(result.code, 0, "a refusal must exit non-zero");
      assert.notEqual(result.code, 2, `a refusal must not be an unexpected error:\n${result.stderr}`);
      const lines = result.stderr.split("\n").filter((line) => line !== "");
      assert.equal(lines.length, 1, `exactly one stderr line, got:\n${result.stderr}`);
      assert.match(lines[0], /^kata-deploy: /);
      for (const pattern of refusal.expect) assert.match(lines[0], pattern);
      assert.deepEqual(snapshot(root), before, "the host root must be unchanged");
    });
  }

  it("refuses a read-only config directory without writing anything @integration", function () {
    const root = makeHost({ "/etc/containerd/config.toml": V2_WITH_MIRROR });
    const dir = path.join(root, "etc/containerd");
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
    } catch {
      if (IN_CI) throw new Error("mount(8) of a tmpfs failed; CI runs as root and must be able to");
      this.skip();
    }
    try {
      fs.writeFileSync(path.join(dir, "config.toml"), "version = 3\n");
      execFileSync("mount", ["-o", "remount,ro", dir]);
      const before = snapshot(root);
      const result = runAgent(install("containerd", root));
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr.trim(), /^kata-deploy: \/etc\/containerd\/[^:]*: the file system is read-only/);
      assert.equal(result.stderr.trim().split("\n").length, 1);
      assert.deepEqual(snapshot(root), before);
    } finally {
      execFileSync("umount", [dir]);
    }
  });

  it("a full disk is one stderr line (no stack trace), and the same command finishes once there is room @integration", function () {
    const root = makeHost({ "/etc/crio/crio.conf": "[crio.runtime]\n" });
    const prefix = path.join(root, "opt/kata");
    fs.mkdirSync(prefix, { recursive: true });
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", prefix]);
    } catch {
      if (IN_CI) throw new Error("mount(8) of a tmpfs failed; CI runs as root and must be able to");
      this.skip();
    }
    try {
      const args = ["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu"];
      const result = runAgent(args);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^kata-deploy: ENOSPC: no space left on device, .*opt\/kata.*; fix that and run the same command again/);
      execFileSync("mount", ["-o", "remount,size=8m", prefix]);
      const again = runAgent(args);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(runAgent(["status", "--host-root", root, "--ready", "--runtime", "crio"]).code, 0);
    } finally {
      execFileSync("umount", [prefix]);
    }
  });

  // These three run the bundle as its process in every tier: the exit status is the process's.
  it("prints usage for --help and exits 0", function () {
    const result = runAgentProcess(["--help"]);
    assert.equal(result.code, 0);
    for (const command of ["install", "uninstall", "label", "reset", "status", "kata-deploy-docker"]) assert.match(result.stdout, new RegExp(command));
  });

  it("status of an empty host is valid JSON saying nothing is installed, and --ready fails", function () {
    const root = makeHost();
    const result = runAgentProcess(["status", "--host-root", root]);
    assert.equal(result.code, 0);
    const report = JSON.parse(result.stdout) as { installed: boolean; runtimes: object };
    assert.equal(report.installed, false);
    assert.deepEqual(report.runtimes, {});
    assert.equal(runAgentProcess(["status", "--host-root", root, "--ready", "--runtime", "containerd"]).code, 1);
  });

  it("an unexpected error's trace names the TypeScript sources, though Node maps nothing at start-up", function () {
    // A record with the right schema but no `runtimes` (a hand edit) is not validated field by field:
    // status then fails inside the agent, which is the "unexpected error (a bug ...)" path with a trace.
    const root = makeHost({ "/opt/kata/.kata-deploy/state.json": '{"schema":1,"prefix":"/opt/kata"}\n' });
    const result = runAgentProcess(["status", "--host-root", root]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /unexpected error \(a bug; please report it with this trace\): TypeError/);
    const frames = [...result.stderr.matchAll(/^ {4}at (?:.* \()?(\/[^():]+\.ts):(\d+):(\d+)\)?$/gm)];
    assert.ok(frames.length >= 2, `frames in the agent's sources expected:\n${result.stderr}`);
    assert.doesNotMatch(result.stderr, /kata-deploy\.cjs:\d+:\d+/, "a frame left in the bundle's coordinates");
    // Each mapped position is real: the file exists under the agent's src/, and the top frame's line is
    // the one doing what the error says (Object.keys of the missing runtimes record).
    const src = path.join(path.dirname(path.dirname(AGENT_BUNDLE)), "src");
    for (const [, file] of frames) assert.ok(file.startsWith(`${src}/`) && fs.existsSync(file), `${file}: not a source of the agent`);
    const [, topFile, topLine] = frames[0];
    assert.match(fs.readFileSync(topFile, "utf8").split("\n")[Number(topLine) - 1], /Object\.keys\(state\.runtimes\)/);
    // Node's --enable-source-maps reads the map and splits the bundle into lines at every start; the
    // bundle names no map for it to find, and the image's wrappers do not pass the flag.
    assert.doesNotMatch(fs.readFileSync(AGENT_BUNDLE, "utf8").slice(-300), /sourceMappingURL/);
    for (const wrapper of ["kata-deploy", "kata-deploy-docker"]) {
      assert.doesNotMatch(fs.readFileSync(path.join(__dirname, "../../images/kata-deploy", wrapper), "utf8"), /enable-source-maps/);
    }
  });

  it("uninstall on a host where nothing was installed is a no-op that succeeds", function () {
    const root = makeHost({ "/etc/containerd/config.toml": V2_WITH_MIRROR });
    const before = snapshot(root);
    const result = runAgent(["uninstall", "--runtime", "containerd", "--host-root", root]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(snapshot(root), before);
  });
});

describe("agent CLI: --daemon", function () {
  after(removeTempDirs);

  it("stays alive after a successful install until SIGTERM, then exits 0 without uninstalling", async function () {
    const root = makeHost({ "/etc/docker/daemon.json": "{}\n" });
    const child = spawnAgent(["install", "--runtime", "docker", "--host-root", root, "--artifacts", artifacts(), "--docker-runtime-form", "runc", "--daemon"]);
    const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    for (let i = 0; i < 100 && runAgent(["status", "--host-root", root, "--ready", "--runtime", "docker"]).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(child.exitCode, null, "still running after the install");
    child.kill("SIGTERM");
    assert.equal(await exit, 0);
    assert.equal(runAgent(["status", "--host-root", root, "--ready", "--runtime", "docker"]).code, 0, "still installed");
  });
});
