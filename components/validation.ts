// Turns user-supplied settings into KataSettings, or fails with one line naming the field, the bad value
// and what is allowed. Runs before any child resource is registered, so a bad argument changes nothing.
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseToml, TomlError } from "smol-toml";
import {
  HYPERVISOR_ANNOTATION_PATTERN,
  INSTALL_PREFIX,
  installPrefixProblem,
  KATA_LOG_LEVELS,
  proxyProblem,
  RUNTIME_HANDLER_PATTERN,
  type KataShimConfig,
} from "./contract";
import { release } from "./imageBuild";
import { perNodeDefaultHandler } from "./manifests";
import {
  Affinity,
  CONTAINERD_FLAVORS,
  CONTAINER_RUNTIMES,
  ContainerdFlavor,
  ContainerResources,
  ContainerRuntime,
  DEFAULT_IMAGE_PULL_POLICY,
  CustomRuntimeSettings,
  DEFAULT_LABEL_PREFIX,
  DEFAULT_PRIORITY_CLASS_NAME,
  DEFAULT_RESOURCES,
  DEFAULT_MAX_UNAVAILABLE,
  DEFAULT_NAMESPACE,
  DEFAULT_RUNTIME_CLASS_NAME,
  DEFAULT_RUNTIMES,
  DEFAULT_SHIMS,
  IMAGE_PULL_POLICIES,
  ImagePullPolicy,
  KataSettings,
  KNOWN_SHIMS,
  labelKeys,
  NODE_SELECTOR_OPERATORS,
  NodeSelectorOperator,
  NodeSelectorTerm,
  NODE_ARCHES,
  NodeArch,
  SHIM_ARCHES,
  PodOverhead,
  RESOURCE_NAMES,
  RESOURCE_TARGETS,
  ResourceTarget,
  SHIM_DEFAULT_OVERHEAD,
  StartupTaint,
  SHIM_DEFAULT_RUNTIME_CLASS_NODE_SELECTOR,
  ShimRuntimeClass,
  TAINT_EFFECTS,
  TOLERATE_EVERYTHING,
  Toleration,
  TOLERATION_OPERATORS,
} from "./settings";

/**
 * The plain (non-Output) settings as a user, a stack's config or the render CLI gives them. Deliberately
 * looser than KataDeploymentArgs (strings instead of unions) because config and command lines are untyped.
 */
export interface KataSettingsInput {
  runtimes?: readonly string[];
  shims?: readonly string[];
  defaultShim?: string;
  namespace?: string;
  labelPrefix?: string;
  maxUnavailable?: number | string;
  containerdFlavor?: string;
  containerdConfigPath?: string;
  containerdSocket?: string;
  containerdUnit?: string;
  runtimeClassOverhead?: Readonly<Record<string, Partial<PodOverhead> & { enabled?: boolean }>>;
  runtimeClassOverheadEnabled?: boolean;
  runtimeClassNodeSelector?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  createDefaultRuntimeClass?: boolean;
  containerRuntimeDebug?: boolean;
  defaultRuntimeClassName?: string;
  createNamespace?: boolean;
  nodeSelector?: Readonly<Record<string, string>>;
  tolerations?: readonly Toleration[];
  priorityClassName?: string;
  imagePullSecrets?: readonly string[];
  resources?: Readonly<Partial<Record<string, ContainerResources>>>;
  startupTaints?: readonly StartupTaint[];
  imagePullPolicy?: string;
  podLabels?: Readonly<Record<string, string>>;
  podAnnotations?: Readonly<Record<string, string>>;
  affinity?: Affinity;
  // --- snapshotter / guest pull (issue 12) ---
  snapshotters?: Readonly<Record<string, string>>;
  guestPull?: readonly string[];
  // --- end snapshotter / guest pull ---
  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  installPrefix?: string;
  shimConfig?: Readonly<Record<string, Readonly<KataShimConfig>>>;
  customRuntimes?: readonly Readonly<{ name: string; baseShim: string; dropIn?: string; overhead?: Partial<PodOverhead> }>[];
  // ---- end of Kata configuration ----
  // Mixed-architecture clusters (issue 12 point 3).
  // Keys are checked at run time (config is untyped); the type only says what is meant.
  shimsByArch?: Readonly<Partial<Record<NodeArch, readonly string[]>>>;
  defaultShimByArch?: Readonly<Partial<Record<NodeArch, string>>>;
}

/** Namespaces Kubernetes itself owns: the component may deploy into them but never creates or deletes them. */
export const SYSTEM_NAMESPACES: readonly string[] = ["default", "kube-system", "kube-public", "kube-node-lease"];
/** Label-key prefixes reserved for Kubernetes core components (and their subdomains). */
const RESERVED_LABEL_PREFIXES = ["kubernetes.io", "k8s.io"];
/** Pod labels the component sets itself: its DaemonSets' selectors and the wait steps' pod lookups use them. */
const COMPONENT_POD_LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/component"];
/** The API server's limit on all of an object's annotations together (apimachinery ValidateAnnotationsSize). */
const TOTAL_ANNOTATION_BYTES = 256 * 1024;

// RFC 1123 label / subdomain, as Kubernetes validates names and label-key prefixes.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// A non-negative resource.Quantity as the API server parses it (kubernetes/apimachinery pkg/api/resource/
// quantity.go, ParseQuantity's grammar: <number><suffix>, number "1", "1.5", "1." or ".5", suffix a binary SI
// (Ki..Ei), a decimal SI (m, "", k, M, G, T, P, E) or a decimal exponent (e3, E-2)). The OpenAPI schema's
// pattern is looser ("1.2.3" passes it, the API server refuses it). Requests, limits and RuntimeClass
// overhead must not be negative (core validation ValidateResourceQuantityValue).
const QUANTITY = /^\+?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;
const PERCENT = /^([1-9][0-9]?|100)%$/;
// The name part of a label key, and a non-empty label value (Kubernetes' qualified-name rules).
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** A DNS subdomain as Kubernetes validates it: at most 253 characters, each dot-separated label at most 63. */
function isDnsSubdomain(value: unknown): value is string {
  return typeof value === "string" && value.length <= 253 && DNS_SUBDOMAIN.test(value) && value.split(".").every((label) => label.length <= 63);
}

/** Why `value` is not a valid label value, or undefined when it is (an empty value is valid). */
function labelValueProblem(value: unknown): string | undefined {
  if (typeof value !== "string" || value.length > 63 || (value !== "" && !LABEL_NAME.test(value))) {
    return "a label value is at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
  }
  return undefined;
}

/** Why `key` is not a valid label key ([prefix/]name), or undefined when it is. */
function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && !isDnsSubdomain(prefix)) return `its prefix ${quote(prefix)} is not a DNS subdomain`;
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    return "its name must be 1-63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
  }
  return undefined;
}

const quote = (value: unknown): string => JSON.stringify(value) ?? String(value);
const allowed = (values: readonly string[]): string => `allowed values: ${values.join(", ")}`;

/**
 * Validates and applies defaults. Throws `pulumi.ResourceError` (attached to `resource`, so Pulumi shows it
 * at preview against the component) whose message names the field, the bad value and the allowed values.
 */
