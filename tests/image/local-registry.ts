// A real registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1, with htpasswd
// (bcrypt) authentication like a private registry, and a private DOCKER_CONFIG so `docker login` never
// touches the user's credentials. dockerd treats 127.0.0.0/8 registries as insecure-allowed, so plain
// HTTP works without daemon configuration.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";

export interface LocalRegistry {
  /** host:port, the registry part of image references. */
  address: string;
  username: string;
  password: string;
  /** Environment for `docker` commands: a private DOCKER_CONFIG (logged out until `login()`). */
  env: NodeJS.ProcessEnv;
  /** Where the registry keeps blobs; its growth is what a push uploaded. */
  storageRoot: string;
  login(): void;
  logout(): void;
  /** Total bytes of blobs (layers, configs, manifests) the registry stores. */
  storedBytes(): number;
  /** A manifest as the registry serves it (authenticated HTTP API call). */
  manifest(repository: string, reference: string): Promise<{ config: { size: number; digest: string }; layers: { size: number; digest: string }[] }>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function directoryBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

function docker(args: string[], env: NodeJS.ProcessEnv, input?: string): void {
  const result = spawnSync("docker", args, { encoding: "utf8", env, input });
  if (result.status !== 0) throw new Error(`docker ${args[0]} failed: ${result.stderr.trim()}`);
}

export async function startLocalRegistry(): Promise<LocalRegistry> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-registry-"));
  const username = "kata";
  const password = `pw-${process.pid}-${Date.now()}`;
  const htpasswd = spawnSync("htpasswd", ["-Bbn", username, password], { encoding: "utf8" });
  if (htpasswd.status !== 0) throw new Error(`htpasswd failed: ${htpasswd.stderr}`);
  fs.writeFileSync(path.join(dir, "htpasswd"), htpasswd.stdout);
  const port = await freePort();
  const storageRoot = path.join(dir, "storage");
  const config = {
    version: 0.1,
    log: { level: "warn" },
    storage: { filesystem: { rootdirectory: storageRoot }, delete: { enabled: true } },
    http: { addr: `127.0.0.1:${port}` },
    auth: { htpasswd: { realm: "kata-deploy-test", path: path.join(dir, "htpasswd") } },
  };
  fs.writeFileSync(path.join(dir, "config.yml"), stringify(config));
  const logFile = fs.openSync(path.join(dir, "registry.log"), "w");
  const child: ChildProcess = spawn("docker-registry", ["serve", path.join(dir, "config.yml")], { stdio: ["ignore", logFile, logFile] });
  const address = `127.0.0.1:${port}`;
  const basic = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;

  // Ready when /v2/ answers; 401 without credentials proves the auth configuration took effect.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const response = await fetch(`http://${address}/v2/`);
      if (response.status !== 401) throw new Error(`registry on ${address} answered ${response.status} without credentials, expected 401`);
      break;
    } catch (error) {
      if (error instanceof Error && /expected 401/.test(error.message)) throw error;
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`docker-registry did not start: ${fs.readFileSync(path.join(dir, "registry.log"), "utf8")}`, { cause: error });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const dockerConfig = path.join(dir, "docker-config");
  fs.mkdirSync(dockerConfig);
  const env = { ...process.env, DOCKER_CONFIG: dockerConfig };
  return {
    address,
    username,
    password,
    env,
    storageRoot,
    login: () => docker(["login", "--username", username, "--password-stdin", address], env, password),
    logout: () => docker(["logout", address], env),
    storedBytes: () => directoryBytes(path.join(storageRoot, "docker/registry/v2/blobs")),
    async manifest(repository, reference) {
      const response = await fetch(`http://${address}/v2/${repository}/manifests/${reference}`, {
        headers: {
          authorization: basic,
          accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        },
      });
      if (!response.ok) throw new Error(`GET manifest ${repository}@${reference}: ${response.status}`);
      return (await response.json()) as Awaited<ReturnType<LocalRegistry["manifest"]>>;
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      fs.closeSync(logFile);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
