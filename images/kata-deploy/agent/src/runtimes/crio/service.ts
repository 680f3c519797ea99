// CRI-O: the adapter (plan with ./config, reload or restart the crio unit).
import type { HostCommands } from "../../host/commands";
import { parseVersion, type RuntimeAdapter } from "../adapter";
import { CRIO_DROP_IN, planCrioInstall, planCrioUninstall, type CrioOwned } from "./config";

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
