// Pure decisions about Kubernetes objects (kept apart from the client so they load without it).
import type { V1DaemonSet, V1Node, V1NodeSelector, V1NodeSelectorRequirement } from "@kubernetes/client-node";

/** containerd:// → containerd, cri-o:// → crio (the label values the installers select on). */
export function runtimeFromVersion(containerRuntimeVersion: string | undefined): "containerd" | "crio" | undefined {
  if (containerRuntimeVersion?.startsWith("containerd://")) return "containerd";
  if (containerRuntimeVersion?.startsWith("cri-o://")) return "crio";
  return undefined;
}

/**
 * A rollout, not a removal: the DaemonSet still exists, is not being deleted, and its pod template still
 * selects this node. "Selects" as the DaemonSet controller decides whether a node keeps its daemon pod
 * (kubernetes pkg/controller/daemon/daemon_controller.go NodeShouldRunDaemonPod: a node that fails the pod's
 * node name or required node affinity gets its pod deleted), i.e. the template's nodeSelector (every label
 * matches) and its required node affinity (k8s.io/component-helpers/scheduling/corev1/nodeaffinity
 * RequiredNodeAffinity.Match). Taints are not compared: an evicted pod's DaemonSet still wants the node.
 */
export function isRollout(daemonSet: V1DaemonSet | undefined, node: V1Node): boolean {
  if (daemonSet === undefined || daemonSet.metadata?.deletionTimestamp) return false;
  const template = daemonSet.spec?.template.spec;
  const labels = node.metadata?.labels ?? {};
  const selected = Object.entries(template?.nodeSelector ?? {}).every(([key, value]) => labels[key] === value);
  const required = template?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  return selected && (required === undefined || nodeSelectorMatches(required, node));
}

/**
 * A required node affinity against a node, as kubernetes staging/src/k8s.io/component-helpers/scheduling/
 * corev1/nodeaffinity/nodeaffinity.go (LazyErrorNodeSelector.Match) evaluates it: the terms are ORed, a term
 * without requirements is skipped (so no terms match nothing), a term that does not parse does not match, and
 * a term's `matchFields` are checked only when the node has a name (extractNodeFields).
 */
export function nodeSelectorMatches(selector: V1NodeSelector, node: V1Node): boolean {
  const labels = node.metadata?.labels ?? {};
  const fields: Record<string, string> = node.metadata?.name ? { "metadata.name": node.metadata.name } : {};
  return (selector.nodeSelectorTerms ?? []).some((term) => {
    const expressions = term.matchExpressions ?? [];
    const matchFields = term.matchFields ?? [];
    if (expressions.length === 0 && matchFields.length === 0) return false;
    if (!expressions.every((requirement) => labelRequirementMatches(requirement, labels))) return false;
    // nodeSelectorRequirementsAsFieldSelector: In and NotIn with exactly one value, anything else fails the term.
    if (!matchFields.every((requirement) => ["In", "NotIn"].includes(requirement.operator) && requirement.values?.length === 1)) return false;
    if (Object.keys(fields).length === 0) return true;
    return matchFields.every((requirement) => (requirement.operator === "In") === (fields[requirement.key] === requirement.values?.[0]));
  });
}

const INTEGER = /^[+-]?\d+$/;

/**
 * One `matchExpressions` requirement, as k8s.io/apimachinery pkg/labels/selector.go evaluates it (NewRequirement
 * refuses In/NotIn without values, Exists/DoesNotExist with values, Gt/Lt without exactly one integer value: the
 * term then does not match; Requirement.Matches: NotIn and DoesNotExist match an absent key, Gt and Lt never
 * match an absent key or a value that is not an integer).
 */
function labelRequirementMatches(requirement: V1NodeSelectorRequirement, labels: Record<string, string>): boolean {
  const present = Object.hasOwn(labels, requirement.key);
  const value = labels[requirement.key];
  const wanted = requirement.values ?? [];
  switch (requirement.operator) {
    case "In":
      return wanted.length > 0 && present && wanted.includes(value);
    case "NotIn":
      return wanted.length > 0 && (!present || !wanted.includes(value));
    case "Exists":
      return wanted.length === 0 && present;
    case "DoesNotExist":
      return wanted.length === 0 && !present;
    case "Gt":
    case "Lt": {
      if (wanted.length !== 1 || !INTEGER.test(wanted[0]) || !present || !INTEGER.test(value)) return false;
      const [have, limit] = [BigInt(value), BigInt(wanted[0])];
      return requirement.operator === "Gt" ? have > limit : have < limit;
    }
    default:
      return false;
  }
}
