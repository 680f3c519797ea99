// k0s, microk8s and a custom containerd through the real agent CLI on host roots, and the flavour check per
// node (issue 12 point 4): where each one's Kata goes, byte-exact removal, `auto` detection, and a refused
// mismatch. What the distributions do is modelled on their source:
// - k0s (k0sproject/k0s pkg/component/worker/containerd): component.go writes /etc/k0s/containerd.toml with the
//   header `# k0s_managed=true` (containerdTomlHeader), configurer.go marshalContainerdConfig adds
//   `imports = ["/etc/k0s/containerd.d/*.toml"]` (version 3); component.go watchDropinConfigs restarts its
//   containerd itself when that directory changes; socket /run/k0s/containerd.sock (utils_other.go Address).
// - microk8s (canonical/microk8s): fixtures/config/distros/microk8s-containerd-template.toml is
//   microk8s-resources/default-args/containerd-template.toml verbatim; wrappers/run-containerd-with-args renders
//   args/containerd.toml from it with sed on every start (the stand-in below does the same substitution).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { artifacts, fakeContainerdNode, isolatedEnv, makeHost, removeTempDirs, runAgent, snapshot, type FakeContainerdNode } from "./agent-harness";

const FIXTURES = path.resolve(__dirname, "../fixtures/config/distros");
const K0S_CONFIG = "/etc/k0s/containerd.toml";
const K0S_DROP_IN = "/etc/k0s/containerd.d/99-kata-deploy.toml";
const MICROK8S_TEMPLATE = "/var/snap/microk8s/current/args/containerd-template.toml";
const MICROK8S_RENDERED = "/var/snap/microk8s/current/args/containerd.toml";
const k0sConfig = fs.readFileSync(path.join(FIXTURES, "k0s-containerd.toml"), "utf8");
const microk8sTemplate = fs.readFileSync(path.join(FIXTURES, "microk8s-containerd-template.toml"), "utf8");

const install = (root: string, flavor: string | undefined, restart: "none" | "systemd" = "none", extra: string[] = []): string[] => [
  "install", "--runtime", "containerd", ...(flavor === undefined ? [] : ["--containerd-flavor", flavor]), "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu", "--restart", restart, ...extra,
];
const uninstall = (root: string, restart: "none" | "systemd" = "none"): string[] => ["uninstall", "--runtime", "containerd", "--host-root", root, "--restart", restart];
const read = (root: string, hostPath: string): string | undefined => (fs.existsSync(path.join(root, hostPath)) ? fs.readFileSync(path.join(root, hostPath), "utf8") : undefined);
const kataOnly = (rel: string): boolean => rel.startsWith("opt/kata");
const configFiles = (root: string): Record<string, unknown> => snapshot(root, kataOnly);

/** microk8s's containerd unit renders its template when it starts (snap/microk8s run-containerd-with-args). */
const renderMicrok8sTemplate = (root: string): string => {
  const args = path.join(root, "var/snap/microk8s/current/args");
  return `if [ "$unit" = snap.microk8s.daemon-containerd ]; then sed 's@\${SNAP}@/snap/microk8s/current@g;s@\${SNAP_DATA}@/var/snap/microk8s/current@g;s@\${SNAPSHOTTER}@overlayfs@g;s@\${RUNTIME}@runc@g' '${args}/containerd-template.toml' > '${args}/containerd.toml'; sed -i 's@\${RUNTIME_TYPE}@io.containerd.runc.v2@g' '${args}/containerd.toml'; fi`;
};
// Half a second bounds the agent's wait for k0s to pick up its drop-in (K0S_RELOAD_SETTLE_MS, capped by the verify timeout): the fakes answer at once.
const fakeNode = (root: string, units: string[]): FakeContainerdNode => fakeContainerdNode({ activeUnits: units, onRestart: renderMicrok8sTemplate(root), verifyTimeoutSeconds: 0.5 });

