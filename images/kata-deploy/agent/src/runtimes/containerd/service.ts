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
import {
  CONTAINERD_FLAVORS,
  CONTAINERD_SOCKETS,
  containerdConfigVersionFor,
  containerdLayout,
  k3sLayout,
  type ContainerdConfigVersion,
  type ContainerdFlavor,
  type ContainerdLayout,
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
  flavor: Exclude<ContainerdFlavor, "containerd">,
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
}): Promise<RuntimeAdapter> {
  const version = args.configVersionHint === undefined && args.host ? await detectContainerdVersion(args.host) : undefined;
  const configVersion = args.configVersionHint ?? (version ? containerdConfigVersionFor(version) : undefined);
  const k3s = args.flavor === "containerd" ? undefined : k3sTargetFor(args.flavor, args.read, args.recorded ?? (args.configVersionHint === undefined ? undefined : { configVersionHint: args.configVersionHint }), version?.major);
  const layout = k3s?.layout ?? containerdLayout(args.flavor, configVersion);
  const socket = CONTAINERD_SOCKETS[args.flavor];
  const socketArgs = socket ? ["--address", socket] : [];
  return {
    runtime: "containerd",
    mainConfig: layout.mainConfig,
    details: {
      flavor: args.flavor,
      configVersionHint: layout.templateVersion ?? configVersion,
      mainConfig: layout.mainConfig,
      ...(layout.kind === "main" ? {} : { k3sTarget: layout.kind === "drop-in-dir" ? "drop-in" : "template" }),
      units: layout.systemdUnits,
      containerdVersion: version ? `${version.major}.${version.minor}` : undefined,
    },
    preflight: (host, request) => checkSnapshotters(host, socketArgs, request),
    planInstall: (read, request, previousOwned, list) => {
      if (k3s?.refusal !== undefined) throw k3s.refusal;
      return planContainerdInstall({ layout, read, list, request, previous: previousOwned as ContainerdOwned | undefined, defaultVersionWhenMissing: configVersion });
    },
    planUninstall: (read, owned) => planContainerdUninstall({ layout, read, previous: owned as ContainerdOwned }),
    async validate(host, candidateHostPath, expectedRuntimes = []) {
      if (layout.kind !== "main") {
        // k3s/rke2 run their own containerd: a `containerd` on the host's PATH is another program (maybe
        // another version) and cannot read a Go template. What k3s renders is checked after the restart.
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
      const failure = await host.control("restart", unit);
      if (failure !== undefined) return { unit, problem: failure };
      const problem = await host.waitHealthy(unit, async () => {
        // k3s/rke2 rendered config.toml anew before starting containerd: Kata must be in what they rendered.
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
  if (layout.kind === "drop-in-dir") {
    if (present.length === 0) return undefined; // the drop-in is gone with the restore
    let imports: unknown;
    try {
      imports = parseToml(renderedText, rendered).value.imports;
    } catch {
      return `${rendered} as ${layout.flavor} rendered it is not valid TOML`;
    }
    const entries = Array.isArray(imports) ? imports.filter((entry): entry is string => typeof entry === "string") : [];
    return entries.some((entry) => importCovers(entry, rendered, layout.dropIn)) ? undefined : `${rendered} as ${layout.flavor} rendered it no longer imports ${layout.dropIn}, so Kata's runtimes are not loaded`;
  }
  const names = runtimesInDump(renderedText) ?? [];
  const missing = present.filter((name) => !names.includes(name));
  if (missing.length > 0) {
    return `${rendered} as ${layout.flavor} rendered it has no runtime ${missing.join(", ")}: ${layout.flavor} did not render from ${layout.mainConfig} (an older ${layout.flavor} that reads only config.toml.tmpl?)`;
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
