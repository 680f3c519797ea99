// containerd: the adapter (plan with ./config, validate with `containerd config dump`, restart the
// flavour's unit and verify the CRI plugin with `ctr` on the flavour's socket) and flavour detection.
import { UserError } from "../../report/errors";
import { lastLine, type HostCommands } from "../../host/commands";
import * as log from "../../report/log";
import { parseToml } from "../../formats/toml-document";
import { parseVersion, type ReadHostFile, type RuntimeAdapter } from "../adapter";
import type { KataConfigRequest } from "../types";
import { dumpProblem, importCovers, planContainerdInstall, planContainerdUninstall, runtimesInDump, type ContainerdOwned } from "./config";
import { chooseK3sTarget } from "./k3s";
import { dropInNotRead } from "./config";
import {
  CONTAINERD_FLAVORS,
  K0S_CONFIG,
  MICROK8S_TEMPLATE,
  containerdConfigVersionFor,
  containerdLayout,
  isK3sFlavor,
  k3sConfigDir,
  k3sLayout,
  versionOf,
  type ContainerdConfigVersion,
  type ContainerdFlavor,
  type ContainerdLayout,
  type CustomContainerd,
  type K3sFlavor,
  type K3sTarget,
} from "./layout";

async function detectContainerdVersion(host: HostCommands): Promise<{ major: number; minor: number } | undefined> {
  const result = await host.run("containerd", ["--version"], 30_000);
  return result.code === 0 ? parseVersion(result.stdout) : undefined;
}

/**
 * k3s/rke2: the target an earlier install recorded (removal must edit what install edited), else the
 * one k3s's own template selection gives on this node now (k3s.ts). A failure (k3s's choice cannot be
 * told, an unreadable file) is returned, not thrown: it is the install's refusal, reported when planning,
 * and must not keep `reset` (which only restarts) from cleaning a node up.
 */
function k3sTargetFor(
  flavor: K3sFlavor,
  read: ReadHostFile | undefined,
  recorded: Record<string, unknown> | undefined,
  containerdMajor: number | undefined,
): { layout: ContainerdLayout; refusal?: unknown } {
  const recordedFile = recorded?.mainConfig;
  const recordedVersion = recorded?.configVersionHint as ContainerdConfigVersion | undefined;
  if (typeof recordedFile === "string") {
    // Records from before the drop-in choice existed name the template they edited.
    const target: K3sTarget = { kind: recorded?.k3sTarget === "drop-in" ? "drop-in" : "template", file: recordedFile, version: recordedVersion ?? 2 };
    return { layout: k3sLayout(flavor, target) };
  }
  if (read === undefined) return { layout: containerdLayout(flavor, recordedVersion) };
  try {
    const choice = chooseK3sTarget({ flavor, read, containerdMajor });
    log.info(`${flavor}: ${choice.reason}`);
    return { layout: k3sLayout(flavor, choice) };
  } catch (error) {
    return { layout: containerdLayout(flavor, recordedVersion), refusal: error };
  }
}