describe("more containerd distributions, detected per node (agent CLI on host roots)", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  for (const flavor of ["k0s", "auto", undefined]) {
    it(`k0s (--containerd-flavor ${flavor ?? "absent"}): only a drop-in in /etc/k0s/containerd.d, in containerd.toml's version 3; k0s's own files untouched; uninstall restores byte for byte`, () => {
      const root = makeHost({ [K0S_CONFIG]: k0sConfig });
      const before = configFiles(root);
      const result = runAgent(install(root, flavor), isolatedEnv());
      assert.equal(result.code, 0, result.stderr);
      assert.equal(read(root, K0S_CONFIG), k0sConfig);
      const dropIn = read(root, K0S_DROP_IN) ?? "";
      assert.match(dropIn, /^version = 3$/m);
      assert.match(dropIn, /\[plugins\."io\.containerd\.cri\.v1\.runtime"\.containerd\.runtimes\.kata-qemu\]/);
      const state = JSON.parse(read(root, "/opt/kata/.kata-deploy/state.json") ?? "{}") as { runtimes?: { containerd?: { details?: { flavor?: string } } } };
      assert.equal(state.runtimes?.containerd?.details?.flavor, "k0s", "an auto install records the flavour it detected (uninstall and reset follow it)");
      const removed = runAgent(uninstall(root), isolatedEnv());
      assert.equal(removed.code, 0, removed.stderr);
      assert.deepEqual(configFiles(root), before);
    });
  }

  it("k0s with a config it does not manage and that does not import containerd.d: refused with the fix, nothing written", () => {
    const own = "version = 3\n";
    const root = makeHost({ [K0S_CONFIG]: own });
    const before = configFiles(root);
    const result = runAgent(install(root, "k0s"), isolatedEnv());
    assert.equal(result.code, 1);
    assert.match(result.stderr, /containerd\.toml.*not managed by k0s.*imports = \["\/etc\/k0s\/containerd\.d\/\*\.toml"\]/);
    assert.deepEqual(configFiles(root), before);
  });

  it("k0s with systemd: the k0s unit is not restarted (k0s reloads its containerd itself), ctr asks /run/k0s/containerd.sock", () => {
    const root = makeHost({ [K0S_CONFIG]: k0sConfig });
    const node = fakeNode(root, ["k0sworker"]);
    const result = runAgent(install(root, "auto", "systemd"), isolatedEnv(node.env));
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!node.systemctl().some((call) => call.startsWith("restart")), node.systemctl().join("\n"));
    assert.ok(node.ctr().length > 0 && node.ctr().every((call) => call.startsWith("--address /run/k0s/containerd.sock")), node.ctr().join("\n"));
  });

  for (const flavor of ["microk8s", "auto"]) {
    it(`microk8s (--containerd-flavor ${flavor}): Kata's tables spliced into containerd-template.toml (version 2), rendered into containerd.toml by the restart; uninstall restores byte for byte`, () => {
      const root = makeHost({ [MICROK8S_TEMPLATE]: microk8sTemplate });
      const node = fakeNode(root, ["snap.microk8s.daemon-containerd"]);
      const before = configFiles(root);
      const result = runAgent(install(root, flavor, "systemd"), isolatedEnv(node.env));
      assert.equal(result.code, 0, result.stderr);
      const template = read(root, MICROK8S_TEMPLATE) ?? "";
      assert.ok(template.startsWith(microk8sTemplate.slice(0, 200)), "the template's own text is kept");
      assert.match(template, /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.kata-qemu\]/);
      assert.match(read(root, MICROK8S_RENDERED) ?? "", /runtimes\.kata-qemu\]/, "what microk8s renders has Kata");
      assert.ok(node.systemctl().includes("restart snap.microk8s.daemon-containerd"), node.systemctl().join("\n"));
      assert.ok(node.ctr().every((call) => call.startsWith("--address /var/snap/microk8s/common/run/containerd.sock")), node.ctr().join("\n"));
      const removed = runAgent(uninstall(root, "systemd"), isolatedEnv(node.env));
      assert.equal(removed.code, 0, removed.stderr);
      const after = configFiles(root) as Record<string, unknown>;
      delete after["var/snap/microk8s/current/args/containerd.toml"]; // microk8s's own output, rewritten on each start
      assert.deepEqual(after, before);
    });
  }

  it("an explicit flavour the node does not run is refused in one line naming what was found and the fix; nothing written", () => {
    const root = makeHost({ [K0S_CONFIG]: k0sConfig });
    const before = configFiles(root);
    const result = runAgent(install(root, "k3s"), isolatedEnv());
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr, /^kata-deploy: containerdFlavor k3s: this node runs k0s, not k3s \(\/var\/lib\/rancher\/k3s\/agent\/etc\/containerd does not exist; \/etc\/k0s\/containerd\.toml exists\).*set containerdFlavor to k0s or auto/);
    assert.deepEqual(configFiles(root), before);
  });

  it("auto with two distributions' files and no host commands to tell which runs: refused, naming both", () => {
    const root = makeHost({ [K0S_CONFIG]: k0sConfig, [MICROK8S_TEMPLATE]: microk8sTemplate });
    const result = runAgent(install(root, "auto"), isolatedEnv());
    assert.equal(result.code, 1);
    assert.match(result.stderr, /containerdFlavor auto: cannot tell which containerd this node runs: files of several distributions: microk8s .*k0s /);
  });

  it("auto with two distributions' files: the one whose unit is active wins (the other is a leftover)", () => {
    const root = makeHost({ [K0S_CONFIG]: k0sConfig, [MICROK8S_TEMPLATE]: microk8sTemplate });
    const node = fakeNode(root, ["k0scontroller"]);
    const result = runAgent(install(root, "auto", "systemd"), isolatedEnv(node.env));
    assert.equal(result.code, 0, result.stderr);
    assert.ok(read(root, K0S_DROP_IN) !== undefined);
    assert.equal(read(root, MICROK8S_TEMPLATE), microk8sTemplate);
  });

  it("custom containerd: --containerd-config/--containerd-socket/--containerd-unit are used and recorded, so uninstall (given none of them) restores that file", () => {
    const config = "/etc/containerd-custom/config.toml";
    const original = 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n';
    const root = makeHost({ [config]: original });
    const node = fakeNode(root, ["containerd-custom"]);
    const before = configFiles(root);
    const result = runAgent(install(root, undefined, "systemd", ["--containerd-config", config, "--containerd-socket", "/run/cc.sock", "--containerd-unit", "containerd-custom"]), isolatedEnv(node.env));
    assert.equal(result.code, 0, result.stderr);
    assert.match(read(root, config) ?? "", /runtimes\.kata-qemu\]/);
    assert.equal(read(root, "/etc/containerd/config.toml"), undefined, "the default config is not created");
    assert.ok(node.systemctl().includes("restart containerd-custom"), node.systemctl().join("\n"));
    assert.ok(node.ctr().every((call) => call.startsWith("--address /run/cc.sock")), node.ctr().join("\n"));
    const removed = runAgent(uninstall(root, "systemd"), isolatedEnv(node.env));
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(configFiles(root), before);
    assert.equal(node.systemctl().filter((call) => call === "restart containerd-custom").length, 2);
  });

  it("custom containerd: installing into another config file than the node's install record is refused, and nothing changes", () => {
    const first = "/etc/containerd-a/config.toml";
    const second = "/etc/containerd-b/config.toml";
    const original = 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n';
    const root = makeHost({ [first]: original, [second]: original });
    assert.equal(runAgent(install(root, undefined, "none", ["--containerd-config", first])).code, 0);
    const installed = snapshot(root, () => false);
    for (const extra of [["--containerd-config", second], []]) {
      const result = runAgent(install(root, undefined, "none", extra));
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr.trim(), new RegExp(`^kata-deploy: --containerd-config ${extra.length > 0 ? second : "the flavour's own config"}: Kata is installed into ${first} on this node \\(install record\\); uninstall first`));
      assert.deepEqual(snapshot(root, () => false), installed, "nothing changed");
    }
    assert.equal(read(root, second), original);
  });

  it("custom containerd flags with another flavour are refused", () => {
    const result = runAgent(install(makeHost(), "k3s", "none", ["--containerd-config", "/etc/x/config.toml"]), isolatedEnv());
    assert.equal(result.code, 1);
    assert.match(result.stderr, /describe a plain containerd; they do not go with --containerd-flavor k3s/);
  });
});
