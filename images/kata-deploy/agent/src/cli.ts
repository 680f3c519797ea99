// `kata-deploy` (and `kata-deploy-docker`): the node agent's command line. See docs/node-agent.md.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import {
  AGENT_ENV,
  AGENT_OPTIONS,
  ARTIFACTS_DIR,
  CONTAINERD_FLAVORS,
  DEFAULT_AGENT_SHIMS,
  DEFAULT_LABEL_PREFIX,
  DOCKER_RUNTIME_FORMS,
  INSTALL_PREFIX,
  LABEL_PREFIX_PATTERN,
  RESTART_MODES,
  RUNTIME_HANDLER_PATTERN,
  labelKeys as contractLabelKeys,
  parseStartupTaints,
  type StartupTaint,
} from "../../../../components/contract";
// Mixed-architecture clusters (issue 12 point 3).
import { defaultShimEnvName, NODE_ARCHES, nodeArchOf, shimLabelKey, shimsEnvName, TEST_NODE_ARCH_ENV, type NodeArch } from "../../../../components/contract";
import type { ContainerdConfigVersion, ContainerdFlavor, CustomContainerd } from "./runtimes/containerd/layout";
import type { DockerRuntimeForm } from "./runtimes/docker/config";
import { install, status, uninstall, type Target } from "./lifecycle/operations";
import { dockerEngine, findDockerSocket } from "./runtimes/docker/engine-api";
import { RuntimeRestartError, UserError } from "./report/errors";
import { formatForOperator } from "./report/format";
import { checkShimsCarried } from "./lifecycle/payload";
import { HostCommands } from "./host/commands";
import { HostRoot, readHostFile } from "./host/files";
import type { KubeClient } from "./kube/client";
import { isRollout, runtimeFromVersion } from "./kube/labels";
import { removeStartupTaints, taintName } from "./kube/taints";
import * as log from "./report/log";
import { buildRequest, parsePullTypeMapping, parseSnapshotterMapping } from "./lifecycle/request";
import { parseKataNodeConfig } from "./lifecycle/kata-settings";
import { allContainerdUnits, containerdAdapter, crioAdapter, detectContainerdFlavor, dockerAdapter, resolveInstallFlavor, type RuntimeAdapter } from "./runtimes";
import { RUNTIMES, loadState, type Runtime } from "./lifecycle/state";

const USAGE = `usage:
  kata-deploy install   --runtime containerd|crio|docker --host-root DIR --artifacts DIR [--shims qemu,fc] [--default-shim qemu]
                        [--default-handler kata] [--container-runtime-debug]
                        [--restart none|systemd] [--prefix /opt/kata] [--containerd-flavor auto|containerd|k3s|rke2|k0s|microk8s]
                        [--containerd-config FILE] [--containerd-socket SOCKET] [--containerd-unit UNIT]
                        [--docker-runtime-form auto|shim-v2|runc] [--label-prefix kata-containers.io] [--node NAME] [--daemon]
                        [--startup-taints KEY[:EFFECT],...]
                        (env SHIMS_<ARCH>/DEFAULT_SHIM_<ARCH>, ARCH = X86_64|AARCH64|S390X|PPC64LE: this node's
                        architecture's shims replace --shims/--default-shim; none listed: nothing is installed)
  kata-deploy uninstall --runtime containerd|crio|docker --host-root DIR [--restart none|systemd] [--prefix DIR] [--label-prefix P] [--node NAME]
  kata-deploy label     [--label-prefix P] [--node NAME] [--daemon]
  kata-deploy reset     [--runtime R] [--host-root DIR] [--restart none|systemd] [--containerd-flavor F] [--containerd-socket S]
                        [--containerd-unit U] [--prefix DIR]
                        [--label-prefix P] [--node NAME] [--daemon]
  kata-deploy status    --host-root DIR [--prefix DIR] [--ready --runtime R]
  kata-deploy-docker install|remove   (also: kata-deploy docker install|remove)`;

// The flags are the component/agent contract's (components/contract.ts): the DaemonSets are written from it too.
const OPTIONS = AGENT_OPTIONS;

type Options = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], fallback?: T): T {
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    throw new UserError(`--${flag} is required (${allowed.join("|")})`);
  }
  if (!(allowed as readonly string[]).includes(value)) throw new UserError(`--${flag} ${value}: must be one of ${allowed.join(", ")}`);
  return value as T;
}

function required(flag: string, value: string | undefined): string {
  if (value === undefined || value === "") throw new UserError(`--${flag} is required`);
  return value;
}