export async function containerdAdapter(args: {
  flavor: ContainerdFlavor;
  host: HostCommands | undefined;
  /** The version hint an earlier install used (so removal edits the same files). */
  configVersionHint?: ContainerdConfigVersion;
  /** Reads a host file (k3s/rke2: which template exists, what config.toml renders, checked again after a restart). */
  read?: ReadHostFile;
  /** The details an earlier install recorded (k3s/rke2: the file it edited). */
  recorded?: Record<string, unknown>;
  /** Plain containerd somewhere else (--containerd-config/--containerd-socket/--containerd-unit, or as recorded). */
  custom?: CustomContainerd;
}): Promise<RuntimeAdapter> {
  // Only plain containerd runs the host's `containerd` binary; the distributions bring their own.
  const version = args.configVersionHint === undefined && args.host && args.flavor === "containerd" ? await detectContainerdVersion(args.host) : undefined;
  const configVersion = args.configVersionHint ?? (version ? containerdConfigVersionFor(version) : undefined);
  const k3s = isK3sFlavor(args.flavor) ? k3sTargetFor(args.flavor, args.read, args.recorded ?? (args.configVersionHint === undefined ? undefined : { configVersionHint: args.configVersionHint }), version?.major) : undefined;
  const custom = args.custom ?? {};
  const layout = k3s?.layout ?? containerdLayout(args.flavor, configVersion, custom);
  const socketArgs = layout.socket ? ["--address", layout.socket] : [];
  return {
    runtime: "containerd",
    mainConfig: layout.mainConfig,
    details: {
      flavor: args.flavor,
      configVersionHint: layout.templateVersion ?? configVersion,
      mainConfig: layout.mainConfig,
      ...(isK3sFlavor(args.flavor) ? { k3sTarget: layout.kind === "drop-in-dir" ? "drop-in" : "template" } : {}),
      units: layout.systemdUnits,
      // What a custom containerd was given, so uninstall and reset use the same file, socket and unit.
      ...(custom.config !== undefined ? { customConfig: custom.config } : {}),
      ...(custom.socket !== undefined ? { customSocket: custom.socket } : {}),
      ...(custom.unit !== undefined ? { customUnit: custom.unit } : {}),
      containerdVersion: version ? `${version.major}.${version.minor}` : undefined,
    },
    preflight: (host, request) => checkSnapshotters(host, socketArgs, request),
    planInstall: (read, request, previousOwned, list) => {
      if (k3s?.refusal !== undefined) throw k3s.refusal;
      return planContainerdInstall({ layout, read, list, request, previous: previousOwned as ContainerdOwned | undefined, defaultVersionWhenMissing: configVersion });
    },
    planUninstall: (read, owned) => planContainerdUninstall({ layout, read, previous: owned as ContainerdOwned }),
    async validate(host, candidateHostPath, expectedRuntimes = []) {
      if (args.flavor !== "containerd") {
        // k3s/rke2/k0s/microk8s run their own containerd: a `containerd` on the host's PATH is another
        // program (maybe another version) and cannot read a Go template or ${SNAP} placeholders. What they
        // render (or read) is checked after the restart.
        return undefined;
      }
      const result = await host.run("containerd", ["-c", host.pathForCommand(candidateHostPath), "config", "dump"], 60_000);
      if (result.missing) {
        log.info("containerd binary not reachable on the host; skipping validation of the candidate config");
        return undefined;
      }
      if (result.code !== 0) return lastLine(result.stderr) || `containerd config dump exited with ${result.code}`;
      // Parsing is not enough: the runtimes must be in the effective (merged) configuration.
      return args.flavor === "containerd" ? dumpProblem(result.stdout, expectedRuntimes) : undefined;
    },
    async restartAndVerify(host, present = [], absent = []) {
      const unit = await host.pickUnit(layout.systemdUnits);
      if (unit === undefined) throw new UserError(`none of the systemd units ${layout.systemdUnits.join(", ")} exists on this host; is --containerd-flavor right?`);
      if (layout.reload === "k0s-watch") {
        // k0s restarts its containerd itself once the drop-in directory changed (3 s debounce); restarting
        // its unit would restart the kubelet too. Give it that time, then verify as after a restart.
        log.info(`${unit}: k0s reloads containerd on its own when ${layout.dropInDir} changes; not restarting it`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(K0S_RELOAD_SETTLE_MS, host.verifyTimeoutMs)));
      } else {
        const failure = await host.control("restart", unit);
        if (failure !== undefined) return { unit, problem: failure };
      }
      const problem = await host.waitHealthy(unit, async () => {
        // k3s/rke2/microk8s rendered their config anew before starting containerd (k0s: the config it reads):
        // Kata must be in it.
        const rendered = layout.renderedConfig !== undefined && args.read ? renderedProblem(layout, readOrProblem(args.read, layout.renderedConfig), present, absent) : undefined;
        if (rendered !== undefined) return rendered;
        const plugins = await host.run("ctr", [...socketArgs, "plugins", "ls"], 30_000);
        if (plugins.missing) return undefined; // no ctr on the host: `active` is all we can check
        if (plugins.code !== 0) return lastLine(plugins.stderr) || `ctr plugins ls exited with ${plugins.code}`;
        return criPluginProblem(plugins.stdout);
      });
      return { unit, problem };
    },
  };
}

/** k0s's drop-in watch debounce is 3 s (component.go watchDropinConfigs); then containerd restarts. */
const K0S_RELOAD_SETTLE_MS = 5000;

/** The file's text, or (for renderedProblem) undefined when it cannot be read: then it reads as "not rendered". */
function readOrProblem(read: ReadHostFile, hostPath: string): string | undefined {
  try {
    return read(hostPath);
  } catch (error) {
    log.warn(`${hostPath}: cannot be read (${error instanceof Error ? error.message : String(error)})`);
    return undefined;
  }
}

