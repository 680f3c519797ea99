#!/usr/bin/env node
// Create/update-time gate of KataDeployment (the `create` of its @pulumi/command step; @pulumi/command runs
// `create` again on every input change when no `update` is given). Runs on the machine that runs
// `pulumi up`, after the labeler and installer DaemonSets are applied and before the RuntimeClasses (and
// the consumer's `dependsOn: [kata]` workloads) are created. It does not rest on the DaemonSet await: an
// installer that selects no node yet (the labeler has not labelled any) counts as ready at once for
// Pulumi (kstatus: desiredNumberScheduled 0 is Current). Instead it waits until every node the installers
// select carries `<prefix>/kata-runtime=true` (the agent sets it after a complete install):
//   - a node is selected when the user's nodeSelector, node affinity and tolerations admit it and its runtime (label, or
//     the label the labeler will set from status.nodeInfo.containerRuntimeVersion) has an installer;
//     other nodes are reported and skipped;
//   - a node whose installer container failed KATA_DEPLOY_INSTALL_ATTEMPTS times fails the wait, naming the
//     node and the agent's one-line reason (the container's termination message);
//   - a node that still carries one of the deployment's startup taints is not done yet, even when labelled
//     installed (the agent removes them right after the label; until then the node is closed to workloads);
//   - at the deadline it fails naming the nodes not installed yet.
// New nodes joining later are the DaemonSets' business, not this step's.
//
// Environment (set by the component; stored in the stack's state):
//   KATA_DEPLOY_KUBECONFIG         kubeconfig content (a Pulumi secret); empty: the default loading
//   KATA_DEPLOY_LABEL_PREFIX       label prefix, e.g. kata-containers.io
//   KATA_DEPLOY_NAMESPACE          namespace of the installer DaemonSets
//   KATA_DEPLOY_RUNTIMES           comma-separated runtimes that have an installer
//   KATA_DEPLOY_NODE_SELECTOR      JSON object: the user's nodeSelector ({} for none)
//   KATA_DEPLOY_TOLERATIONS        JSON array: the installers' tolerations
//   KATA_DEPLOY_NODE_AFFINITY      JSON object: the installers' required node affinity ({nodeSelectorTerms}); unset: none
//   KATA_DEPLOY_TIMEOUT_SECONDS    give up (and fail the up) after this long
//   KATA_DEPLOY_INSTALLERS         fingerprint of the installer DaemonSets (not read: a change re-runs the step)
// Optional:
//   KATA_DEPLOY_STARTUP_TAINTS     JSON array of {key, effect?}: the taints the installers remove (default [])
//   KATA_DEPLOY_INSTALL_ATTEMPTS   failures of one node's installer before the wait fails (default 2)
//   KATA_DEPLOY_POLL_SECONDS       poll interval (default 5)
//   KATA_DEPLOY_SHIM_ARCHES        comma-separated node architectures that have shims (shimsByArch); unset: every
//                                  architecture. A node whose kubernetes.io/arch is not listed gets no Kata: skipped.
import * as k8s from "@kubernetes/client-node";
import {
  badSetting,
  commaList,
  containerFailures,
  errorMessage,
  failureReason,
  installerFor,
  jsonSetting,
  labelKeysFor,
  loadKubeConfig,
  pollUntil,
  positiveNumber,
  startupTaintsLeft,
} from "./kube-wait.mjs";

const env = process.env;
const prefix = env.KATA_DEPLOY_LABEL_PREFIX || "kata-containers.io";
const { kataRuntime } = labelKeysFor(prefix);
const namespace = env.KATA_DEPLOY_NAMESPACE || "kata-deploy";
const runtimes = commaList(env.KATA_DEPLOY_RUNTIMES);
if (runtimes.length === 0) badSetting("KATA_DEPLOY_RUNTIMES is empty; the component always sets the runtimes that have an installer");
/** @param {unknown} value @returns {value is Record<string, string>} */
const isStringMap = (value) => typeof value === "object" && value !== null && !Array.isArray(value) && Object.values(value).every((v) => typeof v === "string");
const nodeSelector = jsonSetting(env, "KATA_DEPLOY_NODE_SELECTOR", {}, isStringMap, "a JSON object of label key to value");
/** @type {k8s.V1Toleration[]} */
const tolerations = jsonSetting(env, "KATA_DEPLOY_TOLERATIONS", [{ operator: "Exists" }], Array.isArray, "a JSON array of tolerations");
/** @param {unknown} value @returns {value is { key: string; effect?: string }[]} */
const isTaintList = (value) =>
  Array.isArray(value) && value.every((item) => typeof item === "object" && item !== null && typeof item.key === "string" && (item.effect === undefined || typeof item.effect === "string"));
const startupTaints = jsonSetting(env, "KATA_DEPLOY_STARTUP_TAINTS", [], isTaintList, "a JSON array of {key, effect?}");
/** @param {unknown} value @returns {value is k8s.V1NodeSelector | undefined} */
const isNodeSelector = (value) => value === undefined || (typeof value === "object" && value !== null && Array.isArray(/** @type {{ nodeSelectorTerms?: unknown }} */ (value).nodeSelectorTerms));
/** @type {k8s.V1NodeSelector | undefined} */
const nodeAffinity = jsonSetting(env, "KATA_DEPLOY_NODE_AFFINITY", undefined, isNodeSelector, 'a JSON object {"nodeSelectorTerms": [...]}');
const timeoutSeconds = positiveNumber(env, "KATA_DEPLOY_TIMEOUT_SECONDS", 1200);
const pollSeconds = positiveNumber(env, "KATA_DEPLOY_POLL_SECONDS", 5);
const attempts = positiveNumber(env, "KATA_DEPLOY_INSTALL_ATTEMPTS", 2);
// Mixed-architecture clusters (issue 12 point 3): the installer on a node of another architecture installs nothing
// and never labels the node installed, so waiting for it would only run into the deadline.
const shimArches = env.KATA_DEPLOY_SHIM_ARCHES === undefined ? undefined : commaList(env.KATA_DEPLOY_SHIM_ARCHES);

