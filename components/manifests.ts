// Pure builders: settings in, Kubernetes objects out. No Pulumi, no I/O. The Pulumi component, the YAML
// renderer (`npm run render`) and the e2e harness all take their objects from here, so every container's
// command, env, volumes, probes and security context are defined exactly once.
//
// Types come from kubernetes-models (generated from the Kubernetes OpenAPI schema, the same schema the tests
// validate against). The package is ESM-only; these imports are type-only, so nothing is loaded at run time.
import type { IDaemonSet } from "kubernetes-models/apps/v1/DaemonSet" with { "resolution-mode": "import" };
import type { IRuntimeClass } from "kubernetes-models/node.k8s.io/v1/RuntimeClass" with { "resolution-mode": "import" };
import type { IClusterRole } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole" with { "resolution-mode": "import" };
import type { IClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding" with { "resolution-mode": "import" };
import type { IPolicyRule } from "kubernetes-models/rbac.authorization.k8s.io/v1/PolicyRule" with { "resolution-mode": "import" };
import type { INamespace } from "kubernetes-models/v1/Namespace" with { "resolution-mode": "import" };
import type { ISecret } from "kubernetes-models/v1/Secret" with { "resolution-mode": "import" };
import type { IServiceAccount } from "kubernetes-models/v1/ServiceAccount" with { "resolution-mode": "import" };
import type { IContainer } from "kubernetes-models/v1/Container" with { "resolution-mode": "import" };
import type { IEnvVar } from "kubernetes-models/v1/EnvVar" with { "resolution-mode": "import" };
import type { IPodSpec } from "kubernetes-models/v1/PodSpec" with { "resolution-mode": "import" };
import type { IVolume } from "kubernetes-models/v1/Volume" with { "resolution-mode": "import" };
import type { IVolumeMount } from "kubernetes-models/v1/VolumeMount" with { "resolution-mode": "import" };
import type { IObjectMeta } from "@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta" with { "resolution-mode": "import" };
import { defaultShimEnvName, shimsEnvName } from "./contract";
import {
  ARTIFACTS_DIR,
  CONTAINER_RUNTIMES,
  ContainerRuntime,
  formatStartupTaints,
  HOST_ROOT,
  INSTALL_PREFIX,
  KataSettings,
  labelKeys,
  ManifestOptions,
  NODE_ARCH_LABEL,
  NodeArch,
  CONTAINERD_HOST_DIRS,
  CRIO_CONFIG_DIR,
  shimLabelKey,
  TOLERATE_EVERYTHING,
  Toleration,
} from "./settings";
import { AGENT_ENV, type KataNodeConfig } from "./contract";

/** An object the builders return: metadata (with a name) is always set. */
type Built<T> = T & { metadata: IObjectMeta & { name: string } };
export type NamespaceManifest = Built<INamespace>;
export type ServiceAccountManifest = Built<IServiceAccount>;
export type ClusterRoleManifest = Built<IClusterRole> & { rules: IPolicyRule[] };
export type ClusterRoleBindingManifest = Built<IClusterRoleBinding>;
export type DaemonSetManifest = Built<IDaemonSet> & {
  spec: NonNullable<IDaemonSet["spec"]> & { template: { spec: IPodSpec } };
};
export type RuntimeClassManifest = Built<IRuntimeClass>;
export type SecretManifest = Built<ISecret>;
export type Manifest =
  | NamespaceManifest
  | ServiceAccountManifest
  | ClusterRoleManifest
  | ClusterRoleBindingManifest
  | DaemonSetManifest
  | RuntimeClassManifest;

/** Fixed in-cluster names (the YAML renderer and kubectl users see the same ones). */
export const NAMES = {
  serviceAccount: "kata-deploy",
  clusterRole: "kata-deploy",
  clusterRoleBinding: "kata-deploy",
  labeler: "kata-runtime-labeler",
  installer: (runtime: ContainerRuntime): string => `kata-installer-${runtime}`,
  cleanup: "kata-cleanup",
  runtimeClass: (shim: string): string => `kata-${shim}`,
  /** The image pull Secret the component creates from the push credentials (`imageBuild.createPullSecret`). */
  registryPullSecret: "kata-deploy-registry",
} as const;

const APP_NAME = "kata-deploy";
const KATA_DEPLOY = "kata-deploy";

/**
 * Long enough for the installer's preStop (`kata-deploy uninstall`): it may first wait for the node's host
 * lock held by an install in progress, then removes the artifacts and restores the runtime config.
 * Kubernetes kills the container (and cuts the preStop) when the grace period ends.
 */
export const INSTALLER_TERMINATION_GRACE_SECONDS = 300;

function labelsFor(component: string): Record<string, string> {
  return { "app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/component": component };
}

/**
 * The least-privilege rules: read and label nodes; read the installer DaemonSets to tell a rollout from a
 * removal. The DaemonSet names are every installer the component can create, not only the `runtimes`
 * deployed now: when a runtime is dropped, the engine updates the ClusterRole while the program runs and
 * deletes the removed installer only after it (pulumi/pulumi deployment_executor.go), so a ClusterRole
 * narrowed to the remaining runtimes would refuse (403) the removed installer's preStop, which must read its
 * own DaemonSet to decide to uninstall. The rules therefore never change with the settings.
 */
export function buildRbacRules(): IPolicyRule[] {
  return [
    { apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] },
    {
      apiGroups: ["apps"],
      resources: ["daemonsets"],
      // Only the installers' own DaemonSets: the preStop reads its DaemonSet, nothing else.
      resourceNames: CONTAINER_RUNTIMES.map(NAMES.installer),
      verbs: ["get"],
    },
  ];
}

