// The vocabulary shared by the argument validation, the pure manifest builders, the Pulumi component
// and the YAML renderer. Plain data only: importing this file has no side effects. What the node agent must
// agree on (runtimes, flavours, labels, paths, flags) is in contract.ts, which the agent imports too.
import { ContainerdFlavor, ContainerRuntime, type KataShimConfig } from "./contract";

export {
  ARTIFACTS_DIR,
  CONTAINER_RUNTIMES,
  CONTAINERD_FLAVORS,
  ContainerdFlavor,
  ContainerRuntime,
  DEFAULT_LABEL_PREFIX,
  HOST_ROOT,
  INSTALL_PREFIX,
  labelKeys,
} from "./contract";

/** Host directory holding the runtime's configuration, per runtime and containerd flavor. */
export const RUNTIME_CONFIG_DIRS: Record<ContainerdFlavor, string> & { crio: string } = {
  containerd: "/etc/containerd",
  k3s: "/var/lib/rancher/k3s/agent/etc/containerd",
  rke2: "/var/lib/rancher/rke2/agent/etc/containerd",
  crio: "/etc/crio",
};

/** Resources a pod sandbox costs on top of its containers (RuntimeClass `overhead.podFixed`). */
export interface PodOverhead {
  /** Kubernetes quantity, e.g. "160Mi". */
  memory: string;
  /** Kubernetes quantity, e.g. "250m". */
  cpu: string;
}

/**
 * Kata shims this project knows, each with the sandbox overhead that upstream kata-deploy's RuntimeClasses
 * declare for it (a VM's kernel, agent and hypervisor; TEEs and GPU passthrough need far more memory).
 */
export const SHIM_DEFAULT_OVERHEAD: Readonly<Record<string, PodOverhead>> = {
  qemu: { memory: "160Mi", cpu: "250m" },
  "qemu-runtime-rs": { memory: "160Mi", cpu: "250m" },
  "qemu-coco-dev": { memory: "160Mi", cpu: "250m" },
  "qemu-tdx": { memory: "2048Mi", cpu: "1" },
  "qemu-snp": { memory: "2048Mi", cpu: "1" },
  "qemu-sev": { memory: "2048Mi", cpu: "1" },
  "qemu-se": { memory: "2048Mi", cpu: "1" },
  "qemu-nvidia-gpu": { memory: "4096Mi", cpu: "1" },
  fc: { memory: "130Mi", cpu: "250m" },
  clh: { memory: "130Mi", cpu: "250m" },
  "cloud-hypervisor": { memory: "130Mi", cpu: "250m" },
  dragonball: { memory: "130Mi", cpu: "250m" },
  stratovirt: { memory: "130Mi", cpu: "250m" },
};
export const KNOWN_SHIMS: readonly string[] = Object.keys(SHIM_DEFAULT_OVERHEAD);

export const DEFAULT_RUNTIMES: readonly ContainerRuntime[] = ["containerd", "crio"];
export const DEFAULT_SHIMS: readonly string[] = ["qemu", "fc"];
/** Namespace the component creates when none is given. */
export const DEFAULT_NAMESPACE = "kata-deploy";
/** One node at a time: an installer restarts the node's container runtime. */
export const DEFAULT_MAX_UNAVAILABLE = 1;
/** How long `pulumi destroy` waits for every node to be cleaned before it fails. */
export const DEFAULT_CLEANUP_TIMEOUT_SECONDS = 600;

/** How a toleration matches a taint's value. */
export const TolerationOperator = {
  /** Any value (with an empty key: every taint). */
  Exists: "Exists",
  /** The value given (the default in Kubernetes). */
  Equal: "Equal",
} as const;
export type TolerationOperator = (typeof TolerationOperator)[keyof typeof TolerationOperator];
export const TOLERATION_OPERATORS: readonly TolerationOperator[] = Object.values(TolerationOperator);

/** What a taint does to pods that do not tolerate it. */
export const TaintEffect = {
  NoSchedule: "NoSchedule",
  PreferNoSchedule: "PreferNoSchedule",
  NoExecute: "NoExecute",
} as const;
export type TaintEffect = (typeof TaintEffect)[keyof typeof TaintEffect];
export const TAINT_EFFECTS: readonly TaintEffect[] = Object.values(TaintEffect);

/** A pod toleration (the Kubernetes `Toleration` fields the component accepts). */
export interface Toleration {
  /** Taint key; empty (with operator `Exists`) matches every taint. Defaults to empty. */
  key?: string;
  /** `Exists` (any value) or `Equal`. Defaults to `Equal` (as in Kubernetes). */
  operator?: TolerationOperator;
  /** Taint value to match; only with operator `Equal`. Defaults to empty. */
  value?: string;
  /** `NoSchedule`, `PreferNoSchedule` or `NoExecute`. Defaults to unset, which matches every effect. */
  effect?: TaintEffect;
  /** For `NoExecute` only: how long the pod stays after the taint appears, in seconds. Defaults to unset (forever). */
  tolerationSeconds?: number;
}