function hostRootOf(values: Options): HostRoot {
  const dir = required("host-root", values["host-root"]);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UserError(`--host-root ${dir}: not a directory`);
  return new HostRoot(dir);
}

function prefixOf(values: Options): string {
  const prefix = values.prefix ?? INSTALL_PREFIX;
  if (!path.posix.isAbsolute(prefix) || path.posix.normalize(prefix) === "/") throw new UserError(`--prefix ${prefix}: must be an absolute directory other than /`);
  return path.posix.normalize(prefix).replace(/\/$/, "");
}

function labelKeys(values: Options): { runtimeLabel: string; kataLabel: string } {
  const prefix = values["label-prefix"] ?? process.env[AGENT_ENV.labelPrefix] ?? DEFAULT_LABEL_PREFIX;
  if (!LABEL_PREFIX_PATTERN.test(prefix)) throw new UserError(`--label-prefix ${prefix}: must be a DNS subdomain such as ${DEFAULT_LABEL_PREFIX}`);
  const keys = contractLabelKeys(prefix);
  return { runtimeLabel: keys.containerRuntime, kataLabel: keys.kataRuntime };
}

// ---- startup taints (issue 12 point 5) ----------------------------------------------------------------------

/** `--startup-taints`: the taints install removes from the node once Kata is installed and the node labelled. */
function startupTaintsOf(values: Options): StartupTaint[] {
  const text = values["startup-taints"];
  if (text === undefined) return [];
  const parsed = parseStartupTaints(text);
  if ("problem" in parsed) throw new UserError(`--startup-taints ${text}: entry "${parsed.entry}": ${parsed.problem}; give KEY or KEY:EFFECT, comma-separated`);
  return parsed.taints;
}

/**
 * The install's last step: removes the startup taints from the node. A taint that stays keeps the node closed to
 * every pod that does not tolerate it, although Kata is installed, so that is a failure of the install: the pod
 * restarts and tries again, and the install wait reports the reason. Nothing is uninstalled for it.
 */
async function removeTaintsAfterInstall(client: KubeClient, node: string, startupTaints: readonly StartupTaint[], kataLabel: string): Promise<void> {
  const outcome = await log.phase(`remove startup taints ${startupTaints.map(taintName).join(", ")} from node ${node}`, () => removeStartupTaints(client, node, startupTaints));
  if (outcome.failed === undefined) {
    log.info(outcome.removed.length === 0 ? `node ${node}: no startup taint to remove (already gone)` : `node ${node}: removed startup taint(s) ${outcome.removed.join(", ")}`);
    return;
  }
  throw new UserError(
    `node ${node}: Kata is installed and labelled ${kataLabel}=true, but startup taint(s) ${outcome.failed.join(", ")} were not removed: ${outcome.reason}; ` +
      `the node stays closed to pods that do not tolerate them. Fix what refuses the change (RBAC: patch on nodes; an admission policy or webhook guarding node taints) ` +
      `and the installer retries when it restarts, or remove them by hand: ${outcome.failed.map((name) => `kubectl taint node ${node} ${name}-`).join("; ")}`,
  );
}

/** A failed label step leaves the startup taints too: say so, since the node then stays closed to workloads. */
function withTaintsLeft(error: unknown, node: string, startupTaints: readonly StartupTaint[]): unknown {
  if (!(error instanceof UserError) || startupTaints.length === 0) return error;
  const names = startupTaints.map(taintName).join(", ");
  return new UserError(`${error.message}; Kata is installed, but startup taint(s) ${names} stay on node ${node} until this succeeds (pods that do not tolerate them are not scheduled there)`);
}

// ---- end of startup taints ----------------------------------------------------------------------------------

// ---- mixed-architecture clusters (issue 12 point 3) ---------------------------------------------------------

/** This node's architecture and the shims the deployment gives it (SHIMS_<ARCH>, DEFAULT_SHIM_<ARCH>). */
interface ArchShims {
  arch: NodeArch;
  shims: string[];
  defaultShim: string | undefined;
}

/**
 * Per-architecture mode: when the environment carries any `SHIMS_<ARCH>` (upstream kata-deploy's variables; the
 * component sets one per architecture of `shimsByArch`), this node installs its own architecture's list, and nothing
 * when that variable is absent or empty (upstream would fall back to a built-in list). The node's architecture is
 * the agent's own: the image is per platform (4.1.0 binary/src/config.rs get_arch reads the binary's too).
 * Undefined: not per-architecture mode (--shims applies to every node).
 */