/** The namespace the component creates: Pod Security `privileged`, since the installers are privileged and use hostPID. */
export function buildNamespace(settings: Pick<KataSettings, "namespace">): NamespaceManifest {
  const privileged = "privileged";
  return {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: {
      name: settings.namespace,
      labels: {
        ...labelsFor("namespace"),
        "pod-security.kubernetes.io/enforce": privileged,
        "pod-security.kubernetes.io/audit": privileged,
        "pod-security.kubernetes.io/warn": privileged,
      },
    },
  };
}

export interface RbacManifests {
  serviceAccount: ServiceAccountManifest;
  clusterRole: ClusterRoleManifest;
  clusterRoleBinding: ClusterRoleBindingManifest;
}

export function buildRbac(settings: Pick<KataSettings, "namespace" | "runtimes">): RbacManifests {
  const labels = labelsFor("rbac");
  return {
    serviceAccount: {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: NAMES.serviceAccount, namespace: settings.namespace, labels },
    },
    clusterRole: {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: NAMES.clusterRole, labels },
      rules: buildRbacRules(),
    },
    clusterRoleBinding: {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: NAMES.clusterRoleBinding, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: NAMES.clusterRole },
      subjects: [{ kind: "ServiceAccount", name: NAMES.serviceAccount, namespace: settings.namespace }],
    },
  };
}

const nodeNameEnv: IEnvVar = { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } };

/** A host directory mounted at the same path under HOST_ROOT, so `--host-root /host` sees the node's layout. */
function hostMount(
  volumeName: string,
  hostPath: string,
  type: "Directory" | "DirectoryOrCreate",
): { volume: IVolume; mount: IVolumeMount } {
  return {
    volume: { name: volumeName, hostPath: { path: hostPath, type } },
    mount: { name: volumeName, mountPath: `${HOST_ROOT}${hostPath}` },
  };
}

/** The settings every DaemonSet's pods share. */
type PodSettings = Pick<KataSettings, "namespace" | "priorityClassName" | "imagePullSecrets" | "podLabels" | "podAnnotations">;

/** Pod fields every DaemonSet shares: scheduling priority and the credentials to pull the image. */
function commonPodFields(settings: PodSettings): Pick<IPodSpec, "priorityClassName" | "imagePullSecrets"> {
  // Empty settings are left out rather than emitted as "" or [], so the objects read as a user would write them.
  return {
    ...(settings.priorityClassName ? { priorityClassName: settings.priorityClassName } : {}),
    ...(settings.imagePullSecrets.length > 0 ? { imagePullSecrets: settings.imagePullSecrets.map((name) => ({ name })) } : {}),
  };
}

const copyTolerations = (tolerations: readonly Toleration[]): Toleration[] => tolerations.map((toleration) => ({ ...toleration }));

// ---- startup taints (issue 12 point 5) ----------------------------------------------------------------------

/**
 * Tolerations of the labeler and the installers: the user's, plus one per startup taint (any value, that key and
 * effect). Without it neither would run on a node that carries the taint (the DaemonSet controller places a pod
 * only where it tolerates every NoSchedule/NoExecute taint: pkg/controller/daemon NodeShouldRunDaemonPod), so the
 * installer that removes the taint would never start there. Upstream's chart leaves this to the user
 * (values.yaml: "kata-deploy itself must tolerate the taint"). Entries the user already wrote identically are
 * not repeated. The install wait selects nodes with exactly these tolerations.
 */
