// KataDeployment: puts Kata Containers on every containerd/CRI-O node of a cluster, and takes it off again
// on `pulumi destroy` in the order the seed's manual removal prescribes. The Kubernetes objects come from
// the pure builders in manifests.ts; this file only wires them into Pulumi resources and, above all,
// declares the dependency edges that make the engine delete in the right order. The engine deletes a
// resource before everything it depends on (A --> B: A depends on B, so A is created after B and deleted
// before it):
//
//   RuntimeClasses --> install wait --> installers --> clean wait --> cleanup DaemonSet --> RBAC --> namespace
//                                  \--> labeler -----^
//
// `pulumi up` creates them in the arrow's reverse: RBAC, the cleanup DaemonSet, the labeler and installers,
// then the install wait (until every selected node is labelled installed), then the RuntimeClasses.
// `pulumi destroy` deletes the RuntimeClasses, then (the install wait has no delete) the labeler and installers (each installer pod's
// preStop uninstalls and labels its node `cleanup`; the still-present cleanup DaemonSet then restarts the
// runtime and removes the labels), then runs the clean wait's `delete` (until no node carries a Kata
// label), then deletes the cleanup DaemonSet, then RBAC and the namespace. On `pulumi up` the same edges
// create the cleanup DaemonSet first; it has no pods until an installer labels a node `cleanup`.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import {
  buildCleanupDaemonSet,
  buildInstallerDaemonSet,
  buildLabelerDaemonSet,
  buildNamespace,
  buildRbac,
  buildRegistryPullSecret,
  buildRuntimeClasses,
  DaemonSetManifest,
  NAMES,
  schedulingTolerations,
} from "./manifests";
import {
  Affinity,
  ContainerdFlavor,
  ContainerResources,
  ContainerRuntime,
  DEFAULT_CLEANUP_TIMEOUT_SECONDS,
  ImagePullPolicy,
  KataSettings,
  ManifestOptions,
  StartupTaint,
  Toleration,
} from "./settings";
import {
  DEFAULT_IMAGE_PLATFORM,
  imageBuildProblem,
  isLoopbackUrl,
  kataBuildArgs,
  pathForState,
} from "./imageBuild";
import { installerNodeAffinity, SettingsGuard } from "./stack-changes";
import type { KataLogLevel } from "./contract";
import { normalizeSettings, singlePlatformImageProblem } from "./validation";

export const KATA_DEPLOYMENT_TYPE = "kata-deploy:index:KataDeployment";

/**
 * The package's root directory: the nearest directory above this file that holds the image build context.
 * This file runs from components/ (ts-node, this repository) and from dist/components/ (the compiled
 * package, installed under node_modules); the build context and the scripts sit at the root in both.
 * @internal
 */
export const PACKAGE_ROOT = findPackageRoot(__dirname);
/** Build context of the kata-deploy image, found from this file so that consumer stacks build the same image. @internal */
export const IMAGE_CONTEXT = path.join(PACKAGE_ROOT, "images/kata-deploy");
/**
 * The destroy-time wait script (plain JavaScript: it runs wherever `pulumi destroy` runs), as bundled by
 * `npm run build` (components/build-wait-scripts.mjs) from components/wait-for-clean-nodes.mjs: one file
 * that starts in less than half the CPU time of the source, which loads @kubernetes/client-node's modules one by one.
 * The source is shipped too: stacks deployed by older versions recorded its path as their destroy command.
 * @internal
 */
export const WAIT_SCRIPT = path.join(PACKAGE_ROOT, "dist/components/wait-for-clean-nodes.mjs");
/** The create-time wait script: `pulumi up` returns only once Kata is installed on every selected node (bundled likewise). @internal */
export const INSTALL_WAIT_SCRIPT = path.join(PACKAGE_ROOT, "dist/components/wait-for-installed-nodes.mjs");
/** The component/agent contract's source, which the agent bundle includes (absent from the installed package). @internal */
export const CONTRACT_SOURCE = path.join(PACKAGE_ROOT, "components/contract.ts");

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "images/kata-deploy/Dockerfile"))) return dir;
    if (path.dirname(dir) === dir) {
      throw new Error(`kata-deploy: no images/kata-deploy/Dockerfile above ${from}; the package is incomplete, reinstall it`);
    }
  }
}

/** Registry to log in to before pushing the image (and, with `createPullSecret`, to pull it from the nodes). */
export interface KataRegistryArgs {
  /** Registry host, e.g. `registry.example.com`. Required. */
  server: pulumi.Input<string>;
  /** User name. Defaults to none (no login). */
  username?: pulumi.Input<string>;
  /** Password or token; stored as a secret. Defaults to none (no login). */
  password?: pulumi.Input<string>;
}