export function normalizeSettings(input: KataSettingsInput, resource?: pulumi.Resource): KataSettings {
  const fail = (field: string, problem: string): never => {
    throw new pulumi.ResourceError(`KataDeployment: ${field} ${problem}`, resource, /* hideStack */ true);
  };

  const runtimes = uniqueList("runtimes", input.runtimes ?? DEFAULT_RUNTIMES, CONTAINER_RUNTIMES, fail);
  // Mixed-architecture clusters: with shimsByArch, `shims` is the union of its lists.
  const byArch = normalizeShimsByArch(input, fail);
  const shims = byArch?.shims ?? uniqueList("shims", input.shims ?? DEFAULT_SHIMS, KNOWN_SHIMS, fail);

  const defaultShim = input.defaultShim ?? byArch?.commonDefault ?? shims[0];
  if (!shims.includes(defaultShim)) {
    fail("defaultShim", `is ${quote(defaultShim)}, which is not in shims; allowed values: ${shims.join(", ")}`);
  }

  const namespace = input.namespace ?? DEFAULT_NAMESPACE;
  if (typeof namespace !== "string" || namespace.length > 63 || !DNS_LABEL.test(namespace)) {
    fail("namespace", `is ${quote(namespace)}; it must be a DNS label (lowercase letters, digits and '-', at most 63 characters)`);
  }

  const createNamespace = input.createNamespace ?? input.namespace === undefined;
  if (typeof createNamespace !== "boolean") fail("createNamespace", `is ${quote(createNamespace)}; allowed values: true, false`);
  if (createNamespace && SYSTEM_NAMESPACES.includes(namespace)) {
    fail("createNamespace", `is true for namespace ${quote(namespace)}, which Kubernetes owns (destroy would delete it); set createNamespace to false to deploy into it`);
  }

  const labelPrefix = input.labelPrefix ?? DEFAULT_LABEL_PREFIX;
  if (!isDnsSubdomain(labelPrefix)) {
    fail(
      "labelPrefix",
      `is ${quote(labelPrefix)}; it must be a DNS subdomain such as ${quote(DEFAULT_LABEL_PREFIX)} (lowercase letters, digits, '-' and '.', labels of at most 63 characters, at most 253 in all, no '/')`,
    );
  }
  const reserved = RESERVED_LABEL_PREFIXES.find((domain) => labelPrefix === domain || labelPrefix.endsWith(`.${domain}`));
  if (reserved !== undefined) {
    fail("labelPrefix", `is ${quote(labelPrefix)}; the ${reserved} domain is reserved for Kubernetes core components; use a domain you own, or the default ${quote(DEFAULT_LABEL_PREFIX)}`);
  }

  const maxUnavailable = input.maxUnavailable ?? DEFAULT_MAX_UNAVAILABLE;
  const validCount = typeof maxUnavailable === "number" && Number.isInteger(maxUnavailable) && maxUnavailable >= 1;
  const validPercent = typeof maxUnavailable === "string" && PERCENT.test(maxUnavailable);
  if (!validCount && !validPercent) {
    fail("maxUnavailable", `is ${quote(maxUnavailable)}; allowed values: a whole number >= 1 or a percentage from "1%" to "100%"`);
  }

  const containerdFlavor = input.containerdFlavor ?? "auto";
  if (!(CONTAINERD_FLAVORS as readonly string[]).includes(containerdFlavor)) {
    fail("containerdFlavor", `is ${quote(containerdFlavor)}; ${allowed(CONTAINERD_FLAVORS)}`);
  }
  // A custom (plain) containerd: its config file, socket and unit, passed to the agent as they are.
  const customContainerd: { containerdConfigPath?: string; containerdSocket?: string; containerdUnit?: string } = {};
  for (const key of ["containerdConfigPath", "containerdSocket"] as const) {
    const value = input[key];
    if (value === undefined) continue;
    const problem = typeof value !== "string" ? "must be a string" : hostFilePathProblem(value);
    if (problem !== undefined) fail(key, `is ${quote(value)}; ${problem}`);
    else customContainerd[key] = value;
  }
  if (input.containerdUnit !== undefined) {
    if (typeof input.containerdUnit !== "string" || !/^[A-Za-z0-9:_.@-]+$/.test(input.containerdUnit)) {
      fail("containerdUnit", `is ${quote(input.containerdUnit)}; must be a systemd unit name such as "containerd" or "containerd-custom.service"`);
    } else customContainerd.containerdUnit = input.containerdUnit;
  }
  const customKeys = Object.keys(customContainerd);
  if (customKeys.length > 0 && containerdFlavor !== "auto" && containerdFlavor !== "containerd") {
    fail(customKeys[0], `describes a plain containerd, but containerdFlavor is ${quote(containerdFlavor)}; drop ${customKeys.join(", ")} or set containerdFlavor to "containerd"`);
  }

  const runtimeClasses = normalizeRuntimeClasses(input, shims, labelKeys(labelPrefix).kataRuntime, fail);

  const createDefaultRuntimeClass = input.createDefaultRuntimeClass ?? true;
  if (typeof createDefaultRuntimeClass !== "boolean") {
    fail("createDefaultRuntimeClass", `is ${quote(createDefaultRuntimeClass)}; allowed values: true, false`);
  }
  const containerRuntimeDebug = input.containerRuntimeDebug ?? false;
  if (typeof containerRuntimeDebug !== "boolean") fail("containerRuntimeDebug", `is ${quote(containerRuntimeDebug)}; allowed values: true, false`);
  // With `auto` a node detected as one of these flavours refuses it there (the containerd planner), with the same reason.
  if (containerRuntimeDebug && runtimes.includes("containerd") && containerdFlavor !== "containerd" && containerdFlavor !== "auto") {
    fail(
      "containerRuntimeDebug",
      containerdFlavor === "k3s" || containerdFlavor === "rke2"
        ? `is true, but ${containerdFlavor} starts containerd itself and sets its log level from its own environment (CONTAINERD_LOG_LEVEL), not from the configuration kata-deploy edits; set CONTAINERD_LOG_LEVEL=debug in the ${containerdFlavor} service's environment instead`
        : `is true, but ${containerdFlavor} starts containerd itself and kata-deploy sets containerd's log level only for a plain containerd; set it through ${containerdFlavor}'s own configuration, and containerRuntimeDebug to false`,
    );
  }
  const defaultRuntimeClassName = input.defaultRuntimeClassName ?? DEFAULT_RUNTIME_CLASS_NAME;
  // RuntimeClass names are DNS subdomains (kubernetes pkg/apis/node/validation ValidateRuntimeClass).
  if (!isDnsSubdomain(defaultRuntimeClassName)) {
    fail("defaultRuntimeClassName", `is ${quote(defaultRuntimeClassName)}; it must be a DNS subdomain such as ${quote(DEFAULT_RUNTIME_CLASS_NAME)} (lowercase letters, digits, '-' and '.')`);
  }
  const clash = shims.find((shim) => `kata-${shim}` === defaultRuntimeClassName);
  if (clash !== undefined) {
    fail("defaultRuntimeClassName", `is ${quote(defaultRuntimeClassName)}, the name of shim ${clash}'s own RuntimeClass; choose another name (default ${quote(DEFAULT_RUNTIME_CLASS_NAME)})`);
  }

  const defaultShimByArch = byArch === undefined ? undefined : normalizeDefaultShimByArch(byArch.shimsByArch, input.defaultShimByArch, defaultShim, fail);
  if (perNodeDefaultHandler({ createDefaultRuntimeClass, defaultRuntimeClassName, defaultShimByArch }) !== undefined) {
    checkPerNodeDefaultHandler(defaultRuntimeClassName, defaultShimByArch ?? {}, runtimeClasses, fail);
  }

  const ownLabels = Object.values(labelKeys(labelPrefix));
  const nodeSelector = input.nodeSelector ?? {};
  if (nodeSelector === null || typeof nodeSelector !== "object" || Array.isArray(nodeSelector)) {
    fail("nodeSelector", `is ${quote(nodeSelector)}; it must be a map of node label keys to values, e.g. {"node-role.example.com/sandbox": "true"}`);
  }
  for (const [key, value] of Object.entries(nodeSelector)) {
    const problem = labelKeyProblem(key);
    if (problem !== undefined) fail(`nodeSelector[${quote(key)}]`, `is not a valid label key: ${problem}`);
    if (ownLabels.includes(key)) fail(`nodeSelector[${quote(key)}]`, "is a label the component manages itself; select on another label");
    const valueProblem = labelValueProblem(value);
    if (valueProblem !== undefined) fail(`nodeSelector[${quote(key)}]`, `has value ${quote(value)}; ${valueProblem}`);
  }

  const tolerations = normalizeTolerations(input.tolerations ?? TOLERATE_EVERYTHING, fail);

  const priorityClassName = input.priorityClassName ?? DEFAULT_PRIORITY_CLASS_NAME;
  if (typeof priorityClassName !== "string" || (priorityClassName !== "" && !isDnsSubdomain(priorityClassName))) {
    fail("priorityClassName", `is ${quote(priorityClassName)}; it must name a PriorityClass (a DNS subdomain), or be "" for none`);
  }

  const imagePullSecrets = input.imagePullSecrets ?? [];
  if (!Array.isArray(imagePullSecrets)) fail("imagePullSecrets", `is ${quote(imagePullSecrets)}; it must be a list of Secret names`);
  imagePullSecrets.forEach((secretName: unknown, index) => {
    if (!isDnsSubdomain(secretName)) fail(`imagePullSecrets[${index}]`, `is ${quote(secretName)}; it must be the name of a Secret (a DNS subdomain)`);
    if (imagePullSecrets.indexOf(secretName as string) !== index) fail(`imagePullSecrets[${index}]`, `repeats ${quote(secretName)}; list each Secret once`);
  });

  const resources = normalizeResources(input.resources ?? {}, fail);

  const startupTaints = normalizeStartupTaints(input.startupTaints ?? [], fail);
  const imagePullPolicy = input.imagePullPolicy ?? DEFAULT_IMAGE_PULL_POLICY;
  if (!(IMAGE_PULL_POLICIES as readonly string[]).includes(imagePullPolicy)) {
    fail("imagePullPolicy", `is ${quote(imagePullPolicy)}; ${allowed(IMAGE_PULL_POLICIES)}`);
  }
  const podLabels = normalizeLabels("podLabels", input.podLabels ?? {}, fail);
  for (const key of Object.keys(podLabels)) {
    if (COMPONENT_POD_LABELS.includes(key)) {
      fail(`podLabels[${quote(key)}]`, `is a label the component sets on its pods itself (its DaemonSets select their pods by ${COMPONENT_POD_LABELS.join(" and ")}); use another key`);
    }
  }
  const podAnnotations = normalizeAnnotations(input.podAnnotations ?? {}, fail);
  const affinity = normalizeAffinity(input.affinity, fail);
  // --- snapshotter / guest pull (issue 12) ---
  const snapshotters = normalizeSnapshotters(input.snapshotters ?? {}, shims, fail);
  const guestPull = input.guestPull === undefined || (Array.isArray(input.guestPull) && input.guestPull.length === 0) ? [] : uniqueList("guestPull", input.guestPull, shims, fail);
  // --- end snapshotter / guest pull ---
  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  const installPrefix = input.installPrefix ?? INSTALL_PREFIX;
  const prefixProblem = installPrefixProblem(installPrefix);
  if (prefixProblem !== undefined) fail("installPrefix", `is ${quote(installPrefix)}; it ${prefixProblem}`);
  const shimConfig = normalizeShimConfig(input.shimConfig ?? {}, shims, runtimes, fail);
  const baseOverheads = Object.fromEntries(shims.map((shim) => [shim, runtimeClasses[shim]?.overhead ?? {}]));
  const customRuntimes = normalizeCustomRuntimes(input.customRuntimes ?? [], shims, baseOverheads, createDefaultRuntimeClass ? defaultRuntimeClassName : undefined, fail);
  // ---- end of Kata configuration ----

  return {
    runtimes: runtimes as ContainerRuntime[],
    shims,
    defaultShim,
    namespace,
    createNamespace,
    labelPrefix,
    maxUnavailable,
    containerdFlavor: containerdFlavor as ContainerdFlavor,
    ...customContainerd,
    runtimeClasses,
    createDefaultRuntimeClass,
    containerRuntimeDebug,
    defaultRuntimeClassName,
    nodeSelector: { ...nodeSelector },
    tolerations,
    priorityClassName,
    imagePullSecrets: [...imagePullSecrets],
    resources,
    startupTaints,
    imagePullPolicy: imagePullPolicy as ImagePullPolicy,
    podLabels,
    podAnnotations,
    ...(affinity !== undefined ? { affinity } : {}),
    snapshotters,
    guestPull,
    installPrefix,
    shimConfig,
    customRuntimes,
    ...(byArch !== undefined ? { shimsByArch: byArch.shimsByArch, defaultShimByArch } : {}),
  };
}

