// The contract between the Pulumi components, which write the node agent's command lines and environment
// into the DaemonSets, and the node agent (images/kata-deploy/agent/src/cli.ts), which parses them. Both
// sides import this file (esbuild follows the agent's import, so the agent bundle carries it): a value
// added here exists on both sides, and tests/package/contract.test.ts runs the built agent's argument
// parsing on every command line the component can write.
//
// Data only: no imports, no side effects, nothing that Node.js 20 (the image's runtime) cannot run.
// Changing this file changes the agent: rebuild the bundle (`npm run build:agent`); the component refuses
// to build the image from a bundle older than this file.
//
// Closed sets are `as const` objects plus a same-named type: Pulumi's schema inference turns those into
// enums for the other languages (see @pulumi/pulumi provider/experimental/analyzer.ts, extractEnumMembers).

/** Container runtimes of the Kubernetes nodes that get Kata: the values of the `<prefix>/container-runtime` label. */
export const ContainerRuntime = {
  /** containerd (plain, k3s or rke2: see ContainerdFlavor). */
  containerd: "containerd",
  /** CRI-O. */
  crio: "crio",
} as const;
export type ContainerRuntime = (typeof ContainerRuntime)[keyof typeof ContainerRuntime];
export const CONTAINER_RUNTIMES: readonly ContainerRuntime[] = Object.values(ContainerRuntime);

/** Runtimes the agent's `--runtime` accepts: the Kubernetes ones plus Docker (the Docker quick start). */
export const AGENT_RUNTIMES = [...CONTAINER_RUNTIMES, "docker"] as const;
export type AgentRuntime = (typeof AGENT_RUNTIMES)[number];

/**
 * containerd distributions. They differ in where containerd's configuration lives on the node, its systemd
 * unit and its socket. The agent checks the flavour on every node (one cluster can mix them): `auto` uses what
 * each node runs, an explicit flavour that a node does not run is refused there with the reason.
 */
export const ContainerdFlavor = {
  /** Detect per node (from the distributions' files and units; a node keeps the flavour it was installed with). */
  auto: "auto",
  /** containerd's own packages: /etc/containerd, unit containerd (or a custom containerdConfigPath/Socket/Unit). */
  containerd: "containerd",
  /** k3s: /var/lib/rancher/k3s/agent/etc/containerd, units k3s / k3s-agent. */
  k3s: "k3s",
  /** RKE2: /var/lib/rancher/rke2/agent/etc/containerd, units rke2-server / rke2-agent. */
  rke2: "rke2",
  /** k0s: a drop-in in /etc/k0s/containerd.d, socket /run/k0s/containerd.sock, units k0sworker / k0scontroller. */
  k0s: "k0s",
  /** MicroK8s: /var/snap/microk8s/current/args/containerd-template.toml, unit snap.microk8s.daemon-containerd. */
  microk8s: "microk8s",
} as const;
export type ContainerdFlavor = (typeof ContainerdFlavor)[keyof typeof ContainerdFlavor];
export const CONTAINERD_FLAVORS: readonly ContainerdFlavor[] = Object.values(ContainerdFlavor);

/** How Docker's daemon.json names a Kata runtime (`--docker-runtime-form`). */
export const DockerRuntimeForm = {
  /** Detect the Docker version through its socket: shim-v2 on Docker >= 23, else runc. */
  auto: "auto",
  /** `runtimeType` (containerd shim v2), Docker >= 23. */
  shimV2: "shim-v2",
  /** `path` (a runc-compatible binary), what Docker < 23 understands. */
  runc: "runc",
} as const;
export type DockerRuntimeForm = (typeof DockerRuntimeForm)[keyof typeof DockerRuntimeForm];
export const DOCKER_RUNTIME_FORMS: readonly DockerRuntimeForm[] = Object.values(DockerRuntimeForm);

/** `--restart`: `systemd` restarts (and verifies) the runtime after a config change; `none` leaves that to the caller. */
export const RESTART_MODES = ["none", "systemd"] as const;
export type RestartMode = (typeof RESTART_MODES)[number];

