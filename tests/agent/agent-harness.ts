// Shared helpers for the node-agent tests: run the real bundle against temp host roots, a fake systemd
// boundary, tree snapshots, and an independent check that every path a runtime config names exists.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as http from "node:http";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import { parse as parseToml } from "smol-toml";
import { AGENT_BUNDLE as BUILT_BUNDLE } from "../support/build-agent";
import { makeKataArtifacts, TINY } from "../support/kata-artifacts";
import { kataReferencedFiles, kataView } from "../support/kata-config-model";

/** The bundle under test; KATA_DEPLOY_TEST_BUNDLE runs the tests against a bundle built elsewhere. */
export const AGENT_BUNDLE = process.env.KATA_DEPLOY_TEST_BUNDLE ?? BUILT_BUNDLE;

export interface AgentRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment that keeps the agent away from any real Kubernetes API or host service. */
export function isolatedEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ["DOCKER_HOST", "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "NODE_NAME", "POD_NAMESPACE", "DAEMONSET_NAME", "KATA_DEPLOY_LABEL_PREFIX", "SNAPSHOTTER_HANDLER_MAPPING", "KATA_DEPLOY_KATA_CONFIG"]) delete env[key];
  return { ...env, KATA_DEPLOY_HOST_COMMAND_PREFIX: "", ...extra };
}

/**
 * The unit tier runs the agent in worker threads that keep the bundle loaded (tests/support/agent-thread.mjs):
 * the same bundle and entry point (runCli) as its process, its own environment, argv and output. Every other
 * tier, KATA_DEPLOY_TEST_AGENT_PROCESS=1, and what only a process can do (--daemon waits for a signal; the
 * crash and stop test points signal their own process) run it as a process.
 */
const IN_THREADS = process.env.KATA_TEST_TIER === "unit" && process.env.KATA_DEPLOY_TEST_AGENT_PROCESS !== "1";
const PROCESS_ONLY_VARIABLES = ["KATA_DEPLOY_TEST_CRASH_AT", "KATA_DEPLOY_TEST_STOP_AT"];
const RUN_TIMEOUT_MS = 120_000;

function needsProcess(args: string[], env: NodeJS.ProcessEnv): boolean {
  return !IN_THREADS || args.includes("--daemon") || PROCESS_ONLY_VARIABLES.some((name) => (env[name] ?? "") !== "");
}

interface AgentThread {
  worker: Worker;
  /** Set to 1 by the thread when a synchronous run's result is on `port`. */
  flag: Int32Array;
  port: MessagePort;
  busy: boolean;
}

const threads: AgentThread[] = [];

function idleThread(): AgentThread {
  const idle = threads.find((thread) => !thread.busy);
  if (idle !== undefined) return idle;
  const signal = new SharedArrayBuffer(4);
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(path.join(__dirname, "../support/agent-thread.mjs"), {
    workerData: { bundle: AGENT_BUNDLE, signal, reply: port2 },
    transferList: [port2],
    stdout: true,
    stderr: true,
  });
  // Idle threads must not keep mocha's process alive.
  worker.unref();
  port1.unref();
  const thread: AgentThread = { worker, flag: new Int32Array(signal), port: port1, busy: false };
  worker.on("exit", () => forget(thread));
  // Reported to the run that was waiting (agent-thread.mjs ends it with the error); must not crash mocha.
  worker.on("error", () => forget(thread));
  threads.push(thread);
  return thread;
}

/** A run's result; `fatal`: the agent threw outside its run, so the thread is not used again. */
type ThreadResult = AgentRun & { fatal?: boolean };

function finished(thread: AgentThread, { fatal, ...run }: ThreadResult): AgentRun {
  thread.busy = false;
  if (fatal === true) retire(thread);
  return run;
}

function plainEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

function forget(thread: AgentThread): void {
  const index = threads.indexOf(thread);
  if (index >= 0) threads.splice(index, 1);
}

function retire(thread: AgentThread): void {
  forget(thread);
  void thread.worker.terminate();
}