/** How to build and push the kata-deploy image when `image` is not given. */
export interface KataImageBuildArgs {
  /** Repository to push to, without tag, e.g. `registry.example.com/platform/kata-deploy`. Required. */
  repository: pulumi.Input<string>;
  /** Tag pushed alongside the digest (the DaemonSets are pinned to the digest anyway). Defaults to `latest`. */
  tag?: pulumi.Input<string>;
  /** Registry credentials, when the registry needs a login. Defaults to none (Docker's own credentials apply). */
  registry?: KataRegistryArgs;
  /** Kata Containers release to package. Defaults to the Dockerfile's `KATA_VERSION`. */
  kataVersion?: pulumi.Input<string>;
  /**
   * sha256 of each release asset the build downloads: comma-separated `ASSET=HEX` (asset = the file name on
   * the release page, e.g. `kata-go-static-4.1.0-amd64.tar.zst=<64 hex digits>`), or one bare `HEX` when the
   * build fetches exactly one asset. Build arg `KATA_SHA256`; the build refuses to download an asset without
   * its digest and names the asset. Defaults to none.
   */
  kataSha256?: pulumi.Input<string>;
  /**
   * Release base URL (a mirror); assets are fetched from `<url>/<version>/<asset>`. Build arg
   * `KATA_RELEASE_URL`. A loopback URL (127.0.0.0/8, localhost, [::1]) builds with host networking
   * (`build.network: "host"`), so a mirror on the machine running Pulumi works. Defaults to GitHub's release
   * downloads.
   */
  releaseUrl?: pulumi.Input<string>;
  /**
   * Local release assets (air-gapped builds: nothing is downloaded for them), as paths inside
   * images/kata-deploy/, named exactly as the release names them, e.g. `tarballs/kata-go-static-4.1.0-amd64.tar.zst`.
   * Build arg `KATA_TARBALLS`. Defaults to none.
   */
  kataTarballs?: string[];
  /**
   * Deprecated: use `kataSha256` (a bare HEX is accepted there for a one-asset release). Defaults to none.
   * @deprecated Use `kataSha256`.
   */
  kataTarballSha256?: pulumi.Input<string>;
  /**
   * Deprecated: use `kataTarballs: [path]`. Defaults to none.
   * @deprecated Use `kataTarballs`.
   */
  kataTarball?: string;
  /**
   * Target platform, e.g. `linux/arm64` (one: the Docker provider's Image builds a single platform;
   * multi-platform images: `npm run image:push -- --platform linux/amd64,linux/arm64` and set `image`).
   * Defaults to `linux/amd64`, never the platform of the machine running Pulumi.
   */
  platform?: pulumi.Input<string>;
  /** Debian-based base image. Defaults to the Dockerfile's (`debian:trixie-slim`). */
  baseImage?: pulumi.Input<string>;
  /**
   * Also create Secret `kata-deploy-registry` (type `kubernetes.io/dockerconfigjson`) in the namespace from
   * `registry` (server, username and password all required) and pull the image with it. It is deleted only
   * after the cleanup DaemonSet, so cleanup pods can still pull during `pulumi destroy`. Push credentials
   * usually grant write access; prefer a read-only token in `imagePullSecrets`. Defaults to `false`.
   */
  createPullSecret?: boolean;
}

/** Container resources of the component's three kinds of pods, each merged over the defaults. */
export interface KataResources {
  /** The installers (one per runtime). Defaults to requests `{ cpu: "100m", memory: "128Mi" }`, no limits. */
  installer?: ContainerResources;
  /** The cleanup DaemonSet. Defaults to requests `{ cpu: "50m", memory: "96Mi" }`, no limits. */
  cleanup?: ContainerResources;
  /** The runtime labeler. Defaults to requests `{ cpu: "10m", memory: "64Mi" }`, no limits. */
  labeler?: ContainerResources;
}

/** Sandbox overhead of one shim's RuntimeClass (`overhead.podFixed`); unset fields keep the default. */
export interface KataOverheadArgs {
  /** Kubernetes quantity, e.g. `"320Mi"`. Defaults to upstream kata-deploy's value for the shim. */
  memory?: string;
  /** Kubernetes quantity, e.g. `"500m"`. Defaults to upstream kata-deploy's value for the shim. */
  cpu?: string;
  /** Whether the shim's RuntimeClass declares an overhead at all (`false`: none). Defaults to `runtimeClassOverheadEnabled`. */
  enabled?: boolean;
}

// ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) -------------------

/**
 * Kata's own configuration for one shim, written on every node as drop-ins next to the shim's own copy of
 * the release's configuration (`<installPrefix>/share/defaults/kata-containers/runtimes/<runtime>/kata-<shim>/`);
 * the release's files are never edited. See docs/node-agent.md "Kata's configuration".
 */
export interface KataShimConfigArgs {
  /**
   * Hypervisor annotation names pods may set, the part after `io.katacontainers.config.hypervisor.`, e.g.
   * `["default_memory", "default_vcpus"]`; added to the shim's own `enable_annotations`, each matched exactly.
   * Defaults to none (the release's list only).
   */
  allowedHypervisorAnnotations?: string[];
  /** HTTPS proxy of the guest agent (kernel parameter `agent.https_proxy`), an http(s) URL. Defaults to none. */
  agentHttpsProxy?: string;
  /** Hosts the guest agent reaches without the proxy (`agent.no_proxy`), comma-separated. Defaults to none. */
  agentNoProxy?: string;
  /** Debug logs of the Kata runtime, the guest agent and the hypervisor (`enable_debug`). Defaults to `false`. */
  debug?: boolean;
  /** runtime-rs shims only: the runtime's log level (`trace` ... `critical`). Defaults to the release's (`info`). */
  runtimeLogLevel?: KataLogLevel;
  /**
   * containerd only (refused without containerd in `runtimes`): the guest pulls every image itself, without a
   * remote snapshotter (Kata's experimental force guest pull; `config.d/25-force-guest-pull.toml`). CRI-O
   * installers ignore it: use `guestPull` there. Upstream's `shims.<shim>.containerd.forceGuestPull`. Defaults to `false`.
   */
  forceGuestPull?: boolean;
  /**
   * Kata TOML applied after everything else (`config.d/50-user-overrides.toml`), e.g.
   * `"[hypervisor.qemu]\ndefault_memory = 4096\n"`; checked to be TOML at preview. Defaults to none.
   */
  dropIn?: string;
}

/**
 * A runtime handler of its own (upstream kata-deploy's `customRuntimes`): its base shim's binary and
 * configuration, that shim's `shimConfig` settings except its drop-in, and its own drop-in; a RuntimeClass
 * of the same name.
 */
export interface KataCustomRuntimeArgs {
  /** Runtime handler and RuntimeClass name, a DNS label that is no shim's `kata-<shim>`. Required. */
  name: string;
  /** The shim it is based on; must be in `shims`. Required. */
  baseShim: string;
  /** Kata TOML applied last for this runtime only. Defaults to none. */
  dropIn?: string;
  /** RuntimeClass `overhead.podFixed` overrides. Defaults to the base shim's overhead. */
  overhead?: KataOverheadArgs;
}
// ---- end of Kata configuration ----------------------------------------------------------------------------

