// Turns a DaemonSet from the manifest builders into the `docker run` that stands in for its pod on one
// simulated node. Pure: manifests and a node description in, argument lists out.
//
// The point is fidelity: command, env, host mounts, host PID, security context, preStop and readiness all
// come from the built object, so a change to the pod spec changes what the e2e runs. A field this
// translation cannot emulate throws instead of being silently dropped (a pod that would behave
// differently in a cluster than here must not pass here).
import type { IContainer } from "kubernetes-models/v1/Container" with { "resolution-mode": "import" };
import type { IEnvVar } from "kubernetes-models/v1/EnvVar" with { "resolution-mode": "import" };
import type { IPodSpec } from "kubernetes-models/v1/PodSpec" with { "resolution-mode": "import" };
import type { IProbe } from "kubernetes-models/v1/Probe" with { "resolution-mode": "import" };
import type { ISecurityContext } from "kubernetes-models/v1/SecurityContext" with { "resolution-mode": "import" };
import type { DaemonSetManifest } from "../../../components/manifests";
import { dockerRunFlags } from "../../support/images";

/** Where the kubelet mounts a pod's service-account credentials (what in-cluster config reads). */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** A pod spec field the harness cannot reproduce with `docker run`. */
export class UnsupportedPodSpec extends Error {
  constructor(daemonSet: string, field: string, why: string) {
    super(`DaemonSet ${daemonSet}: ${field} ${why}; teach tests/e2e/support/pod.ts to emulate it`);
    this.name = "UnsupportedPodSpec";
  }
}

/** What the harness knows about the node a pod lands on and the cluster around it. */
export interface PodPlacement {
  /** The node's name (spec.nodeName; also the Node object's name in the API stand-in). */
  nodeName: string;
  /** The docker container that is the node (hostPID joins its PID namespace). */
  nodeContainer: string;
  /** The pod's name (metadata.name). */
  podName: string;
  /**
   * The outer-host directory that the node has bind-mounted at `hostPath`, so the pod and the node's
   * services see the same files. Throws when the node was not started with that bind.
   */
  hostPathSource(hostPath: string): string;
  /** The in-cluster API wiring the kubelet would give the pod. */
  api: { env: Record<string, string>; serviceAccountDir: string };
}

export interface HostPathUse {
  /** The path on the node. */
  path: string;
  /** hostPath.type ("" = no check, as Kubernetes' default). */
  type: string;
  /** The outer-host directory behind it. */
  source: string;
}

export interface PodPlan {
  daemonSet: string;
  podName: string;
  /** docker container name for the pod. */
  containerName: string;
  image: string;
  /** Arguments after `docker run -d`. */
  runArgs: string[];
  /** lifecycle.preStop.exec.command, run with `docker exec` before the container is stopped. */
  preStop?: string[];
  /** readinessProbe.exec.command; exit 0 = ready. */
  readiness?: { command: string[]; timeoutSeconds: number };
  /** terminationGracePeriodSeconds (Kubernetes' default 30). */
  terminationGraceSeconds: number;
  hostPaths: HostPathUse[];
}

// Fields that change how a pod is scheduled or accounted for, not what it does on the node. They are
// accepted and ignored; anything not listed here or handled below is refused.
const IGNORED_POD_FIELDS = new Set(["serviceAccountName", "priorityClassName", "tolerations", "restartPolicy", "dnsPolicy"]);
const HANDLED_POD_FIELDS = new Set([
  "containers",
  "volumes",
  "hostPID",
  "hostNetwork",
  "nodeSelector",
  "terminationGracePeriodSeconds",
  "automountServiceAccountToken",
]);
const IGNORED_CONTAINER_FIELDS = new Set(["name", "imagePullPolicy", "resources", "ports", "terminationMessagePolicy", "terminationMessagePath"]);
const HANDLED_CONTAINER_FIELDS = new Set([
  "image",
  "command",
  "args",
  "env",
  "volumeMounts",
  "securityContext",
  "readinessProbe",
  "lifecycle",
  "workingDir",
]);