/** The node label keys live under this prefix (the seed's). */
export const DEFAULT_LABEL_PREFIX = "kata-containers.io";
/** A label prefix must be a DNS subdomain (Kubernetes label key prefix rules). */
export const LABEL_PREFIX_PATTERN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
/** Values of the `<prefix>/kata-runtime` label. */
export const KATA_RUNTIME_LABEL = {
  /** Set by the installer once the node is installed and its runtime verified. */
  installed: "true",
  /** Set by the installer's preStop uninstall; selects the node for the cleanup DaemonSet. */
  cleanup: "cleanup",
} as const;

/** Node label keys derived from the prefix (a pure function of a string). */
export function labelKeys(labelPrefix: string): { containerRuntime: string; kataRuntime: string } {
  return { containerRuntime: `${labelPrefix}/container-runtime`, kataRuntime: `${labelPrefix}/kata-runtime` };
}

/** Where Kata is installed on the node (`--prefix`). */
export const INSTALL_PREFIX = "/opt/kata";
/** Where the image carries the unpacked Kata release (`--artifacts`; see images/kata-deploy/Dockerfile). */
export const ARTIFACTS_DIR = "/opt/kata-artifacts";
/** Where the node's file system is mounted inside the agent's containers (`--host-root`). */
export const HOST_ROOT = "/host";
/** Shims configured when `--shims` is not given (the seed's kata-qemu and kata-fc). */
export const DEFAULT_AGENT_SHIMS = ["qemu", "fc"] as const;

/** The agent's executable in the image (`/usr/local/bin/kata-deploy`). */
export const AGENT_EXECUTABLE = "kata-deploy";
/** The agent's subcommands. */
export const AGENT_COMMANDS = ["install", "uninstall", "label", "reset", "status", "docker"] as const;
export type AgentCommand = (typeof AGENT_COMMANDS)[number];

