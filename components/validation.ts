// Turns user-supplied settings into KataSettings, or fails with one line naming the field, the bad value
// and what is allowed. Runs before any child resource is registered, so a bad argument changes nothing.
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
import {
  CONTAINERD_FLAVORS,
  CONTAINER_RUNTIMES,
  ContainerdFlavor,
  ContainerResources,
  ContainerRuntime,
  CustomRuntimeSettings,
  DEFAULT_LABEL_PREFIX,
  DEFAULT_PRIORITY_CLASS_NAME,
  DEFAULT_RESOURCES,
  DEFAULT_MAX_UNAVAILABLE,
  DEFAULT_NAMESPACE,
  DEFAULT_RUNTIMES,
  DEFAULT_SHIMS,
  KataSettings,
  KNOWN_SHIMS,
  labelKeys,
  PodOverhead,
  RESOURCE_NAMES,
  RESOURCE_TARGETS,
  ResourceTarget,
  SHIM_DEFAULT_OVERHEAD,
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
  runtimeClassOverhead?: Readonly<Record<string, Partial<PodOverhead>>>;
  createDefaultRuntimeClass?: boolean;
  createNamespace?: boolean;
  nodeSelector?: Readonly<Record<string, string>>;
  tolerations?: readonly Toleration[];
  priorityClassName?: string;
  imagePullSecrets?: readonly string[];
  resources?: Readonly<Partial<Record<string, ContainerResources>>>;
  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  installPrefix?: string;
  shimConfig?: Readonly<Record<string, Readonly<KataShimConfig>>>;
  customRuntimes?: readonly Readonly<{ name: string; baseShim: string; dropIn?: string; overhead?: Partial<PodOverhead> }>[];
  // ---- end of Kata configuration ----
}

/** Namespaces Kubernetes itself owns: the component may deploy into them but never creates or deletes them. */
export const SYSTEM_NAMESPACES: readonly string[] = ["default", "kube-system", "kube-public", "kube-node-lease"];
/** Label-key prefixes reserved for Kubernetes core components (and their subdomains). */
const RESERVED_LABEL_PREFIXES = ["kubernetes.io", "k8s.io"];

// RFC 1123 label / subdomain, as Kubernetes validates names and label-key prefixes.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// The pattern the Kubernetes OpenAPI schema gives for resource.Quantity.
const QUANTITY = /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/;
const PERCENT = /^([1-9][0-9]?|100)%$/;
// The name part of a label key, and a non-empty label value (Kubernetes' qualified-name rules).
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** A DNS subdomain as Kubernetes validates it: at most 253 characters, each dot-separated label at most 63. */
function isDnsSubdomain(value: unknown): value is string {
  return typeof value === "string" && value.length <= 253 && DNS_SUBDOMAIN.test(value) && value.split(".").every((label) => label.length <= 63);
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
  const shims = uniqueList("shims", input.shims ?? DEFAULT_SHIMS, KNOWN_SHIMS, fail);

  const defaultShim = input.defaultShim ?? shims[0];
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

  const containerdFlavor = input.containerdFlavor ?? "containerd";
  if (!(CONTAINERD_FLAVORS as readonly string[]).includes(containerdFlavor)) {
    fail("containerdFlavor", `is ${quote(containerdFlavor)}; ${allowed(CONTAINERD_FLAVORS)}`);
  }

  const runtimeClassOverhead: Record<string, PodOverhead> = {};
  for (const shim of shims) runtimeClassOverhead[shim] = { ...SHIM_DEFAULT_OVERHEAD[shim] };
  for (const [shim, overhead] of Object.entries(input.runtimeClassOverhead ?? {})) {
    if (!shims.includes(shim)) {
      fail(`runtimeClassOverhead.${shim}`, `names a shim that is not in shims; allowed keys: ${shims.join(", ")}`);
    }
    for (const [resourceName, quantity] of Object.entries(overhead ?? {})) {
      if (resourceName !== "memory" && resourceName !== "cpu") {
        fail(`runtimeClassOverhead.${shim}.${resourceName}`, "is not a known resource; allowed keys: memory, cpu");
      }
      if (typeof quantity !== "string" || !QUANTITY.test(quantity)) {
        fail(`runtimeClassOverhead.${shim}.${resourceName}`, `is ${quote(quantity)}; it must be a Kubernetes quantity such as "160Mi" or "250m"`);
      }
      runtimeClassOverhead[shim][resourceName as keyof PodOverhead] = quantity as string;
    }
  }

  const createDefaultRuntimeClass = input.createDefaultRuntimeClass ?? true;
  if (typeof createDefaultRuntimeClass !== "boolean") {
    fail("createDefaultRuntimeClass", `is ${quote(createDefaultRuntimeClass)}; allowed values: true, false`);
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
    if (typeof value !== "string" || value.length > 63 || (value !== "" && !LABEL_NAME.test(value))) {
      fail(`nodeSelector[${quote(key)}]`, `has value ${quote(value)}; a label value is at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit`);
    }
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

  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  const installPrefix = input.installPrefix ?? INSTALL_PREFIX;
  const prefixProblem = installPrefixProblem(installPrefix);
  if (prefixProblem !== undefined) fail("installPrefix", `is ${quote(installPrefix)}; it ${prefixProblem}`);
  const shimConfig = normalizeShimConfig(input.shimConfig ?? {}, shims, fail);
  const customRuntimes = normalizeCustomRuntimes(input.customRuntimes ?? [], shims, runtimeClassOverhead, createDefaultRuntimeClass, fail);
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
    runtimeClassOverhead,
    createDefaultRuntimeClass,
    nodeSelector: { ...nodeSelector },
    tolerations,
    priorityClassName,
    imagePullSecrets: [...imagePullSecrets],
    resources,
    installPrefix,
    shimConfig,
    customRuntimes,
  };
}