/** The arguments of KataDeployment. All are optional except that either `image` or `imageBuild` is needed. */
export interface KataDeploymentArgs {
  /**
   * An already pushed kata-deploy image, ideally pinned by digest (`repo@sha256:...`). When set, nothing is
   * built. Defaults to building and pushing `images/kata-deploy/` per `imageBuild`, pinned to the pushed digest.
   */
  image?: pulumi.Input<string>;
  /** Image build settings; used (and `repository` required) only when `image` is not set. Defaults to none. */
  imageBuild?: KataImageBuildArgs;
  /** Container runtimes to install for; one installer DaemonSet each. Defaults to `["containerd", "crio"]`. */
  runtimes?: ContainerRuntime[];
  /** Kata shims to configure; one RuntimeClass `kata-<shim>` each. Defaults to `["qemu", "fc"]`. */
  shims?: string[];
  /** The shim behind the `kata` RuntimeClass and the containerd `untrusted` alias. Defaults to the first of `shims`. */
  defaultShim?: string;
  /**
   * An existing namespace to deploy into; it must admit privileged, hostPID pods. Defaults to namespace
   * `kata-deploy`, which the component creates (and on destroy deletes), labelled Pod Security `privileged`.
   */
  namespace?: string;
  /**
   * Kubeconfig (content, not a path) the destroy-time wait uses to watch node labels; stored as a secret.
   * Pass the same cluster as your Kubernetes provider's. Defaults to the ambient kubeconfig of the machine
   * that runs `pulumi destroy` ($KUBECONFIG or ~/.kube/config, current context).
   */
  kubeconfig?: pulumi.Input<string>;
  /** Prefix of the node label keys `<prefix>/container-runtime` and `<prefix>/kata-runtime`. Defaults to `kata-containers.io`. */
  labelPrefix?: string;
  /**
   * Installer rolling-update budget: how many nodes restart their runtime at once, a count (`"2"`) or a
   * percentage of the nodes (`"25%"`). A string for every Pulumi language (as in Pulumi config). Defaults to `"1"`.
   */
  maxUnavailable?: string;
  /**
   * containerd distribution: `auto` (each node detects its own: k3s, rke2, k0s, microk8s or plain containerd,
   * so one cluster can mix them), or one of `containerd`, `k3s`, `rke2`, `k0s`, `microk8s`, which a node that
   * runs another refuses with the reason (in `pulumi up` and the installer's log). Defaults to `auto`.
   */
  containerdFlavor?: ContainerdFlavor;
  /**
   * A plain containerd whose config is not /etc/containerd/config.toml: the host path of its config file
   * (e.g. `/etc/containerd-custom/config.toml`). Only with `containerdFlavor` `auto` or `containerd`.
   * Defaults to `/etc/containerd/config.toml`.
   */
  containerdConfigPath?: string;
  /** That containerd's socket on the host (what `ctr --address` talks to). Defaults to /run/containerd/containerd.sock. */
  containerdSocket?: string;
  /** That containerd's systemd unit, restarted after a config change. Defaults to `containerd`. */
  containerdUnit?: string;
  /**
   * Per-shim RuntimeClass `overhead.podFixed` overrides, e.g. `{ qemu: { memory: "512Mi" } }`, or
   * `{ fc: { enabled: false } }` for no overhead on `kata-fc`. Keys must be in `shims`. Defaults to upstream
   * kata-deploy 4.1.0's figures (qemu 320Mi/250m, fc 130Mi/250m, ...).
   */
  runtimeClassOverhead?: Record<string, KataOverheadArgs>;
  /**
   * Whether the RuntimeClasses declare `overhead.podFixed` (the scheduler and the kubelet then count the
   * sandbox's memory and CPU against each Kata pod); a shim's `runtimeClassOverhead.<shim>.enabled` overrides it.
   * Defaults to `true`.
   */
  runtimeClassOverheadEnabled?: boolean;
  /**
   * Per-shim node labels the shim's RuntimeClass requires besides `<prefix>/kata-runtime=true` (its
   * `scheduling.nodeSelector`), e.g. `{ "qemu-tdx": { "intel.feature.node.kubernetes.io/tdx": "true" } }`. A
   * shim's entry replaces its default. Keys must be in `shims`. Defaults to upstream kata-deploy's:
   * `{ "qemu-nvidia-gpu": { "nvidia.com/cc.ready.state": "false" } }`, none for the other shims.
   */
  runtimeClassNodeSelector?: Record<string, Record<string, string>>;
  /** Also create RuntimeClass `defaultRuntimeClassName` for the default shim. Defaults to `true`. */
  createDefaultRuntimeClass?: boolean;
  /**
   * Also raise the container runtime's own log level to debug on every node: containerd's `[debug] level`,
   * CRI-O's `log_level` (upstream kata-deploy does so with `debug: true`), removed again on uninstall. Refused with
   * `containerdFlavor` k3s or rke2 while `runtimes` has containerd (they set containerd's log level themselves,
   * from `CONTAINERD_LOG_LEVEL`). Kata's own debug logs are `shimConfig.<shim>.debug`. Defaults to `false`.
   */
  containerRuntimeDebug?: boolean;
  /**
   * Name of the default shim's RuntimeClass (handler `kata-<defaultShim>`; when `defaultShimByArch` names different
   * shims, handler = this name, a DNS label then, run by each node with its own default shim); must not be a
   * `kata-<shim>` name. Defaults to `kata`.
   */
  defaultRuntimeClassName?: string;
  /** How long `pulumi destroy` waits for every node to be cleaned before failing, in whole seconds. Defaults to `600`. */
  cleanupTimeoutSeconds?: number;
  /** How long `pulumi up` waits for the installers to be ready on every node (a Pulumi duration). Defaults to `"20m"`. */
  installTimeout?: string;
  /**
   * Create the namespace (and delete it on destroy). Refused for the namespaces Kubernetes owns (`kube-system`,
   * `default`, ...). Defaults to `true` when `namespace` is not set, `false` when it is.
   */
  createNamespace?: boolean;
  /**
   * Extra node labels restricting which nodes get Kata (labeler and installers), e.g.
   * `{ "node-role.example.com/sandbox": "true" }`. Narrowing it later uninstalls Kata from the nodes that no
   * longer match. Defaults to `{}`: every node whose runtime is in `runtimes`.
   */
  nodeSelector?: Record<string, string>;
  /**
   * Tolerations of the labeler and the installers. The cleanup DaemonSet always tolerates every taint (it runs
   * only where an installer ran). Defaults to `[{ operator: "Exists" }]`: every taint, so tainted nodes (control
   * plane, GPU pools, NoExecute) are installed and cleaned too.
   */
  tolerations?: Toleration[];
  /** PriorityClass of every DaemonSet's pods; `""` for none. Defaults to `system-node-critical`. */
  priorityClassName?: string;
  /** Existing `kubernetes.io/dockerconfigjson` Secrets in the namespace to pull the image with. Defaults to none. */
  imagePullSecrets?: string[];
  /**
   * Container resources, merged over the defaults per container and per `requests`/`limits`. Defaults to
   * requests only (installer 100m/128Mi, cleanup 50m/96Mi, labeler 10m/64Mi), no limits.
   */
  resources?: KataResources;
  /**
   * Taints each installer removes from its node once Kata is installed there and the node labelled, e.g.
   * `[{ key: "example.com/kata-not-ready", effect: "NoSchedule" }]`: give autoscaled nodes such a taint when they
   * are created (a Karpenter NodePool's `startupTaints`, a cluster-autoscaler node group's taints) and no workload
   * lands on them before Kata is there. Only these taints go (every other one stays); they are never added back
   * on uninstall. The labeler and the installers tolerate them on top of `tolerations`. No effect: the key's
   * taints of every effect. Keys in the kubernetes.io and k8s.io domains are refused. Defaults to `[]`.
   */
  startupTaints?: StartupTaint[];
  /**
   * `imagePullPolicy` of every container: `Always`, `IfNotPresent` or `Never`. `Always` follows a moved tag but
   * needs the registry at every pod start, also for the cleanup pods of `pulumi destroy`. Defaults to
   * `IfNotPresent` (the built image is pinned by digest).
   */
  imagePullPolicy?: ImagePullPolicy;
  /**
   * Extra labels of every DaemonSet's pods (pod template only: a DaemonSet's selector is immutable and stays
   * the component's own). `app.kubernetes.io/name` and `app.kubernetes.io/component` are the component's.
   * Changing them rolls the pods out (Kata stays installed). Defaults to none.
   */
  podLabels?: Record<string, string>;
  /** Annotations of every DaemonSet's pods. Changing them rolls the pods out (Kata stays installed). Defaults to none. */
  podAnnotations?: Record<string, string>;
  /**
   * Node affinity of the labeler and the installers (ANDed with `nodeSelector`), e.g. nodes whose
   * `node.kubernetes.io/instance-type` is `In` a list. Pod (anti-)affinity is refused. A required node affinity
   * cannot be changed on a deployed stack (the installers' preStop tells a removal from a rollout by
   * `nodeSelector` only), except removed: use `nodeSelector` for a selection that may change. Defaults to none.
   */
  affinity?: Affinity;
  // --- snapshotter / guest pull (issue 12) ---
  /**
   * containerd snapshotter per shim, e.g. `{ fc: "devmapper" }` (Firecracker needs a block snapshotter) or
   * `{ "qemu-coco-dev": "nydus" }`: the runtime's `snapshotter` and, since containerd 2.x pulls images with
   * that instead, the images plugin's `runtime_platforms.kata-<shim>` entry (agent env
   * `SNAPSHOTTER_HANDLER_MAPPING`). The snapshotter must already be set up in each node's containerd (kata-deploy
   * does not install one): an installer refuses a node whose `ctr plugins ls` does not list it as `ok`, naming
   * it. Keys must be in `shims`; CRI-O ignores it. Defaults to `{}` (containerd's default snapshotter).
   */
  snapshotters?: Record<string, string>;
  /**
   * Shims whose images are pulled inside the guest (confidential containers) on CRI-O nodes: their CRI-O
   * runtime gets `runtime_pull_image = true` (CRI-O >= 1.29; agent env `PULL_TYPE_MAPPING`). Must be in `shims`.
   * containerd ignores it (there the guest pull comes from the snapshotter, e.g. nydus, in `snapshotters`).
   * Defaults to `[]`.
   */
  guestPull?: string[];
  // --- end snapshotter / guest pull ---
  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  /**
   * Where Kata is installed on the nodes, e.g. `/var/lib/kata` when `/opt` is read-only: the installers'
   * and cleanup's hostPath, the shim and configuration paths in containerd's and CRI-O's configuration, and
   * every release path in Kata's own configuration. An absolute, normalized directory other than `/`;
   * cannot change on a deployed stack. Defaults to `/opt/kata`.
   */
  installPrefix?: string;
  /** Kata's own configuration per shim (keys in `shims`), e.g. `{ qemu: { debug: true } }`. Defaults to none. */
  shimConfig?: Record<string, KataShimConfigArgs>;
  /** Custom runtimes, each with its own handler and RuntimeClass. Defaults to none. */
  customRuntimes?: KataCustomRuntimeArgs[];
  // ---- end of Kata configuration ----
  // ---- mixed-architecture clusters (issue 12 point 3) ----
  /**
   * Per node architecture (a `kubernetes.io/arch` value: `amd64`, `arm64`, `s390x`, `ppc64le`), the shims its nodes
   * install, e.g. `{ amd64: ["qemu", "fc"], arm64: ["qemu"] }`; replaces `shims` (refused together with it), which
   * becomes the union of the lists (one RuntimeClass each; the built image carries them all). Each installer installs
   * its node's architecture's list; an architecture not listed, or listed with `[]`, gets no Kata (its nodes are
   * reported and skipped by the install wait). A shim some of those architectures lack gets a RuntimeClass that
   * selects only nodes that have it: `kubernetes.io/arch=<arch>` when one architecture has it, else the node label
   * `<labelPrefix>/kata-<shim>=true` the installers set. Shims Kata does not ship for an architecture are refused.
   * Nodes of several architectures need a multi-architecture `image` (the component builds one platform).
   * Defaults to none: every node installs `shims`.
   */
  shimsByArch?: KataShimsByArch;
  /**
   * Per architecture in `shimsByArch`, its nodes' default shim (containerd's `untrusted` alias). While the default
   * RuntimeClass is created, each must equal `defaultShim` (that RuntimeClass has one handler on every node).
   * Defaults to `defaultShim` where the architecture has it, else the architecture's first shim.
   */
  defaultShimByArch?: KataDefaultShimByArch;
  // ---- end of mixed-architecture clusters ----
}

