#!/usr/bin/env node
// Destroy-time gate of KataDeployment (the `delete` of its @pulumi/command step). Runs on the machine that
// runs `pulumi destroy`, after the installers, the labeler and the RuntimeClasses are gone, and before the
// cleanup DaemonSet is deleted: it waits until no node carries `<prefix>/kata-runtime` or
// `<prefix>/container-runtime`, i.e. until every node has been uninstalled and reset. Plain JavaScript so
// that it runs from a consumer's node_modules without a TypeScript toolchain.
//
// Environment (set by the component; stored in the stack's state at the last `pulumi up`):
//   KATA_DEPLOY_KUBECONFIG        kubeconfig content (a Pulumi secret); empty: the default kubeconfig
//                                 loading ($KUBECONFIG, ~/.kube/config, in-cluster)
//   KATA_DEPLOY_LABEL_PREFIX      label prefix, e.g. kata-containers.io
//   KATA_DEPLOY_TIMEOUT_SECONDS   give up (and fail the destroy) after this long
//   KATA_DEPLOY_NAMESPACE         namespace of the cleanup DaemonSet (for the hint in the failure message)
//   KATA_DEPLOY_RUNTIMES          comma-separated runtimes that had an installer (e.g. containerd,crio); empty:
//                                 all (stacks deployed before this variable existed)
// Set by the operator when running `pulumi destroy` (the command inherits that environment):
//   KATA_DEPLOY_IGNORE_NODES      comma-separated node names not to wait for, or `*` for all (see docs/kubernetes.md)
//   KATA_DEPLOY_POLL_SECONDS      poll interval (default 5)
import * as k8s from "@kubernetes/client-node";
import { commaList, errorMessage, labelKeysFor, loadKubeConfig, pollUntil, positiveNumber } from "./kube-wait.mjs";

const env = process.env;
const prefix = env.KATA_DEPLOY_LABEL_PREFIX || "kata-containers.io";
const keys = labelKeysFor(prefix);
const labelKeys = [keys.kataRuntime, keys.containerRuntime];
const timeoutSeconds = positiveNumber(env, "KATA_DEPLOY_TIMEOUT_SECONDS", 600);
const pollSeconds = positiveNumber(env, "KATA_DEPLOY_POLL_SECONDS", 5);
const namespace = env.KATA_DEPLOY_NAMESPACE || "kata-deploy";
const installedRuntimes = commaList(env.KATA_DEPLOY_RUNTIMES);
const ignored = new Set(commaList(env.KATA_DEPLOY_IGNORE_NODES));

/**
 * A node the labeler labelled with a runtime that had no installer (e.g. a CRI-O node when only containerd
 * was deployed) and that no installer touched: nothing will ever clean it, and nothing needs to. Its label
 * is reported, not waited for.
 */
/** @param {Record<string, string>} labels */
function neverInstalled(labels) {
  if (installedRuntimes.length === 0 || labelKeys[0] in labels) return false;
  return !installedRuntimes.includes(labels[labelKeys[1]]);
}
/** @type {Map<string, string>} node name -> its container-runtime label */
const untouched = new Map();

/** Nodes that still carry one of the labels, as "name (key=value, ...)" keyed by node name. */
/** @param {k8s.CoreV1Api} api @returns {Promise<Map<string, string>>} */
async function labelledNodes(api) {
  /** @type {Map<string, string>} */
  const found = new Map();
  untouched.clear();
  // One query per key: a label selector ANDs its requirements, and we want either label.
  for (const key of labelKeys) {
    const list = await api.listNode({ labelSelector: key });
    for (const node of list.items ?? []) {
      const name = node.metadata?.name ?? "?";
      const labels = node.metadata?.labels ?? {};
      const carried = labelKeys.filter((k) => k in labels).map((k) => `${k}=${labels[k]}`);
      if (neverInstalled(labels)) untouched.set(name, labels[labelKeys[1]]);
      else found.set(name, `${name} (${carried.join(", ")})`);
    }
  }
  if (ignored.has("*")) return new Map();
  for (const name of ignored) found.delete(name);
  return found;
}

async function main() {
  const api = loadKubeConfig(env).makeApiClient(k8s.CoreV1Api);
  let lastReport = "";
  /** @type {Map<string, string>} */
  let remaining = new Map();
  /** @type {import("./kube-wait.mjs").PollState} */
  const state = {};
  if (ignored.size > 0) console.log(`kata-deploy: not waiting for node(s): ${[...ignored].join(", ")}`);
  const clean = await pollUntil({
    timeoutSeconds,
    pollSeconds,
    state,
    check: async () => {
      remaining = await labelledNodes(api);
      if (remaining.size === 0) return true;
      const report = [...remaining.values()].sort().join(", ");
      if (report !== lastReport) console.log(`kata-deploy: waiting for cleanup of ${remaining.size} node(s): ${report}`);
      lastReport = report;
      return undefined;
    },
  });
  if (clean) {
    console.log("kata-deploy: every node is clean (no Kata labels left)");
    if (untouched.size > 0) {
      const names = [...untouched.keys()].sort();
      console.log(
        `kata-deploy: note: ${names.join(", ")} still carr${names.length === 1 ? "ies" : "y"} ${labelKeys[1]} for a runtime that had no installer ` +
          `(nothing was installed there); remove it with: kubectl label node ${names.join(" ")} ${labelKeys[1]}-`,
      );
    }
    return 0;
  }
  const lastError = state.lastError;

  const forceHint =
    `to finish the destroy without them, clean them by hand (see docs/kubernetes.md) or run ` +
    `KATA_DEPLOY_IGNORE_NODES=<names or *> pulumi destroy`;
  if (lastError !== undefined && remaining.size === 0) {
    console.error(
      `kata-deploy: timed out after ${timeoutSeconds}s: the Kubernetes API could not be queried for labelled nodes ` +
        `(${errorMessage(lastError)}); ${forceHint}`,
    );
  } else {
    const names = [...remaining.keys()].sort();
    console.error(
      `kata-deploy: timed out after ${timeoutSeconds}s waiting for Kata to be removed; nodes still labelled: ` +
        `${[...remaining.values()].sort().join(", ")}. Check their cleanup pods ` +
        `(kubectl -n ${namespace} get pods -l app.kubernetes.io/component=cleanup -o wide); ${forceHint.replace("<names or *>", names.join(","))}`,
    );
  }
  return 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`kata-deploy: ${errorMessage(error)}`);
    process.exit(1);
  },
);
