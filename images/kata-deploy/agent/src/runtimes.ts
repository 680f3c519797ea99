// One adapter per container runtime: which planner to call, which file is the "main" one (it points at
// the others, so it is written last on install and first on removal), how the runtime's own parser
// validates a candidate, and how the runtime is restarted and checked.
import {
  containerdLayout,
  dumpProblem,
  planContainerdInstall,
  planContainerdUninstall,
  type ContainerdConfigVersion,
  type ContainerdFlavor,
  type ContainerdOwned,
} from "./config/containerd";
import { CRIO_DROP_IN, planCrioInstall, planCrioUninstall, type CrioOwned } from "./config/crio";
import { DOCKER_DAEMON_JSON, dockerRuntimeFormFor, planDockerInstall, planDockerUninstall, type DockerOwned, type DockerRuntimeForm } from "./config/docker";
import type { FileEdit, KataConfigRequest } from "./config/types";
import { UserError } from "./errors";
import { applyEdits, modify as modifyJson, parse as parseJsonText } from "jsonc-parser";
import type { DockerEngine } from "./docker-engine";
import { criPluginProblem, lastLine, type HostCommands } from "./host";
import * as log from "./log";
import type { Runtime } from "./state";

export type ReadHostFile = (hostPath: string) => string | undefined;

export interface RuntimeAdapter {
  runtime: Runtime;
  /** The file that references the others (written last on install, first on removal). */
  mainConfig: string;
  /** How it was set up, recorded in the state. */
  details: Record<string, string | string[] | number | undefined>;
  /** `notices`: things the operator should know that are not errors (e.g. an alias left to its owner). */
  /** `list`: a host directory's entries (sorted), for import globs; undefined when it is not a directory. */
  planInstall(read: ReadHostFile, request: KataConfigRequest, previousOwned: unknown, list?: (hostDir: string) => string[] | undefined): { edits: FileEdit[]; owned: unknown; notices?: string[] };
  planUninstall(read: ReadHostFile, owned: unknown): FileEdit[];
  /**
   * Checks a candidate main config (a temp file next to the real one, so relative imports resolve)
   * with the runtime's own parser; returns the parser's complaint, or undefined when it is fine or
   * the parser is not reachable.
   */
  validate(host: HostCommands, candidateHostPath: string, expectedRuntimes?: string[]): Promise<string | undefined>;
  /**
   * Restarts (or reloads) the runtime and waits until it answers and, where the runtime can tell,
   * lists every runtime in `present` and none in `absent`; returns the unit and any problem.
   */
  restartAndVerify(host: HostCommands, present: string[], absent?: string[]): Promise<{ unit: string; problem?: string }>;
  /**
   * Removal only, when a reload would keep what the restored file no longer mentions: the content to
   * write (and reload) first so the runtime drops our entries; undefined when not needed.
   */
  removalStep?(current: string, restored: string | undefined): string | undefined;
}

const CONTAINERD_FLAVORS: ContainerdFlavor[] = ["containerd", "k3s", "rke2"];

/**
 * The containerd socket `ctr` must talk to, per flavor (undefined: ctr's default,
 * /run/containerd/containerd.sock). k3s: k3s-io/k3s pkg/agent/config/config_linux.go
 * (applyContainerdStateAndAddress: state /run/k3s/containerd, address <state>/containerd.sock).
 * rke2 runs k3s's agent code and documents the same socket (docs.rke2.io/reference/cli_tools:
 * "The Containerd socket is located at /run/k3s/containerd/containerd.sock").
 */
export const CONTAINERD_SOCKETS: Readonly<Record<ContainerdFlavor, string | undefined>> = {
  containerd: undefined,
  k3s: "/run/k3s/containerd/containerd.sock",
  rke2: "/run/k3s/containerd/containerd.sock",
};

