// Runs a PodPlan on the outer Docker engine the way a kubelet runs a pod: the container starts detached,
// readiness is the exec probe's exit code, termination is preStop (exec) then SIGTERM with the grace
// period, and a container restart keeps the same container (as the kubelet restarts a crashed one).
//
// Everything here is asynchronous on purpose: the API stand-in the pods talk to lives in this process, so a
// synchronous `docker exec` of a preStop that calls the API would block the very server it is waiting for.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import type { PodPlan } from "./pod";

export interface ExecResult {
  /** Exit status; null when the command was killed (timeout). */
  status: number | null;
  stdout: string;
  stderr: string;
}

function docker(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile("docker", args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: timeoutMs }, (error, stdout, stderr) => {
      const code = (error as NodeJS.ErrnoException & { code?: unknown; killed?: boolean } | null)?.code;
      const status = error === null ? 0 : typeof code === "number" ? code : null;
      resolve({ status, stdout, stderr: stderr || (error && status === null ? error.message : "") });
    });
  });
}

async function mustDocker(args: string[]): Promise<string> {
  const result = await docker(args);
  if (result.status !== 0) throw new Error(`docker ${args.slice(0, 2).join(" ")} failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class PodHandle {
  private constructor(readonly plan: PodPlan) {}

  /** Checks hostPath types as the kubelet does (creating DirectoryOrCreate ones), then `docker run -d`. */
  static async start(plan: PodPlan): Promise<PodHandle> {
    for (const use of plan.hostPaths) {
      if (use.type === "DirectoryOrCreate") fs.mkdirSync(use.source, { recursive: true, mode: 0o755 });
      else if (use.type === "Directory" && !fs.statSync(use.source, { throwIfNoEntry: false })?.isDirectory()) {
        throw new Error(`pod ${plan.podName}: hostPath ${use.path} (type Directory) does not exist on the node`);
      }
    }
    await docker(["rm", "-f", plan.containerName]);
    await mustDocker(["run", "-d", ...plan.runArgs]);
    return new PodHandle(plan);
  }

  get name(): string {
    return this.plan.containerName;
  }

  async state(): Promise<{ running: boolean; exitCode: number }> {
    const out = (await mustDocker(["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", this.name])).trim().split(" ");
    return { running: out[0] === "true", exitCode: Number(out[1]) };
  }

  async logs(): Promise<string> {
    const result = await docker(["logs", this.name]);
    return `${result.stdout}${result.stderr}`;
  }

  exec(command: string[], timeoutSeconds: number): Promise<ExecResult> {
    return docker(["exec", this.name, ...command], timeoutSeconds * 1000);
  }

  /** Runs the readiness probe once; true when it exits 0. */
  async ready(): Promise<boolean> {
    const probe = this.plan.readiness;
    if (!probe) throw new Error(`pod ${this.plan.podName} has no readinessProbe`);
    return (await this.exec(probe.command, probe.timeoutSeconds)).status === 0;
  }

  /** Polls the readiness probe (every second) until it passes; fails early, with the logs, if the container exits. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { running, exitCode } = await this.state();
      if (!running) throw new Error(`pod ${this.plan.podName} exited ${exitCode} before it was ready:\n${await this.logs()}`);
      if (await this.ready()) return;
      if (Date.now() > deadline) throw new Error(`pod ${this.plan.podName} not ready after ${timeoutMs} ms:\n${await this.logs()}`);
      await sleep(1000);
    }
  }

  /** Waits for the container to exit on its own; returns its exit code. */
  async waitExit(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { running, exitCode } = await this.state();
      if (!running) return exitCode;
      if (Date.now() > deadline) throw new Error(`pod ${this.plan.podName} still running after ${timeoutMs} ms:\n${await this.logs()}`);
      await sleep(1000);
    }
  }

  /** The kubelet's container restart: the process dies (SIGKILL here, like a crash or OOM kill), the same container starts again. */
  async restartContainer(): Promise<void> {
    await mustDocker(["kill", "--signal", "KILL", this.name]);
    await mustDocker(["start", this.name]);
  }

  /** preStop hook (when the spec has one), then SIGTERM and the grace period. Returns the hook's result and the exit code. */
  async terminate(options: { runPreStop: boolean } = { runPreStop: true }): Promise<{ preStop?: ExecResult; exitCode: number }> {
    let preStop: ExecResult | undefined;
    if (options.runPreStop && this.plan.preStop) preStop = await this.exec(this.plan.preStop, this.plan.terminationGraceSeconds);
    await mustDocker(["stop", "--time", String(this.plan.terminationGraceSeconds), this.name]);
    return { preStop, exitCode: (await this.state()).exitCode };
  }

  async remove(): Promise<void> {
    await docker(["rm", "-f", this.name]);
  }
}