type Fail = (field: string, problem: string) => never;

const isPlainObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === "object" && !Array.isArray(value);

/**
 * Each shim's RuntimeClass: overhead (upstream's default figures, merged with `runtimeClassOverhead`, unless
 * switched off globally or per shim) and the node labels it requires (upstream's per-shim default, or the
 * shim's entry in `runtimeClassNodeSelector`, which replaces it).
 */
function normalizeRuntimeClasses(input: KataSettingsInput, shims: readonly string[], kataRuntimeLabel: string, fail: Fail): Record<string, ShimRuntimeClass> {
  const enabledGlobally = input.runtimeClassOverheadEnabled ?? true;
  if (typeof enabledGlobally !== "boolean") fail("runtimeClassOverheadEnabled", `is ${quote(enabledGlobally)}; allowed values: true, false`);
  const overrides: unknown = input.runtimeClassOverhead ?? {};
  if (!isPlainObject(overrides)) return fail("runtimeClassOverhead", `is ${quote(overrides)}; it must map shims to {memory, cpu, enabled}, e.g. {"qemu": {"memory": "512Mi"}}`);
  const selectors: unknown = input.runtimeClassNodeSelector ?? {};
  if (!isPlainObject(selectors)) return fail("runtimeClassNodeSelector", `is ${quote(selectors)}; it must map shims to node labels, e.g. {"qemu-tdx": {"intel.feature.node.kubernetes.io/tdx": "true"}}`);
  for (const [field, given] of [["runtimeClassOverhead", overrides], ["runtimeClassNodeSelector", selectors]] as const) {
    for (const shim of Object.keys(given)) {
      if (!shims.includes(shim)) fail(`${field}.${shim}`, `names a shim that is not in shims; allowed keys: ${shims.join(", ")}`);
    }
  }

  const classes: Record<string, ShimRuntimeClass> = {};
  for (const shim of shims) {
    const override: unknown = overrides[shim] ?? {};
    if (!isPlainObject(override)) return fail(`runtimeClassOverhead.${shim}`, `is ${quote(override)}; it must be {memory?, cpu?, enabled?}`);
    const overhead: PodOverhead = { ...SHIM_DEFAULT_OVERHEAD[shim] };
    for (const [key, value] of Object.entries(override)) {
      const field = `runtimeClassOverhead.${shim}.${key}`;
      if (key === "enabled") {
        if (typeof value !== "boolean") fail(field, `is ${quote(value)}; allowed values: true, false`);
        continue;
      }
      if (key !== "memory" && key !== "cpu") fail(field, "is not a known field; allowed keys: memory, cpu, enabled");
      if (typeof value !== "string" || !QUANTITY.test(value)) fail(field, `is ${quote(value)}; it must be a non-negative Kubernetes quantity such as "320Mi" or "250m"`);
      overhead[key as keyof PodOverhead] = value as string;
    }
    const enabled = (override.enabled as boolean | undefined) ?? enabledGlobally;
    const figures = Object.keys(override).filter((key) => key !== "enabled");
    if (!enabled && figures.length > 0) {
      const switchedOff = override.enabled === false ? `runtimeClassOverhead.${shim}.enabled is false` : "runtimeClassOverheadEnabled is false";
      fail(`runtimeClassOverhead.${shim}.${figures[0]}`, `is set, but ${switchedOff}, so kata-${shim} declares no overhead; remove the figure, or set runtimeClassOverhead.${shim}.enabled to true`);
    }

    const nodeSelector = selectors[shim] ?? SHIM_DEFAULT_RUNTIME_CLASS_NODE_SELECTOR[shim] ?? {};
    const field = `runtimeClassNodeSelector.${shim}`;
    const labels = normalizeLabels(field, nodeSelector, fail);
    if (kataRuntimeLabel in labels) {
      fail(`${field}[${quote(kataRuntimeLabel)}]`, `is the label the component requires itself (nodes where Kata is installed); select on another label`);
    }
    classes[shim] = { ...(enabled ? { overhead } : {}), nodeSelector: labels };
  }
  return classes;
}