/** Parses "x.y" out of a version banner (`containerd github.com/containerd/containerd v1.7.24 ...`). */
export function parseVersion(banner: string): { major: number; minor: number } | undefined {
  const match = /\bv?(\d+)\.(\d+)(?:\.\d+)?/.exec(banner);
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
}

/** The config version a containerd release writes by default (used only when the config file is missing). */
export function containerdConfigVersionFor(version: { major: number; minor: number }): ContainerdConfigVersion {
  if (version.major < 2) return 2;
  return version.minor >= 3 ? 4 : 3;
}

async function detectContainerdVersion(host: HostCommands): Promise<{ major: number; minor: number } | undefined> {
  const result = await host.run("containerd", ["--version"], 30_000);
  return result.code === 0 ? parseVersion(result.stdout) : undefined;
}

export async function containerdAdapter(args: {
  flavor: ContainerdFlavor;
  host: HostCommands | undefined;
  /** The version hint an earlier install used (so removal edits the same files). */
  configVersionHint?: ContainerdConfigVersion;
}): Promise<RuntimeAdapter> {
  const version = args.configVersionHint === undefined && args.host ? await detectContainerdVersion(args.host) : undefined;
  const configVersion = args.configVersionHint ?? (version ? containerdConfigVersionFor(version) : undefined);
  const layout = containerdLayout(args.flavor, configVersion);
  const socket = CONTAINERD_SOCKETS[args.flavor];
  return {
    runtime: "containerd",
    mainConfig: layout.mainConfig,
    details: { flavor: args.flavor, configVersionHint: configVersion, mainConfig: layout.mainConfig, units: layout.systemdUnits, containerdVersion: version ? `${version.major}.${version.minor}` : undefined },
    planInstall: (read, request, previousOwned, list) =>
      planContainerdInstall({ layout, read, list, request, previous: previousOwned as ContainerdOwned | undefined, defaultVersionWhenMissing: configVersion }),
    planUninstall: (read, owned) => planContainerdUninstall({ layout, read, previous: owned as ContainerdOwned }),
    async validate(host, candidateHostPath, expectedRuntimes = []) {
      const result = await host.run("containerd", ["-c", host.pathForCommand(candidateHostPath), "config", "dump"], 60_000);
      if (result.missing) {
        log.info("containerd binary not reachable on the host; skipping validation of the candidate config");
        return undefined;
      }
      if (result.code !== 0) return lastLine(result.stderr) || `containerd config dump exited with ${result.code}`;
      // Parsing is not enough: the runtimes must be in the effective (merged) configuration.
      return args.flavor === "containerd" ? dumpProblem(result.stdout, expectedRuntimes) : undefined;
    },
    async restartAndVerify(host) {
      const unit = await host.pickUnit(layout.systemdUnits);
      if (unit === undefined) throw new UserError(`none of the systemd units ${layout.systemdUnits.join(", ")} exists on this host; is --containerd-flavor right?`);
      const failure = await host.control("restart", unit);
      if (failure !== undefined) return { unit, problem: failure };
      const problem = await host.waitHealthy(unit, async () => {
        const plugins = await host.run("ctr", [...(socket ? ["--address", socket] : []), "plugins", "ls"], 30_000);
        if (plugins.missing) return undefined; // no ctr on the host: `active` is all we can check
        if (plugins.code !== 0) return lastLine(plugins.stderr) || `ctr plugins ls exited with ${plugins.code}`;
        return criPluginProblem(plugins.stdout);
      });
      return { unit, problem };
    },
  };
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

export async function crioAdapter(host: HostCommands | undefined): Promise<RuntimeAdapter> {
  return {
    runtime: "crio",
    mainConfig: CRIO_DROP_IN,
    details: { dropIn: CRIO_DROP_IN },
    planInstall: (read, request, previousOwned) => planCrioInstall({ read, request, previous: previousOwned as CrioOwned | undefined }),
    planUninstall: (read, owned) => planCrioUninstall({ read, previous: owned as CrioOwned }),
    // No CRI-O binary can parse a single drop-in without the whole config; the planner's TOML check is it.
    validate: async () => undefined,
    restartAndVerify: async (h) => restartCrio(h ?? host),
  };
}

/** CRI-O >= 1.26 reloads its runtime table on SIGHUP (`systemctl reload`); older ones need a restart. */
export async function restartCrio(host: HostCommands | undefined): Promise<{ unit: string; problem?: string }> {
  if (host === undefined) throw new Error("internal: no host commands");
  const unit = "crio";
  const version = parseVersion((await host.run("crio", ["--version"], 30_000)).stdout);
  const action = version && (version.major > 1 || version.minor >= 26) ? "reload" : "restart";
  const failure = await host.control(action, unit);
  if (failure !== undefined) return { unit, problem: failure };
  return { unit, problem: await host.waitHealthy(unit, async () => undefined) };
}

interface DetectedDockerVersion {
  version: { major: number; minor: number };
  /** Where it came from, for the log. */
  source: string;
}

/** The daemon's version: from the Engine API socket when there is one, else the host's docker/dockerd. */
async function detectDockerVersion(engine: DockerEngine | undefined, host: HostCommands | undefined): Promise<{ detected?: DetectedDockerVersion; tried: string[] }> {
  const tried: string[] = [];
  if (engine) {
    const answer = await engine.version();
    const version = answer.ok ? parseVersion(answer.value) : undefined;
    if (version) return { detected: { version, source: `Docker Engine API at ${engine.socketPath}` }, tried };
    tried.push(answer.ok ? `${engine.socketPath}: unreadable version "${answer.value}"` : answer.problem);
  } else {
    tried.push("no Docker socket at /var/run/docker.sock");
  }
  if (host) {
    const server = await host.run("docker", ["version", "--format", "{{.Server.Version}}"], 30_000);
    const fromCli = server.code === 0 ? parseVersion(server.stdout) : undefined;
    if (fromCli) return { detected: { version: fromCli, source: "docker version" }, tried };
    const daemon = await host.run("dockerd", ["--version"], 30_000);
    const fromDaemon = daemon.code === 0 ? parseVersion(daemon.stdout) : undefined;
    if (fromDaemon) return { detected: { version: fromDaemon, source: "dockerd --version" }, tried };
    tried.push("no docker or dockerd reachable");
  }
  return { tried };
}

/**
 * Whether the daemon lists `runtimeNames` after the reload. `problem` undefined means fine; `checkedBy`
 * undefined means it could not be checked (no socket, no docker CLI): `active` is all we know.
 */
async function checkDockerRuntimes(engine: DockerEngine | undefined, host: HostCommands, present: string[], absent: string[]): Promise<{ problem?: string; checkedBy?: string }> {
  let listed: string[];
  let checkedBy: string;
  if (engine) {
    const answer = await engine.runtimes();
    if (!answer.ok) return { problem: answer.problem };
    listed = answer.value;
    checkedBy = `GET /info on ${engine.socketPath}`;
  } else {
    const info = await host.run("docker", ["info", "--format", "{{json .Runtimes}}"], 30_000);
    if (info.missing) return {};
    if (info.code !== 0) return { problem: lastLine(info.stderr) || `docker info exited with ${info.code}` };
    try {
      listed = Object.keys(JSON.parse(info.stdout) as object);
    } catch {
      return { problem: "docker info printed no runtime list" };
    }
    checkedBy = "docker info";
  }
  const missing = present.filter((name) => !listed.includes(name));
  if (missing.length > 0) return { problem: `${checkedBy} does not list runtime(s) ${missing.join(", ")}`, checkedBy };
  const left = absent.filter((name) => listed.includes(name));
  return { problem: left.length === 0 ? undefined : `${checkedBy} still lists runtime(s) ${left.join(", ")}`, checkedBy };
}

/**
 * dockerd's reload replaces its runtime table only when daemon.json sets `runtimes` (moby
 * daemon/reload_unix.go: `if conf.IsValueSet("runtimes")`), so restoring a file without that key
 * would leave the Kata runtimes registered until docker restarts. The step in between keeps the key,
 * empty: every runtime left in it when the restored file has none is one of ours. Transient (the
 * restore that follows is byte-exact), so jsonc-parser's own formatting of the edit is fine.
 */
export function dockerRemovalStep(current: string, restored: string | undefined): string | undefined {
  const restoredHasRuntimes = restored !== undefined && hasTopLevelKey(restored, "runtimes");
  if (restoredHasRuntimes || !hasTopLevelKey(current, "runtimes")) return undefined;
  return applyEdits(current, modifyJson(current, ["runtimes"], {}, { formattingOptions: { insertSpaces: true, tabSize: 2 } }));
}

function hasTopLevelKey(jsonText: string, key: string): boolean {
  const value: unknown = parseJsonText(jsonText);
  return typeof value === "object" && value !== null && !Array.isArray(value) && key in value;
}

export async function dockerAdapter(args: { form: DockerRuntimeForm | "auto"; host: HostCommands | undefined; engine: DockerEngine | undefined }): Promise<RuntimeAdapter> {
  const { engine } = args;
  const { detected, tried } = await detectDockerVersion(engine, args.host);
  const version = detected?.version;
  let form: DockerRuntimeForm;
  if (args.form !== "auto") form = args.form;
  else if (detected) {
    form = dockerRuntimeFormFor(`${detected.version.major}.${detected.version.minor}`);
    log.info(`docker ${detected.version.major}.${detected.version.minor} (from ${detected.source}): ${form} runtime form`);
  } else {
    // Docker < 23 has been out of support since 2024; guessing the supported case beats refusing to run.
    form = "shim-v2";
    log.info(
      `docker version unknown (${tried.join("; ")}): assuming Docker >= 23 and the shim-v2 runtime form; ` +
        `pass --docker-runtime-form runc for Docker < 23; mount /var/run/docker.sock to detect the version and verify the runtimes after the reload`,
    );
  }
  const canValidate = version !== undefined && version.major >= 23;
  return {
    runtime: "docker",
    mainConfig: DOCKER_DAEMON_JSON,
    details: { form, dockerVersion: version ? `${version.major}.${version.minor}` : undefined },
    planInstall: (read, request, previousOwned) => planDockerInstall({ read, request, form, previous: previousOwned as DockerOwned | undefined }),
    planUninstall: (read, owned) => planDockerUninstall({ read, previous: owned as DockerOwned }),
    async validate(host, candidateHostPath) {
      if (!canValidate) return undefined; // `dockerd --validate` exists since Docker 23
      const result = await host.run("dockerd", ["--validate", "--config-file", host.pathForCommand(candidateHostPath)], 60_000);
      if (result.missing) return undefined;
      return result.code === 0 ? undefined : lastLine(result.stderr) || `dockerd --validate exited with ${result.code}`;
    },
    async restartAndVerify(host, present, absent = []) {
      const unit = "docker";
      const failure = await host.control("reload", unit);
      if (failure !== undefined) return { unit, problem: failure };
      let checkedBy: string | undefined;
      const problem = await host.waitHealthy(unit, async () => {
        const check = await checkDockerRuntimes(engine, host, present, absent);
        checkedBy = check.checkedBy;
        return check.problem;
      });
      if (problem === undefined && present.length + absent.length > 0) {
        const what = [present.length > 0 ? `lists ${present.join(", ")}` : "", absent.length > 0 ? `no longer lists ${absent.join(", ")}` : ""].filter(Boolean).join(" and ");
        log.info(checkedBy ? `verified: docker ${what} (${checkedBy})` : "docker is active; its runtimes are not verified (mount /var/run/docker.sock to verify them)");
      }
      return { unit, problem };
    },
    removalStep: dockerRemovalStep,
  };
}
