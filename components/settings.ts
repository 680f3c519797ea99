// The vocabulary shared by the argument validation, the pure manifest builders, the Pulumi component
// and the YAML renderer. Plain data only: importing this file has no side effects. What the node agent must
// agree on (runtimes, flavours, labels, paths, flags) is in contract.ts, which the agent imports too.
import { ContainerdFlavor, ContainerRuntime, NodeArch, StartupTaint, TaintEffect, type KataShimConfig } from "./contract";

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
// Startup taints (issue 12 point 5): shared with the agent.
export { formatStartupTaints, TAINT_EFFECTS, TaintEffect } from "./contract";
export type { StartupTaint } from "./contract";
// Mixed-architecture clusters (issue 12 point 3): shared with the agent.
export { NODE_ARCH_LABEL, NODE_ARCHES, NodeArch, shimLabelKey } from "./contract";

/**
 * Host directories the containerd installer mounts: every flavour keeps containerd's configuration under
 * /etc (containerd, k0s) or /var (k3s, rke2 under /var/lib/rancher, microk8s under /var/snap), and both exist
 * on every node, so a pod never waits on a missing hostPath; the agent tells the flavour from what it finds
 * there. A custom containerdConfigPath outside them adds its own directory.
 */
export const CONTAINERD_HOST_DIRS = ["/etc", "/var"] as const;
/** Host directory holding CRI-O's configuration. */
export const CRIO_CONFIG_DIR = "/etc/crio";

/** Resources a pod sandbox costs on top of its containers (RuntimeClass `overhead.podFixed`). */
export interface PodOverhead {
  /** Kubernetes quantity, e.g. "160Mi". */
  memory: string;
  /** Kubernetes quantity, e.g. "250m". */
  cpu: string;
}

/**
 * Kata shims this project knows, each with the sandbox overhead (a VM's kernel, agent and hypervisor) that
 * upstream kata-deploy's RuntimeClasses declare for it by default: kata-containers/kata-containers
 * tools/packaging/kata-deploy/helm-chart/kata-deploy/templates/runtimeclasses.yaml at tag 4.1.0
 * ("kata-deploy.runtimeClassConfigs"). The QEMU shims use 320Mi there: on aarch64 QEMU's own footprint is
 * ~160Mi, and with sandbox_cgroup_only the VMM runs inside the pod's cgroup. Upstream writes one CPU as
 * "1.0"; "1" is the same quantity in the form the API server stores, so a refresh shows no drift.
 * `qemu-sev` and `cloud-hypervisor` are 3.x shims that 4.1.0 no longer has; their figures are from the
 * 3.x RuntimeClass files (tools/packaging/kata-deploy/runtimeclasses/kata-qemu-sev.yaml at 3.17.0,
 * kata-cloud-hypervisor.yaml at 3.20.0).
 */
export const SHIM_DEFAULT_OVERHEAD: Readonly<Record<string, PodOverhead>> = {
  qemu: { memory: "320Mi", cpu: "250m" },
  "qemu-runtime-rs": { memory: "320Mi", cpu: "250m" },
  "qemu-coco-dev": { memory: "160Mi", cpu: "250m" },
  "qemu-tdx": { memory: "2048Mi", cpu: "1" },
  "qemu-snp": { memory: "2048Mi", cpu: "1" },
  "qemu-sev": { memory: "2048Mi", cpu: "1" },
  "qemu-se": { memory: "1024Mi", cpu: "1" },
  "qemu-nvidia-gpu": { memory: "10240Mi", cpu: "1" },
  fc: { memory: "130Mi", cpu: "250m" },
  clh: { memory: "130Mi", cpu: "250m" },
  "cloud-hypervisor": { memory: "130Mi", cpu: "250m" },
  dragonball: { memory: "130Mi", cpu: "250m" },
  stratovirt: { memory: "130Mi", cpu: "250m" },
};
/**
 * Node labels a shim's RuntimeClass requires by default besides `<prefix>/kata-runtime=true`: upstream's
 * default values (4.1.0 helm-chart/kata-deploy/values.yaml `shims.<shim>.runtimeClass.nodeSelector`; the
 * label is set by NVIDIA's gpu-operator, "false" meaning the GPU is not in confidential-computing mode).
 * A shim's entry in `runtimeClassNodeSelector` replaces its default.
 */
export const SHIM_DEFAULT_RUNTIME_CLASS_NODE_SELECTOR: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  "qemu-nvidia-gpu": { "nvidia.com/cc.ready.state": "false" },
};
export const KNOWN_SHIMS: readonly string[] = Object.keys(SHIM_DEFAULT_OVERHEAD);

