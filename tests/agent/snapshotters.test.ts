// Snapshotter per shim and guest pull, through the real CLI: a snapshotter the node's containerd does not
// have is refused before anything changes (asked with `ctr plugins ls`), a mapping for a shim that is not
// installed is refused, and what is applied is removed exactly. Stand-ins at the host-command boundary
// (KATA_DEPLOY_SYSTEMCTL, KATA_DEPLOY_CTR), modelled on their sources:
// - ctr (containerd cmd/ctr/commands/plugins/plugins.go): `plugins ls` prints a tabwriter table
//   "TYPE ID PLATFORMS STATUS", status ok|skip|error (skip: the plugin returned ErrSkipPlugin, as devmapper
//   does without a pool configured); `--address` picks the socket.
// - systemctl: as in agent-harness.ts (units active).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { artifacts, fakeSystemd, isolatedEnv, makeHost, removeTempDirs, runAgent, snapshot, tempDir } from "./agent-harness";

const CONTAINERD_V3 = 'version = 3\n\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n';
const DROP_IN = "/etc/containerd/conf.d/99-kata-deploy.toml";

/** `ctr plugins ls` as containerd 2.1 prints it on a node with devmapper in the given state. */
function pluginTable(devmapper: "ok" | "skip" | undefined): string {
  const rows = [
    ["TYPE", "ID", "PLATFORMS", "STATUS"],
    ["io.containerd.content.v1", "content", "-", "ok"],
    ["io.containerd.snapshotter.v1", "native", "linux/amd64", "ok"],
    ["io.containerd.snapshotter.v1", "overlayfs", "linux/amd64", "ok"],
    ...(devmapper ? [["io.containerd.snapshotter.v1", "devmapper", "linux/amd64", devmapper]] : []),
    ["io.containerd.snapshotter.v1", "zfs", "linux/amd64", "skip"],
    ["io.containerd.grpc.v1", "cri", "linux/amd64", "ok"],
    ["io.containerd.cri.v1", "images", "-", "ok"],
    ["io.containerd.cri.v1", "runtime", "linux/amd64", "ok"],
  ];
  return rows.map((cols) => cols.map((col, i) => col.padEnd([32, 14, 15, 6][i])).join("") + "\n").join("");
}