function refuseUnknownFields(object: object, handled: Set<string>, ignored: Set<string>, fail: (field: string, why: string) => never, where: string): void {
  for (const [key, value] of Object.entries(object)) {
    if (value === undefined || handled.has(key) || ignored.has(key)) continue;
    fail(`${where}.${key}`, "is set");
  }
}

/** The value the kubelet gives an env var (only the downward-API fields a DaemonSet pod can know here). */
function envValue(envVar: IEnvVar, placement: PodPlacement, namespace: string, fail: (field: string, why: string) => never): string {
  if (envVar.value !== undefined) return envVar.value;
  const fieldPath = envVar.valueFrom?.fieldRef?.fieldPath;
  if (fieldPath === undefined) return fail(`env ${envVar.name}.valueFrom`, "is not a fieldRef");
  switch (fieldPath) {
    case "spec.nodeName":
      return placement.nodeName;
    case "metadata.namespace":
      return namespace;
    case "metadata.name":
      return placement.podName;
    default:
      return fail(`env ${envVar.name}.valueFrom.fieldRef.fieldPath`, `is ${JSON.stringify(fieldPath)}`);
  }
}

function securityFlags(context: ISecurityContext | undefined, fail: (field: string, why: string) => never): string[] {
  if (!context) return [];
  const flags: string[] = [];
  const known = new Set([
    "privileged",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "capabilities",
  ]);
  refuseUnknownFields(context, known, new Set(), fail, "securityContext");
  if (context.privileged) flags.push(...dockerRunFlags());
  else {
    for (const cap of context.capabilities?.drop ?? []) flags.push(`--cap-drop=${cap}`);
    for (const cap of context.capabilities?.add ?? []) flags.push(`--cap-add=${cap}`);
  }
  if (context.runAsNonRoot && (context.runAsUser === undefined || context.runAsUser === 0)) {
    // The kubelet would check the image's USER; the builders always pin a uid, so require that.
    fail("securityContext.runAsNonRoot", "is set without a non-zero runAsUser");
  }
  if (context.runAsUser !== undefined) flags.push("--user", `${context.runAsUser}${context.runAsGroup !== undefined ? `:${context.runAsGroup}` : ""}`);
  else if (context.runAsGroup !== undefined) fail("securityContext.runAsGroup", "is set without runAsUser");
  if (context.readOnlyRootFilesystem) flags.push("--read-only");
  if (context.allowPrivilegeEscalation === false) flags.push("--security-opt", "no-new-privileges");
  return flags;
}

function execProbe(probe: IProbe | undefined, fail: (field: string, why: string) => never, field: string): { command: string[]; timeoutSeconds: number } | undefined {
  if (!probe) return undefined;
  if (!probe.exec?.command?.length) fail(field, "is not an exec probe");
  return { command: probe.exec!.command!, timeoutSeconds: probe.timeoutSeconds ?? 1 };
}

/** True when the DaemonSet's pods may run on a node with these labels (nodeSelector only; affinity is refused). */
export function selectsNode(daemonSet: DaemonSetManifest, nodeLabels: Record<string, string>): boolean {
  const selector = daemonSet.spec.template.spec.nodeSelector ?? {};
  return Object.entries(selector).every(([key, value]) => nodeLabels[key] === value);
}

/** Every hostPath a set of DaemonSets mounts: the node must share each of them with the pods. */
export function hostPathsOf(daemonSets: readonly DaemonSetManifest[]): string[] {
  const paths = daemonSets.flatMap((ds) => (ds.spec.template.spec.volumes ?? []).flatMap((v) => (v.hostPath ? [v.hostPath.path] : [])));
  return [...new Set(paths)].sort();
}

/** The single container of a DaemonSet's pod (the builders make one per pod). */
export function podContainer(daemonSet: DaemonSetManifest): IContainer {
  const containers = daemonSet.spec.template.spec.containers;
  if (containers.length !== 1) throw new UnsupportedPodSpec(daemonSet.metadata.name, "spec.template.spec.containers", `has ${containers.length} entries (the harness runs one)`);
  return containers[0];
}

