// Kata's own configuration on a real systemd + containerd node (issue 12, points 1 and 6), with the real
// image run as the component's DaemonSet pods: a deployment with another install prefix (no /opt/kata on
// the node), per-shim settings and a custom runtime. What only a node with a restart shows: the running
// containerd (its `config dump` after the agent's restart) names each handler's own configuration under the
// prefix; what Kata will read there (tests/support/kata-config-model.ts, written from Kata's loader) has the
// settings and names only files that exist on the node; the preStop uninstall and the cleanup's restart give
// the node back. One node (containerd 1.7, trixie): the planner and the host-root tests cover the rest.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { hasDocker, requireTool } from "../support/env";
import { NODE_RUNTIMES } from "../support/images";
import { hypervisorOf, kataReferencedFiles, kataView, type TomlTable } from "../support/kata-config-model";
import { Cluster, ensureE2eImage, removeContainers } from "./support/cluster";
import { matrixStep } from "./support/matrix";
import { hostPathsOf } from "./support/pod";
import type { PodHandle } from "./support/pod-runner";
import { containerdConfigDump, criPluginStatus, criRuntimes, snapshotTree, startSimNode, type SimNode, type TreeEntry } from "./support/sim-node";

const SUITE = "trixie";
const NODE_NAME = "kata-e2e-katacfg-trixie";
const PREFIX = "/var/lib/kata";
const READY_TIMEOUT_MS = 180_000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe(`e2e: Kata's own configuration under ${PREFIX} on a containerd ${NODE_RUNTIMES[SUITE].containerd} (${SUITE}) node`, function () {
  let cluster: Cluster;
  let node: SimNode;
  let installer: PodHandle | undefined;
  let configBeforeInstall: Record<string, TreeEntry>;
  const nodeLabel = `containerd ${NODE_RUNTIMES[SUITE].containerd} (${SUITE}), installPrefix ${PREFIX}`;
  const restarts = (): Record<string, number> => ({ containerd: node.startAttempts("containerd") });
  const step = (name: string, body: Parameters<typeof matrixStep>[3]): Mocha.Test => matrixStep(nodeLabel, name, restarts, body);
  const configDir = (): string => node.hostDir("/etc/containerd");
  const labels = (): Record<string, string> => cluster.nodeLabels(node.name);

  /** Kata's view of a node path under the prefix: a scratch root whose PREFIX is the node's shared directory. */
  function viewOnNode(configPath: string) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "kata-e2e-view-"));
    fs.mkdirSync(path.join(root, path.dirname(PREFIX)), { recursive: true });
    fs.symlinkSync(node.hostDir(PREFIX), path.join(root, PREFIX));
    return kataView(root, configPath);
  }

  before(async function () {
    requireTool(this, "docker engine", hasDocker());
    const image = await ensureE2eImage();
    cluster = await Cluster.start(image, {
      runtimes: ["containerd"],
      installPrefix: PREFIX,
      shimConfig: { qemu: { allowedHypervisorAnnotations: ["default_memory"], agentNoProxy: ".svc,10.0.0.0/8", debug: true } },
      customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu", dropIn: "[hypervisor.qemu]\ndefault_memory = 8192\n" }],
    });
    removeContainers(NODE_NAME);
    node = await startSimNode(SUITE, { name: NODE_NAME, workDir: cluster.workDir, sharedPaths: hostPathsOf(cluster.deployment.daemonSets) });
    node.running.waitActive("containerd");
    cluster.registerNode(node);
    configBeforeInstall = snapshotTree(configDir());
  });

  after(async function () {
    if (process.env.KATA_E2E_KEEP === "1") return;
    await installer?.remove();
    removeContainers(NODE_NAME);
    await cluster?.close();
  });

  step("1 label, 2 install: containerd restarted, every handler's ConfigPath under the prefix, Kata reads the settings there", async () => {
    const { labeler, installer: installerDs, labels: keys, runtimeHandlers } = cluster.deployment;
    assert.deepEqual(hostPathsOf(cluster.deployment.daemonSets).filter((p) => p.startsWith("/opt")), [], "no pod mounts anything under /opt");
    const labelerPod = await cluster.startPod(labeler, node);
    try {
      for (let waited = 0; labels()[keys.containerRuntime] === undefined; waited += 500) {
        if (waited > 60_000) throw new Error(`no container-runtime label:\n${await labelerPod.logs()}`);
        await sleep(500);
      }
      await labelerPod.terminate();
    } finally {
      await labelerPod.remove();
    }
    installer = await cluster.startPod(installerDs, node);
    await installer.waitReady(READY_TIMEOUT_MS);
    assert.equal(node.exec(["test", "-e", "/opt/kata"]).status, 1, "nothing at /opt/kata on the node");
    assert.equal(criPluginStatus(node), "ok");
    const runtimes = criRuntimes(containerdConfigDump(node));
    assert.deepEqual(runtimeHandlers, ["kata-fc", "kata-qemu", "kata-qemu-big"], "the RuntimeClasses' handlers");
    for (const handler of runtimeHandlers) {
      const runtime = runtimes[handler] as TomlTable | undefined;
      assert.ok(runtime, `the running containerd has ${handler}`);
      const configPath = String((runtime.options as TomlTable | undefined)?.ConfigPath);
      const shim = handler === "kata-fc" ? "fc" : "qemu";
      assert.equal(configPath, `${PREFIX}/share/defaults/kata-containers/runtimes/containerd/${handler}/configuration-${shim}.toml`);
      assert.equal(runtime.runtime_path, `${PREFIX}/bin/containerd-shim-kata-v2`);
      const seen = viewOnNode(configPath);
      for (const file of kataReferencedFiles(seen)) {
        assert.ok(file.startsWith(`${PREFIX}/`), `${handler}: Kata opens ${file}, under the prefix`);
        assert.equal(node.exec(["test", "-e", file]).status, 0, `${handler}: ${file} exists on the node`);
      }
      const { table } = hypervisorOf(seen);
      if (shim === "qemu") {
        assert.equal(node.exec(["test", "-x", String(table.path)]).status, 0, `${handler}: the QEMU wrapper is executable on the node`);
        assert.ok((table.enable_annotations as string[]).includes("^default_memory$"), handler);
        assert.equal(table.kernel_params, "agent.no_proxy=.svc,10.0.0.0/8", handler);
        assert.equal(table.enable_debug, true, handler);
      }
      if (handler === "kata-qemu-big") assert.equal(table.default_memory, 8192);
    }
    assert.equal(labels()[keys.kataRuntime], "true");
  });

  step("3 uninstall (preStop on removal) and cleanup: containerd config as before, the prefix emptied, runtimes gone", async () => {
    assert.ok(installer, "installer pod from step 2");
    const { installer: installerDs, cleanup, labels: keys, runtimeHandlers } = cluster.deployment;
    cluster.remove(installerDs);
    const { preStop, exitCode } = await installer.terminate();
    assert.equal(preStop?.status, 0, `preStop on removal:\n${preStop?.stdout}${preStop?.stderr}`);
    assert.equal(exitCode, 0, `installer exit code:\n${await installer.logs()}`);
    await installer.remove();
    installer = undefined;
    assert.deepEqual(snapshotTree(configDir()), configBeforeInstall, "/etc/containerd byte-for-byte as before install");
    assert.deepEqual(fs.readdirSync(node.hostDir(PREFIX)), [], `${PREFIX} is empty (it stays: a hostPath mount point)`);
    const pod = await cluster.startPod(cleanup, node);
    try {
      for (let waited = 0; labels()[keys.kataRuntime] !== undefined; waited += 500) {
        if (waited > 120_000) throw new Error(`labels not removed:\n${await pod.logs()}`);
        await sleep(500);
      }
      await pod.terminate();
    } finally {
      await pod.remove();
    }
    const runtimes = criRuntimes(containerdConfigDump(node));
    for (const handler of runtimeHandlers) assert.equal(runtimes[handler], undefined, `${handler} gone from the running containerd`);
  });
});
