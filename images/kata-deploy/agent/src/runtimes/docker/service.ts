// Docker: the adapter (plan daemon.json with ./config, validate with `dockerd --validate`, reload and
// verify the runtimes through the Engine API or the docker CLI).
import { applyEdits, modify as modifyJson, parse as parseJsonText } from "jsonc-parser";
import { lastLine, type HostCommands } from "../../host/commands";
import * as log from "../../report/log";
import { parseVersion, type RuntimeAdapter } from "../adapter";
import { DOCKER_DAEMON_JSON, dockerRuntimeFormFor, planDockerInstall, planDockerUninstall, type DockerOwned, type DockerRuntimeForm } from "./config";
import type { DockerEngine } from "./engine-api";

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