function archShimsOf(env: NodeJS.ProcessEnv = process.env): ArchShims | undefined {
  if (!NODE_ARCHES.some((arch) => env[shimsEnvName(arch)] !== undefined)) return undefined;
  const override = env[TEST_NODE_ARCH_ENV];
  if (override !== undefined && !(NODE_ARCHES as readonly string[]).includes(override)) {
    throw new UserError(`${TEST_NODE_ARCH_ENV}=${override}: must be one of ${NODE_ARCHES.join(", ")} (a test-only override of the node's architecture)`);
  }
  const arch = (override as NodeArch | undefined) ?? nodeArchOf(process.arch);
  if (arch === undefined) throw new UserError(`this node's architecture (${process.arch}) is none of ${NODE_ARCHES.join(", ")}, the ones Kata publishes releases for`);
  const shims = (env[shimsEnvName(arch)] ?? "").split(/\s+/).filter((shim) => shim !== "");
  const defaultShim = env[defaultShimEnvName(arch)] || undefined;
  return { arch, shims, defaultShim };
}

/** The shim list of an install: --shims/--default-shim, or in per-architecture mode this architecture's (possibly empty). */
function shimChoice(values: Options): { shims: string[]; defaultShim: string | undefined; arch?: ArchShims } {
  const arch = archShimsOf();
  if (arch === undefined) {
    const shims = (values.shims ?? "qemu,fc").split(",").map((shim) => shim.trim()).filter((shim) => shim !== "");
    if (shims.length === 0) throw new UserError("--shims: give at least one shim, e.g. --shims qemu,fc");
    return { shims, defaultShim: values["default-shim"] };
  }
  if (values.shims !== undefined || values["default-shim"] !== undefined) {
    throw new UserError(`--shims/--default-shim and ${shimsEnvName(arch.arch)} are both given; the per-architecture variables replace the flags: drop the flags`);
  }
  if (arch.defaultShim !== undefined && !arch.shims.includes(arch.defaultShim)) {
    throw new UserError(`${defaultShimEnvName(arch.arch)}=${arch.defaultShim}: must be one of ${shimsEnvName(arch.arch)} (${arch.shims.join(" ") || "empty"})`);
  }
  log.info(`node architecture ${arch.arch}: shims ${arch.shims.join(", ") || "none"} (${shimsEnvName(arch.arch)})`);
  return { shims: arch.shims, defaultShim: arch.defaultShim, arch };
}

/**
 * Install on a node whose architecture has no shims: nothing to put there. Kata an earlier deployment installed
 * (when this architecture still had shims) is uninstalled, so no RuntimeClass selects a node without its handler;
 * the node is not labelled installed (the install wait skips such nodes by architecture). Its startup taints go:
 * Kata is not coming, and the taint would otherwise keep the node closed for good.
 */
async function installNothing(runtime: Runtime, values: Options, arch: ArchShims): Promise<void> {
  const root = hostRootOf(values);
  const prefix = prefixOf(values);
  const restart = restartOf(values);
  const { kataLabel } = labelKeys(values);
  const labelPrefix = labelPrefixOf(values);
  const startupTaints = startupTaintsOf(values);
  const kube = await kubeOf(values);
  const recorded = loadState(root, prefix)?.runtimes[runtime]?.details;
  const reason = `this node's architecture ${arch.arch} has no shims (${shimsEnvName(arch.arch)} is ${process.env[shimsEnvName(arch.arch)] === undefined ? "not set" : "empty"})`;
  if (recorded !== undefined) {
    const host = restart === "systemd" ? new HostCommands(root) : undefined;
    const adapter = await adapterFor(runtime, values, root, undefined, recorded);
    const outcome = await uninstall({ root, prefix, host }, adapter);
    log.info(`install ${runtime}: ${reason}; removed the Kata installed earlier${outcome.artifactsRemoved ? ` (${prefix} emptied)` : ""}`);
    if (kube) await log.phase(`remove label ${kataLabel} from node ${kube.node}`, () => kube.client.patchNodeLabels(kube.node, { [kataLabel]: null, ...shimLabelRemovals(labelPrefix, recorded) }));
  } else {
    log.info(`install ${runtime}: ${reason}; installing nothing on this node`);
  }
  if (kube && startupTaints.length > 0) await removeTaintsAfterInstall(kube.client, kube.node, startupTaints, kataLabel);
}

function labelPrefixOf(values: Options): string {
  return values["label-prefix"] ?? process.env[AGENT_ENV.labelPrefix] ?? DEFAULT_LABEL_PREFIX;
}

/** `<prefix>/kata-<shim>` = "true" per shim installed in per-architecture mode (RuntimeClasses of shims some architectures lack select it). */
function shimLabels(labelPrefix: string, shims: readonly string[], previous: Record<string, unknown> | undefined): Record<string, string | null> {
  const labels: Record<string, string | null> = shimLabelRemovals(labelPrefix, previous);
  for (const shim of shims) labels[shimLabelKey(labelPrefix, shim)] = "true";
  return labels;
}

