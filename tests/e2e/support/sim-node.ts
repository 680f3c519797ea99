// A simulated node: a systemd container (tests/support/images.ts) whose hostPath directories are outer-host
// directories bind-mounted at the same paths, so the node's services and the harness's pods see the same
// files, and the harness can read them directly. Also the node-side observations the e2e steps assert on:
// unit start counts from the journal, containerd's merged config and plugin status.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as TOML from "smol-toml";
import { startNode, type RunningNode, type Suite } from "../../support/images";
import { ensureNodeImage } from "../../support/images";

// systemd's catalog message ids (stable since systemd 2xx): "Starting <unit>..." is logged for every start
// attempt, including failed ones and the start half of a restart.
const UNIT_STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5";

export interface SimNode {
  name: string;
  suite: Suite;
  running: RunningNode;
  /** Outer-host directory behind a node path that was shared at start (or lies under one that was). */
  hostDir(nodePath: string): string;
  exec(args: string[], input?: string): SpawnSyncReturns<string>;
  /** exec that throws with stderr on a non-zero exit. */
  sh(script: string): string;
  /** How many times systemd has tried to start `unit` since the node booted. */
  startAttempts(unit: string): number;
  remove(): void;
}

/** Copies what the node image has at `nodePath` into `dest` (so a shared path starts as the distro made it). */
function seedFromImage(image: string, nodePath: string, dest: string): void {
  fs.mkdirSync(dest, { recursive: true });
  const created = spawnSync("docker", ["create", image], { encoding: "utf8" });
  if (created.status !== 0) throw new Error(`docker create ${image}: ${created.stderr}`);
  const id = created.stdout.trim();
  try {
    // As a tar stream, extracted by tar: `docker cp` into a directory refuses relative symlinks that lead out of
    // the copied directory (the installers share whole /etc and /var, where /etc/os-release -> ../usr/lib/os-release).
    const exists = spawnSync("sh", ["-c", `docker cp '${id}:${nodePath}/.' - | tar -x -C '${dest}' --strip-components=1`], { encoding: "utf8", maxBuffer: 64 << 20 });
    // A path the image does not have starts empty (hostPath DirectoryOrCreate would create it).
    if (exists.status !== 0 && !/Could not find the file|No such container:path/.test(exists.stderr)) {
      throw new Error(`docker cp ${image}:${nodePath}: ${exists.stderr}`);
    }
  } finally {
    spawnSync("docker", ["rm", "-f", id], { stdio: "ignore" });
  }
}

/**
 * Starts a node of `suite` sharing `sharedPaths` (each bound from `<workDir>/<name>/host<path>`, seeded with the
 * image's own content at that path). `extraBinds` (docker -v values) and `extraArgs` are test-host infrastructure only.
 */
export async function startSimNode(
  suite: Suite,
  options: { name: string; workDir: string; sharedPaths: string[]; extraBinds?: string[]; extraArgs?: string[] },
): Promise<SimNode> {
  const image = await ensureNodeImage(suite);
  const root = path.join(options.workDir, options.name);
  fs.rmSync(root, { recursive: true, force: true });
  const dirs = new Map<string, string>();
  for (const nodePath of options.sharedPaths) {
    const dir = path.join(root, "host", nodePath);
    seedFromImage(image, nodePath, dir);
    dirs.set(nodePath, dir);
  }
  const running = await startNode(suite, {
    name: options.name,
    binds: [...[...dirs].map(([nodePath, dir]) => `${dir}:${nodePath}`), ...(options.extraBinds ?? [])],
    extraArgs: options.extraArgs,
  });
  const node: SimNode = {
    name: options.name,
    suite,
    running,
    hostDir(nodePath) {
      // A path under a shared directory (the containerd installer shares all of /etc and /var) is inside its copy.
      const parent = [...dirs.keys()].filter((shared) => nodePath === shared || nodePath.startsWith(`${shared}/`)).sort((a, b) => b.length - a.length)[0];
      const dir = parent === undefined ? undefined : path.join(dirs.get(parent) as string, nodePath.slice(parent.length));
      if (!dir) throw new Error(`node ${options.name} does not share ${nodePath} (shared: ${[...dirs.keys()].join(", ")})`);
      return dir;
    },
    exec: (args, input) => running.exec(args, input),
    sh(script) {
      const result = running.exec(["sh", "-c", script]);
      if (result.status !== 0) throw new Error(`[${options.name}] ${script} exited ${result.status}:\n${result.stdout}${result.stderr}`);
      return result.stdout;
    },
    startAttempts(unit) {
      const result = running.exec(["journalctl", "--no-pager", "-o", "cat", `UNIT=${unit}.service`, `MESSAGE_ID=${UNIT_STARTING}`]);
      if (result.status !== 0) throw new Error(`journalctl in ${options.name}: ${result.stderr}`);
      return result.stdout.split("\n").filter((line) => line.trim() !== "").length;
    },
    remove() {
      running.remove();
    },
  };
  return node;
}

/** containerd's merged configuration as the daemon would load it (`containerd config dump`), parsed. */
export function containerdConfigDump(node: SimNode): Record<string, unknown> {
  return TOML.parse(node.sh("containerd config dump")) as Record<string, unknown>;
}

/** The CRI runtime handlers configured in a dumped config (v2 `io.containerd.grpc.v1.cri` or v3 `io.containerd.cri.v1.runtime`). */
export function criRuntimes(dump: Record<string, unknown>): Record<string, Record<string, unknown>> {
  const plugins = (dump.plugins ?? {}) as Record<string, { containerd?: { runtimes?: Record<string, Record<string, unknown>> } }>;
  const runtimes = plugins["io.containerd.cri.v1.runtime"]?.containerd?.runtimes ?? plugins["io.containerd.grpc.v1.cri"]?.containerd?.runtimes;
  if (!runtimes) throw new Error("containerd config dump has no CRI runtimes table");
  return runtimes;
}

/** Status of containerd's CRI plugin (`ok`, `error`, `skip`), from `ctr plugins ls`. */
export function criPluginStatus(node: SimNode): string {
  const lines = node.sh("ctr plugins ls").split("\n");
  // The CRI gRPC service is the `cri` plugin of type io.containerd.grpc.v1 on every containerd since 1.5.
  const row = lines.map((line) => line.trim().split(/\s+/)).find((cols) => cols[0] === "io.containerd.grpc.v1" && cols[1] === "cri");
  if (!row) throw new Error(`ctr plugins ls in ${node.name} lists no io.containerd.grpc.v1 cri plugin:\n${lines.join("\n")}`);
  return row[row.length - 1];
}

export interface TreeEntry {
  type: "file" | "dir" | "symlink";
  mode: number;
  /** File content (base64) or link target. */
  content?: string;
}

/** Every entry under `dir` with type, permission bits and content: equal snapshots = byte-for-byte equal trees. */
export function snapshotTree(dir: string): Record<string, TreeEntry> {
  const out: Record<string, TreeEntry> = {};
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const relPath = path.join(rel, name);
      const full = path.join(dir, relPath);
      const stat = fs.lstatSync(full);
      const mode = stat.mode & 0o7777;
      if (stat.isSymbolicLink()) out[relPath] = { type: "symlink", mode, content: fs.readlinkSync(full) };
      else if (stat.isDirectory()) {
        out[relPath] = { type: "dir", mode };
        walk(relPath);
      } else out[relPath] = { type: "file", mode, content: fs.readFileSync(full).toString("base64") };
    }
  };
  walk("");
  return out;
}