/**
 * @typedef {{ installed: string[]; pending: string[]; failed: string[]; skipped: string[] }} Survey
 *   node names (failed and skipped: "name: reason")
 */

/**
 * One look at the cluster: which selected nodes are installed, pending or failed, and which are skipped.
 * @param {k8s.CoreV1Api} core
 * @returns {Promise<Survey>}
 */
async function survey(core) {
  const nodes = (await core.listNode()).items ?? [];
  const pods = (await core.listNamespacedPod({ namespace, labelSelector: "app.kubernetes.io/name=kata-deploy" })).items ?? [];
  /** @type {Survey} */
  const result = { installed: [], pending: [], failed: [], skipped: [] };
  for (const node of nodes) {
    const name = node.metadata?.name ?? "?";
    const verdict = installerFor(node, { prefix, runtimes, nodeSelector, tolerations, nodeAffinity });
    if (verdict === undefined) continue;
    if (verdict.skip !== undefined) {
      result.skipped.push(`${name}: ${verdict.skip}`);
      continue;
    }
    const arch = node.metadata?.labels?.["kubernetes.io/arch"];
    if (shimArches !== undefined && !shimArches.includes(arch ?? "")) {
      result.skipped.push(`${name}: its architecture ${arch ?? "(no kubernetes.io/arch label)"} has no shims in shimsByArch (only ${shimArches.join(", ")} do)`);
      continue;
    }
    const labelled = node.metadata?.labels?.[kataRuntime] === "true";
    const taintsLeft = labelled ? startupTaintsLeft(node, startupTaints) : [];
    if (labelled && taintsLeft.length === 0) {
      result.installed.push(name);
      continue;
    }
    const component = `installer-${verdict.runtime}`;
    const pod = pods.find(
      (candidate) =>
        candidate.spec?.nodeName === name && candidate.metadata?.labels?.["app.kubernetes.io/component"] === component && !candidate.metadata?.deletionTimestamp,
    );
    const { failures, latest } = containerFailures(pod?.status?.containerStatuses?.find((status) => status.name === "installer"));
    if (latest !== undefined && failures >= attempts) result.failed.push(`${name}: ${failureReason(latest)}`);
    else result.pending.push(taintsLeft.length === 0 ? name : `${name} (installed; startup taint ${taintsLeft.join(", ")} not removed yet)`);
  }
  return result;
}

async function main() {
  const core = loadKubeConfig(env).makeApiClient(k8s.CoreV1Api);
  /** @type {import("./kube-wait.mjs").PollState} */
  const state = {};
  /** @type {Survey | undefined} */
  let last;
  let lastReport = "";
  let reportedSkips = false;
  const outcome = await pollUntil({
    timeoutSeconds,
    pollSeconds,
    state,
    check: async () => {
      last = await survey(core);
      if (!reportedSkips && last.skipped.length > 0) {
        console.log(`kata-deploy: not installing on ${last.skipped.length} node(s): ${last.skipped.join("; ")}`);
        reportedSkips = true;
      }
      if (last.failed.length > 0) return "failed";
      if (last.pending.length === 0) return "installed";
      const report = last.pending.join(", ");
      if (report !== lastReport) console.log(`kata-deploy: waiting for Kata on ${last.pending.length} node(s): ${report} (installed: ${last.installed.length})`);
      lastReport = report;
      return undefined;
    },
  });
  // No survey ever succeeded: the outcome can only be the deadline (a check returns a verdict only after one).
  if (last === undefined) {
    console.error(`kata-deploy: timed out after ${timeoutSeconds}s: the Kubernetes API could not be queried (${errorMessage(state.lastError)}); check KATA_DEPLOY_KUBECONFIG / the kubeconfig given to the component`);
    return 1;
  }
  if (outcome === "installed") {
    console.log(`kata-deploy: Kata is installed on every selected node (${last.installed.length}): ${last.installed.join(", ") || "none"}`);
    return 0;
  }
  const pods = `kubectl -n ${namespace} get pods -l app.kubernetes.io/name=kata-deploy -o wide`;
  if (outcome === "failed") {
    console.error(`kata-deploy: the Kata install failed on ${last.failed.length} node(s): ${last.failed.join("; ")}. Fix the cause and run pulumi up again (pods: ${pods})`);
    return 1;
  }
  console.error(
    `kata-deploy: timed out after ${timeoutSeconds}s waiting for Kata on ${last.pending.length} node(s): ${last.pending.join(", ")} ` +
      `(not labelled ${kataRuntime}=true${startupTaints.length > 0 ? ", or a startup taint still on it" : ""}). Check their installer pods (${pods}); raise installTimeout if the image pull is slow`,
  );
  return 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`kata-deploy: ${errorMessage(error)}`);
    process.exit(1);
  },
);