export function schedulingTolerations(settings: Pick<KataSettings, "tolerations" | "startupTaints">): Toleration[] {
  const tolerations = copyTolerations(settings.tolerations);
  for (const taint of settings.startupTaints) {
    const toleration: Toleration = { key: taint.key, operator: "Exists", ...(taint.effect === undefined ? {} : { effect: taint.effect }) };
    const same = (other: Toleration): boolean =>
      other.key === toleration.key && other.operator === "Exists" && other.effect === toleration.effect && other.value === undefined && other.tolerationSeconds === undefined;
    if (!tolerations.some(same)) tolerations.push(toleration);
  }
  return tolerations;
}

/** The installer's `--startup-taints` flag, when there are any. */
const startupTaintArgs = (settings: Pick<KataSettings, "startupTaints">): string[] =>
  settings.startupTaints.length === 0 ? [] : ["--startup-taints", formatStartupTaints(settings.startupTaints)];

// ---- end of startup taints ----------------------------------------------------------------------------------

/**
 * Node affinity for the labeler and the installers (never the cleanup DaemonSet, which must reach every node
 * an installer touched); left out when there is none, so the objects read as a user would write them.
 */
function affinityField(settings: Pick<KataSettings, "affinity">): Pick<IPodSpec, "affinity"> {
  return settings.affinity?.nodeAffinity ? { affinity: structuredClone(settings.affinity) } : {};
}

function daemonSet(
  name: string,
  component: string,
  settings: PodSettings,
  podSpec: IPodSpec,
  updateStrategy?: NonNullable<IDaemonSet["spec"]>["updateStrategy"],
): DaemonSetManifest {
  const labels = labelsFor(component);
  // The user's pod labels go into the pod template only, never into `spec.selector`: the selector is
  // immutable (kubernetes pkg/registry/apps/daemonset/strategy.go ValidateUpdate: "disallow mutation of selector"), so a selector that followed
  // them would make every change of podLabels a delete-and-recreate of the DaemonSet. The component's own
  // labels come last (validation refuses user keys that collide with them).
  const podMetadata = {
    labels: { ...settings.podLabels, ...labels },
    ...(Object.keys(settings.podAnnotations).length > 0 ? { annotations: { ...settings.podAnnotations } } : {}),
  };
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name, namespace: settings.namespace, labels },
    spec: {
      selector: { matchLabels: { ...labels } },
      ...(updateStrategy ? { updateStrategy } : {}),
      template: { metadata: podMetadata, spec: { ...podSpec, ...commonPodFields(settings) } },
    },
  };
}

/**
 * On a crash the kubelet keeps the tail of the log as the container's termination message, which Pulumi's
 * await prints with the pod's status: a failed install shows the agent's one-line error in `pulumi up`.
 */
const TERMINATION_MESSAGE = { terminationMessagePolicy: "FallbackToLogsOnError" } as const;

/** Labels every node `<prefix>/container-runtime=containerd|crio`. Talks only to the API server: no host access, not root. */
export function buildLabelerDaemonSet(opts: ManifestOptions): DaemonSetManifest {
  const container: IContainer = {
    name: "runtime-labeler",
    image: opts.image,
    imagePullPolicy: opts.imagePullPolicy,
    command: [KATA_DEPLOY, "label", "--label-prefix", opts.labelPrefix, "--daemon"],
    env: [nodeNameEnv],
    resources: structuredClone(opts.resources.labeler),
    ...TERMINATION_MESSAGE,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65534,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    },
  };
  return daemonSet(NAMES.labeler, "runtime-labeler", opts, {
    serviceAccountName: NAMES.serviceAccount,
    // The same nodes as the installers: a node the labeler skips gets no installer either.
    ...(Object.keys(opts.nodeSelector).length > 0 ? { nodeSelector: { ...opts.nodeSelector } } : {}),
    ...affinityField(opts),
    tolerations: schedulingTolerations(opts),
    containers: [container],
  });
}

/**
 * The host directories holding `runtime`'s configuration. containerd: /etc and /var whatever the flavour
 * (they exist on every node; the agent detects or checks the flavour there and refuses a mismatch with the
 * reason, instead of a pod stuck on a flavour's missing directory), plus a custom config's own directory
 * when it is outside them.
 */
