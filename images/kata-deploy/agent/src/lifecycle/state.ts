// The agent's record of what it did to this host, under `<prefix>/.kata-deploy/state.json`.
// It is what makes removal exact (original bytes, what we last wrote, what the planners own) and what
// makes every interruption resumable: a config change is journalled here as a transaction BEFORE any
// config file is touched, and rolled forward by the next run if we were killed in the middle.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { UserError, errnoCode } from "../report/errors";
import { atomicWrite, fsyncDir, isMountPoint, removeDirIfEmpty, removeFile, removeTree, tempPathFor, testPoint, type HostRoot } from "../host/files";
import * as log from "../report/log";

export { RUNTIMES, type Runtime } from "../runtimes/types";
import type { Runtime } from "../runtimes/types";
import type { KataConfigOwned } from "./kata-config";

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
  /**
   * Kata's own configuration files written for this runtime's handlers (lifecycle/kata-config.ts); each is
   * also in `files`. Absent in records of agents that wrote none (they pointed at the release's files).
   */
  kata?: KataConfigOwned;
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
  /**
   * Host paths of directories (the prefix and its parents) we created, outermost first. They appear
   * on the host together with this record and vanish together with it (see createPrefix and
   * removeStateAndPrefix), so a kill at any instant never leaves one we would forget we made.
   */
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

/**
 * The prefix as the host kernel resolves it inside the host root (a symlinked `/opt` or `/opt/kata`,
 * absolute links re-rooted, `..` clamped at the root): every file the agent writes for this prefix
 * (release, state, temp files) is under it. Refused when it is the root itself or leads out of it.
 */
export function resolvePrefix(root: HostRoot, prefix: string): string {
  const { hostPath } = root.inside(prefix, `--prefix ${prefix}`);
  if (hostPath === "/") throw new UserError(`--prefix ${prefix}: resolves to / on the host (through a symlink); point it at a directory of its own`);
  return hostPath;
}

/**
 * The JSON each state object was read from or last saved as (without the final newline), so a caller
 * can tell whether it changed without serializing it twice (savedText).
 */
const texts = new WeakMap<AgentState, string>();

/** The JSON the state was loaded from or last saved as; undefined when it was neither. */
export function savedText(state: AgentState): string | undefined {
  return texts.get(state);
}

/**
 * The last state read, with the identity of its file then. An install reads the state twice: for its
 * dry run, then under the lock. When the file is still the same (same inode, size, mtime and ctime:
 * every save renames a new file into place), the second read hands out the object the first one
 * parsed instead of parsing hundreds of kilobytes again; once, so no third holder shares it. The dry
 * run only reads its copy.
 */
let lastRead: { local: string; identity: string; state: AgentState } | undefined;

