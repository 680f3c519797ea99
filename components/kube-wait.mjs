// Shared by KataDeployment's two @pulumi/command steps, wait-for-installed-nodes.mjs (`pulumi up`) and
// wait-for-clean-nodes.mjs (`pulumi destroy`): reading their environment, loading the kubeconfig, polling
// until done or a deadline, and deciding which nodes the installers select. Plain JavaScript, no
// TypeScript toolchain: it runs from a consumer's node_modules on the machine that runs Pulumi.
import { setTimeout as sleep } from "node:timers/promises";
import * as k8s from "@kubernetes/client-node";

/**
 * @import { V1ContainerStateTerminated, V1ContainerStatus, V1Node, V1NodeSelector, V1NodeSelectorRequirement, V1NodeSelectorTerm, V1Taint, V1Toleration } from "@kubernetes/client-node"
 * @typedef {{ lastError?: unknown }} PollState What pollUntil remembers of the last failed check.
 * @typedef {{ runtime: string; skip?: undefined } | { skip: string; runtime?: undefined }} InstallerVerdict
 */

/**
 * Prints `kata-deploy: <message>` on stderr and exits 2 (a setting the component or operator got wrong).
 * @param {string} message
 * @returns {never}
 */
export function badSetting(message) {
  console.error(`kata-deploy: ${message}`);
  process.exit(2);
}

/**
 * A positive number of seconds from `env[name]`, or `fallback` when unset.
 * @param {NodeJS.ProcessEnv} env @param {string} name @param {number} fallback
 * @returns {number}
 */
export function positiveNumber(env, name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) badSetting(`${name}=${JSON.stringify(raw)} is not a positive number of seconds`);
  return value;
}

/** A comma-separated list (empty entries dropped). @param {string | undefined} raw @returns {string[]} */
export function commaList(raw) {
  return (raw ?? "").split(",").map((item) => item.trim()).filter(Boolean);
}

/**
 * A JSON value from `env[name]` of the given shape check, or `fallback` when unset.
 * @template T
 * @param {NodeJS.ProcessEnv} env @param {string} name @param {T} fallback
 * @param {(value: unknown) => value is T} isValid @param {string} shape the expected shape, for the message
 * @returns {T}
 */
export function jsonSetting(env, name, fallback, isValid, shape) {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  let value;
  try {
    value = JSON.parse(raw);
  } catch {
    badSetting(`${name} is not JSON (expected ${shape})`);
  }
  if (!isValid(value)) badSetting(`${name}=${raw} is not ${shape}`);
  return value;
}

/** @param {string} prefix */
export function labelKeysFor(prefix) {
  return { kataRuntime: `${prefix}/kata-runtime`, containerRuntime: `${prefix}/container-runtime` };
}

/** KATA_DEPLOY_KUBECONFIG (content) when set, else the default loading ($KUBECONFIG, ~/.kube/config, in-cluster). @param {NodeJS.ProcessEnv} env */
export function loadKubeConfig(env) {
  const kubeConfig = new k8s.KubeConfig();
  if (env.KATA_DEPLOY_KUBECONFIG) kubeConfig.loadFromString(env.KATA_DEPLOY_KUBECONFIG);
  else kubeConfig.loadFromDefault();
  return kubeConfig;
}

/** @param {unknown} error */
export function errorMessage(error) {
  return error instanceof Error ? error.message.split("\n")[0] : String(error);
}

/**
 * Calls `check()` every `pollSeconds` until it returns a value other than undefined (returned) or the
 * deadline passes (returns undefined). A throwing check is transient API trouble: it is remembered in
 * `state.lastError` (cleared by the next good check) and never ends the wait early.
 * @template T
 * @param {{ timeoutSeconds: number; pollSeconds: number; check: () => Promise<T | undefined>; state: PollState }} options
 * @returns {Promise<T | undefined>}
 */
export async function pollUntil({ timeoutSeconds, pollSeconds, check, state }) {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    try {
      const done = await check();
      state.lastError = undefined;
      if (done !== undefined) return done;
    } catch (error) {
      state.lastError = error;
    }
    if (Date.now() >= deadline) return undefined;
    await sleep(Math.min(pollSeconds * 1000, Math.max(0, deadline - Date.now())));
  }
}