/** A map of label keys to values, each checked as the API server checks labels (names the field and the fix). */
function normalizeLabels(field: string, value: unknown, fail: Fail): Record<string, string> {
  if (!isPlainObject(value)) return fail(field, `is ${quote(value)}; it must be a map of label keys to values, e.g. {"team.example.com/name": "platform"}`);
  for (const [key, labelValue] of Object.entries(value)) {
    const problem = labelKeyProblem(key);
    if (problem !== undefined) fail(`${field}[${quote(key)}]`, `is not a valid label key: ${problem}`);
    const valueProblem = labelValueProblem(labelValue);
    if (valueProblem !== undefined) fail(`${field}[${quote(key)}]`, `has value ${quote(labelValue)}; ${valueProblem}`);
  }
  return { ...(value as Record<string, string>) };
}

/** Annotations as the API server checks them (kubernetes/apimachinery pkg/api/validation ValidateAnnotations): qualified-name keys, string values, 256 KiB in all. */
function normalizeAnnotations(value: unknown, fail: Fail): Record<string, string> {
  if (!isPlainObject(value)) return fail("podAnnotations", `is ${quote(value)}; it must be a map of annotation keys to string values, e.g. {"example.com/owner": "platform"}`);
  let bytes = 0;
  for (const [key, annotation] of Object.entries(value)) {
    // The API server checks the lowercased key, so upper-case letters in the prefix are allowed here.
    const problem = labelKeyProblem(key.toLowerCase());
    if (problem !== undefined) fail(`podAnnotations[${quote(key)}]`, `is not a valid annotation key: ${problem}`);
    if (typeof annotation !== "string") fail(`podAnnotations[${quote(key)}]`, `has value ${quote(annotation)}; annotation values are strings (quote numbers and booleans)`);
    bytes += Buffer.byteLength(key) + Buffer.byteLength(annotation as string);
  }
  if (bytes > TOTAL_ANNOTATION_BYTES) fail("podAnnotations", `total ${bytes} bytes; the API server allows at most ${TOTAL_ANNOTATION_BYTES} bytes of annotations per object`);
  return { ...(value as Record<string, string>) };
}

/**
 * Node affinity only, checked as the API server checks it (kubernetes pkg/apis/core/validation
 * ValidateNodeSelector, ValidateNodeSelectorRequirement, ValidateNodeFieldSelectorRequirement,
 * ValidatePreferredSchedulingTerms). Pod (anti-)affinity is refused: the DaemonSet controller ignores it
 * (pkg/controller/daemon NodeShouldRunDaemonPod checks node selector, node affinity and taints) but the
 * scheduler enforces it, so an installer pod another pod keeps off its node stays Pending there: it never
 * installs, and when the DaemonSet is deleted a Pending pod has no preStop to uninstall a node it ran on before.
 */
function normalizeAffinity(value: unknown, fail: Fail): Affinity | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) return fail("affinity", `is ${quote(value)}; it must be {nodeAffinity: {...}}`);
  for (const key of Object.keys(value)) {
    if (key === "podAffinity" || key === "podAntiAffinity") {
      fail(`affinity.${key}`, "is not offered: an installer pod another pod keeps off its node can neither install Kata there nor uninstall it on removal; choose nodes with nodeSelector or affinity.nodeAffinity");
    }
    if (key !== "nodeAffinity") fail(`affinity.${key}`, "is not an affinity field; allowed keys: nodeAffinity");
  }
  if (value.nodeAffinity === undefined) return undefined;
  const nodeAffinity = value.nodeAffinity;
  if (!isPlainObject(nodeAffinity)) return fail("affinity.nodeAffinity", `is ${quote(nodeAffinity)}; it must be {requiredDuringSchedulingIgnoredDuringExecution?, preferredDuringSchedulingIgnoredDuringExecution?}`);
  const required = "requiredDuringSchedulingIgnoredDuringExecution";
  const preferred = "preferredDuringSchedulingIgnoredDuringExecution";
  for (const key of Object.keys(nodeAffinity)) {
    if (key !== required && key !== preferred) fail(`affinity.nodeAffinity.${key}`, `is not a node affinity field; allowed keys: ${required}, ${preferred}`);
  }
  const result: NonNullable<Affinity["nodeAffinity"]> = {};
  const requiredValue = nodeAffinity[required];
  if (requiredValue !== undefined) {
    const field = `affinity.nodeAffinity.${required}`;
    if (!isPlainObject(requiredValue) || Object.keys(requiredValue).some((key) => key !== "nodeSelectorTerms")) {
      return fail(field, `is ${quote(requiredValue)}; it must be {nodeSelectorTerms: [...]}`);
    }
    const terms = requiredValue.nodeSelectorTerms;
    if (!Array.isArray(terms) || terms.length === 0) fail(`${field}.nodeSelectorTerms`, "must list at least one term (Kubernetes refuses an empty list); remove the required affinity to select every node");
    result[required] = { nodeSelectorTerms: (terms as unknown[]).map((term, index) => normalizeNodeSelectorTerm(`${field}.nodeSelectorTerms[${index}]`, term, fail)) };
  }
  const preferredValue = nodeAffinity[preferred];
  if (preferredValue !== undefined) {
    const field = `affinity.nodeAffinity.${preferred}`;
    if (!Array.isArray(preferredValue)) return fail(field, `is ${quote(preferredValue)}; it must be a list of {weight, preference}`);
    result[preferred] = preferredValue.map((item: unknown, index) => {
      const at = `${field}[${index}]`;
      if (!isPlainObject(item)) return fail(at, `is ${quote(item)}; it must be {weight, preference}`);
      for (const key of Object.keys(item)) if (key !== "weight" && key !== "preference") fail(`${at}.${key}`, "is not a field; allowed keys: weight, preference");
      const weight = item.weight;
      if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 1 || weight > 100) fail(`${at}.weight`, `is ${quote(weight)}; it must be a whole number from 1 to 100`);
      return { weight: weight as number, preference: normalizeNodeSelectorTerm(`${at}.preference`, item.preference, fail) };
    });
  }
  return Object.keys(result).length > 0 ? { nodeAffinity: result } : undefined;
}