function fileIdentity(stats: fs.BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

/** Reads the state; undefined when nothing was ever installed under this prefix (resolved as the host does). */
export function loadState(root: HostRoot, givenPrefix: string): AgentState | undefined {
  const prefix = resolvePrefix(root, givenPrefix);
  const file = stateFileHostPath(prefix);
  const local = root.local(file);
  let text: string;
  let identity: string;
  let fd: number;
  try {
    fd = fs.openSync(local, "r");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
  try {
    identity = fileIdentity(fs.fstatSync(fd, { bigint: true }));
    if (lastRead !== undefined && lastRead.local === local && lastRead.identity === identity) {
      const { state } = lastRead;
      lastRead = undefined;
      return state;
    }
    text = fs.readFileSync(fd, "utf8");
  } finally {
    fs.closeSync(fd);
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
  const state = parsed as AgentState;
  texts.set(state, text.endsWith("\n") ? text.slice(0, -1) : text);
  lastRead = { local, identity, state };
  return state;
}

/**
 * Writes the state atomically. `durable` (fsync) is needed only for a journal entry that must reach
 * the disk before the change it describes (a config transaction); other saves record work that a
 * re-run would simply redo, and are made durable by the next fsync or syncfs.
 */
export async function saveState(root: HostRoot, state: AgentState, durable = true): Promise<void> {
  const dir = root.local(stateDirHostPath(state.prefix));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const text = JSON.stringify(state);
  await atomicWrite(root.local(stateFileHostPath(state.prefix)), `${text}\n`, { mode: 0o600, durable });
  texts.set(state, text);
}

// Creating and removing the prefix together with its record.
//
// The record lives inside the prefix, so a directory we create must never exist on the host without
// the record naming it: a kill in between would leave a directory that no later run knows is ours
// (and an uninstall would then leave an empty /opt/kata or /opt behind). Both directions therefore go
// through one rename(2) of a tree under a reserved name next to it:
// - create: the missing directories, `.kata-deploy/` and state.json are built under
//   `<parent>/.kata-deploy-creating-<name>-<random>` and renamed to `<parent>/<name>` in one step;
// - remove: once the prefix holds nothing but the record, the outermost directory we created is
//   renamed to `<parent>/.kata-deploy-removing-<name>-<random>`, and that tree deleted.
// Either the host has the directories and the record, or neither; a leftover reserved tree is garbage
// by construction (nobody else knows its name) and is deleted by the next install or uninstall.

const CREATING_PREFIX = ".kata-deploy-creating-";
const REMOVING_PREFIX = ".kata-deploy-removing-";
/** rename(2) refusals that mean "cannot move this directory", not a bug: fall back to removing in place. */
const RENAME_REFUSALS = new Set(["EBUSY", "EXDEV", "EPERM", "EACCES", "EROFS", "EINVAL"]);
/** Another agent's sweep can delete our staging tree before we rename it; we simply build it again. */
const CREATE_ATTEMPTS = 5;

function reservedSibling(localDir: string, reservedPrefix: string): string {
  return path.join(path.dirname(localDir), `${reservedPrefix}${path.basename(localDir)}-${randomBytes(6).toString("hex")}`);
}

/** The prefix's ancestors, innermost first, ending with `/`. */
function ancestorsOf(prefix: string): string[] {
  const ancestors: string[] = [];
  for (let dir = path.posix.dirname(prefix); ; dir = path.posix.dirname(dir)) {
    ancestors.push(dir);
    if (dir === "/") return ancestors;
  }
}

/** The directories of `prefix` that do not exist yet (host paths, outermost first). */
function missingChain(root: HostRoot, prefix: string): string[] {
  const missing: string[] = [];
  for (let dir = prefix; dir !== "/"; dir = path.posix.dirname(dir)) {
    const stats = fs.statSync(root.local(dir), { throwIfNoEntry: false });
    if (stats === undefined) {
      missing.unshift(dir);
      continue;
    }
    if (!stats.isDirectory()) throw new UserError(`${dir}: exists and is not a directory; remove it or choose another --prefix`);
    break;
  }
  return missing;
}

/**
 * Existing ancestors of `prefix` that another kata-deploy prefix created and records (a sibling such
 * as `/opt/kata` next to our `/opt/kata2`, both under an `/opt` the first one made): this prefix
 * records them too, so whichever install is removed last removes them once empty. Looks for records
 * at most three levels below each such ancestor, never through a symlink.
 */
function sharedCreatedAncestors(root: HostRoot, prefix: string, missing: string[]): string[] {
  const shared: string[] = [];
  const existingAncestors = ancestorsOf(prefix).filter((dir) => dir !== "/" && !missing.includes(dir));
  for (const ancestor of existingAncestors) {
    const found = findStates(root, ancestor, 3).some((other) => other.prefix !== prefix && other.createdDirs.includes(ancestor));
    if (found) shared.push(ancestor);
  }
  return shared.reverse(); // outermost first, like createdDirs
}

function findStates(root: HostRoot, hostDir: string, depth: number): AgentState[] {
  const states: AgentState[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root.local(hostDir), { withFileTypes: true });
  } catch {
    return states;
  }
  for (const entry of entries) {
    if (!entry.isDirectory() || entry.name.startsWith(CREATING_PREFIX) || entry.name.startsWith(REMOVING_PREFIX)) continue;
    const child = path.posix.join(hostDir, entry.name);
    if (entry.name === STATE_DIR_NAME) {
      try {
        const parsed = JSON.parse(fs.readFileSync(root.local(path.posix.join(child, STATE_FILE_NAME)), "utf8")) as AgentState;
        if (parsed.schema === SCHEMA && Array.isArray(parsed.createdDirs)) states.push(parsed);
      } catch {
        // not a record we can read: not ours to share
      }
    } else if (depth > 0) states.push(...findStates(root, child, depth - 1));
  }
  return states;
}

/**
 * Creates the prefix (and its missing parents) with a state file recording them, atomically (see
 * above). Returns the host paths it created; [] when the prefix already existed (or another agent
 * created it first, in which case that agent's record names its directories).
 */
export async function createPrefix(root: HostRoot, prefix: string): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    const missing = missingChain(root, prefix);
    if (missing.length === 0) return [];
    const outermost = root.local(missing[0]);
    const staging = reservedSibling(outermost, CREATING_PREFIX);
    try {
      fs.mkdirSync(staging, { mode: 0o755 });
      for (const dir of missing.slice(1)) fs.mkdirSync(path.join(staging, path.posix.relative(missing[0], dir)), { mode: 0o755 });
      const stagedPrefix = path.join(staging, path.posix.relative(missing[0], prefix));
      fs.mkdirSync(path.join(stagedPrefix, STATE_DIR_NAME), { mode: 0o700 });
      const state = emptyState(prefix);
      state.createdDirs = [...sharedCreatedAncestors(root, prefix, missing), ...missing];
      await atomicWrite(path.join(stagedPrefix, STATE_DIR_NAME, STATE_FILE_NAME), `${JSON.stringify(state)}\n`, { mode: 0o600 });
      testPoint("install:prefix-staged");
      // Replaces only an empty directory someone made since missingChain (no renameat2(RENAME_NOREPLACE)
      // in Node): that directory then becomes ours, recorded, and is removed with the rest on uninstall.
      fs.renameSync(staging, outermost);
      await fsyncDir(path.dirname(outermost));
      return missing;
    } catch (error) {
      removeTree(staging);
      const code = errnoCode(error);
      // ENOTEMPTY/EEXIST: another agent created the prefix first (its record is in it); ENOENT: our
      // staging tree was swept by another agent starting up. Both: look again.
      if ((code === "ENOTEMPTY" || code === "EEXIST" || code === "ENOENT") && attempt < CREATE_ATTEMPTS) continue;
      throw error;
    }
  }
}