type Fail = (field: string, problem: string) => never;

// ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) -------------------
// The agent checks the same values again (images/kata-deploy/agent/src/lifecycle/kata-settings.ts, with the
// shared checks from contract.ts) for DaemonSets written by hand; here they fail at preview.

const SHIM_CONFIG_KEYS: readonly (keyof KataShimConfig)[] = ["allowedHypervisorAnnotations", "agentHttpsProxy", "agentNoProxy", "debug", "runtimeLogLevel", "dropIn"];
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

function normalizeShimConfig(value: unknown, shims: readonly string[], fail: Fail): Record<string, KataShimConfig> {
  if (!isObject(value)) return fail("shimConfig", `is ${quote(value)}; it must map shims to their settings, e.g. {"qemu": {"debug": true}}`);
  const result: Record<string, KataShimConfig> = {};
  for (const [shim, entry] of Object.entries(value)) {
    const field = `shimConfig.${shim}`;
    if (!shims.includes(shim)) fail(field, `names a shim that is not in shims; allowed keys: ${shims.join(", ")}`);
    if (!isObject(entry)) fail(field, `is ${quote(entry)}; it must be an object with ${SHIM_CONFIG_KEYS.join(", ")}`);
    const config = entry as Record<string, unknown>;
    for (const key of Object.keys(config)) if (!(SHIM_CONFIG_KEYS as readonly string[]).includes(key)) fail(`${field}.${key}`, `is not a setting; allowed keys: ${SHIM_CONFIG_KEYS.join(", ")}`);
    const settings: KataShimConfig = {};
    const { allowedHypervisorAnnotations, agentHttpsProxy, agentNoProxy, debug, runtimeLogLevel, dropIn } = config;
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
    if (dropIn !== undefined) settings.dropIn = checkDropIn(`${field}.dropIn`, dropIn, fail);
    if (Object.keys(settings).length > 0) result[shim] = settings;
  }
  return result;
}

function normalizeCustomRuntimes(
  value: unknown,
  shims: readonly string[],
  overheads: Readonly<Record<string, PodOverhead>>,
  createDefaultRuntimeClass: boolean,
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
    if (createDefaultRuntimeClass && handler === "kata") fail(`${field}.name`, `is "kata", the default RuntimeClass; choose another name (or set createDefaultRuntimeClass to false)`);
    if (names.has(handler)) fail(`${field}.name`, `repeats ${quote(handler)}; each custom runtime needs its own name`);
    names.add(handler);
    if (typeof baseShim !== "string" || !shims.includes(baseShim)) fail(`${field}.baseShim`, `is ${quote(baseShim)}; it must be one of shims (the image carries only those): ${shims.join(", ")}`);
    const base = baseShim as string;
    const podFixed: PodOverhead = { ...overheads[base] };
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