/** The agent's flags, as node:util parseArgs options (the agent parses with exactly this table, strict). */
export const AGENT_OPTIONS = {
  runtime: { type: "string" },
  "host-root": { type: "string" },
  artifacts: { type: "string" },
  shims: { type: "string" },
  "default-shim": { type: "string" },
  "default-handler": { type: "string" },
  "container-runtime-debug": { type: "boolean" },
  restart: { type: "string" },
  prefix: { type: "string" },
  "containerd-flavor": { type: "string" },
  // A containerd that is not where the flavour puts it (issue 12 point 4).
  "containerd-config": { type: "string" },
  "containerd-socket": { type: "string" },
  "containerd-unit": { type: "string" },
  "docker-runtime-form": { type: "string" },
  "label-prefix": { type: "string" },
  "startup-taints": { type: "string" },
  node: { type: "string" },
  daemon: { type: "boolean" },
  ready: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;
export type AgentFlag = keyof typeof AGENT_OPTIONS;

/** Environment variables the agent (and the destroy-time wait) read. */
export const AGENT_ENV = {
  /** Label prefix when `--label-prefix` is not given (also read by components/wait-for-clean-nodes.mjs). */
  labelPrefix: "KATA_DEPLOY_LABEL_PREFIX",
  /** The node the pod runs on (downward API `spec.nodeName`), when `--node` is not given. */
  nodeName: "NODE_NAME",
  /** The installer pod's namespace (downward API), to tell a rollout from a removal in preStop. */
  podNamespace: "POD_NAMESPACE",
  /** The installer's DaemonSet name, to tell a rollout from a removal in preStop. */
  daemonSetName: "DAEMONSET_NAME",
  /** containerd snapshotter per Kata handler, `shim:snapshotter,...` (upstream kata-deploy's variable). */
  snapshotterHandlerMapping: "SNAPSHOTTER_HANDLER_MAPPING",
  // --- snapshotter / guest pull (issue 12) ---
  /** CRI-O: shims whose images the guest pulls, `shim:guest-pull,...` (upstream kata-deploy's variable). */
  pullTypeMapping: "PULL_TYPE_MAPPING",
  // --- end snapshotter / guest pull ---
  /** Kata's own configuration per shim and the custom runtimes: a KataNodeConfig as JSON (install only). */
  kataConfig: "KATA_DEPLOY_KATA_CONFIG",
} as const;

// ---- startup taints (issue 12 point 5) ----------------------------------------------------------------------

/** What a taint does to pods that do not tolerate it (core/v1 Taint.effect). */
export const TaintEffect = {
  NoSchedule: "NoSchedule",
  PreferNoSchedule: "PreferNoSchedule",
  NoExecute: "NoExecute",
} as const;
export type TaintEffect = (typeof TaintEffect)[keyof typeof TaintEffect];
export const TAINT_EFFECTS: readonly TaintEffect[] = Object.values(TaintEffect);

/**
 * A node taint the installer removes once Kata is installed on the node (`startupTaints`, `--startup-taints`).
 * A node holds at most one taint per key and effect (kubernetes/kubernetes pkg/apis/core/validation/validation.go,
 * validateNodeTaints: "taints must be unique by key and effect pair"), so key and effect name a taint and its
 * value is not needed.
 */
export interface StartupTaint {
  /** Taint key, a qualified name such as `example.com/kata-not-ready`. Required. */
  key: string;
  /** Remove only the taint with this effect. Defaults to unset: the key's taints of every effect. */
  effect?: TaintEffect;
}

/**
 * A taint key as Kubernetes validates it (apimachinery ValidateLabelName, a qualified name): an optional DNS
 * subdomain prefix (at most 253 characters) and `/`, then a name of 1-63 letters, digits, '-', '_' and '.',
 * starting and ending with a letter or digit.
 */
export const TAINT_KEY_PATTERN = /^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** `--startup-taints`: comma-separated `key` or `key:effect`, upstream kata-deploy's STARTUP_TAINTS format. */
export function formatStartupTaints(taints: readonly StartupTaint[]): string {
  return taints.map((taint) => (taint.effect === undefined ? taint.key : `${taint.key}:${taint.effect}`)).join(",");
}

/** The inverse of formatStartupTaints, or the first entry it cannot read and why. */
export function parseStartupTaints(text: string): { taints: StartupTaint[] } | { entry: string; problem: string } {
  const taints: StartupTaint[] = [];
  for (const entry of text.split(",").map((item) => item.trim()).filter((item) => item !== "")) {
    const colon = entry.indexOf(":");
    const key = colon === -1 ? entry : entry.slice(0, colon);
    const effect = colon === -1 ? undefined : entry.slice(colon + 1);
    const slash = key.lastIndexOf("/");
    if (!TAINT_KEY_PATTERN.test(key) || slash > 253 || key.length - slash - 1 > 63) {
      return { entry, problem: `${JSON.stringify(key)} is not a taint key (a qualified name such as example.com/kata-not-ready)` };
    }
    if (effect !== undefined && !(TAINT_EFFECTS as readonly string[]).includes(effect)) {
      return { entry, problem: `effect ${JSON.stringify(effect)} is not one of ${TAINT_EFFECTS.join(", ")}` };
    }
    if (taints.some((other) => other.key === key && (other.effect === undefined || effect === undefined || other.effect === effect))) {
      return { entry, problem: `overlaps an earlier entry for key ${key}; list each taint once` };
    }
    taints.push(effect === undefined ? { key } : { key, effect: effect as TaintEffect });
  }
  return { taints };
}

// ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) -----------------
// What KATA_DEPLOY_KATA_CONFIG carries. The component validates it at preview (components/validation.ts) and
// the agent again when it parses it (images/kata-deploy/agent/src/lifecycle/kata-settings.ts), with the
// checks below shared so both sides refuse the same values.

/** Log levels of runtime-rs' `[runtime] log_level` (kata-containers src/libs/kata-types/src/config/runtime.rs). */
export const KataLogLevel = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warn: "warn",
  error: "error",
  critical: "critical",
} as const;
export type KataLogLevel = (typeof KataLogLevel)[keyof typeof KataLogLevel];
export const KATA_LOG_LEVELS: readonly KataLogLevel[] = Object.values(KataLogLevel);

