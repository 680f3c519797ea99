// The whole node lifecycle of kata-deploy on real systemd + containerd nodes (containerd 1.6 / 1.7 / 2.1),
// with the real image run as the component's DaemonSet pods (tests/e2e/support/pod.ts derives every
// `docker run` from the manifest builders) against the API stand-in. Each `it` is one matrix cell.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { NODE_RUNTIMES, type Suite } from "../support/images";
import { hasDocker, requireTool } from "../support/env";
import { Cluster, ensureE2eImage, removeContainers } from "./support/cluster";
import { hostPathsOf } from "./support/pod";
import type { PodHandle } from "./support/pod-runner";
import { matrixStep } from "./support/matrix";
import { containerdConfigDump, criPluginStatus, criRuntimes, snapshotTree, startSimNode, type SimNode, type TreeEntry } from "./support/sim-node";

const NODE_PREFIX = "kata-e2e-";
const READY_TIMEOUT_MS = 180_000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` (every 500 ms) until it returns true while `pod` keeps running; throws with the pod's logs
 * when it exits first or after the timeout.
 */
async function eventually(pod: PodHandle, what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    const { running, exitCode } = await pod.state();
    if (!running) throw new Error(`${what}: pod ${pod.plan.podName} exited ${exitCode}:\n${await pod.logs()}`);
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms:\n${await pod.logs()}`);
    await sleep(500);
  }
}

/**
 * "Another tool's conflicting drop-in": a systemd drop-in from a node-policy tool that refuses to start
 * containerd with Kata runtimes configured. The running containerd is unaffected; the first restart with
 * the new config fails, and a restart with the previous config succeeds — the situation the agent's
 * rollback exists for. (containerd's own parser accepts the candidate, so only a real restart finds it.)
 */
const CONFLICTING_DROP_IN = "/etc/systemd/system/containerd.service.d/50-runtime-policy.conf";
const CONFLICTING_DROP_IN_TEXT = [
  "# Written by a (pretend) node-policy tool: only runc-based runtimes are allowed on this node.",
  "[Service]",
  `ExecStartPre=/bin/sh -c 'if containerd config dump | grep -q containerd-shim-kata-v2; then echo "runtime-policy: kata runtimes are not allowed on this node" >&2; exit 1; fi'`,
  "",
].join("\n");

/** A unit fault for one start: ExecStartPre fails while the marker exists, and removes it. */
const FAIL_ONCE_DROP_IN = "/etc/systemd/system/containerd.service.d/60-fail-next-start.conf";
const FAIL_ONCE_MARKER = "/var/lib/kata-e2e-fail-next-start";
const FAIL_ONCE_DROP_IN_TEXT = [
  "[Service]",
  `ExecStartPre=/bin/sh -c 'if [ -e ${FAIL_ONCE_MARKER} ]; then rm -f ${FAIL_ONCE_MARKER}; echo "containerd unit fault (e2e): this start fails" >&2; exit 1; fi'`,
  "",
].join("\n");