/** The bundle as its own process, in every tier: for what only a process shows (its exit status, Node's start-up). */
export function runAgentProcess(args: string[], env: NodeJS.ProcessEnv = isolatedEnv(), entry = AGENT_BUNDLE): AgentRun {
  const result = spawnSync(process.execPath, [entry, ...args], { env, encoding: "utf8", timeout: RUN_TIMEOUT_MS });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Runs the agent to its end. `entry`: the script the process is started as (argv[1]); a link to the bundle
 * named kata-deploy-docker runs the Docker quick start, as in the image.
 */
export function runAgent(args: string[], env: NodeJS.ProcessEnv = isolatedEnv(), entry = AGENT_BUNDLE): AgentRun {
  if (needsProcess(args, env)) return runAgentProcess(args, env, entry);
  const thread = idleThread();
  thread.busy = true;
  Atomics.store(thread.flag, 0, 0);
  thread.worker.postMessage({ args, env: plainEnv(env), entry, sync: true });
  const outcome = Atomics.wait(thread.flag, 0, 0, RUN_TIMEOUT_MS);
  const reply = receiveMessageOnPort(thread.port);
  if (outcome === "timed-out" || reply === undefined) {
    retire(thread);
    return { code: null, stdout: "", stderr: `agent thread: no result within ${RUN_TIMEOUT_MS} ms` };
  }
  return finished(thread, reply.message as ThreadResult);
}

export function runAgentAsync(args: string[], env: NodeJS.ProcessEnv = isolatedEnv()): Promise<AgentRun> {
  if (!needsProcess(args, env)) {
    const thread = idleThread();
    thread.busy = true;
    return new Promise((resolve) => {
      const onExit = (code: number): void => resolve({ code: null, stdout: "", stderr: `agent thread exited (${code})` });
      thread.worker.once("exit", onExit);
      thread.worker.once("message", (result: ThreadResult) => {
        thread.worker.off("exit", onExit);
        resolve(finished(thread, result));
      });
      thread.worker.postMessage({ args, env: plainEnv(env), sync: false });
    });
  }
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGENT_BUNDLE, ...args], { env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

export function spawnAgent(args: string[], env: NodeJS.ProcessEnv = isolatedEnv()): ChildProcess {
  return spawn(process.execPath, [AGENT_BUNDLE, ...args], { env, stdio: "ignore" });
}

const tempDirs: string[] = [];
export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kata-agent-${label}-`));
  tempDirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

let tinyArtifacts: string | undefined;
/** One TINY release tree per test run (read-only for tests). */
export function artifacts(): string {
  if (tinyArtifacts === undefined || !fs.existsSync(tinyArtifacts)) tinyArtifacts = makeKataArtifacts(fs.mkdtempSync(path.join(os.tmpdir(), "kata-agent-art-")), TINY);
  return tinyArtifacts;
}

/** Creates a host root with the given files (host path → content). */
export function makeHost(files: Record<string, string> = {}): string {
  const root = tempDir("host");
  for (const [hostPath, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, hostPath)), { recursive: true });
    fs.writeFileSync(path.join(root, hostPath), content);
  }
  return root;
}

export interface Entry {
  type: "file" | "dir" | "symlink";
  mode: number;
  /** sha256 of a file, or a link's target. */
  content?: string;
}

/** Every entry under `dir` (relative path → type, mode, content hash): compares trees byte for byte. */
export function snapshot(dir: string, skip: (rel: string) => boolean = () => false): Record<string, Entry> {
  const entries: Record<string, Entry> = {};
  const visit = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      if (skip(childRel)) continue;
      const abs = path.join(dir, childRel);
      const stats = fs.lstatSync(abs);
      const mode = stats.mode & 0o7777;
      if (stats.isSymbolicLink()) entries[childRel] = { type: "symlink", mode: 0, content: fs.readlinkSync(abs) };
      else if (stats.isDirectory()) {
        entries[childRel] = { type: "dir", mode };
        visit(childRel);
      } else entries[childRel] = { type: "file", mode, content: createHash("sha256").update(fs.readFileSync(abs)).digest("hex") };
    }
  };
  visit("");
  return entries;
}

export interface FakeSystemd {
  env: Record<string, string>;
  /** Every systemctl invocation, one argv string each. */
  calls(): string[];
}

/**
 * A fake `systemctl` (the only replaced piece: the agent's systemd boundary). Units are active; when
 * `failWhen` is given, `restart`/`reload` fails and the unit turns `failed` whenever that host file
 * contains the needle (a runtime that cannot start with the new config), and recovers otherwise.
 */
export function fakeSystemd(hostRoot: string, failWhen?: { hostPath: string; needle: string }): FakeSystemd {
  const dir = tempDir("systemd");
  const log = path.join(dir, "calls.log");
  const failedFlag = path.join(dir, "failed");
  const script = path.join(dir, "systemctl");
  const check = failWhen
    ? `if grep -q -- '${failWhen.needle}' '${path.join(hostRoot, failWhen.hostPath)}' 2>/dev/null; then touch '${failedFlag}'; echo "Job for $2.service failed because the control process exited with error code." >&2; exit 1; else rm -f '${failedFlag}'; fi`
    : ":";
  fs.writeFileSync(
    script,
    `#!/bin/sh
echo "$*" >> '${log}'
case "$1" in
  is-active) if [ -e '${failedFlag}' ]; then echo failed; exit 3; fi; echo active ;;
  show) echo loaded ;;
  restart|reload) ${check} ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  return {
    env: {
      KATA_DEPLOY_SYSTEMCTL: script,
      // No real runtime answers in these tests: the binaries are "not reachable" and their checks skipped.
      KATA_DEPLOY_CONTAINERD: path.join(dir, "no-containerd"),
      KATA_DEPLOY_CTR: path.join(dir, "no-ctr"),
      KATA_DEPLOY_DOCKER: path.join(dir, "no-docker"),
      KATA_DEPLOY_DOCKERD: path.join(dir, "no-dockerd"),
      KATA_DEPLOY_CRIO: path.join(dir, "no-crio"),
      KATA_DEPLOY_VERIFY_TIMEOUT_SECONDS: "2",
    },
    calls: () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").filter((line) => line !== "") : []),
  };
}