/**
 * What is wrong with the config.toml k3s/rke2 rendered on start, for the runtimes that must (`present`)
 * and must not (`absent`) be configured: template edits must show up in it, and our drop-in must be
 * imported by it. undefined: fine, or nothing to check.
 */
export function renderedProblem(layout: ContainerdLayout, renderedText: string | undefined, present: readonly string[], absent: readonly string[]): string | undefined {
  const rendered = layout.renderedConfig;
  if (rendered === undefined || (present.length === 0 && absent.length === 0)) return undefined;
  if (renderedText === undefined) return `${layout.flavor} did not render ${rendered}`;
  let doc;
  try {
    doc = parseToml(renderedText, rendered);
  } catch {
    return `${rendered} as ${layout.flavor} rendered it is not valid TOML`;
  }
  if (layout.kind === "drop-in-dir") {
    if (present.length === 0) return undefined; // the drop-in is gone with the restore
    let version: ContainerdConfigVersion;
    try {
      version = versionOf(doc, rendered) ?? 1;
    } catch {
      return `${rendered} as ${layout.flavor} rendered it has no valid \`version\``;
    }
    const notRead = dropInNotRead(layout, renderedText, doc, version);
    return notRead === undefined ? undefined : `${rendered} as ${layout.flavor} rendered it ${notRead.condition}, so Kata's runtimes are not loaded`;
  }
  const names = runtimesInDump(renderedText) ?? [];
  // microk8s on config v3+: our tables are in the drop-in its template imports (installIntoPlain).
  const imports = Array.isArray(doc.value.imports) ? doc.value.imports.filter((entry): entry is string => typeof entry === "string") : [];
  const dropInImported = layout.kind === "main" && imports.some((entry) => importCovers(entry, rendered, layout.dropIn));
  const missing = dropInImported ? [] : present.filter((name) => !names.includes(name));
  if (missing.length > 0) {
    const why = layout.kind === "main" ? `${layout.flavor} did not render it from ${layout.mainConfig}` : `${layout.flavor} did not render from ${layout.mainConfig} (an older ${layout.flavor} that reads only config.toml.tmpl?)`;
    return `${rendered} as ${layout.flavor} rendered it has no runtime ${missing.join(", ")}: ${why}`;
  }
  const left = absent.filter((name) => names.includes(name));
  return left.length > 0 ? `${rendered} as ${layout.flavor} rendered it still has runtime ${left.join(", ")}` : undefined;
}

/**
 * Refuses, before anything is changed, a snapshotter that the node's containerd does not have: Kata
 * pods of that runtime could not pull or start. Asks `ctr plugins ls` (containerd
 * cmd/ctr/commands/plugins/plugins.go: a tabwriter table TYPE ID PLATFORMS STATUS, status ok|skip|error;
 * proxy snapshotters are listed under type io.containerd.snapshotter.v1 with their proxy name, containerd
 * cmd/containerd/server/server.go). Installing a snapshotter is not kata-deploy's job. Without `ctr`
 * (or without host commands, --restart none) the check is skipped and the log says so.
 */
async function checkSnapshotters(host: HostCommands | undefined, socketArgs: string[], request: KataConfigRequest): Promise<void> {
  const wanted = request.runtimes.filter((runtime) => runtime.snapshotter !== undefined);
  if (wanted.length === 0) return;
  const names = [...new Set(wanted.map((runtime) => runtime.snapshotter as string))].join(", ");
  if (host === undefined) {
    log.warn(`snapshotter ${names}: not checked against this node's containerd (--restart none runs no host commands)`);
    return;
  }
  const result = await host.run("ctr", [...socketArgs, "plugins", "ls"], 30_000);
  if (result.missing || result.code !== 0) {
    const why = result.missing ? "ctr is not reachable on the host" : `ctr plugins ls failed (${lastLine(result.stderr) || `exit ${result.code}`})`;
    log.warn(`snapshotter ${names}: could not check that this node's containerd has it: ${why}`);
    return;
  }
  const snapshotters = snapshottersIn(result.stdout);
  const usable = [...snapshotters].filter(([, status]) => status === "ok").map(([name]) => name);
  for (const runtime of wanted) {
    const snapshotter = runtime.snapshotter as string;
    const status = snapshotters.get(snapshotter);
    if (status === "ok") continue;
    throw new UserError(
      `snapshotter "${snapshotter}" for shim ${runtime.shim} (${runtime.name}): this node's containerd ${status === undefined ? "does not have it (not in `ctr plugins ls`)" : `lists it with status ${status}`}, so ${runtime.name} could not pull or start images; kata-deploy does not install snapshotters: set it up in containerd on this node first, or map ${runtime.shim} to one it has (${usable.join(", ") || "none listed"}); nothing was changed`,
    );
  }
}