/** The `docker run` (and exec commands) standing in for `daemonSet`'s pod on one node. */
export function planPod(daemonSet: DaemonSetManifest, placement: PodPlacement): PodPlan {
  const dsName = daemonSet.metadata.name;
  const fail = (field: string, why: string): never => {
    throw new UnsupportedPodSpec(dsName, field, why);
  };
  const namespace = daemonSet.metadata.namespace ?? "default";
  const spec: IPodSpec = daemonSet.spec.template.spec;
  refuseUnknownFields(spec, HANDLED_POD_FIELDS, IGNORED_POD_FIELDS, fail, "spec.template.spec");
  if (spec.initContainers?.length) fail("spec.template.spec.initContainers", "is set");
  const container = podContainer(daemonSet);
  refuseUnknownFields(container, HANDLED_CONTAINER_FIELDS, IGNORED_CONTAINER_FIELDS, fail, `container ${container.name}`);
  if (!container.image) fail(`container ${container.name}.image`, "is missing");

  const containerName = `${placement.nodeContainer}--${placement.podName}`;
  const args: string[] = ["--name", containerName];
  // The API stand-in listens on the outer host's loopback; host networking is how the pod reaches it
  // (in a cluster the pod reaches the API server through the kubernetes Service instead).
  args.push("--network=host");
  if (spec.hostPID) args.push(`--pid=container:${placement.nodeContainer}`);
  args.push(...securityFlags(container.securityContext, fail));
  if (container.workingDir) args.push("--workdir", container.workingDir);

  // Env: the kubelet's service-link variables for the API first, then the container's own (which win).
  const env: [string, string][] = Object.entries(placement.api.env);
  for (const envVar of container.env ?? []) env.push([envVar.name, envValue(envVar, placement, namespace, fail)]);
  for (const [name, value] of env) args.push("--env", `${name}=${value}`);

  const volumes = new Map((spec.volumes ?? []).map((volume) => [volume.name, volume]));
  const hostPaths: HostPathUse[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = volumes.get(mount.name) ?? fail(`volumeMount ${mount.name}`, "names no volume");
    if (!volume.hostPath) fail(`volume ${mount.name}`, "is not a hostPath");
    if (mount.subPath || mount.subPathExpr) fail(`volumeMount ${mount.name}.subPath`, "is set");
    if (mount.mountPropagation && mount.mountPropagation !== "None") fail(`volumeMount ${mount.name}.mountPropagation`, `is ${mount.mountPropagation}`);
    const source = placement.hostPathSource(volume.hostPath!.path);
    hostPaths.push({ path: volume.hostPath!.path, type: volume.hostPath!.type ?? "", source });
    args.push("--mount", `type=bind,source=${source},target=${mount.mountPath}${mount.readOnly ? ",readonly" : ""}`);
  }
  if (spec.automountServiceAccountToken !== false) {
    args.push("--mount", `type=bind,source=${placement.api.serviceAccountDir},target=${SERVICE_ACCOUNT_DIR},readonly`);
  }

  const lifecycle = container.lifecycle;
  if (lifecycle?.postStart) fail(`container ${container.name}.lifecycle.postStart`, "is set");
  if (lifecycle?.preStop && !lifecycle.preStop.exec?.command?.length) fail(`container ${container.name}.lifecycle.preStop`, "is not an exec hook");

  // Kubernetes: `command` replaces the image's ENTRYPOINT, `args` its CMD.
  const [entrypoint, ...commandRest] = container.command ?? [];
  if (entrypoint !== undefined) args.push("--entrypoint", entrypoint);
  args.push(container.image!, ...commandRest, ...(container.args ?? []));

  return {
    daemonSet: dsName,
    podName: placement.podName,
    containerName,
    image: container.image!,
    runArgs: args,
    preStop: lifecycle?.preStop?.exec?.command,
    readiness: execProbe(container.readinessProbe, fail, `container ${container.name}.readinessProbe`),
    terminationGraceSeconds: spec.terminationGracePeriodSeconds ?? 30,
    hostPaths,
  };
}