export const DEFAULT_RUNTIMES: readonly ContainerRuntime[] = ["containerd", "crio"];
export const DEFAULT_SHIMS: readonly string[] = ["qemu", "fc"];
/** Name of the RuntimeClass for the default shim (upstream's `runtimeClasses.defaultName`). */
export const DEFAULT_RUNTIME_CLASS_NAME = "kata";
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

// TaintEffect (and TAINT_EFFECTS) live in contract.ts: the agent checks --startup-taints against them.

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

/** When the kubelet pulls a container's image (Kubernetes `imagePullPolicy`). */
export const ImagePullPolicy = {
  /** Every time a container starts (a moved tag is followed; the registry must be reachable, also at destroy). */
  Always: "Always",
  /** Only when the node does not have the image yet (right for an image pinned by digest). */
  IfNotPresent: "IfNotPresent",
  /** Never: the image must already be on the node. */
  Never: "Never",
} as const;
export type ImagePullPolicy = (typeof ImagePullPolicy)[keyof typeof ImagePullPolicy];
export const IMAGE_PULL_POLICIES: readonly ImagePullPolicy[] = Object.values(ImagePullPolicy);
/** The component's images are pinned by digest when it builds them, so a node pulls each at most once. */
export const DEFAULT_IMAGE_PULL_POLICY: ImagePullPolicy = "IfNotPresent";

/** How a node selector requirement compares a node label (or field) with its values. */
export const NodeSelectorOperator = {
  /** The label's value is one of `values`. */
  In: "In",
  /** The label is absent or its value is none of `values`. */
  NotIn: "NotIn",
  /** The label is present (no `values`). */
  Exists: "Exists",
  /** The label is absent (no `values`). */
  DoesNotExist: "DoesNotExist",
  /** The label's value, an integer, is greater than the one value given. */
  Gt: "Gt",
  /** The label's value, an integer, is less than the one value given. */
  Lt: "Lt",
} as const;
export type NodeSelectorOperator = (typeof NodeSelectorOperator)[keyof typeof NodeSelectorOperator];
export const NODE_SELECTOR_OPERATORS: readonly NodeSelectorOperator[] = Object.values(NodeSelectorOperator);

/** One condition on a node label (`matchExpressions`) or on the node's name (`matchFields`, key `metadata.name`). */
export interface NodeSelectorRequirement {
  /** A node label key, or `metadata.name` in `matchFields`. Required. */
  key: string;
  /** `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt` or `Lt` (`matchFields`: `In` or `NotIn`). Required. */
  operator: NodeSelectorOperator;
  /** Values to compare with: none for `Exists`/`DoesNotExist`, one integer for `Gt`/`Lt`, one name in `matchFields`. Defaults to none. */
  values?: string[];
}

/** Requirements that must all hold (an empty term matches no node, so one is refused). */
export interface NodeSelectorTerm {
  /** Conditions on node labels. Defaults to none. */
  matchExpressions?: NodeSelectorRequirement[];
  /** Conditions on node fields (only `metadata.name`). Defaults to none. */
  matchFields?: NodeSelectorRequirement[];
}

/** Node selector terms, of which at least one must match (they are ORed). */
export interface NodeSelector {
  /** At least one term. Required. */
  nodeSelectorTerms: NodeSelectorTerm[];
}

/** A preference for nodes matching a term, weighed against the other preferences. */
export interface PreferredSchedulingTerm {
  /** 1 to 100. Required. */
  weight: number;
  /** The nodes preferred. Required. */
  preference: NodeSelectorTerm;
}

/** The Kubernetes `NodeAffinity` of a pod. */
export interface NodeAffinity {
  /** Nodes the pod may run on (terms ORed), next to `nodeSelector` (ANDed with it). Defaults to none (every node). */
  requiredDuringSchedulingIgnoredDuringExecution?: NodeSelector;
  /**
   * Preferences; they do not restrict which nodes a DaemonSet runs on (each pod is bound to its node), so
   * they change nothing for the component's pods and are passed on for parity with upstream's chart. Defaults to none.
   */
  preferredDuringSchedulingIgnoredDuringExecution?: PreferredSchedulingTerm[];
}

/**
 * The pod affinity the component accepts: node affinity only. Pod (anti-)affinity is refused: an installer
 * kept off its node by another pod can neither install Kata there nor, on removal, uninstall it.
 */
export interface Affinity {
  /** Node affinity of the labeler and the installers. Defaults to none. */
  nodeAffinity?: NodeAffinity;
}