function runtimeConfigMounts(runtime: ContainerRuntime, opts: ManifestOptions): { volume: IVolume; mount: IVolumeMount }[] {
  if (runtime === "crio") return [hostMount("runtime-config", CRIO_CONFIG_DIR, "DirectoryOrCreate")];
  const mounts = CONTAINERD_HOST_DIRS.map((dir) => hostMount(`host${dir.replace(/\//g, "-")}`, dir, "Directory"));
  const custom = opts.containerdConfigPath;
  if (custom !== undefined && !CONTAINERD_HOST_DIRS.some((dir) => custom.startsWith(`${dir}/`))) {
    mounts.push(hostMount("containerd-config", custom.slice(0, custom.lastIndexOf("/")) || "/", "DirectoryOrCreate"));
  }
  return mounts;
}

/** The custom containerd's flags, for the commands that need them (`config`: install only). */
function customContainerdArgs(runtime: ContainerRuntime, opts: ManifestOptions, withConfig: boolean): string[] {
  if (runtime !== "containerd") return [];
  return [
    ...(withConfig && opts.containerdConfigPath !== undefined ? ["--containerd-config", opts.containerdConfigPath] : []),
    ...(opts.containerdSocket !== undefined ? ["--containerd-socket", opts.containerdSocket] : []),
    ...(opts.containerdUnit !== undefined ? ["--containerd-unit", opts.containerdUnit] : []),
  ];
}

// --- snapshotter / guest pull (issue 12) ---
/**
 * The per-shim pull settings, each only for the runtime that reads it, in upstream kata-deploy's
 * variables (`shim:value,...`): containerd's snapshotters, CRI-O's guest pull. Omitted when empty.
 */
function pullPathEnv(runtime: ContainerRuntime, opts: Pick<KataSettings, "shims" | "snapshotters" | "guestPull">): IEnvVar[] {
  // In `shims` order, so the value does not depend on how the map was written.
  const snapshotters = opts.shims.filter((shim) => opts.snapshotters[shim] !== undefined).map((shim) => `${shim}:${opts.snapshotters[shim]}`);
  const guestPull = opts.shims.filter((shim) => opts.guestPull.includes(shim)).map((shim) => `${shim}:guest-pull`);
  if (runtime === "containerd" && snapshotters.length > 0) return [{ name: AGENT_ENV.snapshotterHandlerMapping, value: snapshotters.join(",") }];
  if (runtime === "crio" && guestPull.length > 0) return [{ name: AGENT_ENV.pullTypeMapping, value: guestPull.join(",") }];
  return [];
}
// --- end snapshotter / guest pull ---

/**
 * Installs Kata on every node labelled `<prefix>/container-runtime=<runtime>`. Ready only once the install
 * is recorded complete, so Pulumi's DaemonSet await means "installed everywhere". Its preStop uninstalls
 * (and labels the node `cleanup`) unless the pod is being replaced by a rollout.
 */