/** Removes the per-shim labels an earlier per-architecture install recorded (`labelledShims`). */
function shimLabelRemovals(labelPrefix: string, recorded: Record<string, unknown> | undefined): Record<string, null> {
  const labelled = Array.isArray(recorded?.labelledShims) ? (recorded.labelledShims as string[]) : [];
  return Object.fromEntries(labelled.map((shim) => [shimLabelKey(labelPrefix, shim), null]));
}

/**
 * `--default-handler NAME`: a runtime handler named NAME that runs this node's default shim, so the default
 * RuntimeClass (handler NAME) starts each architecture's own default shim. A handler is a DNS label
 * (kubernetes pkg/apis/node/validation ValidateRuntimeClass: IsDNS1123Label).
 */
function defaultHandlerOf(values: Options): string | undefined {
  const handler = values["default-handler"];
  if (handler === undefined) return undefined;
  if (handler.length > 63 || !RUNTIME_HANDLER_PATTERN.test(handler)) {
    throw new UserError(`--default-handler ${handler}: must be a DNS label (lowercase letters, digits and -, at most 63), as a RuntimeClass handler is`);
  }
  return handler;
}

// ---- end of mixed-architecture clusters ---------------------------------------------------------------------

function restartOf(values: Options, fallback: "none" | "systemd" = "none"): "none" | "systemd" {
  return oneOf("restart", values.restart, RESTART_MODES, fallback);
}

/** The Kubernetes client and node name, or undefined when there is no Kubernetes environment. */
async function kubeOf(values: Options): Promise<{ client: KubeClient; node: string } | undefined> {
  if (!process.env.KUBECONFIG && !process.env.KUBERNETES_SERVICE_HOST) return undefined;
  // Loaded only when needed: the client (and its HTTP stack) is the bulk of the bundle's start-up time.
  const { kubeClientFromEnv } = await import("./kube/client.js");
  const client = kubeClientFromEnv();
  if (client === undefined) return undefined;
  const node = values.node ?? process.env[AGENT_ENV.nodeName];
  if (!node) throw new UserError("--node (or NODE_NAME) is required when a Kubernetes API is configured");
  return { client, node };
}

/** `--containerd-config/-socket/-unit`, else what the install recorded: a plain containerd somewhere else. */
function customContainerdOf(values: Options, recorded: Record<string, unknown> | undefined): CustomContainerd {
  const given = (flag: "containerd-config" | "containerd-socket", recordedKey: string): string | undefined => {
    const value = values[flag] ?? (recorded?.[recordedKey] as string | undefined);
    if (value !== undefined && (!path.posix.isAbsolute(value) || path.posix.normalize(value) !== value || value.endsWith("/"))) {
      throw new UserError(`--${flag} ${value}: must be an absolute, normalized file path on the host`);
    }
    return value;
  };
  const unit = values["containerd-unit"] ?? (recorded?.customUnit as string | undefined);
  if (unit !== undefined && !/^[A-Za-z0-9:_.@-]+$/.test(unit)) throw new UserError(`--containerd-unit ${unit}: not a systemd unit name`);
  const custom: CustomContainerd = { config: given("containerd-config", "customConfig"), socket: given("containerd-socket", "customSocket"), unit };
  return Object.fromEntries(Object.entries(custom).filter(([, value]) => value !== undefined));
}

/**
 * `recorded`: the details an earlier install saved (removal must edit the files that install edited).
 * `install`: check the flavour against the node (auto: detect it) and against the install record already
 * there (`installed`), see resolveInstallFlavor.
 */
