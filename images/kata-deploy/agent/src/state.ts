// The agent's record of what it did to this host, under `<prefix>/.kata-deploy/state.json`.
// It is what makes removal exact (original bytes, what we last wrote, what the planners own) and what
// makes every interruption resumable: a config change is journalled here as a transaction BEFORE any
// config file is touched, and rolled forward by the next run if we were killed in the middle.
import * as fs from "node:fs";
import * as path from "node:path";
import { UserError, errnoCode } from "./errors";
import { atomicWrite, type HostRoot } from "./hostfs";

export const RUNTIMES = ["containerd", "crio", "docker"] as const;
export type Runtime = (typeof RUNTIMES)[number];

export const STATE_DIR_NAME = ".kata-deploy";
const STATE_FILE_NAME = "state.json";
const SCHEMA = 1;

/** An artifact file we installed, with what the quick check compares on the next install. */
export interface InstalledFile {
  size: number;
  mtimeMs: number;
  mode: number;
  ino: number;
  ctimeMs: number;
  /** The source file this copy was made from (size and mtime), so a changed source is re-copied. */
  sourceSize: number;
  sourceMtimeMs: number;
}

export interface ArtifactsState {
  /** Relative to the prefix. `null`: being (re)written by an interrupted run; re-copy it. */
  files: Record<string, InstalledFile | null>;
  /** Relative path → link target. */
  symlinks: Record<string, string>;
  /** Directories under the prefix that we created (relative). */
  dirs: string[];
}

/** One config file a runtime install changed. */
export interface ConfigFileRecord {
  /** The file as it was without us, base64; null: the file did not exist (we created it). */
  original: string | null;
  /** sha256 of the bytes we last wrote; when the file still has them, removal restores `original` exactly. */
  written: string;
}

export type RuntimeStatus = "configured" | "installed";

export interface RuntimeRecord {
  /** configured: config written, runtime not yet verified with it; installed: complete. */
  status: RuntimeStatus;
  /** The runtime has been restarted/reloaded (and verified) with the current config. */
  reloaded: boolean;
  /** Keyed by the real (symlink-resolved) host path. */
  files: Record<string, ConfigFileRecord>;
  /** Config directories we created (host paths, outermost first), removed on uninstall when empty. */
  createdDirs: string[];
  /** The planner's record of what it added (ContainerdOwned, CrioOwned, DockerOwned). */
  owned: unknown;
  /** How it was installed, for status and for the next run. */
  details: Record<string, string | string[] | number | undefined>;
}

/** A config write journalled before it happens. */
export interface PendingWrite {
  hostPath: string;
  beforeSha: string | null;
  /** base64 of the new bytes; null: delete the file. */
  after: string | null;
  afterSha: string | null;
  /** Preserve this mode/owner when the file is (re)created. */
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface Transaction {
  runtime: Runtime;
  writes: PendingWrite[];
  /** The runtime's record once all writes are done; null: the runtime is no longer configured. */
  recordAfter: RuntimeRecord | null;
  /** Config directories we created that are removed (when empty) after the writes, before the commit. */
  removeDirs?: string[];
}

export interface AgentState {
  schema: typeof SCHEMA;
  prefix: string;
  /** Host paths of directories (the prefix and its parents) we created, outermost first. */
  createdDirs: string[];
  artifacts: ArtifactsState;
  runtimes: Partial<Record<Runtime, RuntimeRecord>>;
  pending?: Transaction;
}

export function emptyState(prefix: string): AgentState {
  return { schema: SCHEMA, prefix, createdDirs: [], artifacts: { files: {}, symlinks: {}, dirs: [] }, runtimes: {} };
}

export function stateDirHostPath(prefix: string): string {
  return path.posix.join(prefix, STATE_DIR_NAME);
}

export function stateFileHostPath(prefix: string): string {
  return path.posix.join(prefix, STATE_DIR_NAME, STATE_FILE_NAME);
}

/** Reads the state; undefined when nothing was ever installed under this prefix. */
export function loadState(root: HostRoot, prefix: string): AgentState | undefined {
  const file = stateFileHostPath(prefix);
  let text: string;
  try {
    text = fs.readFileSync(root.local(file), "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UserError(`${file}: not valid JSON (${(error as Error).message}); it is written atomically by kata-deploy, so it was edited by hand: restore it or remove it and clean up ${prefix} manually`);
  }
  if (typeof parsed !== "object" || parsed === null || (parsed as { schema?: unknown }).schema !== SCHEMA) {
    throw new UserError(`${file}: unknown state schema (expected ${SCHEMA}); it was written by another kata-deploy version: uninstall with that version first`);
  }
  return parsed as AgentState;
}

/**
 * Writes the state atomically. `durable` (fsync) is needed only for a journal entry that must reach
 * the disk before the change it describes (a config transaction); other saves record work that a
 * re-run would simply redo, and are made durable by the next fsync or syncfs.
 */
export async function saveState(root: HostRoot, state: AgentState, durable = true): Promise<void> {
  const dir = root.local(stateDirHostPath(state.prefix));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await atomicWrite(root.local(stateFileHostPath(state.prefix)), `${JSON.stringify(state)}\n`, { mode: 0o600, durable });
}