/** Compute resources a container may request or be limited to. */
export const RESOURCE_NAMES = ["cpu", "memory", "ephemeral-storage"] as const;
export type ResourceName = (typeof RESOURCE_NAMES)[number];
/**
 * A container's `resources`: Kubernetes quantities per resource name (`cpu`, `memory`, `ephemeral-storage`),
 * e.g. `{ requests: { cpu: "100m", memory: "128Mi" } }`. Maps as in the Kubernetes API (and
 * `@pulumi/kubernetes`); other resource names are refused, naming the allowed ones.
 */
export interface ContainerResources {
  /** Quantities the scheduler reserves for the container. Defaults to the component's own per container. */
  requests?: Record<string, string>;
  /** Quantities the container may not exceed. Defaults to none. */
  limits?: Record<string, string>;
}
/** The component's containers whose resources are configurable. */
export const RESOURCE_TARGETS = ["installer", "cleanup", "labeler"] as const;
export type ResourceTarget = (typeof RESOURCE_TARGETS)[number];

/**
 * Tolerate every taint: Kata goes onto (and, as important, comes off) tainted nodes too — control-plane
 * nodes, GPU pools, nodes being drained (NoExecute). An installer that a taint evicts cannot uninstall.
 */
export const TOLERATE_EVERYTHING: readonly Toleration[] = [{ operator: "Exists" }];
/**
 * Node-critical, so the installers and the cleanup are not preempted by (or left pending behind) ordinary
 * workloads on a full node. Some managed clusters (GKE) admit pods of this class only where a ResourceQuota
 * allows it (see docs/kubernetes.md).
 */
export const DEFAULT_PRIORITY_CLASS_NAME = "system-node-critical";
/**
 * Requests only, no limits: an OOM kill or CPU throttling in the middle of an install or of the preStop
 * uninstall would leave a node half-configured for the next attempt to repair. The node agent is one Node.js
 * process (~60 MiB resident); the installer also copies the Kata release (files, not memory).
 */
export const DEFAULT_RESOURCES: Readonly<Record<ResourceTarget, ContainerResources>> = {
  installer: { requests: { cpu: "100m", memory: "128Mi" } },
  cleanup: { requests: { cpu: "50m", memory: "96Mi" } },
  labeler: { requests: { cpu: "10m", memory: "64Mi" } },
};

/** Everything the manifests depend on except the image, validated and with defaults applied. */
export interface KataSettings {
  runtimes: ContainerRuntime[];
  shims: string[];
  defaultShim: string;
  /** Namespace of the DaemonSets and the ServiceAccount. */
  namespace: string;
  /** True when the component owns (creates and deletes) the namespace. */
  createNamespace: boolean;
  labelPrefix: string;
  /** Installer rolling-update budget: a positive integer or a percentage such as "25%". */
  maxUnavailable: number | string;
  containerdFlavor: ContainerdFlavor;
  /** Overhead of each shim in `shims`. */
  runtimeClassOverhead: Record<string, PodOverhead>;
  /** Also create RuntimeClass `kata`, an alias of `kata-<defaultShim>`. */
  createDefaultRuntimeClass: boolean;
  /**
   * Extra node labels that restrict where Kata goes (labeler and installers); `{}`: every node. The cleanup
   * DaemonSet ignores it on purpose: it must reach every node an installer touched, even one the selector
   * no longer matches.
   */
  nodeSelector: Record<string, string>;
  /** Tolerations of the labeler and the installers. The cleanup DaemonSet always tolerates everything. */
  tolerations: Toleration[];
  /** PriorityClass of every DaemonSet's pods; "" for none. */
  priorityClassName: string;
  /** Names of existing `kubernetes.io/dockerconfigjson` Secrets in the namespace, used to pull the image. */
  imagePullSecrets: string[];
  /** Container resources per DaemonSet. */
  resources: Record<ResourceTarget, ContainerResources>;
  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  /** Where Kata is installed on the nodes (`--prefix`, and the installers' and cleanup's hostPath). */
  installPrefix: string;
  /** Kata's own settings per shim (keys in `shims`), passed to the installers as KATA_DEPLOY_KATA_CONFIG. */
  shimConfig: Record<string, KataShimConfig>;
  /** Custom runtimes: own handler and RuntimeClass, their base shim's binary and configuration. */
  customRuntimes: CustomRuntimeSettings[];
  // ---- end of Kata configuration ----
}

/** A custom runtime, validated, with its RuntimeClass overhead (the base shim's, overridden field by field). */
export interface CustomRuntimeSettings {
  name: string;
  baseShim: string;
  dropIn?: string;
  overhead: PodOverhead;
}

/** What the pure builders need: the settings plus the image every DaemonSet runs. */
export interface ManifestOptions extends KataSettings {
  /** Image reference, ideally pinned by digest (`repo@sha256:...`). */
  image: string;
}