/**
 * Deletes what a killed create or removal left next to the prefix's chain: reserved trees in the
 * prefix's ancestors. Called under the host lock, so no such tree is still being built; deleting
 * it twice at once is harmless (removeTree tolerates entries vanishing).
 */
export async function sweepLeftovers(root: HostRoot, prefix: string): Promise<void> {
  for (const dir of ancestorsOf(prefix)) {
    const local = root.local(dir);
    let names: string[];
    try {
      names = fs.readdirSync(local);
    } catch (error) {
      if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") continue;
      throw error;
    }
    const leftovers = names.filter((name) => name.startsWith(CREATING_PREFIX) || name.startsWith(REMOVING_PREFIX));
    for (const name of leftovers) {
      const stats = fs.lstatSync(path.join(local, name), { throwIfNoEntry: false });
      if (stats === undefined || !stats.isDirectory()) continue; // only ever a directory of ours
      log.info(`removing ${path.posix.join(dir, name)}, left by an interrupted kata-deploy`);
      removeTree(path.join(local, name));
    }
    if (leftovers.length > 0) await fsyncDir(local);
  }
}

/**
 * Removes a state directory without a state file: what a kill between the last two steps of an
 * in-place removal (below) leaves. Call under the host lock (an install may be about to save there).
 */
export async function removeStateDirLeftover(root: HostRoot, prefix: string): Promise<void> {
  const stateDir = root.local(stateDirHostPath(prefix));
  await fs.promises.rm(tempPathFor(root.local(stateFileHostPath(prefix))), { force: true });
  await removeDirIfEmpty(stateDir);
}

