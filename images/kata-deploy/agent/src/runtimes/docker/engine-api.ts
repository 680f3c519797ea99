// The Docker Engine API over its unix socket, with Node's own http client: the seed's quick-start
// container has no docker CLI and no host PID namespace, but a mounted /var/run/docker.sock is enough
// to read the daemon's version (GET /version → which runtime form daemon.json needs) and, after the
// reload, to check that the daemon lists the Kata runtimes (GET /info → Runtimes). Read-only calls.
import * as fs from "node:fs";
import * as http from "node:http";
import { errnoCode } from "../../report/errors";
import type { HostRoot } from "../../host/files";

const DEFAULT_SOCKET = "/var/run/docker.sock";
const REQUEST_TIMEOUT_MS = 10_000;

/** An answer, or why there is none (socket missing, daemon down, not Docker). */
export type EngineAnswer<T> = { ok: true; value: T } | { ok: false; problem: string };

export interface DockerEngine {
  /** The socket's path in this process's file system (for messages). */
  socketPath: string;
  /** `Version` from GET /version, e.g. "26.1.5+dfsg1". */
  version(): Promise<EngineAnswer<string>>;
  /** The runtime names from GET /info (`Runtimes`), e.g. ["io.containerd.runc.v2", "kata-qemu", "runc"]. */
  runtimes(): Promise<EngineAnswer<string[]>>;
}

/**
 * The daemon's socket, when there is one: `DOCKER_HOST` if it names a unix socket (it is this
 * process's own setting), else the host's /var/run/docker.sock under the host root (host symlinks
 * such as /var/run → /run resolved as the host sees them). undefined: no socket there.
 */
export function findDockerSocket(root: HostRoot, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dockerHost = env.DOCKER_HOST;
  // With the host's / as ours (the quick start) the path is the one the user mounted; under another
  // host root, host symlinks (/var/run → /run) must be followed inside that root.
  const hostSocket = root.dir === "/" ? DEFAULT_SOCKET : root.local(root.resolve(DEFAULT_SOCKET));
  const candidate = dockerHost?.startsWith("unix://") ? dockerHost.slice("unix://".length) : hostSocket;
  try {
    return fs.statSync(candidate).isSocket() ? candidate : undefined;
  } catch {
    return undefined;
  }
}

function describeFailure(error: unknown, socketPath: string): string {
  const code = errnoCode(error);
  if (code === "ECONNREFUSED" || code === "ENOENT") return `nothing answers on ${socketPath} (${code}); is dockerd running?`;
  if (code === "EACCES") return `permission denied on ${socketPath}; run as root`;
  return `${socketPath}: ${error instanceof Error ? error.message : String(error)}`;
}

function getJson(socketPath: string, requestPath: string): Promise<EngineAnswer<unknown>> {
  return new Promise((resolve) => {
    const request = http.get({ socketPath, path: requestPath, headers: { Host: "docker" }, timeout: REQUEST_TIMEOUT_MS }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        if (response.statusCode !== 200) {
          resolve({ ok: false, problem: `GET ${requestPath} on ${socketPath}: HTTP ${response.statusCode ?? "?"}` });
          return;
        }
        try {
          resolve({ ok: true, value: JSON.parse(body) as unknown });
        } catch {
          resolve({ ok: false, problem: `GET ${requestPath} on ${socketPath}: the answer is not JSON; is this a Docker socket?` });
        }
      });
      response.on("error", (error) => resolve({ ok: false, problem: describeFailure(error, socketPath) }));
    });
    request.on("timeout", () => request.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    request.on("error", (error) => resolve({ ok: false, problem: describeFailure(error, socketPath) }));
  });
}

export function dockerEngine(socketPath: string): DockerEngine {
  return {
    socketPath,
    async version() {
      const answer = await getJson(socketPath, "/version");
      if (!answer.ok) return answer;
      const version = (answer.value as { Version?: unknown } | null)?.Version;
      return typeof version === "string" ? { ok: true, value: version } : { ok: false, problem: `GET /version on ${socketPath}: no Version in the answer` };
    },
    async runtimes() {
      const answer = await getJson(socketPath, "/info");
      if (!answer.ok) return answer;
      const runtimes = (answer.value as { Runtimes?: unknown } | null)?.Runtimes;
      if (typeof runtimes !== "object" || runtimes === null) return { ok: false, problem: `GET /info on ${socketPath}: no Runtimes in the answer` };
      return { ok: true, value: Object.keys(runtimes) };
    },
  };
}