/**
 * containerd:// → containerd, cri-o:// → crio: the label value the labeler sets from
 * status.nodeInfo.containerRuntimeVersion. Must agree with the agent's runtimeFromVersion
 * (images/kata-deploy/agent/src/kube-labels.ts); tests/pulumi/wait-for-installed-nodes.test.ts checks that.
 * @param {string | undefined} containerRuntimeVersion
 * @returns {"containerd" | "crio" | undefined}
 */
export function runtimeFromVersion(containerRuntimeVersion) {
  if (containerRuntimeVersion?.startsWith("containerd://")) return "containerd";
  if (containerRuntimeVersion?.startsWith("cri-o://")) return "crio";
  return undefined;
}

/**
 * Tolerations the DaemonSet controller adds to every DaemonSet pod (kubernetes/kubernetes
 * pkg/controller/daemon/util/daemonset_util.go, AddOrUpdateDaemonPodTolerations): a DaemonSet pod is
 * scheduled on not-ready, unreachable, pressured and cordoned nodes. (network-unavailable only for
 * hostNetwork pods, which the installers are not.)
 */
export const DAEMON_POD_TOLERATIONS = [
  { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/disk-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/memory-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/pid-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/unschedulable", operator: "Exists", effect: "NoSchedule" },
];

/**
 * Toleration.ToleratesTaint (kubernetes/kubernetes staging/src/k8s.io/api/core/v1/toleration.go).
 * @param {V1Toleration} toleration @param {V1Taint} taint
 */
export function toleratesTaint(toleration, taint) {
  if (toleration.effect && toleration.effect !== taint.effect) return false;
  if (toleration.key && toleration.key !== taint.key) return false;
  const operator = toleration.operator || "Equal";
  if (operator === "Exists") return true;
  return operator === "Equal" && (toleration.value ?? "") === (taint.value ?? "");
}

/**
 * One node selector requirement against the node's labels (`matchExpressions`) or fields (`matchFields`:
 * only metadata.name), as k8s.io/apimachinery pkg/labels (selector.go Requirement.Matches) evaluates it:
 * NotIn and DoesNotExist match an absent key; Gt and Lt compare integers and never match an absent key or a
 * value that is not one.
 * @param {V1NodeSelectorRequirement} requirement @param {Record<string, string>} values label (or field) values by key
 */
function requirementMatches(requirement, values) {
  const present = Object.hasOwn(values, requirement.key);
  const value = values[requirement.key];
  const wanted = requirement.values ?? [];
  switch (requirement.operator) {
    case "In":
      return present && wanted.includes(value);
    case "NotIn":
      return !present || !wanted.includes(value);
    case "Exists":
      return present;
    case "DoesNotExist":
      return !present;
    case "Gt":
    case "Lt": {
      if (!present || !/^[+-]?\d+$/.test(value) || wanted.length !== 1 || !/^[+-]?\d+$/.test(wanted[0])) return false;
      const [have, limit] = [BigInt(value), BigInt(wanted[0])];
      return requirement.operator === "Gt" ? have > limit : have < limit;
    }
    default:
      return false;
  }
}

/**
 * A required node affinity against a node, as kubernetes staging/src/k8s.io/component-helpers/scheduling/
 * corev1/nodeaffinity/nodeaffinity.go (LazyErrorNodeSelector.Match) evaluates it: the terms are ORed, a
 * term's requirements ANDed, and a term with no requirement matches nothing.
 * @param {V1Node} node @param {V1NodeSelector | undefined} required
 */
export function nodeAffinityMatches(node, required) {
  if (required === undefined) return true;
  const labels = node.metadata?.labels ?? {};
  /** @type {Record<string, string>} */
  const fields = node.metadata?.name ? { "metadata.name": node.metadata.name } : {};
  return (required.nodeSelectorTerms ?? []).some((/** @type {V1NodeSelectorTerm} */ term) => {
    const expressions = term.matchExpressions ?? [];
    const matchFields = term.matchFields ?? [];
    if (expressions.length === 0 && matchFields.length === 0) return false;
    return expressions.every((requirement) => requirementMatches(requirement, labels)) && matchFields.every((requirement) => requirementMatches(requirement, fields));
  });
}

/**
 * Whether a DaemonSet pod with this nodeSelector, required node affinity and these tolerations is placed on
 * the node, as the DaemonSet controller decides it (pkg/controller/daemon/daemon_controller.go
 * NodeShouldRunDaemonPod: node selector and required node affinity, then the NoSchedule/NoExecute taints the
 * pod does not tolerate).
 * @param {V1Node} node
 * @param {Record<string, string> | undefined} nodeSelector
 * @param {V1Toleration[] | undefined} tolerations
 * @param {V1NodeSelector} [nodeAffinity] the required node affinity
 */
export function daemonPodFits(node, nodeSelector, tolerations, nodeAffinity) {
  const labels = node.metadata?.labels ?? {};
  if (!Object.entries(nodeSelector ?? {}).every(([key, value]) => labels[key] === value)) return false;
  if (!nodeAffinityMatches(node, nodeAffinity)) return false;
  const all = [...(tolerations ?? []), ...DAEMON_POD_TOLERATIONS];
  return (node.spec?.taints ?? [])
    .filter((taint) => taint.effect === "NoSchedule" || taint.effect === "NoExecute")
    .every((taint) => all.some((toleration) => toleratesTaint(toleration, taint)));
}

/**
 * The installer a node gets, or why it gets none. The labeler runs where the user's nodeSelector, node
 * affinity and tolerations allow and labels `<prefix>/container-runtime` from the node's runtime version;
 * installer `<runtime>` selects the same plus that label. A node not labelled yet is judged by the label the
 * labeler will give it.
 * Returns { runtime } (selected), { skip: reason } (reported, not waited for), or undefined (not ours).
 * @param {V1Node} node
 * @param {{ prefix: string; runtimes: string[]; nodeSelector?: Record<string, string>; tolerations?: V1Toleration[]; nodeAffinity?: V1NodeSelector }} selection
 * @returns {InstallerVerdict | undefined}
 */
export function installerFor(node, { prefix, runtimes, nodeSelector, tolerations, nodeAffinity }) {
  if (!daemonPodFits(node, nodeSelector, tolerations, nodeAffinity)) return undefined;
  const labelled = node.metadata?.labels?.[labelKeysFor(prefix).containerRuntime];
  const version = node.status?.nodeInfo?.containerRuntimeVersion;
  const runtime = labelled ?? runtimeFromVersion(version);
  if (runtime === undefined) return { skip: `container runtime ${JSON.stringify(version ?? "unknown")} is not supported (Kata needs containerd:// or cri-o://)` };
  if (!runtimes.includes(runtime)) return { skip: `runtime ${runtime} has no installer (runtimes: ${runtimes.join(", ")})` };
  return { runtime };
}

/**
 * The startup taints (issue 12 point 5) still on a node, as `key:Effect`: the agent removes a taint whose key
 * matches and whose effect matches unless the entry names none. Must agree with the agent's isStartupTaint
 * (images/kata-deploy/agent/src/kube/taints.ts); tests/pulumi/wait-for-installed-nodes.test.ts checks that.
 * @param {V1Node} node
 * @param {{ key: string; effect?: string }[]} startupTaints
 * @returns {string[]}
 */
export function startupTaintsLeft(node, startupTaints) {
  return (node.spec?.taints ?? [])
    .filter((taint) => startupTaints.some((matcher) => matcher.key === taint.key && (matcher.effect === undefined || matcher.effect === taint.effect)))
    .map((taint) => `${taint.key}:${taint.effect}`);
}

/**
 * The agent's one-line reason from a failed installer container: the termination message (with
 * terminationMessagePolicy FallbackToLogsOnError the kubelet keeps the log's tail, up to 80 lines / 2 KiB,
 * when the container failed) ends with the agent's `kata-deploy: <reason>` line.
 * @param {V1ContainerStateTerminated} terminated
 */
export function failureReason(terminated) {
  const lines = (terminated.message ?? "").split("\n").map((line) => line.trim()).filter(Boolean);
  const agentLine = [...lines].reverse().find((line) => line.startsWith("kata-deploy: "));
  return agentLine ?? lines.at(-1) ?? `exit code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ""}`;
}

/**
 * How often the container has failed (non-zero exit) and the last failure, from a pod's container status:
 * restartCount counts earlier terminations, state.terminated the current one.
 * @param {V1ContainerStatus | undefined} status
 * @returns {{ failures: number; latest?: V1ContainerStateTerminated }}
 */
export function containerFailures(status) {
  if (status === undefined) return { failures: 0 };
  const current = status.state?.terminated;
  const last = status.lastState?.terminated;
  const failedNow = current !== undefined && current.exitCode !== 0;
  const lastFailed = last !== undefined && last.exitCode !== 0;
  const failures = (status.restartCount ?? 0) + (failedNow ? 1 : 0);
  const latest = failedNow ? current : lastFailed ? last : undefined;
  return { failures: latest === undefined ? 0 : failures, latest };
}