/** Whether the prefix holds nothing but our record (state.json, maybe its temp file from a killed save). */
function holdsOnlyState(root: HostRoot, prefix: string): boolean {
  const names = fs.readdirSync(root.local(prefix));
  if (names.length !== 1 || names[0] !== STATE_DIR_NAME) return false;
  const stateDir = root.local(stateDirHostPath(prefix));
  if (!fs.lstatSync(stateDir).isDirectory()) return false;
  const ours = new Set([STATE_FILE_NAME, path.basename(tempPathFor(root.local(stateFileHostPath(prefix))))]);
  return fs.readdirSync(stateDir).every((name) => ours.has(name));
}

/**
 * The outermost directory we created that can go in one rename together with the record: the prefix
 * itself when it holds only the record, then each created parent whose only entry is the directory
 * below it. Never a mount point (it cannot be renamed, and one below a renamed parent would move with
 * it), never a directory we did not create. undefined: the prefix stays (removed in place).
 */
function outermostRemovable(root: HostRoot, state: AgentState): string | undefined {
  const created = new Set(state.createdDirs);
  const { prefix } = state;
  if (!created.has(prefix) || !holdsOnlyState(root, prefix) || isMountPoint(root.local(prefix))) return undefined;
  let top = prefix;
  for (let parent = path.posix.dirname(top); parent !== "/" && created.has(parent); parent = path.posix.dirname(parent)) {
    const local = root.local(parent);
    if (isMountPoint(local)) break;
    const names = fs.readdirSync(local);
    if (names.length !== 1 || names[0] !== path.posix.basename(top)) break;
    top = parent;
  }
  return top;
}

/**
 * Removes the record and the directories we created for the prefix, once everything else of ours in
 * the prefix is gone. The rename is the commit point: before it a re-run finds the record and does
 * the same again; after it the host has neither, and the reserved tree is deleted here or by the next run.
 * A prefix we did not create, a mount point ("emptied, not removed"), or one holding files that are
 * not ours stays: then only state.json and `.kata-deploy/` are removed, and a kill between the two
 * leaves an empty `.kata-deploy/` that the next run recognises and removes (removeStateDirLeftover).
 */
export async function removeStateAndPrefix(root: HostRoot, state: AgentState): Promise<void> {
  const { prefix } = state;
  const onPrefixChain = (dir: string): boolean => dir === prefix || prefix.startsWith(`${dir}/`);
  // Any other directory we recorded goes while the record still names it (deepest first, when empty).
  const offChain = state.createdDirs.filter((dir) => !onPrefixChain(dir)).sort((a, b) => b.length - a.length);
  for (const dir of offChain) await removeDirIfEmpty(root.local(dir));

  testPoint("uninstall:removing-prefix");
  const top = outermostRemovable(root, state);
  if (top !== undefined) {
    const local = root.local(top);
    const trash = reservedSibling(local, REMOVING_PREFIX);
    let renamed = true;
    try {
      fs.renameSync(local, trash);
    } catch (error) {
      if (!RENAME_REFUSALS.has(errnoCode(error) ?? "")) throw error;
      log.info(`${top}: cannot be moved (${errnoCode(error)}); removing its contents in place`);
      renamed = false;
    }
    if (renamed) {
      testPoint("uninstall:renamed-to-trash");
      removeTree(trash, () => testPoint("uninstall:removing-trash"));
      testPoint("uninstall:trash-removed");
      await fsyncDir(path.dirname(local));
      return;
    }
  }
  await removeFile(root.local(stateFileHostPath(prefix)));
  testPoint("uninstall:state-unlinked");
  await removeStateDirLeftover(root, prefix);
  // Normally nothing to do here: a created prefix that could not be renamed cannot be removed either
  // (a mount point, a foreign file in it). Kept for a rename refused for another reason.
  for (const dir of state.createdDirs.filter(onPrefixChain).sort((a, b) => b.length - a.length)) await removeDirIfEmpty(root.local(dir));
}
