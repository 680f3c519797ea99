// The boundary to the host's services and binaries (systemd, containerd, ctr, dockerd, docker, crio).
//
// How a command reaches the host:
// - in a hostPID pod (PID 1 is the host's init, in another mount namespace): `nsenter -t 1 -m -- CMD`,
//   so CMD is the host's own binary and sees host paths;
// - otherwise CMD runs here: on the host itself, or in the Docker quick-start container, where
//   `systemctl` talks to the host's systemd through the mounted /run/systemd (its private socket).
// Tests (and unusual hosts) replace the boundary with environment variables:
//   KATA_DEPLOY_HOST_COMMAND_PREFIX  words put before every host command ("" = run directly);
//   KATA_DEPLOY_SYSTEMCTL, KATA_DEPLOY_CONTAINERD, KATA_DEPLOY_CTR, KATA_DEPLOY_DOCKERD,
//   KATA_DEPLOY_DOCKER, KATA_DEPLOY_CRIO  the program to run for each tool;
//   KATA_DEPLOY_VERIFY_TIMEOUT_SECONDS  how long a restarted runtime has to come back (default 60).
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import { UserError } from "../report/errors";
import type { HostRoot } from "./files";
import * as log from "../report/log";

export interface CommandResult {
  /** The program was not found (here, or on the host through nsenter). */
  missing: boolean;
  code: number | null;
  stdout: string;
  stderr: string;
}

export type Tool = "systemctl" | "containerd" | "ctr" | "dockerd" | "docker" | "crio";

function detectPrefix(): string[] {
  const configured = process.env.KATA_DEPLOY_HOST_COMMAND_PREFIX;
  if (configured !== undefined) return configured.split(/\s+/).filter((word) => word !== "");
  try {
    if (fs.readlinkSync("/proc/1/ns/mnt") !== fs.readlinkSync("/proc/self/ns/mnt")) return ["nsenter", "-t", "1", "-m", "--"];
  } catch {
    // Cannot inspect PID 1 (not privileged, or no hostPID): run commands here.
  }
  return [];
}

const DBUS_SYSTEM_SOCKETS = ["/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket"];

/**
 * Whether `systemctl` must go through the D-Bus system bus instead of systemd's private socket.
 * As root, systemctl talks to /run/systemd/private and checks the peer's credentials; from another
 * PID namespace (the quick-start container: the host's systemd is not PID 1 here) the peer's PID
 * reads as 0 and systemctl gives up ("Failed to connect to system scope bus ...: No data available").
 * The mounted D-Bus socket has no such check, and SYSTEMCTL_FORCE_BUS=1 makes systemctl use it.
 */
function mustUseSystemBus(prefix: string[]): boolean {
  if (prefix.length > 0) return false; // nsenter into the host: the host's own PID 1 and namespace
  let init: string;
  try {
    init = fs.readFileSync("/proc/1/comm", "utf8").trim();
  } catch {
    return false;
  }
  return init !== "systemd" && DBUS_SYSTEM_SOCKETS.some((socket) => fs.existsSync(socket));
}

export class HostCommands {
  readonly prefix: string[];
  readonly verifyTimeoutMs: number;
  /** Extra environment for systemctl (see mustUseSystemBus). */
  private readonly systemctlEnv: NodeJS.ProcessEnv | undefined;

  constructor(private readonly root: HostRoot) {
    this.prefix = detectPrefix();
    this.verifyTimeoutMs = Number(process.env.KATA_DEPLOY_VERIFY_TIMEOUT_SECONDS ?? "60") * 1000;
    this.systemctlEnv = mustUseSystemBus(this.prefix) ? { ...process.env, SYSTEMCTL_FORCE_BUS: "1" } : undefined;
  }

  /** Whether host commands see host paths (they run in the host's mount namespace, or the root is `/`). */
  get seesHostPaths(): boolean {
    return this.prefix.length > 0 || this.root.dir === "/";
  }

  /** The path to hand a host command for a host file. */
  pathForCommand(hostPath: string): string {
    return this.seesHostPaths ? hostPath : this.root.local(hostPath);
  }

  program(tool: Tool): string {
    return process.env[`KATA_DEPLOY_${tool.toUpperCase()}`] ?? tool;
  }

  run(tool: Tool, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
    const argv = [...this.prefix, this.program(tool), ...args];
    const env = tool === "systemctl" ? this.systemctlEnv : undefined;
    return new Promise((resolve) => {
      execFile(argv[0], argv.slice(1), { timeout: timeoutMs, maxBuffer: 16 << 20, env }, (error, stdout, stderr) => {
        const errno = error && "code" in error ? (error as { code?: unknown }).code : undefined;
        const code = error ? (typeof errno === "number" ? errno : null) : 0;
        // ENOENT: not found here; 127: nsenter (or a shell) could not find it on the host.
        const missing = errno === "ENOENT" || (this.prefix.length > 0 && code === 127);
        resolve({ missing, code, stdout: String(stdout), stderr: String(stderr) });
      });
    });
  }

  async systemctl(args: string[]): Promise<CommandResult> {
    const result = await this.run("systemctl", args);
    if (result.missing) throw new UserError(`systemctl is not reachable (${[...this.prefix, this.program("systemctl")].join(" ")}); run the agent with hostPID (nsenter) or mount /run/systemd`);
    if (/Failed to connect to .*bus/i.test(result.stderr)) {
      throw new UserError(`systemctl ${args.join(" ")}: cannot reach the host's systemd (${lastLine(result.stderr)}); mount /var/run/dbus and /run/systemd from the host, or run with --pid=host --privileged`);
    }
    return result;
  }

  /** Refuses (before anything is changed) when the host's systemd cannot be reached at all. */
  async assertSystemdReachable(): Promise<void> {
    await this.systemctl(["is-system-running"]);
  }

  /** The first of `units` that is active, else the first that is loaded. */
  async pickUnit(units: string[]): Promise<string | undefined> {
    for (const unit of units) {
      if ((await this.systemctl(["is-active", unit])).stdout.trim() === "active") return unit;
    }
    for (const unit of units) {
      if ((await this.systemctl(["show", "--property=LoadState", "--value", unit])).stdout.trim() === "loaded") return unit;
    }
    return undefined;
  }

  /** `systemctl restart|reload UNIT`; returns an error text on failure. */
  async control(action: "restart" | "reload", unit: string): Promise<string | undefined> {
    const started = performance.now();
    const result = await this.systemctl([action, unit]);
    log.info(`systemctl ${action} ${unit}: exit ${result.code} in ${log.formatDuration(performance.now() - started)}`);
    if (result.code === 0) return undefined;
    return lastLine(result.stderr) || `systemctl ${action} ${unit} exited with ${result.code}`;
  }

  /**
   * Polls until `unit` is active and `answers()` returns undefined (no problem), or the verify timeout
   * passes. Returns the last problem, or undefined when healthy.
   */
  async waitHealthy(unit: string, answers: () => Promise<string | undefined>): Promise<string | undefined> {
    const deadline = performance.now() + this.verifyTimeoutMs;
    let problem: string | undefined;
    for (;;) {
      const state = (await this.systemctl(["is-active", unit])).stdout.trim();
      problem = state === "active" ? await answers() : `${unit} is ${state || "not active"}`;
      if (problem === undefined || performance.now() > deadline) return problem;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

export function lastLine(text: string): string {
  return text.trim().split("\n").filter((line) => line.trim() !== "").slice(-1)[0]?.trim() ?? "";
}
