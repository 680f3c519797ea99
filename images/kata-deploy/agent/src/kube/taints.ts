// Startup taints (issue 12 point 5): once Kata is installed on a node and the node is labelled, the installer
// removes the taints the deployment lists (`--startup-taints`), which kept workloads off the node until then
// (e.g. a Karpenter NodePool's `startupTaints`). Exactly those taints: every other taint stays. Never added
// back on uninstall: tainting a node that runs pods would keep new ones off it (NoSchedule) or evict the
// running ones (NoExecute), and the node is perfectly usable for runc pods without Kata.
//
// Behaviour follows upstream kata-deploy (kata-containers tools/packaging/kata-deploy/binary/src/k8s/client.rs,
// remove_node_taints and partition_taints): a matcher is a key (every effect) or key and effect; the value is not
// compared; a taint that is not there is fine; the write is a JSON patch guarded by the resourceVersion that was
// read, retried when the node changed meanwhile. Unlike upstream, a failure is not only a warning: the CLI
// fails the install with the reason, so the pod restarts (and retries) and `pulumi up` reports it.
import type { V1Node, V1Taint } from "@kubernetes/client-node";
import type { StartupTaint } from "../../../../../components/contract";
import type { KubeClient } from "./client";
import * as log from "../report/log";

/** How often the patch is tried when the node keeps changing between the read and the write (upstream: 3). */
export const TAINT_PATCH_ATTEMPTS = 5;

/** `key:Effect`, as `kubectl taint` and the log name a taint. */
export const taintName = (taint: { key: string; effect?: string }): string => (taint.effect ? `${taint.key}:${taint.effect}` : taint.key);

/** Whether `taint` is one the deployment lists: same key, and same effect unless the entry names none. */
export function isStartupTaint(taint: { key: string; effect: string }, startupTaints: readonly StartupTaint[]): boolean {
  return startupTaints.some((matcher) => matcher.key === taint.key && (matcher.effect === undefined || matcher.effect === taint.effect));
}

/** The node's taints split into those to keep (in their order) and those to remove. */
export function partitionTaints<T extends { key: string; effect: string }>(taints: readonly T[], startupTaints: readonly StartupTaint[]): { kept: T[]; removed: T[] } {
  return { kept: taints.filter((taint) => !isStartupTaint(taint, startupTaints)), removed: taints.filter((taint) => isStartupTaint(taint, startupTaints)) };
}

export type TaintRemoval =
  /** The taints removed now (empty when none of them was on the node). */
  | { removed: string[]; failed?: undefined }
  /** Not removed: which ones stay, and the API server's reason. */
  | { failed: string[]; reason: string; removed?: undefined };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Removes the node's taints that match `startupTaints` and keeps every other one. Read failures (no answer,
 * 403 on get) throw the client's one-line UserError; a refused write is returned as `failed` with the reason.
 */
export async function removeStartupTaints(client: KubeClient, nodeName: string, startupTaints: readonly StartupTaint[], attempts = TAINT_PATCH_ATTEMPTS): Promise<TaintRemoval> {
  let node: V1Node = await client.getNode(nodeName);
  let removed: V1Taint[] = [];
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const resourceVersion = node.metadata?.resourceVersion ?? "";
    const split = partitionTaints(node.spec?.taints ?? [], startupTaints);
    removed = split.removed;
    if (removed.length === 0) return { removed: [] };
    const refused = await client.replaceNodeTaints(nodeName, resourceVersion, split.kept);
    if (refused === undefined) return { removed: removed.map(taintName) };
    const names = removed.map(taintName);
    const reason = `HTTP ${refused.status}${refused.message ? `: ${refused.message}` : ""}`;
    // 422 is what a failed `test` gets (apiserver pkg/endpoints/handlers/patch.go, applyJSPatch), 409 a write
    // that lost a race inside the server. But a ValidatingAdmissionPolicy also refuses with 422 by default
    // (apiserver pkg/admission/plugin/policy/validating/dispatcher.go): only a node that really changed since
    // the read is worth another attempt; otherwise the refusal is the answer.
    if (refused.status !== 409 && refused.status !== 422) return { failed: names, reason: refusalReason(refused.status, reason) };
    const now = await client.getNode(nodeName);
    if (now.metadata?.resourceVersion === resourceVersion) return { failed: names, reason: `the API server refused the change (${reason})` };
    log.info(`node ${nodeName} changed while its taints were being removed (attempt ${attempt}/${attempts}); reading them again`);
    node = now;
    if (attempt < attempts) await sleep(50 * attempt);
  }
  return {
    failed: removed.map(taintName),
    reason: `the node changed between reading and writing its taints on each of ${attempts} attempts (another controller keeps writing to it)`,
  };
}

function refusalReason(status: number, reason: string): string {
  if (status === 403) return `forbidden (${reason})`;
  return `the API server refused the change (${reason})`;
}
