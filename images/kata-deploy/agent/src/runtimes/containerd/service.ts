// containerd: the adapter (plan with ./config, validate with `containerd config dump`, restart the
// flavour's unit and verify the CRI plugin with `ctr` on the flavour's socket) and flavour detection.
import { UserError } from "../../report/errors";
import { lastLine, type HostCommands } from "../../host/commands";
import * as log from "../../report/log";
import { parseVersion, type RuntimeAdapter } from "../adapter";
import { dumpProblem, planContainerdInstall, planContainerdUninstall, type ContainerdOwned } from "./config";
import { CONTAINERD_FLAVORS, CONTAINERD_SOCKETS, containerdConfigVersionFor, containerdLayout, type ContainerdConfigVersion, type ContainerdFlavor } from "./layout";

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