// ---- mixed-architecture clusters (issue 12 point 3) ----
/** Shims per node architecture (`kubernetes.io/arch`). */
export interface KataShimsByArch {
  /** Shims of x86-64 nodes. Defaults to none: no Kata there. */
  amd64?: string[];
  /** Shims of 64-bit Arm nodes. Defaults to none: no Kata there. */
  arm64?: string[];
  /** Shims of IBM Z nodes. Defaults to none: no Kata there. */
  s390x?: string[];
  /** Shims of little-endian POWER nodes. Defaults to none: no Kata there. */
  ppc64le?: string[];
}
/** The default shim per node architecture. */
export interface KataDefaultShimByArch {
  /** Default shim of x86-64 nodes. Defaults to `defaultShim` if listed for amd64, else the first. */
  amd64?: string;
  /** Default shim of 64-bit Arm nodes. Defaults to `defaultShim` if listed for arm64, else the first. */
  arm64?: string;
  /** Default shim of IBM Z nodes. Defaults to `defaultShim` if listed for s390x, else the first. */
  s390x?: string;
  /** Default shim of little-endian POWER nodes. Defaults to `defaultShim` if listed for ppc64le, else the first. */
  ppc64le?: string;
}
// ---- end of mixed-architecture clusters ----

/**
 * The builders emit plain Kubernetes JSON typed by kubernetes-models (the OpenAPI schema). Pulumi's input
 * types describe the same JSON but type a Quantity as `string` where the schema allows `number | string`,
 * so the two are not structurally assignable; the builders only ever emit string quantities.
 */