export interface FakeContainerdNode {
  env: Record<string, string>;
  /** Every systemctl invocation, one argv string each. */
  systemctl(): string[];
  /** Every ctr invocation, one argv string each. */
  ctr(): string[];
}

/**
 * A node's host commands for containerd (the agent's systemd and ctr boundary): a `systemctl` where only
 * `activeUnits` exist and are active, `onRestart` (shell, `$unit` set) run by `restart`; a `ctr` that answers
 * `plugins ls` with the CRI plugin ok (containerd cmd/ctr plugins.go format) at `socket` (its default
 * /run/containerd/containerd.sock when not given with --address/-a), and fails to dial any other; with no
 * `socket`, it answers at every address.
 */
export function fakeContainerdNode(options: { activeUnits: string[]; socket?: string; onRestart?: string; verifyTimeoutSeconds?: number }): FakeContainerdNode {
  const dir = tempDir("node");
  const systemctlLog = path.join(dir, "systemctl.log");
  const ctrLog = path.join(dir, "ctr.log");
  const active = options.activeUnits.length === 0 ? "''" : options.activeUnits.map((unit) => `'${unit}'`).join("|");
  fs.writeFileSync(
    path.join(dir, "systemctl"),
    `#!/bin/sh
echo "$*" >> '${systemctlLog}'
unit=""; for arg in "$@"; do unit="$arg"; done
case "$1" in
  is-active) case "$unit" in ${active}) echo active; exit 0 ;; *) echo inactive; exit 3 ;; esac ;;
  show) case "$unit" in ${active}) echo loaded ;; *) echo not-found ;; esac ;;
  restart) ${options.onRestart ?? ":"} ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  const dialCheck =
    options.socket === undefined
      ? ""
      : `if [ "$address" != '${options.socket}' ]; then echo "ctr: failed to dial \\"$address\\": connection error: desc = \\"transport: error while dialing: dial unix $address: connect: no such file or directory\\"" >&2; exit 1; fi
`;
  fs.writeFileSync(
    path.join(dir, "ctr"),
    `#!/bin/sh
echo "$*" >> '${ctrLog}'
address=/run/containerd/containerd.sock
if [ "$1" = "--address" ] || [ "$1" = "-a" ]; then address="$2"; shift 2; fi
${dialCheck}printf 'TYPE                            ID       PLATFORMS      STATUS    \\n'
printf 'io.containerd.grpc.v1           cri      linux/amd64    ok        \\n'
`,
    { mode: 0o755 },
  );
  const lines = (file: string): string[] => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : []);
  return {
    env: {
      KATA_DEPLOY_SYSTEMCTL: path.join(dir, "systemctl"),
      KATA_DEPLOY_CTR: path.join(dir, "ctr"),
      KATA_DEPLOY_CONTAINERD: path.join(dir, "no-containerd"),
      KATA_DEPLOY_VERIFY_TIMEOUT_SECONDS: String(options.verifyTimeoutSeconds ?? 2),
    },
    systemctl: () => lines(systemctlLog),
    ctr: () => lines(ctrLog),
  };
}

/**
 * Host paths a config points at (runtime binaries, Kata configs, imports), read independently of the agent;
 * for a Kata configuration, also the files Kata opens as it reads it with its drop-ins (kernel, image,
 * hypervisor, ...: tests/support/kata-config-model.ts).
 */
export function referencedPaths(hostRoot: string, hostConfig: string, seen = new Set<string>()): string[] {
  const found = configReferences(hostRoot, hostConfig, seen);
  const kataConfigs = found.filter((hostPath) => /\/share\/defaults\/kata-containers\/.*\.toml$/.test(hostPath) && fs.existsSync(path.join(hostRoot, hostPath)));
  return [...found, ...kataConfigs.flatMap((hostPath) => kataReferencedFiles(kataView(hostRoot, hostPath)))];
}

function configReferences(hostRoot: string, hostConfig: string, seen: Set<string>): string[] {
  const local = path.join(hostRoot, hostConfig);
  if (seen.has(hostConfig) || !fs.existsSync(local)) return [];
  seen.add(hostConfig);
  const text = fs.readFileSync(local, "utf8");
  const found: string[] = [];
  const collect = (value: unknown, key = ""): void => {
    if (Array.isArray(value)) value.forEach((item) => collect(item, key));
    else if (typeof value === "object" && value !== null) for (const [k, v] of Object.entries(value)) collect(v, k);
    else if (typeof value === "string" && ["runtime_path", "ConfigPath", "runtime_config_path", "runtimeType", "path"].includes(key) && value.startsWith("/")) found.push(value);
    else if (typeof value === "string" && key === "runtimeArgs" && value.startsWith("/")) found.push(value);
  };
  if (hostConfig.endsWith(".json")) {
    collect(JSON.parse(text));
    return found;
  }
  const doc = parseToml(text.replace(/^\{\{ template "base" \. \}\}\s*$/m, "")) as Record<string, unknown>;
  collect(doc);
  for (const entry of (doc.imports as string[] | undefined) ?? []) {
    const target = path.posix.isAbsolute(entry) ? entry : path.posix.join(path.posix.dirname(hostConfig), entry);
    if (target.includes("*")) continue;
    found.push(target);
    found.push(...configReferences(hostRoot, target, seen));
  }
  return found;
}

/** Parses every config (throws on a torn file) and returns the referenced host paths that do not exist. */
export function missingReferences(hostRoot: string, hostConfigs: string[]): string[] {
  return hostConfigs.flatMap((config) => referencedPaths(hostRoot, config)).filter((hostPath) => !fs.existsSync(path.join(hostRoot, hostPath)));
}

/** A small deterministic RNG (mulberry32) so fault tests are reproducible from their seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FakeDockerEngine {
  /** "GET /version", "GET /info", ... in order. */
  requests: string[];
  /** The runtimes the fake daemon has loaded now. */
  loadedRuntimes(): string[];
  close(): Promise<void>;
}

/**
 * A Docker Engine API stand-in on `<hostRoot>/var/run/docker.sock` (where the agent looks for the
 * host's socket). GET /version answers `version`; GET /info lists the loaded runtimes: runc plus the
 * runtimes daemon.json had at start. With `reloads`, every request first "reloads" daemon.json (a daemon
 * that picked up `systemctl reload`), else never (one that ignored it). `keepsRuntimesWithoutKey`: like
 * dockerd, a reload of a file without a `runtimes` key (or no file) keeps the runtimes loaded before.
 */
export async function fakeDockerEngine(hostRoot: string, options: { version: string; reloads: boolean; keepsRuntimesWithoutKey?: boolean }): Promise<FakeDockerEngine> {
  const socketPath = path.join(hostRoot, "var/run/docker.sock");
  fs.mkdirSync(path.dirname(socketPath), { recursive: true });
  const daemonJson = path.join(hostRoot, "etc/docker/daemon.json");
  const configured = (): string[] | undefined => {
    if (!fs.existsSync(daemonJson)) return undefined;
    const runtimes = (JSON.parse(fs.readFileSync(daemonJson, "utf8")) as { runtimes?: object }).runtimes;
    return runtimes === undefined ? undefined : Object.keys(runtimes);
  };
  let loaded = configured() ?? [];
  const reload = (): void => {
    const now = configured();
    if (now !== undefined || !options.keepsRuntimesWithoutKey) loaded = now ?? [];
  };
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    if (options.reloads) reload();
    const reply = (status: number, body: unknown): void => {
      response.writeHead(status, { "Content-Type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.method === "GET" && request.url === "/version") return reply(200, { Version: options.version, ApiVersion: "1.41" });
    if (request.method === "GET" && request.url === "/info") {
      const names = ["io.containerd.runc.v2", "runc", ...loaded];
      return reply(200, { Runtimes: Object.fromEntries(names.map((name) => [name, { path: name }])) });
    }
    reply(404, { message: "page not found" });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    requests,
    loadedRuntimes: () => [...loaded],
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        fs.rmSync(socketPath, { force: true });
      }),
  };
}