/** A ctr stand-in that logs its arguments and prints `table`. */
function fakeCtr(table: string): { env: Record<string, string>; calls: () => string[] } {
  const dir = tempDir("ctr");
  const log = path.join(dir, "ctr.log");
  fs.writeFileSync(path.join(dir, "table"), table);
  fs.writeFileSync(path.join(dir, "ctr"), `#!/bin/sh\necho "$*" >> '${log}'\ncat '${path.join(dir, "table")}'\n`, { mode: 0o755 });
  return { env: { KATA_DEPLOY_CTR: path.join(dir, "ctr") }, calls: () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n") : []) };
}

const install = (root: string, ...more: string[]): string[] => ["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc", ...more];

describe("snapshotter per shim and guest pull (agent)", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  it("refuses a snapshotter the node's containerd lists as skipped, naming snapshotter, shim and fix, and changes nothing", () => {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
    const before = snapshot(root);
    const ctr = fakeCtr(pluginTable("skip"));
    const result = runAgent(install(root, "--restart", "systemd"), isolatedEnv({ ...fakeSystemd(root).env, ...ctr.env, SNAPSHOTTER_HANDLER_MAPPING: "fc:devmapper" }));
    assert.equal(result.code, 1, result.stdout);
    assert.equal(
      result.stderr,
      'kata-deploy: snapshotter "devmapper" for shim fc (kata-fc): this node\'s containerd lists it with status skip, so kata-fc could not pull or start images; kata-deploy does not install snapshotters: set it up in containerd on this node first, or map fc to one it has (native, overlayfs); nothing was changed\n',
    );
    assert.deepEqual(ctr.calls(), ["plugins ls"], "asked ctr at containerd's default socket");
    assert.deepEqual(snapshot(root), before);
  });

  it("refuses a snapshotter containerd does not list at all; on k3s asks ctr at k3s's socket", () => {
    const dir = "/var/lib/rancher/k3s/agent/etc/containerd";
    const root = makeHost({ [`${dir}/config.toml`]: 'version = 3\n[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "overlayfs"\n' });
    const before = snapshot(root);
    const ctr = fakeCtr(pluginTable(undefined));
    const result = runAgent(install(root, "--restart", "systemd", "--containerd-flavor", "k3s"), isolatedEnv({ ...fakeSystemd(root).env, ...ctr.env, SNAPSHOTTER_HANDLER_MAPPING: "fc:devmapper" }));
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, /^kata-deploy: snapshotter "devmapper" for shim fc \(kata-fc\): this node's containerd does not have it \(not in `ctr plugins ls`\).*nothing was changed\n$/);
    assert.deepEqual(ctr.calls(), ["--address /run/k3s/containerd/containerd.sock plugins ls"]);
    assert.deepEqual(snapshot(root), before);
  });

  it("a snapshotter the node has: applied to the runtime and to the images plugin's runtime_platforms; uninstall removes both exactly", () => {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
    const before = snapshot(root);
    const env = isolatedEnv({ ...fakeSystemd(root).env, ...fakeCtr(pluginTable("ok")).env, SNAPSHOTTER_HANDLER_MAPPING: "fc:devmapper" });
    const result = runAgent(install(root, "--restart", "systemd"), env);
    assert.equal(result.code, 0, result.stderr);
    // Ordinary objects (smol-toml builds prototype-less ones, which strict deepEqual tells apart).
    const dropIn = JSON.parse(JSON.stringify(parseToml(fs.readFileSync(path.join(root, DROP_IN), "utf8")))) as Record<string, Record<string, Record<string, unknown>>>;
    const runtimes = (dropIn.plugins["io.containerd.cri.v1.runtime"].containerd as Record<string, Record<string, Record<string, unknown>>>).runtimes;
    assert.equal(runtimes["kata-fc"].snapshotter, "devmapper");
    assert.equal(runtimes["kata-qemu"].snapshotter, undefined);
    assert.deepEqual(dropIn.plugins["io.containerd.cri.v1.images"].runtime_platforms, { "kata-fc": { snapshotter: "devmapper" } });
    const removed = runAgent(["uninstall", "--runtime", "containerd", "--host-root", root, "--restart", "systemd"], env);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(snapshot(root), before);
  });

  it("without ctr on the host the snapshotter cannot be checked: the install goes on and the log says so", () => {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
    const result = runAgent(install(root, "--restart", "systemd"), isolatedEnv({ ...fakeSystemd(root).env, SNAPSHOTTER_HANDLER_MAPPING: "fc:devmapper" }));
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /warning: snapshotter devmapper: could not check that this node's containerd has it: ctr is not reachable on the host/);
  });

  it("a mapping that names a shim not being installed is refused, naming the shim and the variable, and changes nothing", () => {
    for (const [variable, value, runtime] of [["SNAPSHOTTER_HANDLER_MAPPING", "clh:devmapper", "containerd"], ["PULL_TYPE_MAPPING", "clh:guest-pull", "crio"]]) {
      const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
      const before = snapshot(root);
      const args = ["install", "--runtime", runtime, "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc"];
      const result = runAgent(args, isolatedEnv({ [variable]: value }));
      assert.equal(result.code, 1, result.stdout);
      assert.equal(result.stderr, `kata-deploy: ${variable} names shim clh, which --shims (qemu,fc) does not install; remove it from ${variable} or add it to --shims\n`);
      assert.deepEqual(snapshot(root), before);
    }
  });

  it("CRI-O: PULL_TYPE_MAPPING makes that shim pull in the guest (runtime_pull_image); uninstall removes it with the drop-in", () => {
    const root = makeHost({ "/etc/crio/crio.conf": '[crio.runtime]\ndefault_runtime = "crun"\n' });
    const before = snapshot(root);
    const env = isolatedEnv({ PULL_TYPE_MAPPING: "fc:guest-pull" });
    const result = runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc"], env);
    assert.equal(result.code, 0, result.stderr);
    const runtimes = (parseToml(fs.readFileSync(path.join(root, "/etc/crio/crio.conf.d/99-kata-deploy.toml"), "utf8")) as { crio: { runtime: { runtimes: Record<string, Record<string, unknown>> } } }).crio.runtime.runtimes;
    assert.equal(runtimes["kata-fc"].runtime_pull_image, true);
    assert.equal(runtimes["kata-qemu"].runtime_pull_image, undefined);
    const removed = runAgent(["uninstall", "--runtime", "crio", "--host-root", root], env);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(snapshot(root), before);
  });
});