/** What one shim's RuntimeClass (and the default RuntimeClass when it is that shim) declares. */
export interface ShimRuntimeClass {
  /** `overhead.podFixed`; undefined: the RuntimeClass declares no overhead. */
  overhead?: PodOverhead;
  /** Node labels required in `scheduling.nodeSelector` besides `<prefix>/kata-runtime=true`. */
  nodeSelector: Record<string, string>;
}

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
  /** A plain containerd elsewhere: its config file on the host (`--containerd-config`). */
  containerdConfigPath?: string;
  /** Its socket on the host (`--containerd-socket`). */
  containerdSocket?: string;
  /** Its systemd unit (`--containerd-unit`). */
  containerdUnit?: string;
  /** Overhead and scheduling of each shim's RuntimeClass, for every shim in `shims`. */
  runtimeClasses: Record<string, ShimRuntimeClass>;
  /** Also create RuntimeClass `defaultRuntimeClassName`, an alias of `kata-<defaultShim>` (per node when the architectures' defaults differ). */
  createDefaultRuntimeClass: boolean;
  /** Also set the container runtime's own log level to debug (containerd `[debug] level`, CRI-O `log_level`). */
  containerRuntimeDebug: boolean;
  /** Name of the default shim's alias RuntimeClass. */
  defaultRuntimeClassName: string;
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
  /**
   * Taints each installer removes from its node once Kata is installed there (none: `[]`). The labeler and the
   * installers tolerate them on top of `tolerations`, or they would never run on the tainted node.
   */
  startupTaints: StartupTaint[];
  /** imagePullPolicy of every container. */
  imagePullPolicy: ImagePullPolicy;
  // ---- mixed-architecture clusters (issue 12 point 3) ----
  /**
   * Per node architecture, the shims its nodes install (a list may be empty: that architecture gets no Kata);
   * undefined: every node installs `shims` whatever its architecture. When set, `shims` is the union of the lists
   * and architectures not listed install nothing.
   */
  shimsByArch?: Partial<Record<NodeArch, string[]>>;
  /** Per architecture that has shims, its default shim (containerd's `untrusted` alias); set exactly when `shimsByArch` is. */
  defaultShimByArch?: Partial<Record<NodeArch, string>>;
  // ---- end of mixed-architecture clusters ----
  /** Extra labels of every DaemonSet's pods (never in a DaemonSet's selector, which is immutable). */
  podLabels: Record<string, string>;
  /** Annotations of every DaemonSet's pods. */
  podAnnotations: Record<string, string>;
  /** Node affinity of the labeler and the installers (never the cleanup DaemonSet); undefined: none. */
  affinity?: Affinity;
  // --- snapshotter / guest pull (issue 12) ---
  /** containerd snapshotter per shim (keys in `shims`); `{}`: containerd's default for every shim. */
  snapshotters: Record<string, string>;
  /** Shims whose images the guest pulls on CRI-O (`runtime_pull_image`); subset of `shims`. */
  guestPull: string[];
  // --- end snapshotter / guest pull ---
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
  overhead: Partial<PodOverhead>;
}

/** What the pure builders need: the settings plus the image every DaemonSet runs. */
export interface ManifestOptions extends KataSettings {
  /** Image reference, ideally pinned by digest (`repo@sha256:...`). */
  image: string;
}

// ---- mixed-architecture clusters (issue 12 point 3) ---------------------------------------------------------

/**
 * The architectures Kata 4.1.0 ships each known shim for: kata-containers/kata-containers
 * tools/packaging/kata-deploy/binary/src/config.rs at tag 4.1.0, get_default_shims_for_arch (what kata-deploy
 * installs by default on x86_64, aarch64, s390x, ppc64le, i.e. the shims whose configuration that architecture's
 * release assets carry). The chart's `supportedArches` (values.yaml) is narrower for fc, clh and dragonball
 * (amd64 only), but the aarch64 assets carry them (local-build/Makefile builds firecracker-tarball on aarch64).
 * Shims of older releases (`qemu-sev`, `cloud-hypervisor`) and `stratovirt` are not in that list: the project does
 * not know their architectures and does not check them.
 */
export const SHIM_ARCHES: Readonly<Record<string, readonly NodeArch[]>> = {
  qemu: ["amd64", "arm64", "s390x", "ppc64le"],
  "qemu-runtime-rs": ["amd64", "arm64", "s390x", "ppc64le"],
  "qemu-coco-dev": ["amd64", "s390x"],
  "qemu-tdx": ["amd64"],
  "qemu-snp": ["amd64"],
  "qemu-se": ["s390x"],
  "qemu-nvidia-gpu": ["amd64", "arm64"],
  fc: ["amd64", "arm64"],
  clh: ["amd64", "arm64"],
  dragonball: ["amd64", "arm64"],
};

// ---- end of mixed-architecture clusters ---------------------------------------------------------------------