async function adapterFor(
  runtime: Runtime,
  values: Options,
  root: HostRoot,
  host: HostCommands | undefined,
  recorded?: Record<string, unknown>,
  install?: { installed: Record<string, unknown> | undefined },
): Promise<RuntimeAdapter> {
  if (runtime === "containerd") {
    const custom = customContainerdOf(values, recorded);
    const requested = oneOf("containerd-flavor", values["containerd-flavor"] ?? (recorded?.flavor as string | undefined), CONTAINERD_FLAVORS, "auto");
    if (Object.keys(custom).length > 0 && requested !== "containerd" && requested !== "auto") {
      throw new UserError(`--containerd-config/--containerd-socket/--containerd-unit describe a plain containerd; they do not go with --containerd-flavor ${requested}`);
    }
    const installedConfig = install?.installed?.customConfig;
    if (install?.installed !== undefined && values["containerd-config"] !== installedConfig && (values["containerd-config"] !== undefined || installedConfig !== undefined)) {
      // Writing Kata into another file would leave the recorded one's entries with no owner (uninstall edits the recorded file).
      const shown = (file: unknown): string => (typeof file === "string" ? file : "the flavour's own config");
      throw new UserError(
        `--containerd-config ${shown(values["containerd-config"])}: Kata is installed into ${shown(installedConfig)} on this node (install record); ` +
          `uninstall first (remove the KataDeployment, or \`pulumi destroy\`), then install with the new path, or keep the old one`,
      );
    }
    let flavor: ContainerdFlavor;
    if (Object.keys(custom).length > 0) {
      flavor = "containerd"; // the user said where it is: nothing to detect
    } else if (install !== undefined) {
      const exists = (hostPath: string): boolean => fs.existsSync(root.local(hostPath));
      const installedFlavor = install.installed?.flavor as string | undefined;
      const resolved = await resolveInstallFlavor({ requested, recorded: installedFlavor, plainConfig: "/etc/containerd/config.toml", exists, host });
      log.info(`containerd flavor ${resolved.flavor} (${resolved.why})`);
      flavor = resolved.flavor;
    } else {
      // Uninstall and reset follow the record; without one (and `auto`), plain containerd's layout.
      flavor = requested === "auto" ? "containerd" : requested;
    }
    const hint = recorded?.configVersionHint as ContainerdConfigVersion | undefined;
    // Fresh reads each time: k3s/rke2 pick their file from the node's, and re-render config.toml on restart.
    const read = (hostPath: string): string | undefined => readHostFile(root, hostPath).text;
    return containerdAdapter({ flavor, host, configVersionHint: hint, read, recorded, custom });
  }
  if (runtime === "crio") return crioAdapter(host);
  const recordedForm = recorded?.form as DockerRuntimeForm | undefined;
  const form = oneOf("docker-runtime-form", values["docker-runtime-form"] ?? recordedForm, DOCKER_RUNTIME_FORMS, "auto");
  const socket = findDockerSocket(root);
  return dockerAdapter({ form, host, engine: socket === undefined ? undefined : dockerEngine(socket) });
}