function asPulumiInput<T>(manifest: unknown): T {
  return manifest as unknown as T;
}

/** Stands for the image in the built manifests until withImage puts the (possibly unknown) image there. */
const IMAGE_PLACEHOLDER = "kata-deploy-image-placeholder";

/** `value` with every string equal to IMAGE_PLACEHOLDER replaced by `image`; any other use of it is a bug. */
export function withImage(value: unknown, image: pulumi.Input<string>): unknown {
  if (value === IMAGE_PLACEHOLDER) return image;
  if (typeof value === "string" && value.includes(IMAGE_PLACEHOLDER)) throw new Error(`image embedded in '${value}'`);
  if (Array.isArray(value)) return value.map((item) => withImage(item, image));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, withImage(item, image)]));
  }
  return value;
}

/** Kata Containers on a Kubernetes cluster: RBAC, runtime labeler, per-runtime installers, cleanup, RuntimeClasses. */
export class KataDeployment extends pulumi.ComponentResource {
  /** Names of the RuntimeClasses created (`kata-<shim>`, and `kata` when enabled). */
  readonly runtimeClassNames: pulumi.Output<string[]>;
  /** Namespace of the DaemonSets. */
  readonly namespace: pulumi.Output<string>;
  /** Image every DaemonSet runs (the pushed digest when the component built it). */
  readonly image: pulumi.Output<string>;