/** Kata settings for one shim, written as drop-ins next to that shim's own copy of its configuration. */
export interface KataShimConfig {
  /** Hypervisor annotation names pods may set (`io.katacontainers.config.hypervisor.<name>`), added to the shim's own list. */
  allowedHypervisorAnnotations?: string[];
  /** `agent.https_proxy=` kernel parameter: the proxy the guest agent pulls images through (guest pull). */
  agentHttpsProxy?: string;
  /** `agent.no_proxy=` kernel parameter: hosts the guest agent reaches directly. */
  agentNoProxy?: string;
  /** Kata runtime, agent and hypervisor debug logs (`enable_debug`). */
  debug?: boolean;
  /** runtime-rs shims only: the runtime's `log_level`. */
  runtimeLogLevel?: KataLogLevel;
  /**
   * containerd only: the guest pulls every container image itself, without a remote snapshotter (confidential
   * containers). Go runtime: `[runtime] experimental_force_guest_pull = true`; runtime-rs: `force_guest_pull` in
   * `[runtime] experimental`. Upstream: `shims.<shim>.containerd.forceGuestPull` (EXPERIMENTAL_FORCE_GUEST_PULL).
   */
  forceGuestPull?: boolean;
  /** Kata TOML applied last (a user drop-in), verbatim. */
  dropIn?: string;
}

/** A runtime handler of its own: the base shim's configuration and settings, plus its own drop-in. */
export interface KataCustomRuntime {
  /** Runtime handler (and RuntimeClass) name. */
  name: string;
  /** The shim whose binary, configuration and settings it starts from. */
  baseShim: string;
  /** Kata TOML applied last, verbatim. */
  dropIn?: string;
}

/** The whole of KATA_DEPLOY_KATA_CONFIG. */
export interface KataNodeConfig {
  shims?: Record<string, KataShimConfig>;
  customRuntimes?: KataCustomRuntime[];
}

/** A Kubernetes RuntimeClass handler: a DNS label (k8s.io/kubernetes pkg/apis/node/validation, ValidateRuntimeClass). */
export const RUNTIME_HANDLER_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/**
 * A Kata hypervisor annotation name: the part after `io.katacontainers.config.hypervisor.`, such as
 * `default_memory` (kata-containers src/runtime/pkg/oci/utils.go, src/libs/kata-types/src/annotations).
 */
export const HYPERVISOR_ANNOTATION_PATTERN = /^[a-z][a-z0-9_]*$/;

/**
 * Why a proxy setting cannot be a kernel parameter value, or undefined. Kata passes it on the guest kernel
 * command line (`agent.https_proxy=<value>`), which the agent splits at white space (src/agent/src/config.rs).
 */