/** Snapshotter plugin IDs in `ctr plugins ls` output, with their status (ok, skip, error). */
export function snapshottersIn(pluginList: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const line of pluginList.split("\n")) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 3 && cols[0] === "io.containerd.snapshotter.v1") found.set(cols[1], cols[cols.length - 1]);
  }
  return found;
}

/**
 * The flavor whose systemd unit runs here (the first active unit, else the first loaded one), for a
 * `reset` that was given no --containerd-flavor and finds no install record; undefined when no
 * flavor's unit exists.
 */
export async function detectContainerdFlavor(host: HostCommands): Promise<ContainerdFlavor | undefined> {
  const flavorOfUnit = new Map(CONTAINERD_FLAVORS.flatMap((flavor) => containerdLayout(flavor).systemdUnits.map((unit): [string, ContainerdFlavor] => [unit, flavor])));
  const unit = await host.pickUnit([...flavorOfUnit.keys()]);
  return unit === undefined ? undefined : flavorOfUnit.get(unit);
}

/** Every containerd unit any flavor uses (for the message when none exists). */
export function allContainerdUnits(): string[] {
  return [...new Set(CONTAINERD_FLAVORS.flatMap((flavor) => containerdLayout(flavor).systemdUnits))];
}

/**
 * Reads `ctr plugins ls`: undefined when the CRI plugin(s) report `ok`, else what is wrong.
 * containerd 1.x lists `io.containerd.grpc.v1 cri`; 2.x also `io.containerd.cri.v1 runtime|images`.
 */
export function criPluginProblem(pluginList: string): string | undefined {
  const rows = pluginList
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 3 && (cols[0] === "io.containerd.cri.v1" || (cols[0] === "io.containerd.grpc.v1" && cols[1] === "cri")));
  if (rows.length === 0) return "the CRI plugin is not listed by `ctr plugins ls`";
  const broken = rows.filter((cols) => cols[cols.length - 1] !== "ok");
  if (broken.length > 0) return `CRI plugin ${broken.map((cols) => `${cols[0]} ${cols[1]}: ${cols[cols.length - 1]}`).join(", ")}`;
  return undefined;
}

// ---- which containerd flavour this node runs (issue 12 point 4) ---------------------------------------------

/**
 * What each distribution leaves on every node it ever started on (it writes these itself, so their absence
 * means it never ran here): k3s/rke2 their containerd template directory (k3s-io/k3s pkg/agent/containerd
 * config.go writes config.toml there), k0s /etc/k0s/containerd.toml (k0s component.go setupConfig), microk8s
 * its containerd-template.toml (canonical/microk8s snap/hooks/install copies default-args there). Order:
 * upstream kata-deploy's (binary/src/runtime/manager.rs get_container_runtime: microk8s, rke2, k3s, k0s).
 */
const DISTRIBUTION_MARKERS: readonly { flavor: Exclude<ContainerdFlavor, "containerd">; marker: string }[] = [
  { flavor: "microk8s", marker: MICROK8S_TEMPLATE },
  { flavor: "rke2", marker: k3sConfigDir("rke2") },
  { flavor: "k3s", marker: k3sConfigDir("k3s") },
  { flavor: "k0s", marker: K0S_CONFIG },
];

export interface FlavorOnNode {
  /** undefined: cannot be told (`why` says why). */
  flavor?: ContainerdFlavor;
  /** What was found, for the log and the refusals. */
  why: string;
}

/**
 * The containerd flavour this node runs, from its files and (when host commands run) its systemd units.
 * One distribution's files: that one. Several (one of them a leftover): the one whose unit is active. None:
 * plain containerd. With host commands, a distribution whose files are found but none of whose units is
 * active, on a node whose containerd unit is, is a leftover: plain containerd.
 */
