// Turns user-supplied settings into KataSettings, or fails with one line naming the field, the bad value
// and what is allowed. Runs before any child resource is registered, so a bad argument changes nothing.
import * as pulumi from "@pulumi/pulumi";
import {
  CONTAINERD_FLAVORS,
  CONTAINER_RUNTIMES,
  ContainerdFlavor,
  ContainerRuntime,
  DEFAULT_LABEL_PREFIX,
  DEFAULT_MAX_UNAVAILABLE,
  DEFAULT_NAMESPACE,
  DEFAULT_RUNTIMES,
  DEFAULT_SHIMS,
  KataSettings,
  KNOWN_SHIMS,
  PodOverhead,
  SHIM_DEFAULT_OVERHEAD,
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
}

// RFC 1123 label / subdomain, as Kubernetes validates names and label-key prefixes.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// The pattern the Kubernetes OpenAPI schema gives for resource.Quantity.
const QUANTITY = /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/;
const PERCENT = /^([1-9][0-9]?|100)%$/;

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

  const labelPrefix = input.labelPrefix ?? DEFAULT_LABEL_PREFIX;
  if (typeof labelPrefix !== "string" || labelPrefix.length > 253 || !DNS_SUBDOMAIN.test(labelPrefix)) {
    fail(
      "labelPrefix",
      `is ${quote(labelPrefix)}; it must be a DNS subdomain such as ${quote(DEFAULT_LABEL_PREFIX)} (lowercase letters, digits, '-' and '.', at most 253 characters, no '/')`,
    );
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

  return {
    runtimes: runtimes as ContainerRuntime[],
    shims,
    defaultShim,
    namespace,
    createNamespace: input.namespace === undefined,
    labelPrefix,
    maxUnavailable,
    containerdFlavor: containerdFlavor as ContainerdFlavor,
    runtimeClassOverhead,
    createDefaultRuntimeClass,
  };
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