  constructor(name: string, args: KataDeploymentArgs = {}, opts: pulumi.ComponentResourceOptions = {}) {
    super(KATA_DEPLOYMENT_TYPE, name, {}, opts);
    // A count travels as a string ("2") so that every Pulumi language can pass it; Kubernetes wants a number.
    const maxUnavailable = typeof args.maxUnavailable === "string" && /^\d+$/.test(args.maxUnavailable) ? Number(args.maxUnavailable) : args.maxUnavailable;
    const settings = normalizeSettings({ ...args, maxUnavailable, resources: { ...args.resources } }, this);
    const cleanupTimeoutSeconds = args.cleanupTimeoutSeconds ?? DEFAULT_CLEANUP_TIMEOUT_SECONDS;
    if (!Number.isInteger(cleanupTimeoutSeconds) || cleanupTimeoutSeconds < 1) {
      throw new pulumi.ResourceError(
        `KataDeployment: cleanupTimeoutSeconds is ${JSON.stringify(cleanupTimeoutSeconds)}; allowed values: a whole number of seconds >= 1`,
        this,
        true,
      );
    }
    if (args.image === undefined && args.imageBuild?.repository === undefined) {
      throw new pulumi.ResourceError(
        "KataDeployment: image is not set and imageBuild.repository is missing; set image to a pushed kata-deploy image, or imageBuild.repository to build and push one",
        this,
        true,
      );
    }
    if (args.image === undefined) {
      // Mixed-architecture clusters: a single-platform image cannot serve another architecture's nodes.
      const platform = args.imageBuild?.platform ?? DEFAULT_IMAGE_PLATFORM;
      const problem = singlePlatformImageProblem(settings, typeof platform === "string" ? platform : undefined);
      if (problem !== undefined) throw new pulumi.ResourceError(`KataDeployment: ${problem}`, this, true);
    }
    const pullSecretCredentials = args.imageBuild?.createPullSecret === true ? registryCredentials(args.imageBuild, this) : undefined;
    // Refuses, at preview, the setting changes that cannot be applied in place (see stack-changes.ts); every
    // other child depends on it, so nothing changes before it has passed.
    const guard = new SettingsGuard(
      `${name}-settings`,
      {
        namespace: settings.namespace,
        createNamespace: settings.createNamespace,
        labelPrefix: settings.labelPrefix,
        containerdFlavor: settings.containerdFlavor,
        installPrefix: settings.installPrefix,
        containerdConfigPath: settings.containerdConfigPath ?? "",
      },
      { parent: this },
    );
    const child = { parent: this, dependsOn: [guard] };

    const image = args.image !== undefined ? pulumi.output(args.image) : this.buildImage(name, args.imageBuild!, settings.shims);
    this.image = image;

    // Namespaced objects take the namespace's name from the Namespace resource (when created), which makes
    // them depend on it: it is created first and deleted last.
    let namespace: pulumi.Output<string>;
    if (settings.createNamespace) {
      const ns = new k8s.core.v1.Namespace(`${name}-namespace`, asPulumiInput(buildNamespace(settings)), child);
      namespace = ns.metadata.name;
    } else {
      namespace = pulumi.output(settings.namespace);
    }
    this.namespace = namespace;

    const rbac = buildRbac(settings);
    const serviceAccount = new k8s.core.v1.ServiceAccount(
      `${name}-service-account`,
      { metadata: { ...rbac.serviceAccount.metadata, namespace } },
      child,
    );
    const clusterRole = new k8s.rbac.v1.ClusterRole(
      `${name}-cluster-role`,
      asPulumiInput(rbac.clusterRole),
      child,
    );
    const clusterRoleBinding = new k8s.rbac.v1.ClusterRoleBinding(
      `${name}-cluster-role-binding`,
      {
        metadata: rbac.clusterRoleBinding.metadata,
        roleRef: { ...rbac.clusterRoleBinding.roleRef, name: clusterRole.metadata.name },
        subjects: [{ kind: "ServiceAccount", name: serviceAccount.metadata.name, namespace }],
      },
      child,
    );
    // Everything the DaemonSets' pods need while any of them runs: deleted only after the cleanup DaemonSet.
    const rbacResources: pulumi.Resource[] = [serviceAccount, clusterRole, clusterRoleBinding];

    let podSettings: KataSettings = settings;
    if (pullSecretCredentials !== undefined) {
      // Metadata and type do not depend on the credentials; only the data does, and it stays a secret.
      const shape = buildRegistryPullSecret(settings, { server: "", username: "", password: "" });
      const pullSecret = new k8s.core.v1.Secret(
        `${name}-registry-credentials`,
        {
          metadata: { ...shape.metadata, namespace },
          type: shape.type,
          stringData: pulumi.secret(pullSecretCredentials.apply((credentials) => buildRegistryPullSecret(settings, credentials).stringData ?? {})),
        },
        child,
      );
      rbacResources.push(pullSecret);
      podSettings = { ...settings, imagePullSecrets: [...settings.imagePullSecrets, NAMES.registryPullSecret] };
    }

    const daemonSet = (
      resourceName: string,
      build: (options: ManifestOptions) => DaemonSetManifest,
      options: pulumi.CustomResourceOptions,
    ): k8s.apps.v1.DaemonSet => {
      // Built with a placeholder for the image, which may be known only after the build: everything else is
      // known at preview (and shown by it), and only the containers' `image` waits for the digest.
      const manifest = build({ ...podSettings, image: IMAGE_PLACEHOLDER });
      return new k8s.apps.v1.DaemonSet(
        resourceName,
        {
          metadata: { ...asPulumiInput<k8s.types.input.meta.v1.ObjectMeta>(withImage(manifest.metadata, image)), namespace },
          spec: asPulumiInput<k8s.types.input.apps.v1.DaemonSetSpec>(withImage(manifest.spec, image)),
        },
        { ...child, ...options },
      );
    };

    const cleanup = daemonSet(`${name}-cleanup`, buildCleanupDaemonSet, { dependsOn: rbacResources });

    // Nothing to do on create; its delete runs once the labeler, installers and RuntimeClasses are gone, and
    // before the cleanup DaemonSet goes. No `triggers`: a trigger change would replace it, and a replace runs
    // the old delete during `pulumi up`.
    const environment: Record<string, pulumi.Input<string>> = {
      KATA_DEPLOY_LABEL_PREFIX: settings.labelPrefix,
      KATA_DEPLOY_TIMEOUT_SECONDS: String(cleanupTimeoutSeconds),
      KATA_DEPLOY_NAMESPACE: namespace,
      // Nodes labelled for a runtime without an installer were never touched: the wait does not wait for them.
      KATA_DEPLOY_RUNTIMES: settings.runtimes.join(","),
    };
    if (args.kubeconfig !== undefined) environment.KATA_DEPLOY_KUBECONFIG = pulumi.secret(args.kubeconfig);
    const waitBundleProblem = waitScriptBundleProblem(PACKAGE_ROOT);
    if (waitBundleProblem !== undefined) throw new pulumi.ResourceError(`KataDeployment: ${waitBundleProblem}`, this, true);
    const waitForCleanNodes = new command.local.Command(
      `${name}-wait-for-clean-nodes`,
      {
        interpreter: ["node"],
        delete: scriptPathForState(WAIT_SCRIPT),
        environment,
      },
      { ...child, dependsOn: [cleanup] },
    );

    const labeler = daemonSet(`${name}-runtime-labeler`, buildLabelerDaemonSet, {
      dependsOn: [...rbacResources, waitForCleanNodes],
    });
    const installTimeout = args.installTimeout ?? "20m";
    const installTimeoutSeconds = durationSeconds(installTimeout);
    if (installTimeoutSeconds === undefined || installTimeoutSeconds < 1) {
      throw new pulumi.ResourceError(
        `KataDeployment: installTimeout is ${JSON.stringify(installTimeout)}; allowed values: a duration of at least 1s such as "20m", "1h30m" or "900s"`,
        this,
        true,
      );
    }
    const installers = settings.runtimes.map((runtime) =>
      daemonSet(`${name}-installer-${runtime}`, (options) => buildInstallerDaemonSet(runtime, options), {
        dependsOn: [...rbacResources, waitForCleanNodes],
        // Ready means installed on every selected node: pulling a large image and installing may take a while.
        customTimeouts: { create: installTimeout, update: installTimeout },
      }),
    );

    // The DaemonSet await alone does not mean "installed": on a first `up` the installers select no node until
    // the labeler has labelled them, and a DaemonSet with desiredNumberScheduled 0 is ready at once. This step
    // waits until every node the installers select is labelled installed (or fails naming the node and the
    // agent's reason). It has only `create`: @pulumi/command runs `create` again on any input change (no
    // `update` given), and KATA_DEPLOY_INSTALLERS changes whenever an installer's spec does, so a changed
    // image, shim list or selector waits again. No `triggers` (a trigger change would replace it).
    const installEnvironment: Record<string, pulumi.Input<string>> = {
      KATA_DEPLOY_LABEL_PREFIX: settings.labelPrefix,
      KATA_DEPLOY_NAMESPACE: namespace,
      KATA_DEPLOY_RUNTIMES: settings.runtimes.join(","),
      KATA_DEPLOY_NODE_SELECTOR: JSON.stringify(settings.nodeSelector),
      // The labeler's and installers' tolerations: the user's plus those of the startup taints.
      KATA_DEPLOY_TOLERATIONS: JSON.stringify(schedulingTolerations(settings)),
      // Only when set, so the stored environment of stacks without one is unchanged.
      ...(installerNodeAffinity(settings) !== "" ? { KATA_DEPLOY_NODE_AFFINITY: installerNodeAffinity(settings) } : {}),
      KATA_DEPLOY_TIMEOUT_SECONDS: String(installTimeoutSeconds),
      KATA_DEPLOY_INSTALLERS: image.apply((ref) => installersFingerprint(settings.runtimes.map((runtime) => buildInstallerDaemonSet(runtime, { ...podSettings, image: ref })))),
    };
    // Mixed-architecture clusters: nodes of an architecture without shims get no Kata; the wait skips them.
    if (settings.shimsByArch !== undefined) {
      installEnvironment.KATA_DEPLOY_SHIM_ARCHES = Object.entries(settings.shimsByArch).filter(([, shims]) => shims.length > 0).map(([arch]) => arch).join(",");
    }
    // A node still carrying a startup taint is not done: it stays closed to workloads (set only when there are any).
    if (settings.startupTaints.length > 0) installEnvironment.KATA_DEPLOY_STARTUP_TAINTS = JSON.stringify(settings.startupTaints);
    if (args.kubeconfig !== undefined) installEnvironment.KATA_DEPLOY_KUBECONFIG = pulumi.secret(args.kubeconfig);
    const waitForInstalledNodes = new command.local.Command(
      `${name}-wait-for-installed-nodes`,
      {
        interpreter: ["node"],
        create: scriptPathForState(INSTALL_WAIT_SCRIPT),
        environment: installEnvironment,
      },
      { ...child, dependsOn: [labeler, ...installers] },
    );

    // Created once Kata is installed on every selected node (no Kata pod is admitted before its handler
    // exists) and so deleted before the installers (no new Kata pod is scheduled while nodes are being
    // uninstalled). Consumers' `dependsOn: [kata]` includes the install wait too.
    const runtimeClasses = buildRuntimeClasses(settings).map(
      (runtimeClass) =>
        new k8s.node.v1.RuntimeClass(`${name}-runtimeclass-${runtimeClass.metadata.name}`, asPulumiInput(runtimeClass), {
          ...child,
          dependsOn: [...installers, waitForInstalledNodes],
          // `handler` is immutable in the API server (pkg/apis/node/validation ValidateRuntimeClassUpdate) but
          // pulumi-kubernetes would send its change as an update, which fails; `kata` changes handler with
          // defaultShim. Replaced in place of its fixed name: delete first.
          replaceOnChanges: ["handler"],
          deleteBeforeReplace: true,
        }),
    );

    this.runtimeClassNames = pulumi.output(runtimeClasses.map((runtimeClass) => runtimeClass.metadata.name));
    this.registerOutputs({
      runtimeClassNames: this.runtimeClassNames,
      namespace: this.namespace,
      image: this.image,
    });
  }