export async function detectFlavorOnNode(a: { exists: (hostPath: string) => boolean; host?: HostCommands }): Promise<FlavorOnNode> {
  const found = DISTRIBUTION_MARKERS.filter((entry) => a.exists(entry.marker));
  const names = (entries: typeof found): string => entries.map((entry) => `${entry.flavor} (${entry.marker})`).join(", ");
  if (found.length === 0) return { flavor: "containerd", why: `none of ${DISTRIBUTION_MARKERS.map((entry) => entry.marker).join(", ")} exists` };
  if (a.host !== undefined) {
    const active: typeof found = [];
    for (const entry of found) if (await anyActive(a.host, containerdLayout(entry.flavor).systemdUnits)) active.push(entry);
    if (active.length === 1) return { flavor: active[0].flavor, why: `${active[0].marker} exists and a ${active[0].flavor} unit (${containerdLayout(active[0].flavor).systemdUnits.join("/")}) is active` };
    if (active.length === 0 && (await anyActive(a.host, ["containerd"]))) return { flavor: "containerd", why: `unit containerd is active and none of ${found.map((entry) => entry.flavor).join(", ")}'s units is (${names(found)} left over)` };
    if (active.length > 1) return { why: `files and active units of several distributions: ${names(active)}` };
    return { why: `${names(found)} found, but none of their units (nor containerd) is active` };
  }
  if (found.length === 1) return { flavor: found[0].flavor, why: `${found[0].marker} exists` };
  return { why: `files of several distributions: ${names(found)} (and --restart none runs no host commands to ask which one's unit is active)` };
}

async function anyActive(host: HostCommands, units: readonly string[]): Promise<boolean> {
  for (const unit of units) if ((await host.systemctl(["is-active", unit])).stdout.trim() === "active") return true;
  return false;
}

/**
 * The flavour an install uses: `requested` (`auto` or one flavour) against the node's install record and
 * what the node runs. `auto`: the recorded flavour (so a re-install edits what the first one did), else the
 * detected one. An explicit flavour that this node does not run (none of its files here, another
 * distribution's found) is refused, as is one that differs from the recorded install. Throws UserError.
 */
export async function resolveInstallFlavor(a: {
  requested: ContainerdFlavor | "auto";
  recorded?: string;
  /** The plain containerd config this install would use (custom or /etc/containerd/config.toml). */
  plainConfig: string;
  exists: (hostPath: string) => boolean;
  host?: HostCommands;
}): Promise<{ flavor: ContainerdFlavor; why: string }> {
  const recorded = (CONTAINERD_FLAVORS as readonly string[]).includes(a.recorded ?? "") ? (a.recorded as ContainerdFlavor) : undefined;
  if (a.requested === "auto") {
    if (recorded !== undefined) return { flavor: recorded, why: "recorded by the install already on this node" };
    const found = await detectFlavorOnNode(a);
    if (found.flavor === undefined) {
      throw new UserError(`containerdFlavor auto: cannot tell which containerd this node runs: ${found.why}; set containerdFlavor (k3s, rke2, k0s, microk8s or containerd) for these nodes, or remove the leftovers of the distribution that no longer runs here`);
    }
    return { flavor: found.flavor, why: `detected: ${found.why}` };
  }
  if (recorded !== undefined && recorded !== a.requested) {
    throw new UserError(
      `containerdFlavor ${a.requested}: Kata on this node was installed for ${recorded} (recorded in its install state), and changing it in place would leave that configuration with no owner; set containerdFlavor to ${recorded} or auto, or uninstall first; nothing was changed`,
    );
  }
  const own = a.requested === "containerd" ? a.plainConfig : DISTRIBUTION_MARKERS.find((entry) => entry.flavor === a.requested)?.marker;
  if (own !== undefined && a.exists(own)) return { flavor: a.requested, why: `${own} exists` };
  const found = await detectFlavorOnNode(a);
  if (found.flavor !== undefined && found.flavor !== a.requested) {
    const where = a.requested === "containerd" ? `${a.plainConfig} does not exist` : `${own} does not exist`;
    throw new UserError(
      `containerdFlavor ${a.requested}: this node runs ${found.flavor}, not ${a.requested} (${where}; ${found.why}), so Kata would be configured where its containerd never reads it; set containerdFlavor to ${found.flavor} or auto (each node detects its own); nothing was changed`,
    );
  }
  return { flavor: a.requested, why: "as given" };
}
