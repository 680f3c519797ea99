// Parses and checks KATA_DEPLOY_KATA_CONFIG (components/contract.ts KataNodeConfig): Kata's own settings per
// shim and the custom runtimes. The component checked the same values at preview; a plain-YAML user (or a
// hand-written DaemonSet) reaches the agent without that, so every value is checked again here and refused
// in one line naming the variable, the field and the fix.
import {
  AGENT_ENV,
  HYPERVISOR_ANNOTATION_PATTERN,
  KATA_LOG_LEVELS,
  RUNTIME_HANDLER_PATTERN,
  proxyProblem,
  type KataCustomRuntime,
  type KataNodeConfig,
  type KataShimConfig,
} from "../../../../../components/contract";
// The image build's own list of runtime-rs shims (upstream's RUST_SHIMS): one list for image and agent.
import { isRustShim } from "../../../release/assets.mjs";
import { UserError } from "../report/errors";

const SHIM_KEYS: readonly (keyof KataShimConfig)[] = ["allowedHypervisorAnnotations", "agentHttpsProxy", "agentNoProxy", "debug", "runtimeLogLevel", "forceGuestPull", "dropIn"];
const CUSTOM_KEYS: readonly (keyof KataCustomRuntime)[] = ["name", "baseShim", "dropIn"];
/** containerd names the agent writes itself: the `untrusted` alias and the runc stand-in (runtimes/containerd/config.ts). */
const RESERVED_HANDLERS = ["untrusted", "runc"];

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** The runtime handler the agent configures for a shim (`kata-<shim>`; lifecycle/request.ts). */
export const shimHandler = (shim: string): string => `kata-${shim}`;

/** `text` (the variable's value) checked against the shims being installed; an absent or empty variable is `{}`. */
export function parseKataNodeConfig(text: string | undefined, shims: readonly string[]): KataNodeConfig {
  const where = AGENT_ENV.kataConfig;
  const fail = (field: string, problem: string): never => {
    throw new UserError(field === "" ? `${where}: ${problem}` : `${where}: ${field} ${problem}`);
  };
  if (text === undefined || text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return fail("", `is not valid JSON (${(error as Error).message}); it is written by the KataDeployment component: set shimConfig and customRuntimes there`);
  }
  if (!isObject(parsed)) return fail("", "must be a JSON object with shims and customRuntimes");
  for (const key of Object.keys(parsed)) if (key !== "shims" && key !== "customRuntimes") fail(key, "is not a setting; allowed keys: shims, customRuntimes");

  const config: KataNodeConfig = {};
  if (parsed.shims !== undefined) {
    if (!isObject(parsed.shims)) fail("shims", "must be an object keyed by shim");
    config.shims = {};
    for (const [shim, value] of Object.entries(parsed.shims as Record<string, unknown>)) {
      if (!shims.includes(shim)) fail(`shims.${shim}`, `names a shim that is not installed (--shims ${shims.join(",")}); configure only installed shims`);
      config.shims[shim] = checkShimConfig(value, `shims.${shim}`, shim, fail);
    }
  }
  if (parsed.customRuntimes !== undefined) {
    if (!Array.isArray(parsed.customRuntimes)) fail("customRuntimes", "must be a list");
    const names = new Set<string>();
    config.customRuntimes = (parsed.customRuntimes as unknown[]).map((value, index): KataCustomRuntime => {
      const field = `customRuntimes[${index}]`;
      if (!isObject(value)) return fail(field, "must be an object with name, baseShim and dropIn");
      for (const key of Object.keys(value)) if (!(CUSTOM_KEYS as readonly string[]).includes(key)) fail(`${field}.${key}`, `is not a setting; allowed keys: ${CUSTOM_KEYS.join(", ")}`);
      const { name, baseShim, dropIn } = value;
      if (typeof name !== "string" || name.length > 63 || !RUNTIME_HANDLER_PATTERN.test(name)) {
        fail(`${field}.name`, `is ${JSON.stringify(name)}; a runtime handler is a DNS label (lowercase letters, digits and '-', at most 63 characters)`);
      }
      const handler = name as string;
      const takenBy = shims.find((shim) => shimHandler(shim) === handler);
      if (takenBy !== undefined) fail(`${field}.name`, `is ${handler}, the handler of shim ${takenBy}; give the custom runtime another name`);
      if (RESERVED_HANDLERS.includes(handler)) fail(`${field}.name`, `is ${handler}, a runtime name kata-deploy writes itself; give the custom runtime another name`);
      if (names.has(handler)) fail(`${field}.name`, `repeats ${handler}; each custom runtime needs its own name`);
      names.add(handler);
      if (typeof baseShim !== "string" || !shims.includes(baseShim)) fail(`${field}.baseShim`, `is ${JSON.stringify(baseShim)}; it must be one of the installed shims (${shims.join(", ")})`);
      if (dropIn !== undefined && typeof dropIn !== "string") fail(`${field}.dropIn`, "must be a string of Kata TOML");
      return { name: handler, baseShim: baseShim as string, ...(dropIn === undefined ? {} : { dropIn: dropIn as string }) };
    });
  }
  return config;
}