  /**
   * Builds and pushes images/kata-deploy/ and returns the pushed `repo@sha256:...`. At preview that digest
   * is unknown: @pulumi/docker builds only on `up` unless `buildOnPreview` is set (pulumi/pulumi-docker
   * provider/provider.go, marshalBuildOnPreview defaults to false), and a preview should not build a Kata
   * image either.
   */
  private buildImage(name: string, build: KataImageBuildArgs, shims: readonly string[]): pulumi.Output<string> {
    const bundleProblem = agentBundleProblem(IMAGE_CONTEXT, [CONTRACT_SOURCE]);
    if (bundleProblem !== undefined) throw new pulumi.ResourceError(`KataDeployment: ${bundleProblem}`, this, true);
    const fail = (message: string): never => {
      throw new pulumi.ResourceError(`KataDeployment: ${message}`, this, true);
    };
    if (build.kataSha256 !== undefined && build.kataTarballSha256 !== undefined) {
      fail("imageBuild.kataTarballSha256 is the deprecated name of imageBuild.kataSha256; set only kataSha256");
    }
    if (build.kataTarballs !== undefined && build.kataTarball !== undefined) {
      fail("imageBuild.kataTarball is the deprecated name of imageBuild.kataTarballs; set only kataTarballs");
    }
    if (build.kataTarballSha256 !== undefined) void pulumi.log.warn("KataDeployment: imageBuild.kataTarballSha256 is deprecated; use imageBuild.kataSha256", this);
    if (build.kataTarball !== undefined) void pulumi.log.warn("KataDeployment: imageBuild.kataTarball is deprecated; use imageBuild.kataTarballs", this);
    const kataSha256 = build.kataSha256 ?? build.kataTarballSha256;
    const kataTarballs = build.kataTarballs ?? (build.kataTarball === undefined ? undefined : [build.kataTarball]);
    // Values known now are checked now (with the release module `npm run image:build` uses), so a typo or a
    // missing digest fails at preview; Outputs are passed through and left to the build's own checks.
    const inputs = {
      baseImage: build.baseImage,
      kataVersion: build.kataVersion,
      shims,
      kataSha256,
      releaseUrl: build.releaseUrl,
      kataTarballs,
      platform: build.platform,
    };
    const problem = imageBuildProblem(inputs, IMAGE_CONTEXT);
    if (problem !== undefined) fail(`imageBuild.${problem.field}: ${problem.message}`);
    const { args: buildArgs, network: knownNetwork } = kataBuildArgs<pulumi.Input<string>>(inputs);
    const network =
      typeof build.releaseUrl === "string" || build.releaseUrl === undefined
        ? knownNetwork
        : pulumi.output(build.releaseUrl).apply((url) => (isLoopbackUrl(url) ? "host" : undefined));
    const registry = build.registry && {
      server: build.registry.server,
      username: build.registry.username,
      password: build.registry.password === undefined ? undefined : pulumi.secret(build.registry.password),
    };
    const image = new docker.Image(
      `${name}-image`,
      {
        imageName: pulumi.interpolate`${build.repository}:${build.tag ?? "latest"}`,
        build: {
          // Relative to the program's directory, as the provider resolves them: another checkout of the
          // project stores the same strings and does not rebuild (see pathForState).
          context: pathForState(IMAGE_CONTEXT),
          dockerfile: pathForState(path.join(IMAGE_CONTEXT, "Dockerfile")),
          platform: build.platform ?? DEFAULT_IMAGE_PLATFORM,
          args: buildArgs,
          network,
        },
        registry,
      },
      { parent: this },
    );
    return image.repoDigest;
  }
}