for (const suite of Object.keys(NODE_RUNTIMES) as Suite[]) {
  const containerdVersion = NODE_RUNTIMES[suite].containerd;
  const nodeLabel = `containerd ${containerdVersion} (${suite})`;

  describe(`e2e: kata-deploy lifecycle on a ${nodeLabel} node`, function () {
    let cluster: Cluster;
    let node: SimNode;
    let installer: PodHandle | undefined;
    let configBeforeInstall: Record<string, TreeEntry>;
    let configAfterInstall: Record<string, TreeEntry>;
    let artifactsAfterInstall: Record<string, TreeEntry>;

    const restarts = (): Record<string, number> => ({ containerd: node.startAttempts("containerd") });
    const step = (name: string, body: Parameters<typeof matrixStep>[3]): Mocha.Test => matrixStep(nodeLabel, name, restarts, body);
    const configDir = (): string => node.hostDir("/etc/containerd");
    const prefixDir = (): string => node.hostDir("/opt/kata");
    const labels = (): Record<string, string> => cluster.nodeLabels(node.name);

    before(async function () {
      requireTool(this, "docker engine", hasDocker());
      const image = await ensureE2eImage();
      cluster = await Cluster.start(image);
      removeContainers(`${NODE_PREFIX}${suite}`);
      node = await startSimNode(suite, {
        name: `${NODE_PREFIX}${suite}`,
        workDir: cluster.workDir,
        // Every hostPath any of the component's pods mounts, shared between the node and the pods.
        sharedPaths: hostPathsOf(cluster.deployment.daemonSets),
      });
      node.running.waitActive("containerd");
      cluster.registerNode(node);
      configBeforeInstall = snapshotTree(configDir());
    });

    after(async function () {
      // KATA_E2E_KEEP=1 leaves the node and its pods for inspection (docker ps -a --filter name=kata-e2e-).
      if (process.env.KATA_E2E_KEEP === "1") return;
      await installer?.remove();
      removeContainers(`${NODE_PREFIX}${suite}`);
      await cluster?.close();
    });

    step("1 labeler: container-runtime label from the runtime version", async (s) => {
      const { labeler, installer: installerDs, labels: keys } = cluster.deployment;
      assert.equal(cluster.selects(installerDs, node.name), false, "no installer pod before the node is labelled");
      const pod = await cluster.startPod(labeler, node);
      try {
        await eventually(pod, `${keys.containerRuntime} label`, () => labels()[keys.containerRuntime] !== undefined, 60_000);
        assert.equal(labels()[keys.containerRuntime], "containerd");
        const { exitCode } = await pod.terminate();
        assert.equal(exitCode, 0, `labeler exit code on SIGTERM:\n${await pod.logs()}`);
      } finally {
        await pod.remove();
      }
      assert.equal(cluster.selects(installerDs, node.name), true, "the containerd installer now selects the node");
      const crio = cluster.deployment.daemonSets.find((ds) => ds.metadata.name.endsWith("-crio"));
      if (crio) assert.equal(cluster.selects(crio, node.name), false, "the CRI-O installer does not");
      assert.equal(cluster.access.unauthorized(), 0, "every API call carried the service-account token");
      const nodeInfo = (cluster.kube.node(node.name)?.status as { nodeInfo?: { containerRuntimeVersion?: string } } | undefined)?.nodeInfo;
      s.note(`node reports ${nodeInfo?.containerRuntimeVersion}`);
    });

    step("2 install: artifacts, containerd active, CRI ok, kata runtimes, label, ready", async () => {
      const { installer: installerDs, labels: keys, runtimeHandlers } = cluster.deployment;
      installer = await cluster.startPod(installerDs, node);
      await installer.waitReady(READY_TIMEOUT_MS);
      assert.ok(fs.statSync(path.join(prefixDir(), "bin/containerd-shim-kata-v2")).mode & 0o111, "shim installed and executable in /opt/kata");
      assert.ok(fs.existsSync(path.join(prefixDir(), "share/defaults/kata-containers/configuration-qemu.toml")));
      assert.equal(node.exec(["systemctl", "is-active", "containerd"]).stdout.trim(), "active");
      assert.equal(criPluginStatus(node), "ok");
      const runtimes = criRuntimes(containerdConfigDump(node));
      for (const handler of runtimeHandlers) {
        const runtime = runtimes[handler];
        assert.ok(runtime, `containerd config dump has runtime ${handler} (a RuntimeClass handler); has ${Object.keys(runtimes).join(", ")}`);
        assert.match(String(runtime.runtime_type), /^io\.containerd\.kata[-.\w]*\.v2$/, `${handler}.runtime_type is a Kata shim v2`);
        // What containerd will exec and hand to the shim must exist on the node, where containerd looks.
        const shim = String(runtime.runtime_path);
        const configPath = String((runtime.options as Record<string, unknown> | undefined)?.ConfigPath);
        assert.equal(node.exec(["test", "-x", shim]).status, 0, `${handler}.runtime_path ${shim} is executable on the node`);
        assert.equal(node.exec(["test", "-f", configPath]).status, 0, `${handler}.options.ConfigPath ${configPath} exists on the node`);
      }
      assert.ok(runtimes.runc, "containerd's runc runtime is still there");
      // Ready means the install is recorded complete; the label is the agent's next API call (`pulumi up` waits for
      // the label, components/wait-for-installed-nodes.mjs), so on a loaded machine it may come a moment later.
      await eventually(installer, `${keys.kataRuntime}=true label`, () => labels()[keys.kataRuntime] === "true", 60_000);
      configAfterInstall = snapshotTree(configDir());
      artifactsAfterInstall = snapshotTree(prefixDir());
    });

    step("3 pod restarted (same image): no containerd restart", async () => {
      assert.ok(installer, "installer pod from step 2");
      await installer.restartContainer();
      await installer.waitReady(READY_TIMEOUT_MS);
      assert.deepEqual(snapshotTree(configDir()), configAfterInstall, "/etc/containerd unchanged");
      assert.equal(labels()[cluster.deployment.labels.kataRuntime], "true");
    });

    step("4 rollout (pod replaced, DaemonSet still selects the node): no uninstall", async () => {
      assert.ok(installer, "installer pod from step 2");
      const { installer: installerDs, labels: keys } = cluster.deployment;
      cluster.bumpTemplate(installerDs);
      const dsReads = (): number => cluster.kube.requests.filter((r) => r.method === "GET" && r.path.endsWith(`/daemonsets/${installerDs.metadata.name}`)).length;
      const readsBefore = dsReads();
      const { preStop, exitCode } = await installer.terminate();
      assert.equal(preStop?.status, 0, `preStop during a rollout:\n${preStop?.stdout}${preStop?.stderr}`);
      assert.equal(exitCode, 0, `old pod's exit code:\n${await installer.logs()}`);
      assert.ok(dsReads() > readsBefore, "the preStop read its DaemonSet to tell a rollout from a removal");
      await installer.remove();
      assert.deepEqual(snapshotTree(prefixDir()), artifactsAfterInstall, "/opt/kata untouched by the preStop");
      assert.deepEqual(snapshotTree(configDir()), configAfterInstall, "/etc/containerd untouched by the preStop");
      assert.equal(labels()[keys.kataRuntime], "true");
      installer = await cluster.startPod(installerDs, node);
      await installer.waitReady(READY_TIMEOUT_MS);
      assert.deepEqual(snapshotTree(configDir()), configAfterInstall, "/etc/containerd unchanged by the new pod");
    });

    step("5 uninstall (preStop on removal): config as before, /opt/kata empty, label cleanup", async (s) => {
      assert.ok(installer, "installer pod from step 4");
      const { installer: installerDs, labels: keys } = cluster.deployment;
      // Both ways a DaemonSet goes away: foreground deletion leaves it with a deletionTimestamp, background removes it.
      const foreground = suite !== "trixie";
      if (foreground) cluster.markDeleting(installerDs);
      else cluster.remove(installerDs);
      s.note(foreground ? "DaemonSet has deletionTimestamp" : "DaemonSet removed");
      const { preStop, exitCode } = await installer.terminate();
      assert.equal(preStop?.status, 0, `preStop on removal:\n${preStop?.stdout}${preStop?.stderr}`);
      assert.equal(exitCode, 0, `installer exit code:\n${await installer.logs()}`);
      await installer.remove();
      installer = undefined;
      assert.deepEqual(snapshotTree(configDir()), configBeforeInstall, "/etc/containerd byte-for-byte as before install");
      assert.deepEqual(fs.readdirSync(prefixDir()), [], "/opt/kata is empty (it stays: it is a hostPath mount point)");
      assert.equal(labels()[keys.kataRuntime], "cleanup");
    });

    step("6 cleanup pod (reset): containerd restarted and active, labels gone", async () => {
      const { cleanup, labels: keys, runtimeHandlers } = cluster.deployment;
      const pod = await cluster.startPod(cleanup, node);
      try {
        await eventually(pod, "both labels removed", () => labels()[keys.kataRuntime] === undefined && labels()[keys.containerRuntime] === undefined, 120_000);
        // The labels are gone, so the cleanup DaemonSet no longer selects the node and its pod is deleted.
        assert.equal(cluster.selects(cleanup, node.name), false);
        const { exitCode } = await pod.terminate();
        assert.equal(exitCode, 0, `cleanup pod exit code:\n${await pod.logs()}`);
      } finally {
        await pod.remove();
      }
      assert.equal(node.exec(["systemctl", "is-active", "containerd"]).stdout.trim(), "active");
      assert.equal(criPluginStatus(node), "ok");
      const runtimes = criRuntimes(containerdConfigDump(node));
      for (const handler of runtimeHandlers) assert.equal(runtimes[handler], undefined, `${handler} gone from the running containerd`);
    });

    step("7 new config cannot start: rollback, containerd active, loud failure, no label", async (s) => {
      const { labeler, installer: installerDs, labels: keys } = cluster.deployment;
      const dropIn = CONFLICTING_DROP_IN;
      node.sh(`mkdir -p ${path.dirname(dropIn)} && cat > ${dropIn} <<'EOF'\n${CONFLICTING_DROP_IN_TEXT}EOF\nsystemctl daemon-reload`);
      try {
        cluster.apply(installerDs); // deployed again
        const labelerPod = await cluster.startPod(labeler, node);
        try {
          await eventually(labelerPod, "relabelled", () => labels()[keys.containerRuntime] === "containerd", 60_000);
          await labelerPod.terminate();
        } finally {
          await labelerPod.remove();
        }

        const pod = await cluster.startPod(installerDs, node);
        try {
          const exitCode = await pod.waitExit(READY_TIMEOUT_MS);
          const logs = await pod.logs();
          assert.notEqual(exitCode, 0, `installer must fail:\n${logs}`);
          // Loudly: the last thing it says names the runtime that failed to start with the new config.
          const lastLine = logs.trim().split("\n").pop() ?? "";
          assert.match(lastLine, /containerd/i, `the final error names the runtime:\n${logs}`);
          assert.match(logs, /roll(ed)? ?back/i, `the logs say the config was rolled back:\n${logs}`);
          s.note(`agent exit ${exitCode}: ${lastLine.replace(/^\S+Z /, "").slice(0, 200)}`);
        } finally {
          await pod.remove();
        }
        assert.equal(node.exec(["systemctl", "is-active", "containerd"]).stdout.trim(), "active");
        assert.equal(criPluginStatus(node), "ok");
        assert.deepEqual(snapshotTree(configDir()), configBeforeInstall, "/etc/containerd restored");
        assert.notEqual(labels()[keys.kataRuntime], "true");
      } finally {
        node.sh(`rm -f ${dropIn} && systemctl daemon-reload`);
      }
    });

    step("8 restart fails after the new config was verified (unit fault, not the config): rollback restores and restarts, no label", async (s) => {
      const { installer: installerDs, labels: keys, runtimeHandlers } = cluster.deployment;
      // The next start of containerd fails once, whatever its config (a unit that is broken for a moment,
      // as when it is masked or its ExecStartPre trips mid-way): `containerd config dump` accepts the
      // candidate and lists the Kata runtimes, so only the restart itself fails. The restart after the
      // rollback finds the unit healthy again.
      node.sh(`mkdir -p ${path.dirname(FAIL_ONCE_DROP_IN)} && cat > ${FAIL_ONCE_DROP_IN} <<'EOF'\n${FAIL_ONCE_DROP_IN_TEXT}EOF\ntouch ${FAIL_ONCE_MARKER} && systemctl daemon-reload`);
      const startsBefore = node.startAttempts("containerd");
      try {
        const pod = await cluster.startPod(installerDs, node);
        try {
          const exitCode = await pod.waitExit(READY_TIMEOUT_MS);
          const logs = await pod.logs();
          assert.notEqual(exitCode, 0, `installer must fail:\n${logs}`);
          assert.match(logs, /containerd config: wrote /, `the new config passed validation and was written before the restart:\n${logs}`);
          const lastLine = logs.trim().split("\n").pop() ?? "";
          assert.match(lastLine, /containerd: did not come back healthy with the new configuration .*restored the previous \/etc\/containerd\/config\.toml and restarted it \(healthy again\)/, logs);
          s.note(`agent exit ${exitCode}: ${lastLine.replace(/^\S+Z /, "").slice(0, 200)}`);
        } finally {
          await pod.remove();
        }
        assert.equal(node.exec(["test", "-e", FAIL_ONCE_MARKER]).status, 1, "the failing start happened (and consumed the fault)");
        assert.ok(node.startAttempts("containerd") >= startsBefore + 2, "restarted with the new config (failed), then again with the restored one");
        assert.equal(node.exec(["systemctl", "is-active", "containerd"]).stdout.trim(), "active");
        assert.equal(criPluginStatus(node), "ok");
        const runtimes = criRuntimes(containerdConfigDump(node));
        for (const handler of runtimeHandlers) assert.equal(runtimes[handler], undefined, `${handler} not in the running containerd`);
        assert.deepEqual(snapshotTree(configDir()), configBeforeInstall, "/etc/containerd restored byte for byte");
        assert.deepEqual(fs.readdirSync(prefixDir()), [], "the failed install left nothing in /opt/kata");
        assert.notEqual(labels()[keys.kataRuntime], "true", "the node is not labelled installed");
      } finally {
        node.sh(`rm -f ${FAIL_ONCE_DROP_IN} ${FAIL_ONCE_MARKER} && systemctl daemon-reload`);
      }
    });
  });
}