async function runInstall(values: Options): Promise<void> {
  const runtime = oneOf("runtime", values.runtime, RUNTIMES);
  const root = hostRootOf(values);
  const artifacts = required("artifacts", values.artifacts);
  const artifactsKata = path.join(artifacts, "opt/kata");
  if (!fs.existsSync(artifactsKata)) throw new UserError(`--artifacts ${artifacts}: has no opt/kata directory; pass the directory the Kata release tarball was unpacked into`);
  // Mixed-architecture clusters: per-architecture lists (SHIMS_<ARCH>) replace --shims; an empty one installs nothing.
  const choice = shimChoice(values);
  if (choice.arch !== undefined && choice.shims.length === 0) return installNothing(runtime, values, choice.arch);
  const shims = choice.shims;
  for (const shim of shims) if (!/^[a-z0-9][a-z0-9-]*$/.test(shim)) throw new UserError(`--shims: "${shim}" is not a shim name (lowercase letters, digits and -)`);
  if (new Set(shims).size !== shims.length) throw new UserError(`--shims ${shims.join(",")}: lists a shim twice`);
  const defaultShim = choice.defaultShim ?? shims[0];
  if (!shims.includes(defaultShim)) throw new UserError(`--default-shim ${defaultShim}: must be one of --shims (${shims.join(",")})`);
  const carriedLayouts = checkShimsCarried(artifacts, shims);
  const prefix = prefixOf(values);
  const restart = restartOf(values);
  const { kataLabel } = labelKeys(values);
  const startupTaints = startupTaintsOf(values);
  const kube = await kubeOf(values);
  if (!kube && startupTaints.length > 0) log.warn("--startup-taints: no Kubernetes API (neither KUBECONFIG nor KUBERNETES_SERVICE_HOST is set), so no taint is removed");
  const host = restart === "systemd" ? new HostCommands(root) : undefined;
  const target: Target = { root, prefix, host };
  // The record decides an `auto` flavour on re-install (and refuses an explicit one that differs from it).
  const installed = runtime === "containerd" ? loadState(root, prefix)?.runtimes[runtime]?.details : undefined;
  const adapter = await adapterFor(runtime, values, root, host, undefined, { installed });
  const snapshotters = parseSnapshotterMapping(process.env[AGENT_ENV.snapshotterHandlerMapping]);
  const guestPull = parsePullTypeMapping(process.env[AGENT_ENV.pullTypeMapping]);
  // Each mapping means something to one runtime only; elsewhere it is said, not silently dropped.
  if (runtime !== "containerd" && snapshotters.size > 0) log.warn(`${AGENT_ENV.snapshotterHandlerMapping} is for containerd; ignored for --runtime ${runtime}`);
  if (runtime !== "crio" && guestPull.size > 0) log.warn(`${AGENT_ENV.pullTypeMapping} (CRI-O runtime_pull_image) is for CRI-O; ignored for --runtime ${runtime}`);
  const kataConfig = parseKataNodeConfig(process.env[AGENT_ENV.kataConfig], shims);
  const forcedShims = Object.entries(kataConfig.shims ?? {}).filter(([, settings]) => settings.forceGuestPull === true).map(([shim]) => shim);
  if (runtime !== "containerd" && forcedShims.length > 0) log.warn(`${AGENT_ENV.kataConfig}: forceGuestPull (shims ${forcedShims.join(", ")}) is for containerd; ignored for --runtime ${runtime}`);
  const defaultHandler = defaultHandlerOf(values);
  const { request, kata } = buildRequest({
    runtime,
    shims,
    defaultShim,
    prefix,
    artifactsKata,
    snapshotters: runtime === "containerd" ? snapshotters : new Map(),
    guestPull: runtime === "crio" ? guestPull : undefined,
    layouts: carriedLayouts,
    kata: kataConfig,
    ...(defaultHandler === undefined ? {} : { defaultHandler }),
  });
  // containerd `[debug] level` / CRI-O `log_level`; Docker's daemon.json is not edited for it.
  if (values["container-runtime-debug"] === true) {
    if (runtime === "docker") log.warn("--container-runtime-debug is for containerd and CRI-O; ignored for --runtime docker");
    else request.runtimeDebug = true;
  }
  const customRuntimes = (kataConfig.customRuntimes ?? []).map((custom) => custom.name);
  // Per-architecture mode records the shims it labels the node with, so a later install or the uninstall removes them.
  const previous = choice.arch === undefined ? undefined : loadState(root, prefix)?.runtimes[runtime]?.details;
  const archDetails = choice.arch === undefined ? {} : { nodeArch: choice.arch.arch, labelledShims: shims };
  const outcome = await install(target, {
    adapter,
    request,
    kata,
    artifactsKata,
    details: { ...adapter.details, shims, defaultShim, ...(defaultHandler === undefined ? {} : { defaultHandler }), ...(customRuntimes.length > 0 ? { customRuntimes } : {}), ...archDetails },
  });
  log.info(`install ${runtime}: complete (${outcome.changedFiles.length} config file(s) changed${outcome.restarted ? ", runtime restarted" : ""})`);
  if (!kube) return;
  try {
    const perShim = choice.arch === undefined ? {} : shimLabels(labelPrefixOf(values), shims, previous);
    await log.phase(`label node ${kube.node} ${kataLabel}=true`, () => kube.client.patchNodeLabels(kube.node, { [kataLabel]: "true", ...perShim }));
  } catch (error) {
    throw withTaintsLeft(error, kube.node, startupTaints);
  }
  if (startupTaints.length > 0) await removeTaintsAfterInstall(kube.client, kube.node, startupTaints, kataLabel);
}

async function runUninstall(values: Options): Promise<void> {
  const runtime = oneOf("runtime", values.runtime, RUNTIMES);
  const root = hostRootOf(values);
  const prefix = prefixOf(values);
  const restart = restartOf(values);
  const { kataLabel } = labelKeys(values);
  const kube = await kubeOf(values);
  if (kube) {
    const namespace = process.env[AGENT_ENV.podNamespace];
    const daemonSetName = process.env[AGENT_ENV.daemonSetName];
    if (namespace && daemonSetName) {
      const [daemonSet, node] = await Promise.all([kube.client.getDaemonSet(namespace, daemonSetName), kube.client.getNode(kube.node)]);
      if (isRollout(daemonSet, node)) {
        log.info(`daemonset ${namespace}/${daemonSetName} still selects node ${kube.node}: a rollout, not a removal; leaving Kata installed`);
        return;
      }
    }
  }
  const host = restart === "systemd" ? new HostCommands(root) : undefined;
  const recorded = loadState(root, prefix)?.runtimes[runtime]?.details;
  // Mixed-architecture clusters: on a node whose architecture has no shims nothing was installed; labelling it
  // `cleanup` would only make the cleanup DaemonSet restart its runtime for nothing.
  const arch = archShimsOf();
  if (arch !== undefined && arch.shims.length === 0 && recorded === undefined) {
    log.info(`uninstall ${runtime}: nothing installed (this node's architecture ${arch.arch} has no shims)`);
    return;
  }
  // Removal does not depend on the Docker runtime form; use the recorded one and detect nothing.
  const adapter = await adapterFor(runtime, { ...values, "docker-runtime-form": values["docker-runtime-form"] ?? (recorded?.form as string | undefined) ?? "shim-v2" }, root, undefined, recorded);
  const outcome = await uninstall({ root, prefix, host }, adapter);
  log.info(`uninstall ${runtime}: complete${outcome.artifactsRemoved ? ` (${prefix} emptied)` : ""}`);
  if (kube) await log.phase(`label node ${kube.node} ${kataLabel}=cleanup`, () => kube.client.patchNodeLabels(kube.node, { [kataLabel]: "cleanup", ...shimLabelRemovals(labelPrefixOf(values), recorded) }));
}