/** The push credentials for the pull Secret, or a one-line error naming what is missing. */
function registryCredentials(build: KataImageBuildArgs, resource: pulumi.Resource): pulumi.Output<{ server: string; username: string; password: string }> {
  const registry = build.registry;
  const missing = (["server", "username", "password"] as const).filter((key) => registry?.[key] === undefined);
  if (registry === undefined || missing.length > 0) {
    throw new pulumi.ResourceError(
      `KataDeployment: imageBuild.createPullSecret is true but imageBuild.registry.${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} not set; set them, or pass an existing Secret in imagePullSecrets`,
      resource,
      true,
    );
  }
  return pulumi.secret(
    pulumi.all([registry.server, registry.username!, registry.password!]).apply(([server, username, password]) => ({ server, username, password })),
  );
}

/** A short digest of the installer DaemonSets as built: it changes exactly when one of them changes. */
export function installersFingerprint(installers: readonly DaemonSetManifest[]): string {
  return createHash("sha256").update(JSON.stringify(installers)).digest("hex").slice(0, 16);
}

/**
 * Seconds in a Pulumi custom timeout (Go's time.ParseDuration units h, m, s, ms: "20m", "1h30m", "1.5h"),
 * or undefined when it is not one.
 */
export function durationSeconds(duration: string): number | undefined {
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };
  const parts = [...duration.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join("") !== duration) return undefined;
  return parts.reduce((total, [, value, suffix]) => total + Number(value) * unit[suffix], 0);
}

/**
 * The wait step's `delete` runs at destroy time with the inputs stored at the last `up`, possibly from
 * another checkout of the project. A path relative to the project directory (Pulumi runs both the program
 * and the command provider there) survives moving or re-cloning the project; a script outside it (an
 * unusual layout) keeps its absolute path.
 */
function scriptPathForState(scriptPath: string): string {
  const relative = path.relative(process.cwd(), scriptPath);
  return relative.startsWith("..") || path.isAbsolute(relative) ? scriptPath : relative;
}

/**
 * Why the image build context cannot be built as the agent's source says, or undefined. The Dockerfile
 * copies two prebuilt bundles (both built by `npm ci`/`npm run build:agent`): the agent and the release
 * step (release/dist/kata-release.cjs, from release/*.mjs). A missing one fails deep inside `docker build`;
 * a stale agent would silently ship an older agent to every node, a stale release step would fetch and
 * select release files by older rules than the ones this component checked at preview. `alsoBundled`:
 * source files outside agent/src that the agent bundle includes (the contract); missing ones are ignored.
 * @internal
 */
export function agentBundleProblem(contextDir: string, alsoBundled: readonly string[] = []): string | undefined {
  const bundle = path.join(contextDir, "agent/dist/kata-deploy.cjs");
  const fix = `run \`npm run build:agent\` in ${path.resolve(contextDir, "../..")} (npm ci does it too)`;
  let bundleTime: number;
  try {
    bundleTime = fs.statSync(bundle).mtimeMs;
  } catch {
    return `the node agent bundle ${bundle} is missing; ${fix}`;
  }
  let newest = newestMtime(path.join(contextDir, "agent/src"));
  for (const file of alsoBundled) {
    const mtimeMs = fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs;
    if (mtimeMs !== undefined && (newest === undefined || mtimeMs > newest.mtimeMs)) newest = { file, mtimeMs };
  }
  if (newest !== undefined && newest.mtimeMs > bundleTime) {
    return `the node agent bundle ${bundle} is older than ${newest.file}; ${fix}`;
  }
  const releaseBundle = path.join(contextDir, "release/dist/kata-release.cjs");
  let releaseTime: number;
  try {
    releaseTime = fs.statSync(releaseBundle).mtimeMs;
  } catch {
    return `the image's release step bundle ${releaseBundle} is missing; ${fix}`;
  }
  const releaseDir = path.join(contextDir, "release");
  const releaseSources = fs.existsSync(releaseDir) ? fs.readdirSync(releaseDir).filter((file) => file.endsWith(".mjs")) : [];
  for (const file of releaseSources.map((name) => path.join(releaseDir, name))) {
    if (fs.statSync(file).mtimeMs > releaseTime) return `the image's release step bundle ${releaseBundle} is older than ${file}; ${fix}`;
  }
  return undefined;
}

/**
 * Why the wait script bundles (WAIT_SCRIPT, INSTALL_WAIT_SCRIPT under `packageRoot`) cannot be run, or
 * undefined: missing (a checkout never built), or older than their source or the kube-wait.mjs both import
 * (edited or checked out since the last build), which would run other code than the source says. Sources
 * absent (a package shipped without them) are no problem. Checked at preview, so a `pulumi up` or `destroy`
 * does not fail (or wait by older rules) at the step itself.
 * @internal
 */
export function waitScriptBundleProblem(packageRoot: string): string | undefined {
  const fix = `run \`npm run build\` in ${packageRoot}`;
  for (const bundle of [WAIT_SCRIPT, INSTALL_WAIT_SCRIPT].map((script) => path.join(packageRoot, path.relative(PACKAGE_ROOT, script)))) {
    let bundleTime: number;
    try {
      bundleTime = fs.statSync(bundle).mtimeMs;
    } catch {
      return `the wait script bundle ${bundle} is missing; ${fix}`;
    }
    for (const source of [path.join(packageRoot, "components", path.basename(bundle)), path.join(packageRoot, "components/kube-wait.mjs")]) {
      const sourceTime = fs.statSync(source, { throwIfNoEntry: false })?.mtimeMs;
      if (sourceTime !== undefined && sourceTime > bundleTime) return `the wait script bundle ${bundle} is older than ${source}; ${fix}`;
    }
  }
  return undefined;
}

/** The most recently modified file under `dir` (undefined when there is no such directory). */
function newestMtime(dir: string): { file: string; mtimeMs: number } | undefined {
  let newest: { file: string; mtimeMs: number } | undefined;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    const candidate = entry.isDirectory() ? newestMtime(full) : { file: full, mtimeMs: fs.statSync(full).mtimeMs };
    if (candidate !== undefined && (newest === undefined || candidate.mtimeMs > newest.mtimeMs)) newest = candidate;
  }
  return newest;
}