/** One node selector term: at least one requirement; labels as label keys and values, fields only `metadata.name`. */
function normalizeNodeSelectorTerm(field: string, value: unknown, fail: Fail): NodeSelectorTerm {
  if (!isPlainObject(value)) return fail(field, `is ${quote(value)}; it must be {matchExpressions?, matchFields?}`);
  for (const key of Object.keys(value)) if (key !== "matchExpressions" && key !== "matchFields") fail(`${field}.${key}`, "is not a node selector term field; allowed keys: matchExpressions, matchFields");
  const term: NodeSelectorTerm = {};
  for (const kind of ["matchExpressions", "matchFields"] as const) {
    const list = value[kind];
    if (list === undefined) continue;
    if (!Array.isArray(list)) return fail(`${field}.${kind}`, `is ${quote(list)}; it must be a list of {key, operator, values}`);
    term[kind] = list.map((item: unknown, index) => {
      const at = `${field}.${kind}[${index}]`;
      if (!isPlainObject(item)) return fail(at, `is ${quote(item)}; it must be {key, operator, values?}`);
      for (const key of Object.keys(item)) if (!["key", "operator", "values"].includes(key)) fail(`${at}.${key}`, "is not a requirement field; allowed keys: key, operator, values");
      const { key, operator, values } = item;
      if (values !== undefined && (!Array.isArray(values) || values.some((v) => typeof v !== "string"))) fail(`${at}.values`, `is ${quote(values)}; it must be a list of strings`);
      const valueList = (values ?? []) as string[];
      if (kind === "matchFields") {
        if (key !== "metadata.name") fail(`${at}.key`, `is ${quote(key)}; the only node field Kubernetes selects on is "metadata.name"`);
        if (operator !== "In" && operator !== "NotIn") fail(`${at}.operator`, `is ${quote(operator)}; allowed values for a field: In, NotIn`);
        if (valueList.length !== 1) fail(`${at}.values`, "must hold exactly one node name for a field requirement");
        if (!isDnsSubdomain(valueList[0])) fail(`${at}.values[0]`, `is ${quote(valueList[0])}; a node name is a DNS subdomain`);
      } else {
        const problem = typeof key === "string" ? labelKeyProblem(key) : "it is not a string";
        if (problem !== undefined) fail(`${at}.key`, `is ${quote(key)}, not a valid label key: ${problem}`);
        if (!(NODE_SELECTOR_OPERATORS as readonly unknown[]).includes(operator)) fail(`${at}.operator`, `is ${quote(operator)}; ${allowed(NODE_SELECTOR_OPERATORS)}`);
        if ((operator === "In" || operator === "NotIn") && valueList.length === 0) fail(`${at}.values`, `must hold at least one value for operator ${quote(operator)}`);
        if ((operator === "Exists" || operator === "DoesNotExist") && valueList.length > 0) fail(`${at}.values`, `must be empty for operator ${quote(operator)}`);
        if (operator === "Gt" || operator === "Lt") {
          if (valueList.length !== 1 || !/^[+-]?\d+$/.test(valueList[0])) fail(`${at}.values`, `must hold exactly one integer for operator ${quote(operator)}`);
        }
        valueList.forEach((labelValue, valueIndex) => {
          const valueProblem = labelValueProblem(labelValue);
          if (valueProblem !== undefined) fail(`${at}.values[${valueIndex}]`, `is ${quote(labelValue)}; ${valueProblem}`);
        });
      }
      return { key: key as string, operator: operator as NodeSelectorOperator, ...(values !== undefined ? { values: [...valueList] } : {}) };
    });
  }
  // An empty term matches no node (component-helpers nodeaffinity NewLazyErrorNodeSelector skips it).
  if ((term.matchExpressions?.length ?? 0) + (term.matchFields?.length ?? 0) === 0) {
    fail(field, "has no requirement, so it matches no node; give it matchExpressions or matchFields, or remove it");
  }
  return term;
}

// ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) -------------------
// The agent checks the same values again (images/kata-deploy/agent/src/lifecycle/kata-settings.ts, with the
// shared checks from contract.ts) for DaemonSets written by hand; here they fail at preview.

const SHIM_CONFIG_KEYS: readonly (keyof KataShimConfig)[] = ["allowedHypervisorAnnotations", "agentHttpsProxy", "agentNoProxy", "debug", "runtimeLogLevel", "forceGuestPull", "dropIn"];
const CUSTOM_RUNTIME_KEYS = ["name", "baseShim", "dropIn", "overhead"];
/** Runtime names the agent writes into containerd's config itself (the `untrusted` alias, the runc stand-in). */
const RESERVED_HANDLERS = ["untrusted", "runc"];
const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === "object" && !Array.isArray(value);

/** A Kata drop-in: a string that parses as TOML (smol-toml, the agent's parser too). */
function checkDropIn(field: string, value: unknown, fail: Fail): string {
  if (typeof value !== "string") return fail(field, `is ${quote(value)}; it must be a string of Kata TOML, e.g. "[hypervisor.qemu]\\ndefault_memory = 4096"`);
  try {
    parseToml(value);
  } catch (error) {
    if (error instanceof TomlError) fail(field, `is not valid TOML (line ${error.line}, column ${error.column}: ${error.message.split("\n")[0].replace(/^Invalid TOML document: /, "")}); fix the drop-in`);
    throw error;
  }
  return value;
}

function normalizeShimConfig(value: unknown, shims: readonly string[], runtimes: readonly string[], fail: Fail): Record<string, KataShimConfig> {
  if (!isObject(value)) return fail("shimConfig", `is ${quote(value)}; it must map shims to their settings, e.g. {"qemu": {"debug": true}}`);
  const result: Record<string, KataShimConfig> = {};
  for (const [shim, entry] of Object.entries(value)) {
    const field = `shimConfig.${shim}`;
    if (!shims.includes(shim)) fail(field, `names a shim that is not in shims; allowed keys: ${shims.join(", ")}`);
    if (!isObject(entry)) fail(field, `is ${quote(entry)}; it must be an object with ${SHIM_CONFIG_KEYS.join(", ")}`);
    const config = entry as Record<string, unknown>;
    for (const key of Object.keys(config)) if (!(SHIM_CONFIG_KEYS as readonly string[]).includes(key)) fail(`${field}.${key}`, `is not a setting; allowed keys: ${SHIM_CONFIG_KEYS.join(", ")}`);
    const settings: KataShimConfig = {};
    const { allowedHypervisorAnnotations, agentHttpsProxy, agentNoProxy, debug, runtimeLogLevel, forceGuestPull, dropIn } = config;
    if (allowedHypervisorAnnotations !== undefined) {
      if (!Array.isArray(allowedHypervisorAnnotations)) fail(`${field}.allowedHypervisorAnnotations`, `is ${quote(allowedHypervisorAnnotations)}; it must be a list of annotation names`);
      (allowedHypervisorAnnotations as unknown[]).forEach((name, index) => {
        if (typeof name !== "string" || !HYPERVISOR_ANNOTATION_PATTERN.test(name)) {
          fail(`${field}.allowedHypervisorAnnotations[${index}]`, `is ${quote(name)}; give the name after io.katacontainers.config.hypervisor., e.g. "default_memory"`);
        }
      });
      if ((allowedHypervisorAnnotations as unknown[]).length > 0) settings.allowedHypervisorAnnotations = [...new Set(allowedHypervisorAnnotations as string[])];
    }
    for (const [key, proxy] of [["agentHttpsProxy", agentHttpsProxy], ["agentNoProxy", agentNoProxy]] as const) {
      if (proxy === undefined) continue;
      const problem = proxyProblem(key, proxy);
      if (problem !== undefined) fail(`${field}.${key}`, `is ${quote(proxy)}; it ${problem}`);
      settings[key] = proxy as string;
    }
    if (debug !== undefined) {
      if (typeof debug !== "boolean") fail(`${field}.debug`, `is ${quote(debug)}; allowed values: true, false`);
      if (debug) settings.debug = true;
    }
    if (runtimeLogLevel !== undefined) {
      if (!(KATA_LOG_LEVELS as readonly unknown[]).includes(runtimeLogLevel)) fail(`${field}.runtimeLogLevel`, `is ${quote(runtimeLogLevel)}; ${allowed(KATA_LOG_LEVELS)}`);
      // Only runtime-rs has a log level (kata-types config/runtime.rs `log_level`); the Go runtime has `enable_debug` only.
      if (!release.isRustShim(shim)) fail(`${field}.runtimeLogLevel`, `is set for ${shim}, a Go runtime shim, which has no log level setting; use debug: true`);
      settings.runtimeLogLevel = runtimeLogLevel as KataShimConfig["runtimeLogLevel"];
    }
    if (forceGuestPull !== undefined) {
      if (typeof forceGuestPull !== "boolean") fail(`${field}.forceGuestPull`, `is ${quote(forceGuestPull)}; allowed values: true, false`);
      if (forceGuestPull) {
        if (!runtimes.includes("containerd")) {
          fail(`${field}.forceGuestPull`, `is true, but runtimes (${runtimes.join(", ")}) has no containerd, the only runtime it is for; on CRI-O use guestPull (runtime_pull_image)`);
        }
        settings.forceGuestPull = true;
      }
    }
    if (dropIn !== undefined) settings.dropIn = checkDropIn(`${field}.dropIn`, dropIn, fail);
    if (Object.keys(settings).length > 0) result[shim] = settings;
  }
  return result;
}