async function runLabel(values: Options): Promise<void> {
  const { runtimeLabel } = labelKeys(values);
  const kube = await kubeOf(values);
  if (!kube) throw new UserError("label needs a Kubernetes API: run it in a pod (in-cluster config) or set KUBECONFIG");
  const node = await kube.client.getNode(kube.node);
  const version = node.status?.nodeInfo?.containerRuntimeVersion;
  const runtime = runtimeFromVersion(version);
  if (runtime === undefined) {
    const unsupported = `node ${kube.node}: container runtime "${version ?? "unknown"}" is not supported; Kata needs containerd:// or cri-o://`;
    if (!values.daemon) throw new UserError(unsupported);
    // As a DaemonSet pod, exiting would only crash-loop (and keep the DaemonSet from ever being ready):
    // leave the node unlabelled, so no installer is scheduled on it, and idle.
    log.info(`${unsupported}; not labelling it, so no Kata installer runs here`);
    return;
  }
  await log.phase(`label node ${kube.node} ${runtimeLabel}=${runtime}`, () => kube.client.patchNodeLabels(kube.node, { [runtimeLabel]: runtime }));
}

async function runReset(values: Options): Promise<void> {
  const { runtimeLabel, kataLabel } = labelKeys(values);
  const restart = restartOf(values);
  const kube = await kubeOf(values);
  let runtime: Runtime | undefined = values.runtime === undefined ? undefined : oneOf("runtime", values.runtime, RUNTIMES);
  if (runtime === undefined && kube) {
    const labelled = (await kube.client.getNode(kube.node)).metadata?.labels?.[runtimeLabel];
    if (labelled === "containerd" || labelled === "crio") runtime = labelled;
  }
  if (restart === "systemd") {
    if (runtime === undefined) throw new UserError(`reset --restart systemd: cannot tell which runtime to restart (no ${runtimeLabel} label on the node; pass --runtime)`);
    const root = values["host-root"] ? hostRootOf(values) : new HostRoot("/");
    const host = new HostCommands(root);
    // The same restart-and-verify as install and uninstall, so the same unit and (k3s/rke2) socket.
    const adapter = await resetAdapter(runtime, values, root, host);
    const outcome = await log.phase(`restart ${runtime}`, () => adapter.restartAndVerify(host, []));
    if (outcome.problem !== undefined) throw new RuntimeRestartError({ unit: outcome.unit, problem: outcome.problem, step: "reset", rolledBack: false });
  }
  if (kube) await log.phase(`remove labels ${runtimeLabel}, ${kataLabel} from node ${kube.node}`, () => kube.client.patchNodeLabels(kube.node, { [runtimeLabel]: null, [kataLabel]: null }));
}

/**
 * The adapter `reset` restarts through. The containerd flavor comes from --containerd-flavor (the
 * cleanup DaemonSet passes the deployment's), else the install record if uninstall left one, else the
 * systemd unit that runs here. Nothing is detected that only planning needs (versions).
 */
