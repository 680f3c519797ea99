// Pure decisions about Kubernetes objects (kept apart from the client so they load without it).
import type { V1DaemonSet, V1Node } from "@kubernetes/client-node";

/** containerd:// → containerd, cri-o:// → crio (the label values the installers select on). */
export function runtimeFromVersion(containerRuntimeVersion: string | undefined): "containerd" | "crio" | undefined {
  if (containerRuntimeVersion?.startsWith("containerd://")) return "containerd";
  if (containerRuntimeVersion?.startsWith("cri-o://")) return "crio";
  return undefined;
}

/**
 * A rollout, not a removal: the DaemonSet still exists, is not being deleted, and its pod template
 * still selects this node (every nodeSelector label matches).
 */
export function isRollout(daemonSet: V1DaemonSet | undefined, node: V1Node): boolean {
  if (daemonSet === undefined || daemonSet.metadata?.deletionTimestamp) return false;
  const selector = daemonSet.spec?.template.spec?.nodeSelector ?? {};
  const labels = node.metadata?.labels ?? {};
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}