function normalizeCustomRuntimes(
  value: unknown,
  shims: readonly string[],
  overheads: Readonly<Record<string, Partial<PodOverhead>>>,
  /** The default RuntimeClass's name, when the component creates it. */
  defaultRuntimeClass: string | undefined,
  fail: Fail,
): CustomRuntimeSettings[] {
  if (!Array.isArray(value)) return fail("customRuntimes", `is ${quote(value)}; it must be a list of {name, baseShim, dropIn, overhead}`);
  const names = new Set<string>();
  return value.map((item: unknown, index): CustomRuntimeSettings => {
    const field = `customRuntimes[${index}]`;
    if (!isObject(item)) return fail(field, `is ${quote(item)}; it must be an object with ${CUSTOM_RUNTIME_KEYS.join(", ")}`);
    for (const key of Object.keys(item)) if (!CUSTOM_RUNTIME_KEYS.includes(key)) fail(`${field}.${key}`, `is not a setting; allowed keys: ${CUSTOM_RUNTIME_KEYS.join(", ")}`);
    const { name, baseShim, dropIn, overhead } = item;
    if (typeof name !== "string" || name.length > 63 || !RUNTIME_HANDLER_PATTERN.test(name)) {
      fail(`${field}.name`, `is ${quote(name)}; it names the runtime handler and the RuntimeClass, so it must be a DNS label (lowercase letters, digits and '-', at most 63 characters)`);
    }
    const handler = name as string;
    const shimOfName = KNOWN_SHIMS.find((shim) => `kata-${shim}` === handler);
    if (shimOfName !== undefined) fail(`${field}.name`, `is ${quote(handler)}, the handler and RuntimeClass of shim ${shimOfName}; choose another name, e.g. "${handler}-custom"`);
    if (RESERVED_HANDLERS.includes(handler)) fail(`${field}.name`, `is ${quote(handler)}, a runtime name kata-deploy writes into containerd's configuration itself; choose another name`);
    if (handler === defaultRuntimeClass) fail(`${field}.name`, `is ${quote(handler)}, the default RuntimeClass; choose another name (or set createDefaultRuntimeClass to false)`);
    if (names.has(handler)) fail(`${field}.name`, `repeats ${quote(handler)}; each custom runtime needs its own name`);
    names.add(handler);
    if (typeof baseShim !== "string" || !shims.includes(baseShim)) fail(`${field}.baseShim`, `is ${quote(baseShim)}; it must be one of shims (the image carries only those): ${shims.join(", ")}`);
    const base = baseShim as string;
    const podFixed: Partial<PodOverhead> = { ...overheads[base] };
    if (overhead !== undefined) {
      if (!isObject(overhead)) fail(`${field}.overhead`, `is ${quote(overhead)}; it must be {memory?, cpu?}`);
      for (const [resourceName, quantity] of Object.entries(overhead as Record<string, unknown>)) {
        if (resourceName !== "memory" && resourceName !== "cpu") fail(`${field}.overhead.${resourceName}`, "is not a known resource; allowed keys: memory, cpu");
        if (typeof quantity !== "string" || !QUANTITY.test(quantity)) fail(`${field}.overhead.${resourceName}`, `is ${quote(quantity)}; it must be a Kubernetes quantity such as "160Mi" or "250m"`);
        podFixed[resourceName as keyof PodOverhead] = quantity as string;
      }
    }
    return { name: handler, baseShim: base, ...(dropIn === undefined ? {} : { dropIn: checkDropIn(`${field}.dropIn`, dropIn, fail) }), overhead: podFixed };
  });
}
// ---- end of Kata configuration ----------------------------------------------------------------------------

/** Checks each toleration the way the API server would, so a mistake shows at preview, not as a failed rollout. */
function normalizeTolerations(value: unknown, fail: Fail): Toleration[] {
  if (!Array.isArray(value)) return fail("tolerations", `is ${quote(value)}; it must be a list of tolerations, e.g. [{"operator": "Exists"}]`);
  const known = ["key", "operator", "value", "effect", "tolerationSeconds"];
  return value.map((item: unknown, index): Toleration => {
    const field = `tolerations[${index}]`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) return fail(field, `is ${quote(item)}; it must be an object with key, operator, value, effect, tolerationSeconds`);
    const toleration = item as Record<string, unknown>;
    for (const key of Object.keys(toleration)) {
      if (!known.includes(key)) fail(`${field}.${key}`, `is not a toleration field; allowed keys: ${known.join(", ")}`);
    }
    const { key, operator = "Equal", value: tolerated, effect, tolerationSeconds } = toleration;
    if (!(TOLERATION_OPERATORS as readonly unknown[]).includes(operator)) fail(`${field}.operator`, `is ${quote(operator)}; ${allowed(TOLERATION_OPERATORS)}`);
    if (key !== undefined && key !== "") {
      const problem = typeof key === "string" ? labelKeyProblem(key) : "it is not a string";
      if (problem !== undefined) fail(`${field}.key`, `is ${quote(key)}, not a valid taint key: ${problem}`);
    } else if (operator !== "Exists") {
      fail(`${field}.operator`, `is ${quote(operator)} without a key; an empty key needs operator "Exists" (which tolerates every taint)`);
    }
    if (operator === "Exists" && tolerated !== undefined && tolerated !== "") fail(`${field}.value`, `is ${quote(tolerated)}; operator "Exists" takes no value`);
    if (tolerated !== undefined && typeof tolerated !== "string") fail(`${field}.value`, `is ${quote(tolerated)}; it must be a string`);
    if (effect !== undefined && !(TAINT_EFFECTS as readonly unknown[]).includes(effect)) fail(`${field}.effect`, `is ${quote(effect)}; ${allowed(TAINT_EFFECTS)}`);
    if (tolerationSeconds !== undefined) {
      if (effect !== "NoExecute") fail(`${field}.tolerationSeconds`, `is set for effect ${quote(effect ?? "(any)")}; it applies only to effect "NoExecute"`);
      if (typeof tolerationSeconds !== "number" || !Number.isInteger(tolerationSeconds) || tolerationSeconds < 0) {
        fail(`${field}.tolerationSeconds`, `is ${quote(tolerationSeconds)}; it must be a whole number of seconds >= 0`);
      }
    }
    // Only the fields given, so the object reads as the user wrote it (and as the API server echoes it).
    return Object.fromEntries(Object.entries(toleration).filter(([, fieldValue]) => fieldValue !== undefined)) as Toleration;
  });
}

// ---- startup taints (issue 12 point 5) ----------------------------------------------------------------------

/**
 * Each startup taint checked as the API server checks a node's taints (pkg/apis/core/validation validateNodeTaints:
 * key a qualified name, effect one of three), plus what only kata-deploy knows: the domains Kubernetes reserves
 * for its own taints (node lifecycle, cloud provider, node roles) are not for the agent to remove, and an entry
 * that repeats or overlaps another is a mistake (the agent would remove the same taint twice).
 */