export function buildInstallerDaemonSet(runtime: ContainerRuntime, opts: ManifestOptions): DaemonSetManifest {
  const name = NAMES.installer(runtime);
  const prefix = hostMount("kata-prefix", opts.installPrefix, "DirectoryOrCreate");
  const kataConfig = kataNodeConfigOf(opts);
  const config = runtimeConfigMounts(runtime, opts);
  const flavorArgs = runtime === "containerd" ? ["--containerd-flavor", opts.containerdFlavor, ...customContainerdArgs(runtime, opts, true)] : [];
  const container: IContainer = {
    name: "installer",
    image: opts.image,
    imagePullPolicy: opts.imagePullPolicy,
    command: [
      KATA_DEPLOY, "install",
      "--runtime", runtime,
      "--host-root", HOST_ROOT,
      "--artifacts", ARTIFACTS_DIR,
      ...shimArgs(opts),
      ...defaultHandlerArgs(opts),
      ...(opts.containerRuntimeDebug ? ["--container-runtime-debug"] : []),
      "--restart", "systemd",
      ...flavorArgs,
      ...prefixArgs(opts),
      "--label-prefix", opts.labelPrefix,
      ...startupTaintArgs(opts),
      "--daemon",
    ],
    env: [
      nodeNameEnv,
      { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      // Lets the preStop find its own DaemonSet and skip the uninstall during a rollout.
      { name: "DAEMONSET_NAME", value: name },
      ...pullPathEnv(runtime, opts),
      // Kata's own configuration (install only: uninstall removes what the install recorded).
      ...(kataConfig === undefined ? [] : [{ name: AGENT_ENV.kataConfig, value: JSON.stringify(kataConfig) }]),
      ...shimsByArchEnv(opts),
    ],
    securityContext: { privileged: true },
    resources: structuredClone(opts.resources.installer),
    ...TERMINATION_MESSAGE,
    // Parents before children: the prefix may lie under /var (e.g. /var/lib/kata).
    volumeMounts: [...config.map((entry) => entry.mount), prefix.mount],
    readinessProbe: {
      exec: { command: [KATA_DEPLOY, "status", "--host-root", HOST_ROOT, ...prefixArgs(opts), "--ready", "--runtime", runtime] },
      initialDelaySeconds: 5,
      periodSeconds: 10,
      timeoutSeconds: 30,
      failureThreshold: 1,
    },
    lifecycle: {
      preStop: {
        exec: {
          // No runtime restart here: it would cut this exec stream. The cleanup DaemonSet restarts the runtime.
          command: [
            KATA_DEPLOY, "uninstall",
            "--runtime", runtime,
            "--host-root", HOST_ROOT,
            "--restart", "none",
            ...prefixArgs(opts),
            "--label-prefix", opts.labelPrefix,
          ],
        },
      },
    },
  };
  return daemonSet(
    name,
    `installer-${runtime}`,
    opts,
    {
      serviceAccountName: NAMES.serviceAccount,
      hostPID: true, // `nsenter -t 1` reaches the host's systemd and containerd binary
      // A plain nodeSelector (not affinity): the preStop compares it with the node's labels to tell a
      // rollout from a removal, so a node the user's selector stops matching is uninstalled.
      nodeSelector: { ...opts.nodeSelector, [labelKeys(opts.labelPrefix).containerRuntime]: runtime },
      // The agent's preStop reads only nodeSelector; changing a required node affinity on a deployed stack is
      // therefore refused by the settings guard (components/stack-changes.ts).
      ...affinityField(opts),
      tolerations: schedulingTolerations(opts),
      terminationGracePeriodSeconds: INSTALLER_TERMINATION_GRACE_SECONDS,
      containers: [container],
      volumes: [...config.map((entry) => entry.volume), prefix.volume],
    },
    { type: "RollingUpdate", rollingUpdate: { maxUnavailable: opts.maxUnavailable } },
  );
}

/**
 * Runs only on nodes an installer's preStop labelled `<prefix>/kata-runtime=cleanup`: restarts the node's
 * runtime (which the preStop could not do) and removes both labels, after which the pod goes away.
 */
export function buildCleanupDaemonSet(opts: ManifestOptions): DaemonSetManifest {
  // The agent's host lock and state live under the prefix; the reset takes the lock like every other command.
  const prefix = hostMount("kata-prefix", opts.installPrefix, "DirectoryOrCreate");
  const container: IContainer = {
    name: "cleanup",
    image: opts.image,
    imagePullPolicy: opts.imagePullPolicy,
    command: [
      KATA_DEPLOY, "reset",
      "--host-root", HOST_ROOT,
      "--restart", "systemd",
      // The flavor picks the unit and the containerd socket the restart is verified through (CRI-O ignores it).
      "--containerd-flavor", opts.containerdFlavor,
      ...customContainerdArgs("containerd", opts, false),
      ...prefixArgs(opts),
      "--label-prefix", opts.labelPrefix,
      "--daemon",
    ],
    env: [nodeNameEnv],
    securityContext: { privileged: true },
    resources: structuredClone(opts.resources.cleanup),
    ...TERMINATION_MESSAGE,
    volumeMounts: [prefix.mount],
  };
  return daemonSet(NAMES.cleanup, "cleanup", opts, {
    serviceAccountName: NAMES.serviceAccount,
    hostPID: true,
    // Neither the user's nodeSelector nor their tolerations: only an installer's preStop sets this label, and
    // the cleanup must then reach that node even if the selector has since stopped matching it or it has
    // been tainted meanwhile (e.g. cordoned and drained with NoExecute).
    nodeSelector: { [labelKeys(opts.labelPrefix).kataRuntime]: "cleanup" },
    tolerations: copyTolerations(TOLERATE_EVERYTHING),
    containers: [container],
    volumes: [prefix.volume],
  });
}

/**
 * `kata-<shim>` per shim (handler = name), plus the optional alias `defaultRuntimeClassName` (handler
 * `kata-<defaultShim>`, the default shim's overhead and scheduling; per-node handler when the architectures' default
 * shims differ: perNodeDefaultHandler), as upstream's chart renders them
 * (4.1.0 helm-chart/kata-deploy/templates/runtimeclasses.yaml). Pods naming one are scheduled only onto
 * nodes labelled `<prefix>/kata-runtime=true` plus the shim's own node labels (`scheduling.nodeSelector`,
 * merged into the pod's nodeSelector by the RuntimeClass admission plugin), and are charged the shim's
 * `overhead.podFixed` unless overhead is switched off. Plus one per custom runtime (handler = name = the
 * custom runtime's name), scheduled like its base shim.
 */
export function buildRuntimeClasses(
  settings: Pick<KataSettings, "shims" | "defaultShim" | "labelPrefix" | "runtimeClasses" | "createDefaultRuntimeClass" | "defaultRuntimeClassName" | "customRuntimes" | "shimsByArch"> &
    Partial<Pick<KataSettings, "defaultShimByArch">>,
): RuntimeClassManifest[] {
  const installed = { [labelKeys(settings.labelPrefix).kataRuntime]: "true" };
  const runtimeClass = (name: string, shim: string): RuntimeClassManifest => {
    const { overhead } = settings.runtimeClasses[shim];
    const nodeSelector = { ...archSelector(settings, shim), ...settings.runtimeClasses[shim].nodeSelector };
    return {
      apiVersion: "node.k8s.io/v1",
      kind: "RuntimeClass",
      metadata: { name, labels: labelsFor("runtimeclass") },
      handler: NAMES.runtimeClass(shim),
      ...(overhead !== undefined ? { overhead: { podFixed: { ...overhead } } } : {}),
      scheduling: { nodeSelector: { ...installed, ...nodeSelector } },
    };
  };
  const classes = settings.shims.map((shim) => runtimeClass(NAMES.runtimeClass(shim), shim));
  const perNode = perNodeDefaultHandler(settings);
  if (perNode !== undefined) classes.push(perNodeDefaultRuntimeClass(settings, perNode, installed));
  else if (settings.createDefaultRuntimeClass) classes.push(runtimeClass(settings.defaultRuntimeClassName, settings.defaultShim));
  // ---- Kata configuration on the node: custom runtimes ----
  for (const custom of settings.customRuntimes) {
    const base = runtimeClass(custom.name, custom.baseShim);
    const { overhead: _baseOverhead, ...rest } = base;
    classes.push({
      ...rest,
      handler: custom.name,
      ...(Object.keys(custom.overhead).length > 0 ? { overhead: { podFixed: { ...custom.overhead } } } : {}),
    });
  }
  return classes;
}

// ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) -------------------

/** `--prefix <installPrefix>` for every agent command, unless it is the agent's own default. */
function prefixArgs(settings: Pick<KataSettings, "installPrefix">): string[] {
  return settings.installPrefix === INSTALL_PREFIX ? [] : ["--prefix", settings.installPrefix];
}

/** What the installers pass the agent in KATA_DEPLOY_KATA_CONFIG; undefined when there is nothing to set. */
export function kataNodeConfigOf(settings: Pick<KataSettings, "shimConfig" | "customRuntimes">): KataNodeConfig | undefined {
  const shims = Object.keys(settings.shimConfig).length > 0 ? structuredClone(settings.shimConfig) : undefined;
  const customRuntimes = settings.customRuntimes.map(({ name, baseShim, dropIn }) => ({ name, baseShim, ...(dropIn === undefined ? {} : { dropIn }) }));
  if (shims === undefined && customRuntimes.length === 0) return undefined;
  return { ...(shims ? { shims } : {}), ...(customRuntimes.length > 0 ? { customRuntimes } : {}) };
}
// ---- end of Kata configuration ----------------------------------------------------------------------------

// ---- mixed-architecture clusters (issue 12 point 3) ---------------------------------------------------------

/**
 * The installer's shim flags: `--shims`/`--default-shim` for one list on every node; none with `shimsByArch`,
 * whose lists travel in the container's environment (shimsByArchEnv), where the readiness probe and the preStop
 * see them too.
 */
function shimArgs(opts: Pick<KataSettings, "shims" | "defaultShim" | "shimsByArch">): string[] {
  return opts.shimsByArch === undefined ? ["--shims", opts.shims.join(","), "--default-shim", opts.defaultShim] : [];
}

/**
 * Upstream kata-deploy's per-architecture variables (4.1.0 helm-chart `_helpers.tpl` kata-deploy.commonEnv):
 * `SHIMS_<ARCH>` (space-separated) for every architecture in `shimsByArch`, empty for one without shims, and
 * `DEFAULT_SHIM_<ARCH>` for those with shims. The agent installs its own architecture's list (nothing when absent).
 */
function shimsByArchEnv(opts: Pick<KataSettings, "shimsByArch" | "defaultShimByArch">): IEnvVar[] {
  if (opts.shimsByArch === undefined) return [];
  const env: IEnvVar[] = [];
  for (const [arch, shims] of Object.entries(opts.shimsByArch) as [NodeArch, string[]][]) {
    env.push({ name: shimsEnvName(arch), value: shims.join(" ") });
    const defaultShim = opts.defaultShimByArch?.[arch];
    if (defaultShim !== undefined) env.push({ name: defaultShimEnvName(arch), value: defaultShim });
  }
  return env;
}

/**
 * The node labels that confine `shim`'s RuntimeClass to the architectures that install it. Without `shimsByArch`,
 * or for a shim every architecture with shims installs: none (`<prefix>/kata-runtime=true` is set only where an
 * architecture's shims were installed). A shim of exactly one of them: `kubernetes.io/arch=<arch>`. A shim of
 * several but not all: a RuntimeClass nodeSelector is a map (ANDed), so it cannot say "amd64 or arm64"; the
 * per-shim label `<prefix>/kata-<shim>=true`, which the installer sets on the nodes where it installed the shim.
 * (Upstream's chart adds no architecture selector at all, so a pod may land on a node without its handler.)
 */
export function archSelector(settings: Pick<KataSettings, "shimsByArch" | "labelPrefix">, shim: string): Record<string, string> {
  if (settings.shimsByArch === undefined) return {};
  const withShims = Object.entries(settings.shimsByArch).filter(([, shims]) => shims.length > 0);
  const having = withShims.filter(([, shims]) => shims.includes(shim)).map(([arch]) => arch);
  if (having.length === withShims.length) return {};
  if (having.length === 1) return { [NODE_ARCH_LABEL]: having[0] };
  return { [shimLabelKey(settings.labelPrefix, shim)]: "true" };
}

// ---- per-node default handler (mixed-architecture clusters whose default shims differ) ------------------------

/**
 * The handler of the default RuntimeClass when the architectures' default shims differ (`defaultShimByArch`
 * names more than one shim): `defaultRuntimeClassName` itself, a runtime that each node's installer configures
 * to run that node's own default shim (`--default-handler`). Undefined otherwise: the default RuntimeClass
 * then keeps handler `kata-<defaultShim>`, as upstream's chart renders it (4.1.0 runtimeclasses.yaml: handler
 * `kata-<defaultShim.amd64>` on every node; upstream's DEFAULT_SHIM_<ARCH> is only validated and logged,
 * binary/src/config.rs), so a stack whose defaults agree keeps its RuntimeClass unchanged (a changed handler
 * replaces the RuntimeClass: components/kataDeployment.ts replaceOnChanges).
 */
export function perNodeDefaultHandler(
  settings: Pick<KataSettings, "createDefaultRuntimeClass" | "defaultRuntimeClassName"> & Partial<Pick<KataSettings, "defaultShimByArch">>,
): string | undefined {
  if (!settings.createDefaultRuntimeClass || settings.defaultShimByArch === undefined) return undefined;
  return new Set(Object.values(settings.defaultShimByArch)).size > 1 ? settings.defaultRuntimeClassName : undefined;
}

function defaultHandlerArgs(settings: Pick<KataSettings, "createDefaultRuntimeClass" | "defaultRuntimeClassName"> & Partial<Pick<KataSettings, "defaultShimByArch">>): string[] {
  const handler = perNodeDefaultHandler(settings);
  return handler === undefined ? [] : ["--default-handler", handler];
}

/**
 * The default RuntimeClass with the per-node handler. Its overhead must fit every node it may land on, and a
 * RuntimeClass has one `overhead.podFixed` for all of them, so each resource is the largest of the
 * architectures' default shims' figures (an amd64 qemu default and an arm64 fc default: qemu's 320Mi; a pod on
 * an fc node is charged more than fc needs rather than a qemu pod less). None when no default shim declares
 * overhead. Scheduling: the default shims' own node labels (validation refuses defaults whose labels differ).
 */
function perNodeDefaultRuntimeClass(
  settings: Pick<KataSettings, "runtimeClasses" | "defaultRuntimeClassName"> & Partial<Pick<KataSettings, "defaultShimByArch">>,
  handler: string,
  installed: Record<string, string>,
): RuntimeClassManifest {
  const defaults = [...new Set(Object.values(settings.defaultShimByArch ?? {}))];
  const overheads = defaults.flatMap((shim) => (settings.runtimeClasses[shim]?.overhead === undefined ? [] : [settings.runtimeClasses[shim].overhead]));
  const largest = (key: "memory" | "cpu"): string => overheads.map((overhead) => overhead[key]).reduce((a, b) => (quantityValue(b) > quantityValue(a) ? b : a));
  return {
    apiVersion: "node.k8s.io/v1",
    kind: "RuntimeClass",
    metadata: { name: settings.defaultRuntimeClassName, labels: labelsFor("runtimeclass") },
    handler,
    ...(overheads.length > 0 ? { overhead: { podFixed: { memory: largest("memory"), cpu: largest("cpu") } } } : {}),
    scheduling: { nodeSelector: { ...installed, ...(settings.runtimeClasses[defaults[0]]?.nodeSelector ?? {}) } },
  };
}

const QUANTITY_SUFFIX: Readonly<Record<string, number>> = {
  "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/**
 * A resource quantity's value, for comparing two (kubernetes/apimachinery pkg/api/resource/quantity.go: number
 * times a decimal SI, binary SI or decimal exponent suffix). Validation has checked the grammar already.
 */
export function quantityValue(quantity: string): number {
  const match = /^\+?(\d+(?:\.\d*)?|\.\d+)([eE][+-]?\d+|[A-Za-z]*)$/.exec(quantity);
  if (match === null) throw new Error(`internal error: ${quantity} is not a quantity`);
  const [, number, suffix] = match;
  if (/^[eE]/.test(suffix)) return Number(number) * 10 ** Number(suffix.slice(1));
  const factor = QUANTITY_SUFFIX[suffix];
  if (factor === undefined) throw new Error(`internal error: ${quantity} has an unknown suffix`);
  return Number(number) * factor;
}

// ---- end of per-node default handler ------------------------------------------------------------------------

// ---- end of mixed-architecture clusters ---------------------------------------------------------------------

/** Registry login for the image pull Secret; all three come from the image build's push credentials. */
export interface RegistryCredentials {
  server: string;
  username: string;
  password: string;
}

/**
 * A `kubernetes.io/dockerconfigjson` Secret holding one registry login, in the format the kubelet reads
 * (`auths.<server>.auth` is base64 of `user:password`). The caller must treat the result as secret.
 */
export function buildRegistryPullSecret(settings: Pick<KataSettings, "namespace">, credentials: RegistryCredentials): SecretManifest {
  const { server, username, password } = credentials;
  const auth = Buffer.from(`${username}:${password}`, "utf8").toString("base64");
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: NAMES.registryPullSecret, namespace: settings.namespace, labels: labelsFor("registry-credentials") },
    type: "kubernetes.io/dockerconfigjson",
    stringData: { ".dockerconfigjson": JSON.stringify({ auths: { [server]: { username, password, auth } } }) },
  };
}

/** Every object, grouped as the seed's files group them (`npm run render` writes one file per group). */
export interface AllManifests {
  /** kata-rbac.yaml: the namespace (when created), ServiceAccount, ClusterRole, ClusterRoleBinding. */
  rbac: Manifest[];
  /** kata-deploy.yaml: the runtime labeler and one installer per runtime. */
  deploy: DaemonSetManifest[];
  /** kata-cleanup.yaml */
  cleanup: DaemonSetManifest[];
  /** runtimeclasses.yaml */
  runtimeClasses: RuntimeClassManifest[];
}

export function buildAllManifests(opts: ManifestOptions): AllManifests {
  const rbac = buildRbac(opts);
  return {
    rbac: [
      ...(opts.createNamespace ? [buildNamespace(opts)] : []),
      rbac.serviceAccount,
      rbac.clusterRole,
      rbac.clusterRoleBinding,
    ],
    deploy: [buildLabelerDaemonSet(opts), ...opts.runtimes.map((runtime) => buildInstallerDaemonSet(runtime, opts))],
    cleanup: [buildCleanupDaemonSet(opts)],
    runtimeClasses: buildRuntimeClasses(opts),
  };
}