function checkShimConfig(value: unknown, field: string, shim: string, fail: (field: string, problem: string) => never): KataShimConfig {
  if (!isObject(value)) return fail(field, `must be an object with ${SHIM_KEYS.join(", ")}`);
  for (const key of Object.keys(value)) if (!(SHIM_KEYS as readonly string[]).includes(key)) fail(`${field}.${key}`, `is not a setting; allowed keys: ${SHIM_KEYS.join(", ")}`);
  const settings: KataShimConfig = {};
  const { allowedHypervisorAnnotations, agentHttpsProxy, agentNoProxy, debug, runtimeLogLevel, forceGuestPull, dropIn } = value;
  if (allowedHypervisorAnnotations !== undefined) {
    if (!Array.isArray(allowedHypervisorAnnotations)) fail(`${field}.allowedHypervisorAnnotations`, "must be a list of annotation names");
    for (const [index, name] of (allowedHypervisorAnnotations as unknown[]).entries()) {
      if (typeof name !== "string" || !HYPERVISOR_ANNOTATION_PATTERN.test(name)) {
        fail(`${field}.allowedHypervisorAnnotations[${index}]`, `is ${JSON.stringify(name)}; give the name after io.katacontainers.config.hypervisor., e.g. default_memory`);
      }
    }
    settings.allowedHypervisorAnnotations = [...new Set(allowedHypervisorAnnotations as string[])];
  }
  for (const [key, proxy] of [["agentHttpsProxy", agentHttpsProxy], ["agentNoProxy", agentNoProxy]] as const) {
    if (proxy === undefined) continue;
    const problem = proxyProblem(key, proxy);
    if (problem !== undefined) fail(`${field}.${key}`, `${problem} (got ${JSON.stringify(proxy)})`);
    settings[key] = proxy as string;
  }
  if (debug !== undefined) {
    if (typeof debug !== "boolean") fail(`${field}.debug`, "must be true or false");
    settings.debug = debug as boolean;
  }
  if (runtimeLogLevel !== undefined) {
    if (!(KATA_LOG_LEVELS as readonly unknown[]).includes(runtimeLogLevel)) fail(`${field}.runtimeLogLevel`, `is ${JSON.stringify(runtimeLogLevel)}; allowed values: ${KATA_LOG_LEVELS.join(", ")}`);
    // Only runtime-rs has the key (src/libs/kata-types/src/config/runtime.rs `log_level`); the Go runtime has
    // no log level of its own (src/runtime/pkg/katautils/config.go: `enable_debug` only).
    if (!isRustShim(shim)) fail(`${field}.runtimeLogLevel`, `is set for ${shim}, a Go runtime shim, which has no log level setting; use debug: true`);
    settings.runtimeLogLevel = runtimeLogLevel as KataShimConfig["runtimeLogLevel"];
  }
  if (forceGuestPull !== undefined) {
    if (typeof forceGuestPull !== "boolean") fail(`${field}.forceGuestPull`, "must be true or false");
    settings.forceGuestPull = forceGuestPull as boolean;
  }
  if (dropIn !== undefined) {
    if (typeof dropIn !== "string") fail(`${field}.dropIn`, "must be a string of Kata TOML");
    settings.dropIn = dropIn as string;
  }
  return settings;
}