function normalizeStartupTaints(value: unknown, fail: Fail): StartupTaint[] {
  const example = '[{"key": "example.com/kata-not-ready", "effect": "NoSchedule"}]';
  if (!Array.isArray(value)) return fail("startupTaints", `is ${quote(value)}; it must be a list of taints, e.g. ${example}`);
  const taints: StartupTaint[] = [];
  value.forEach((item: unknown, index) => {
    const field = `startupTaints[${index}]`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) fail(field, `is ${quote(item)}; it must be an object with key and (optionally) effect, e.g. ${example}`);
    const entry = item as Record<string, unknown>;
    for (const name of Object.keys(entry)) {
      if (name === "value") {
        fail(`${field}.value`, "is not used: a node holds one taint per key and effect, and that taint is removed whatever its value; drop value");
      }
      if (name !== "key" && name !== "effect") fail(`${field}.${name}`, "is not a startup taint field; allowed keys: key, effect");
    }
    const { key, effect } = entry;
    if (typeof key !== "string" || key === "") fail(`${field}.key`, `is ${quote(key)}; give the taint's key, e.g. "example.com/kata-not-ready"`);
    const problem = labelKeyProblem(key as string);
    if (problem !== undefined) fail(`${field}.key`, `is ${quote(key)}, not a valid taint key: ${problem}`);
    const domain = (key as string).includes("/") ? (key as string).slice(0, (key as string).lastIndexOf("/")) : "";
    const reserved = RESERVED_LABEL_PREFIXES.find((reservedDomain) => domain === reservedDomain || domain.endsWith(`.${reservedDomain}`));
    if (reserved !== undefined) {
      fail(`${field}.key`, `is ${quote(key)}, a taint in the ${reserved} domain, which Kubernetes and its controllers set and remove themselves; use a key in a domain you own, as your node pool sets it`);
    }
    if (effect !== undefined && !(TAINT_EFFECTS as readonly unknown[]).includes(effect)) fail(`${field}.effect`, `is ${quote(effect)}; ${allowed(TAINT_EFFECTS)}`);
    const taint = (effect === undefined ? { key } : { key, effect }) as StartupTaint;
    const earlier = taints.findIndex((other) => other.key === taint.key && (other.effect === undefined || taint.effect === undefined || other.effect === taint.effect));
    if (earlier !== -1) {
      const describeEffect = (e: string | undefined): string => (e === undefined ? "every effect" : `effect ${e}`);
      fail(field, `(key ${quote(taint.key)}, ${describeEffect(taint.effect)}) overlaps startupTaints[${earlier}] (${describeEffect(taints[earlier].effect)}); list each taint once`);
    }
    taints.push(taint);
  });
  return taints;
}

/** Per-container overrides merged over DEFAULT_RESOURCES (requests and limits separately). */
function normalizeResources(value: unknown, fail: Fail): Record<ResourceTarget, ContainerResources> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail("resources", `is ${quote(value)}; it must map ${RESOURCE_TARGETS.join(", ")} to {requests, limits}`);
  }
  for (const target of Object.keys(value)) {
    if (!(RESOURCE_TARGETS as readonly string[]).includes(target)) fail(`resources.${target}`, `is not a container of the component; allowed keys: ${RESOURCE_TARGETS.join(", ")}`);
  }
  const overrides = value as Partial<Record<ResourceTarget, unknown>>;
  const merged = {} as Record<ResourceTarget, ContainerResources>;
  for (const target of RESOURCE_TARGETS) {
    const override = overrides[target] ?? {};
    if (override === null || typeof override !== "object" || Array.isArray(override)) {
      fail(`resources.${target}`, `is ${quote(override)}; it must be {requests?: {...}, limits?: {...}}`);
    }
    const result: ContainerResources = {};
    for (const kind of ["requests", "limits"] as const) {
      const quantities = { ...DEFAULT_RESOURCES[target][kind], ...((override as ContainerResources)[kind] ?? {}) };
      for (const [resourceName, quantity] of Object.entries(quantities)) {
        const field = `resources.${target}.${kind}.${resourceName}`;
        if (!(RESOURCE_NAMES as readonly string[]).includes(resourceName)) fail(field, `is not a known resource; allowed keys: ${RESOURCE_NAMES.join(", ")}`);
        if (typeof quantity !== "string" || !QUANTITY.test(quantity)) fail(field, `is ${quote(quantity)}; it must be a Kubernetes quantity such as "128Mi" or "100m"`);
      }
      if (Object.keys(quantities).length > 0) result[kind] = quantities;
    }
    for (const key of Object.keys(override as object)) {
      if (key !== "requests" && key !== "limits") fail(`resources.${target}.${key}`, "is not a resources field; allowed keys: requests, limits");
    }
    merged[target] = result;
  }
  return merged;
}

// --- snapshotter / guest pull (issue 12) ---
/**
 * A containerd snapshotter name: a plugin ID (`overlayfs`, `devmapper`, `erofs`) or a proxy plugin's name
 * (`nydus`, `stargz`, ...). `:` and `,` would break the agent's SNAPSHOTTER_HANDLER_MAPPING (`shim:name,...`).
 */
const SNAPSHOTTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** `{ shim: snapshotter }` for shims in `shims` only: a mapping for another shim would change nothing. */
function normalizeSnapshotters(value: unknown, shims: readonly string[], fail: Fail): Record<string, string> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail("snapshotters", `is ${quote(value)}; it must map shims to containerd snapshotters, e.g. {"fc": "devmapper"}`);
  }
  for (const [shim, snapshotter] of Object.entries(value)) {
    if (!shims.includes(shim)) fail(`snapshotters.${shim}`, `names a shim that is not in shims; allowed keys: ${shims.join(", ")}`);
    if (typeof snapshotter !== "string" || !SNAPSHOTTER_NAME.test(snapshotter)) {
      fail(`snapshotters.${shim}`, `is ${quote(snapshotter)}; it must name a containerd snapshotter (letters, digits, '.', '_' and '-'), e.g. "devmapper"`);
    }
  }
  return { ...(value as Record<string, string>) };
}
// --- end snapshotter / guest pull ---

/** A non-empty list of distinct values, each one of `allowedValues`. */
function uniqueList(
  field: string,
  value: unknown,
  allowedValues: readonly string[],
  fail: (field: string, problem: string) => never,
): string[] {
  if (!Array.isArray(value)) return fail(field, `is ${quote(value)}; it must be a list; ${allowed(allowedValues)}`);
  if (value.length === 0) return fail(field, `is empty; list at least one; ${allowed(allowedValues)}`);
  const seen = new Set<string>();
  value.forEach((item: unknown, index) => {
    if (typeof item !== "string" || !allowedValues.includes(item)) {
      fail(`${field}[${index}]`, `is ${quote(item)}; ${allowed(allowedValues)}`);
    }
    if (seen.has(item as string)) fail(`${field}[${index}]`, `repeats ${quote(item)}; list each value once`);
    seen.add(item as string);
  });
  return [...seen];
}

// ---- mixed-architecture clusters (issue 12 point 3) ---------------------------------------------------------

/**
 * `shimsByArch`: per architecture (a `kubernetes.io/arch` value) the shims its nodes install. Each list holds known
 * shims, each at most once, that Kata ships for that architecture (SHIM_ARCHES); a list may be empty (that
 * architecture gets no Kata), but some list must not be. Refused together with `shims`, which it replaces (`shims`
 * becomes the union of the lists, in the order they name them). `commonDefault`: the one `defaultShimByArch` value
 * when all given ones agree, which then is the default of `defaultShim`.
 */