export function proxyProblem(kind: "agentHttpsProxy" | "agentNoProxy", value: unknown): string | undefined {
  if (typeof value !== "string" || value === "") return "must be a non-empty string";
  if (/[\s"\\]/.test(value)) return "must not contain white space, quotes or backslashes (it becomes a kernel parameter)";
  if (kind === "agentNoProxy") return /^[A-Za-z0-9.*:/[\],_-]+$/.test(value) ? undefined : "must be a comma-separated list of host names, domains, IP addresses or CIDRs, e.g. \"10.0.0.0/8,.svc,localhost\"";
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "is not a URL; give one such as \"http://proxy.example.com:3128\"";
  }
  return url.protocol === "http:" || url.protocol === "https:" ? undefined : `has scheme ${url.protocol}; the agent's proxy must be http:// or https://`;
}

/** Why `prefix` cannot be an install prefix, or undefined: absolute, normalized, not `/`, no `..`, no `:` (hostPath volumes). */
export function installPrefixProblem(prefix: unknown): string | undefined {
  if (typeof prefix !== "string" || !prefix.startsWith("/")) return "must be an absolute path such as /var/lib/kata";
  if (prefix === "/" || prefix.split("/").includes("..") || /\/\/|\/\.\/|\/\.?$/.test(prefix)) return "must be a normalized directory other than / (no `..`, `.`, `//` or trailing `/`)";
  if (/[\s:'"\\]/.test(prefix)) return "must not contain white space, quotes, backslashes or `:`";
  return undefined;
}
// ---- end of Kata configuration -----------------------------------------------------------------------------
// ---- mixed-architecture clusters (issue 12 point 3) ---------------------------------------------------------

/**
 * Node architectures, as the kubelet labels them (`kubernetes.io/arch`, Go's GOARCH) and as Kata names its
 * release assets (images/kata-deploy/release/assets.mjs RELEASE_ARCHES).
 */
export const NodeArch = {
  amd64: "amd64",
  arm64: "arm64",
  s390x: "s390x",
  ppc64le: "ppc64le",
} as const;
export type NodeArch = (typeof NodeArch)[keyof typeof NodeArch];
export const NODE_ARCHES: readonly NodeArch[] = Object.values(NodeArch);

/** The well-known node label holding the node's architecture (k8s.io/api core/v1 well_known_labels.go LabelArchStable). */
export const NODE_ARCH_LABEL = "kubernetes.io/arch";

/**
 * Suffix of upstream kata-deploy's per-architecture variables (4.1.0 tools/packaging/kata-deploy/binary/src/
 * config.rs get_arch_var_or_base: `_X86_64`, `_AARCH64`, `_S390X`, `_PPC64LE`).
 */
const ARCH_ENV_SUFFIX: Readonly<Record<NodeArch, string>> = { amd64: "X86_64", arm64: "AARCH64", s390x: "S390X", ppc64le: "PPC64LE" };

/**
 * `SHIMS_<ARCH>`: the shims a node of that architecture installs, space-separated (upstream's variable and format).
 * The installer container carries one per architecture the deployment configures, so its readiness probe and its
 * preStop (which share the container's environment, not the install's flags) know them too. Unlike upstream, an
 * architecture whose variable is absent or empty installs nothing (upstream falls back to a built-in default list).
 */
export const shimsEnvName = (arch: NodeArch): string => `SHIMS_${ARCH_ENV_SUFFIX[arch]}`;
/** `DEFAULT_SHIM_<ARCH>`: the default shim of that architecture's nodes (containerd's `untrusted` alias). */
export const defaultShimEnvName = (arch: NodeArch): string => `DEFAULT_SHIM_${ARCH_ENV_SUFFIX[arch]}`;

/**
 * Test-only: the architecture the agent takes as its node's instead of its own (`process.arch`). The agent runs in a
 * per-platform image, so its own architecture is the node's; the tests set this to exercise other architectures on
 * one machine. The component never sets it.
 */
export const TEST_NODE_ARCH_ENV = "KATA_DEPLOY_TEST_NODE_ARCH";

/** The node architecture of a Node.js `process.arch` (x64, arm64, s390x, ppc64: Node.js runs only little-endian ppc64 on Linux), or undefined. */
export function nodeArchOf(processArch: string): NodeArch | undefined {
  const mapped: Record<string, NodeArch> = { x64: "amd64", arm64: "arm64", s390x: "s390x", ppc64: "ppc64le" };
  return mapped[processArch];
}

/**
 * The node label an installer sets for each shim it installed in per-architecture mode (`<prefix>/kata-<shim>`,
 * the handler's name, = "true"), so that a RuntimeClass whose shim only some architectures have can select exactly
 * the nodes that have it. Removed on uninstall and by the cleanup.
 */
export const shimLabelKey = (labelPrefix: string, shim: string): string => `${labelPrefix}/kata-${shim}`;

// ---- end of mixed-architecture clusters ---------------------------------------------------------------------