async function resetAdapter(runtime: Runtime, values: Options, root: HostRoot, host: HostCommands): Promise<RuntimeAdapter> {
  let recorded: Record<string, unknown> | undefined;
  try {
    recorded = loadState(root, prefixOf(values))?.runtimes[runtime]?.details;
  } catch (error) {
    // An unreadable record must not keep the node from being cleaned up: restart what runs here.
    log.warn(`ignoring the install record: ${formatForOperator(error) ?? String(error)}`);
  }
  // `auto` (the cleanup DaemonSet's default): the record, else the unit that runs here.
  let flavor = (values["containerd-flavor"] === "auto" ? undefined : values["containerd-flavor"]) ?? (recorded?.flavor as string | undefined);
  const custom = values["containerd-socket"] !== undefined || values["containerd-unit"] !== undefined || recorded?.customUnit !== undefined || recorded?.customSocket !== undefined;
  if (runtime === "containerd" && flavor === undefined && custom) flavor = "containerd";
  if (runtime === "containerd" && flavor === undefined) {
    flavor = await detectContainerdFlavor(host);
    if (flavor === undefined) throw new UserError(`none of the systemd units ${allContainerdUnits().join(", ")} exists on this host; pass --containerd-flavor or --runtime`);
    log.info(`containerd flavor ${flavor} (from its systemd unit)`);
  }
  const form = values["docker-runtime-form"] ?? (recorded?.form as string | undefined) ?? "shim-v2";
  return adapterFor(runtime, { ...values, "containerd-flavor": flavor, "docker-runtime-form": form }, root, undefined, recorded);
}

function runStatus(values: Options): number {
  const root = hostRootOf(values);
  const report = status(root, prefixOf(values));
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  if (!values.ready) return 0;
  const runtime = oneOf("runtime", values.runtime, RUNTIMES);
  // Mixed-architecture clusters: a node whose architecture has no shims is ready once nothing is installed there.
  const arch = archShimsOf();
  if (arch !== undefined && arch.shims.length === 0) return report.runtimes[runtime] === undefined && !report.pendingChange ? 0 : 1;
  return report.runtimes[runtime]?.status === "installed" && !report.pendingChange ? 0 : 1;
}

/** `kata-deploy-docker install|remove`: the seed's Docker quick start, flags may override the defaults. */
async function runDocker(action: string | undefined, values: Options): Promise<void> {
  const defaults: Options = { runtime: "docker", "host-root": "/", artifacts: ARTIFACTS_DIR, shims: DEFAULT_AGENT_SHIMS.join(","), restart: "systemd" };
  const merged: Options = { ...defaults, ...Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) };
  if (action === "install") return runInstall(merged);
  if (action === "remove") return runUninstall(merged);
  throw new UserError(`kata-deploy-docker: expected install or remove, got ${action ?? "nothing"}`);
}

/** Keeps a DaemonSet container alive after its work, until the kubelet stops it. */
function waitForTermination(): Promise<void> {
  log.info("done; waiting for SIGTERM");
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const stop = (signal: string): void => {
      clearInterval(keepAlive);
      log.info(`${signal}: exiting`);
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv.slice(2), options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UserError(`${(error as Error).message.split("\n")[0]} (see kata-deploy --help)`);
  }
  const { values, positionals } = parsed;
  const invokedAsDocker = path.basename(argv[1] ?? "").startsWith("kata-deploy-docker");
  const [command, ...rest] = invokedAsDocker ? ["docker", ...positionals] : positionals;
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined && !values.help ? 1 : 0;
  }
  const extra = command === "docker" ? rest.slice(1) : rest;
  if (extra.length > 0) throw new UserError(`unexpected argument ${extra[0]} (see kata-deploy --help)`);
  const started = performance.now();
  switch (command) {
    case "install":
      await runInstall(values);
      break;
    case "uninstall":
      await runUninstall(values);
      break;
    case "label":
      await runLabel(values);
      break;
    case "reset":
      await runReset(values);
      break;
    case "status":
      return runStatus(values);
    case "docker":
      await runDocker(rest[0], values);
      break;
    default:
      throw new UserError(`unknown command ${command} (see kata-deploy --help)`);
  }
  log.info(`${command}: finished in ${log.formatDuration(performance.now() - started)}`);
  if (values.daemon) await waitForTermination();
  return 0;
}

/**
 * Runs one command line (`argv` as process.argv: node, script, arguments) to its exit status, with the
 * operator's one-line reason on stderr for a failure (1: the operator can fix it; 2: a bug, with its trace).
 * The bundle's own process exits with it; loaded as a module (the unit tier runs the bundle in worker
 * threads: tests/support/agent-thread.mjs), nothing runs until this is called.
 */
export async function runCli(argv: string[]): Promise<number> {
  // Dependencies' deprecation warnings (the Kubernetes client's url.parse, punycode) are not the
  // operator's business, and stderr must stay one line on failure.
  process.noDeprecation = true;
  try {
    return await main(argv);
  } catch (error) {
    const reason = formatForOperator(error);
    if (reason !== undefined) {
      process.stderr.write(`kata-deploy: ${reason}\n`);
      return 1;
    }
    process.stderr.write(`kata-deploy: unexpected error (a bug; please report it with this trace): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return 2;
  }
}

if (require.main === module) void runCli(process.argv).then((code) => process.exit(code));
