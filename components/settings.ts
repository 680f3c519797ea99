// The vocabulary shared by the argument validation, the pure manifest builders, the Pulumi component
// and the YAML renderer. Plain data only: importing this file has no side effects.

/** Container runtimes whose nodes the installers configure (the value of the `<prefix>/container-runtime` label). */
export const CONTAINER_RUNTIMES = ["containerd", "crio"] as const;
export type ContainerRuntime = (typeof CONTAINER_RUNTIMES)[number];

/**
 * containerd distributions. They differ in where containerd's configuration lives on the node, which is
 * the only host directory besides the install prefix that the containerd installer mounts.
 */
export const CONTAINERD_FLAVORS = ["containerd", "k3s", "rke2"] as const;
export type ContainerdFlavor = (typeof CONTAINERD_FLAVORS)[number];

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

/** The seed's label keys live under this prefix. */
export const DEFAULT_LABEL_PREFIX = "kata-containers.io";
export const DEFAULT_RUNTIMES: readonly ContainerRuntime[] = ["containerd", "crio"];
export const DEFAULT_SHIMS: readonly string[] = ["qemu", "fc"];
/** Namespace the component creates when none is given. */
export const DEFAULT_NAMESPACE = "kata-deploy";
/** One node at a time: an installer restarts the node's container runtime. */
export const DEFAULT_MAX_UNAVAILABLE = 1;
/** How long `pulumi destroy` waits for every node to be cleaned before it fails. */
export const DEFAULT_CLEANUP_TIMEOUT_SECONDS = 600;

/** Where the image carries the unpacked Kata release (see images/kata-deploy/Dockerfile). */
export const ARTIFACTS_DIR = "/opt/kata-artifacts";
/** Where Kata is installed on the node. */
export const INSTALL_PREFIX = "/opt/kata";
/** Where the node's file system is mounted inside the agent's containers (`--host-root`). */
export const HOST_ROOT = "/host";

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
}

/** What the pure builders need: the settings plus the image every DaemonSet runs. */
export interface ManifestOptions extends KataSettings {
  /** Image reference, ideally pinned by digest (`repo@sha256:...`). */
  image: string;
}

/** Label keys derived from the prefix. */
export function labelKeys(labelPrefix: string): { containerRuntime: string; kataRuntime: string } {
  return {
    containerRuntime: `${labelPrefix}/container-runtime`,
    kataRuntime: `${labelPrefix}/kata-runtime`,
  };
}
