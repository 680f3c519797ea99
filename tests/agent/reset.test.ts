// `kata-deploy reset` (the cleanup pod) restarts and verifies the runtime through the same adapter as
// install and uninstall: on k3s/rke2 nodes it must ask k3s's containerd, at its own socket, not a
// standalone containerd's default socket. Stand-ins at the host-command boundary (KATA_DEPLOY_SYSTEMCTL,
// KATA_DEPLOY_CTR), modelled on their sources:
// - systemctl (systemd src/systemctl/systemctl-is-active.c, unit-def.c): `is-active U` prints "active"
//   (exit 0) or "inactive" (exit 3, also for a unit that does not exist); `show --property=LoadState
//   --value U` prints "loaded" or "not-found".
// - ctr (containerd cmd/ctr/commands/plugins/plugins.go, defaults.DefaultAddress): `--address A` picks
//   the socket (default /run/containerd/containerd.sock); `plugins ls` prints the tabwriter table
//   "TYPE ID PLATFORMS STATUS"; with nothing listening there it fails with "failed to dial".
// The node's sockets: k3s-io/k3s pkg/agent/config/config_linux.go (/run/k3s/containerd/containerd.sock);
// rke2 uses the same (docs.rke2.io/reference/cli_tools). k0s: <RunDir>/containerd.sock, RunDir /run/k0s
// (k0sproject/k0s pkg/component/worker/containerd utils_other.go), and k0s restarts its containerd itself
// when its drop-ins change (component.go watchDropinConfigs), so its unit (kubelet too) is not restarted.
// microk8s: --address ${SNAP_COMMON}/run/containerd.sock (canonical/microk8s default-args/containerd), unit
// snap.microk8s.daemon-containerd (snap/snapcraft.yaml app daemon-containerd).
import { strict as assert } from "node:assert";
import { artifacts, fakeContainerdNode, isolatedEnv, makeHost, removeTempDirs, runAgent, type FakeContainerdNode } from "./agent-harness";
import { fixture } from "./config-fixtures";

type Flavor = "containerd" | "k3s" | "rke2" | "k0s" | "microk8s";
const K3S_SOCKET = "/run/k3s/containerd/containerd.sock";
const DEFAULT_SOCKET = "/run/containerd/containerd.sock";
const NODES: { flavor: Flavor; unit: string; socket: string; restarted: boolean }[] = [
  { flavor: "containerd", unit: "containerd", socket: DEFAULT_SOCKET, restarted: true },
  { flavor: "k3s", unit: "k3s-agent", socket: K3S_SOCKET, restarted: true },
  { flavor: "rke2", unit: "rke2-server", socket: K3S_SOCKET, restarted: true },
  { flavor: "k0s", unit: "k0sworker", socket: "/run/k0s/containerd.sock", restarted: false },
  { flavor: "microk8s", unit: "snap.microk8s.daemon-containerd", socket: "/var/snap/microk8s/common/run/containerd.sock", restarted: true },
];

const reset = (root: string, ...more: string[]): string[] => ["reset", "--runtime", "containerd", "--host-root", root, "--restart", "systemd", ...more];
const restarts = (node: FakeContainerdNode): string[] => node.systemctl().filter((call) => call.startsWith("restart "));
const expectedCtr = (socket: string): string => (socket !== DEFAULT_SOCKET ? `--address ${socket} plugins ls` : "plugins ls");

describe("kata-deploy reset: one restart-and-verify per containerd flavor", () => {
  after(removeTempDirs);

  for (const { flavor, unit, socket, restarted } of NODES) {
    const what = restarted ? `restarts ${unit}` : `does not restart ${unit} (k0s restarts its containerd itself)`;
    it(`${flavor}: --containerd-flavor ${flavor} (as the cleanup DaemonSet passes it) ${what} and asks ctr at ${socket}`, () => {
      const node = fakeContainerdNode({ activeUnits: [unit], socket: socket, verifyTimeoutSeconds: 0 });
      const result = runAgent(reset(makeHost(), "--containerd-flavor", flavor), isolatedEnv(node.env));
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(restarts(node), restarted ? [`restart ${unit}`] : []);
      assert.deepEqual(node.ctr(), [expectedCtr(socket)]);
    });

    it(`${flavor}: with --containerd-flavor auto (the cleanup's default) and no install record, the flavor comes from the unit running (${unit})`, () => {
      const node = fakeContainerdNode({ activeUnits: [unit], socket: socket, verifyTimeoutSeconds: 0 });
      const result = runAgent(reset(makeHost(), "--containerd-flavor", "auto"), isolatedEnv(node.env));
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(restarts(node), restarted ? [`restart ${unit}`] : []);
      assert.deepEqual(node.ctr(), [expectedCtr(socket)]);
    });
  }

  it("custom containerd: --containerd-socket and --containerd-unit (as the cleanup passes them) restart that unit and ask that socket", () => {
    const node = fakeContainerdNode({ activeUnits: ["containerd-custom"], socket: "/run/cc/containerd.sock", verifyTimeoutSeconds: 0 });
    const result = runAgent(reset(makeHost(), "--containerd-flavor", "auto", "--containerd-socket", "/run/cc/containerd.sock", "--containerd-unit", "containerd-custom"), isolatedEnv(node.env));
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(restarts(node), ["restart containerd-custom"]);
    assert.deepEqual(node.ctr(), ["--address /run/cc/containerd.sock plugins ls"]);
  });

  it("k3s node: verifying the default socket fails the reset instead of passing it (the defect this guards)", () => {
    // The same node, reset with the wrong flavor: ctr asks /run/containerd/containerd.sock, where nothing listens.
    const node = fakeContainerdNode({ activeUnits: ["k3s", "containerd"], socket: K3S_SOCKET, verifyTimeoutSeconds: 0 });
    const result = runAgent(reset(makeHost(), "--containerd-flavor", "containerd"), isolatedEnv(node.env));
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^kata-deploy: containerd: not healthy after the restart \(ctr: failed to dial/);
  });

  it("rke2: the install record's flavor wins over a standalone containerd unit that is also active", () => {
    const dir = "/var/lib/rancher/rke2/agent/etc/containerd";
    const root = makeHost({ [`${dir}/config.toml`]: fixture("containerd", "v2-k3s-rendered-config.toml") });
    const install = runAgent(["install", "--runtime", "containerd", "--containerd-flavor", "rke2", "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu", "--restart", "none"]);
    assert.equal(install.code, 0, install.stderr);
    const node = fakeContainerdNode({ activeUnits: ["containerd", "rke2-server"], socket: K3S_SOCKET, verifyTimeoutSeconds: 0 });
    const result = runAgent(reset(root), isolatedEnv(node.env));
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(restarts(node), ["restart rke2-server"]);
    assert.deepEqual(node.ctr(), [expectedCtr(K3S_SOCKET)]);
  });

  it("no containerd unit of any flavor: one line naming the units and the flag", () => {
    const node = fakeContainerdNode({ activeUnits: [], socket: K3S_SOCKET, verifyTimeoutSeconds: 0 });
    const result = runAgent(reset(makeHost()), isolatedEnv(node.env));
    assert.equal(result.code, 1);
    assert.equal(result.stderr, "kata-deploy: none of the systemd units containerd, k3s, k3s-agent, rke2-server, rke2-agent, k0sworker, k0scontroller, snap.microk8s.daemon-containerd exists on this host; pass --containerd-flavor or --runtime\n");
    assert.deepEqual(restarts(node), []);
  });
});