function normalizeShimsByArch(input: KataSettingsInput, fail: Fail): { shimsByArch: Partial<Record<NodeArch, string[]>>; shims: string[]; commonDefault?: string } | undefined {
  const given: unknown = input.shimsByArch;
  if (given === undefined) {
    if (input.defaultShimByArch !== undefined) fail("defaultShimByArch", "is set without shimsByArch; set shimsByArch too (the shims of each architecture), or use defaultShim");
    return undefined;
  }
  const example = '{"amd64": ["qemu", "fc"], "arm64": ["qemu"]}';
  if (!isPlainObject(given)) return fail("shimsByArch", `is ${quote(given)}; it must map node architectures to shim lists, e.g. ${example}`);
  if (input.shims !== undefined) {
    fail("shims", "is set together with shimsByArch, which replaces it (the RuntimeClasses and the image then cover the union of shimsByArch's lists); remove shims");
  }
  const shimsByArch: Partial<Record<NodeArch, string[]>> = {};
  for (const [arch, list] of Object.entries(given)) {
    if (!(NODE_ARCHES as readonly string[]).includes(arch)) {
      fail(`shimsByArch.${arch}`, `is not a node architecture (a kubernetes.io/arch value Kata publishes releases for); ${allowed(NODE_ARCHES)}`);
    }
    if (!Array.isArray(list)) return fail(`shimsByArch.${arch}`, `is ${quote(list)}; it must be a list of shims, e.g. ${example} (an empty list: no Kata on ${arch} nodes)`);
    const shims = list.length === 0 ? [] : uniqueList(`shimsByArch.${arch}`, list, KNOWN_SHIMS, fail);
    shims.forEach((shim, index) => {
      const arches = SHIM_ARCHES[shim];
      if (arches !== undefined && !arches.includes(arch as NodeArch)) {
        fail(
          `shimsByArch.${arch}[${index}]`,
          `is ${quote(shim)}, which Kata ships for ${arches.join(", ")} only, not for ${arch} (kata-containers 4.1.0 kata-deploy get_default_shims_for_arch); remove it from shimsByArch.${arch}`,
        );
      }
    });
    shimsByArch[arch as NodeArch] = shims;
  }
  const union = [...new Set(Object.values(shimsByArch).flat())];
  if (union.length === 0) fail("shimsByArch", `lists no shim for any architecture; give at least one, e.g. ${example}`);
  const defaults: unknown = input.defaultShimByArch ?? {};
  if (!isPlainObject(defaults)) return fail("defaultShimByArch", `is ${quote(defaults)}; it must map node architectures to one shim each, e.g. {"amd64": "qemu"}`);
  // One default given for every architecture with shims: it is the deployment's default too (the `kata` RuntimeClass).
  const withShims = Object.entries(shimsByArch).filter(([, list]) => list.length > 0).map(([arch]) => arch);
  const distinct = [...new Set(withShims.map((arch) => defaults[arch]))];
  return { shimsByArch, shims: union, ...(distinct.length === 1 && typeof distinct[0] === "string" ? { commonDefault: distinct[0] } : {}) };
}

/**
 * Each architecture's default shim: `defaultShimByArch.<arch>`, else `defaultShim` when that architecture has it,
 * else its first shim. It is what the node agent points containerd's `untrusted` alias at, and, when the defaults
 * differ, the runtime the default RuntimeClass's per-node handler runs on that node (perNodeDefaultHandler).
 */
function normalizeDefaultShimByArch(
  shimsByArch: Partial<Record<NodeArch, string[]>>,
  given: Readonly<Partial<Record<NodeArch, string>>> | undefined,
  defaultShim: string,
  fail: Fail,
): Partial<Record<NodeArch, string>> {
  const explicit: Readonly<Partial<Record<string, string>>> = given ?? {};
  for (const [arch, shim] of Object.entries(explicit)) {
    const shims = shimsByArch[arch as NodeArch];
    if (shims === undefined || shims.length === 0) {
      const withShims = Object.entries(shimsByArch).filter(([, list]) => list.length > 0).map(([name]) => name);
      fail(`defaultShimByArch.${arch}`, `names an architecture without shims in shimsByArch; allowed keys: ${withShims.join(", ")}`);
    }
    if (typeof shim !== "string" || !shims!.includes(shim)) fail(`defaultShimByArch.${arch}`, `is ${quote(shim)}, which is not in shimsByArch.${arch}; allowed values: ${shims!.join(", ")}`);
  }
  const result: Partial<Record<NodeArch, string>> = {};
  for (const [arch, shims] of Object.entries(shimsByArch) as [NodeArch, string[]][]) {
    if (shims.length === 0) continue;
    result[arch] = explicit[arch] ?? (shims.includes(defaultShim) ? defaultShim : shims[0]);
  }
  return result;
}

/**
 * The default RuntimeClass with a per-node handler (the architectures' default shims differ): its name is the
 * handler, and a handler is a DNS label (kubernetes pkg/apis/node/validation ValidateRuntimeClass:
 * IsDNS1123Label), not a subdomain; and its one `scheduling.nodeSelector` must suit every default shim, so their
 * own node labels (runtimeClassNodeSelector) must agree.
 */
function checkPerNodeDefaultHandler(
  name: string,
  defaultShimByArch: Partial<Record<NodeArch, string>>,
  runtimeClasses: Record<string, ShimRuntimeClass>,
  fail: Fail,
): void {
  const shims = [...new Set(Object.values(defaultShimByArch))];
  if (name.length > 63 || !RUNTIME_HANDLER_PATTERN.test(name)) {
    fail(
      "defaultRuntimeClassName",
      `is ${quote(name)}, which is also the handler of the default RuntimeClass while defaultShimByArch names different shims (${shims.join(", ")}), and a handler must be a DNS label (no '.'); choose a name such as ${quote(DEFAULT_RUNTIME_CLASS_NAME)}`,
    );
  }
  if (RESERVED_HANDLERS.includes(name)) {
    fail("defaultRuntimeClassName", `is ${quote(name)}, which is also the handler of the default RuntimeClass while defaultShimByArch names different shims, and kata-deploy writes a runtime of that name itself; choose another name such as ${quote(DEFAULT_RUNTIME_CLASS_NAME)}`);
  }
  const selectors = shims.map((shim) => JSON.stringify(Object.entries(runtimeClasses[shim]?.nodeSelector ?? {}).sort()));
  if (new Set(selectors).size > 1) {
    fail(
      "runtimeClassNodeSelector",
      `gives the default shims of defaultShimByArch (${shims.join(", ")}) different node labels, but their default RuntimeClass has one nodeSelector for every architecture; give them the same labels, or set createDefaultRuntimeClass to false`,
    );
  }
}

/**
 * Why a component-built image cannot serve `shimsByArch`, or undefined: the component builds one platform
 * (`imageBuild.platform`, @pulumi/docker's Image builds a single one), so nodes of another architecture could not
 * run the image. `platform` undefined: not known at preview (an Output), not checked.
 */
export function singlePlatformImageProblem(settings: Pick<KataSettings, "shimsByArch">, platform: string | undefined): string | undefined {
  if (settings.shimsByArch === undefined || platform === undefined) return undefined;
  const builtArch = platform.split("/")[1];
  const others = Object.entries(settings.shimsByArch).filter(([arch, shims]) => shims.length > 0 && arch !== builtArch).map(([arch]) => arch);
  if (others.length === 0) return undefined;
  const platforms = [...new Set([builtArch, ...others])].map((arch) => `linux/${arch}`).join(",");
  return (
    `shimsByArch lists shims for ${others.join(", ")}, but the component builds the image for one platform only (imageBuild.platform ${platform}), ` +
    `which nodes of ${others.join(", ")} cannot run; push a multi-architecture image (\`npm run image:push -- --platform ${platforms}\`) and set image to it`
  );
}

// ---- end of mixed-architecture clusters ---------------------------------------------------------------------

/**
 * Why `value` cannot be a host file path handed to the agent and mounted (containerdConfigPath,
 * containerdSocket), or undefined: absolute, normalized, not a directory path, no `:` (hostPath volumes).
 */
export function hostFilePathProblem(value: string): string | undefined {
  if (!value.startsWith("/") || path.posix.normalize(value) !== value || value.endsWith("/") || value.includes(":")) {
    return "must be an absolute, normalized host file path without `:`, e.g. \"/etc/containerd-custom/config.toml\"";
  }
  return undefined;
}
