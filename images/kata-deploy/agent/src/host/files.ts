// File-system edge for host files: maps host paths under --host-root, resolves host symlinks the way
// the host would see them, and writes atomically (temp file in the same directory, fsync, rename,
// fsync of the directory) so that a crash leaves either the old or the new file, never a torn one.
import { spawnSync } from "node:child_process";
import { sha256 as sha256Digest } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { UserError, errnoCode } from "../report/errors";
import * as log from "../report/log";

/** Linux gives up after 40 links (ELOOP); so do we. */
const MAX_SYMLINK_HOPS = 40;

/** The suffix of our temp files; a crash can leave one behind, and the next run replaces or removes it. */
export const TEMP_SUFFIX = ".kata-deploy.tmp";

export function tempPathFor(localPath: string): string {
  return path.join(path.dirname(localPath), `.${path.basename(localPath)}${TEMP_SUFFIX}`);
}

/**
 * SHA-256, hex. @noble/hashes rather than node:crypto: the hashes are of config files (kilobytes), and
 * loading node:crypto is 15-25 ms of CPU on every run that hashes, the no-op re-install of every pod
 * start among them (issue 13; `npm run bench`, no-op line).
 */
export function sha256(data: Buffer | string): string {
  return bytesToHex(sha256Digest(typeof data === "string" ? Buffer.from(data, "utf8") : data));
}

/** Where the host's `/` is mounted. Host paths are absolute paths as the node sees them. */
export class HostRoot {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  /**
   * The local path of a host path that must stay inside the host root: resolved as the host would
   * (`resolve`), then checked against what this container's kernel sees (the deepest existing
   * ancestor's real path must be under the root), so no later operation follows a link out of it.
   */
  inside(hostPath: string, what = hostPath): { hostPath: string; local: string } {
    const real = this.resolve(hostPath);
    let existing = this.local(real);
    while (!fs.existsSync(existing) && existing !== this.dir) existing = path.dirname(existing);
    const realLocal = fs.realpathSync(existing);
    const rootReal = fs.realpathSync(this.dir);
    if (realLocal !== rootReal && !realLocal.startsWith(rootReal === "/" ? "/" : `${rootReal}/`)) {
      throw new UserError(`${what}: leads outside the host root ${this.dir} (${realLocal}); fix the symlink on the host`);
    }
    return { hostPath: real, local: this.local(real) };
  }

  /** The local path of a host path (no symlink resolution). */
  local(hostPath: string): string {
    if (!path.isAbsolute(hostPath)) throw new Error(`internal: host path must be absolute: ${hostPath}`);
    return path.join(this.dir, hostPath);
  }

  /**
   * Resolves symlinks in `hostPath` as the host would (absolute link targets are relative to the host
   * root, not to this container's `/`). Returns the host path of the final target, which may not exist.
   * A loop is a user error: the host's own runtime would fail on it too.
   */
  resolve(hostPath: string): string {
    let pending = hostPath.split("/").filter((part) => part !== "");
    let resolved = "/";
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.shift() as string;
      if (part === ".") continue;
      if (part === "..") {
        resolved = path.dirname(resolved);
        continue;
      }
      const candidate = path.posix.join(resolved, part);
      let target: string;
      try {
        target = fs.readlinkSync(this.local(candidate));
      } catch (error) {
        const code = errnoCode(error);
        // EINVAL: not a symlink; ENOENT/ENOTDIR: the rest does not exist (yet) — keep it literal.
        if (code === "EINVAL" || code === "ENOENT" || code === "ENOTDIR") {
          resolved = candidate;
          continue;
        }
        throw error;
      }
      if (++hops > MAX_SYMLINK_HOPS) {
        throw new UserError(`${hostPath}: too many levels of symbolic links (a symlink loop); point the link at a real file`);
      }
      pending = [...target.split("/").filter((p) => p !== ""), ...pending];
      if (target.startsWith("/")) resolved = "/";
    }
    return resolved;
  }
}

/**
 * The largest config file the agent reads. Configs are kilobytes; the largest real ones (registry
 * mirror lists) a few MiB. Anything bigger is read into memory and parsed, so a limit keeps a stray
 * multi-GiB file from exhausting memory (Node cannot even hold a string over 512 MiB).
 */
export const MAX_CONFIG_BYTES = 64 << 20;

/** A host config file as read before planning. */
export interface HostFile {
  /** The host path the planner knows (as given, unresolved). */
  hostPath: string;
  /** The host path actually read and written (symlinks resolved). */
  realHostPath: string;
  /** Raw bytes; undefined when the file does not exist. */
  bytes: Buffer | undefined;
  text: string | undefined;
  stats: fs.Stats | undefined;
}

/**
 * Reads a config file for planning, refusing anything the agent must not touch: a directory where a
 * file belongs, a symlink loop, bytes that are not UTF-8 (a text edit would corrupt them).
 */
export function readHostFile(root: HostRoot, hostPath: string): HostFile {
  const realHostPath = root.resolve(hostPath);
  const local = root.local(realHostPath);
  let stats: fs.Stats;
  try {
    stats = fs.statSync(local);
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT") return { hostPath, realHostPath, bytes: undefined, text: undefined, stats: undefined };
    if (code === "ENOTDIR") throw new UserError(`${hostPath}: a parent of this path is not a directory; fix the path on the host`);
    if (code === "ELOOP") throw new UserError(`${hostPath}: too many levels of symbolic links (a symlink loop); point the link at a real file`);
    throw error;
  }
  if (stats.isDirectory()) throw new UserError(`${hostPath}: is a directory, expected a config file; remove or rename the directory`);
  if (!stats.isFile()) throw new UserError(`${hostPath}: is not a regular file; replace it with a config file`);
  if (stats.size > MAX_CONFIG_BYTES) {
    throw new UserError(`${hostPath}: is ${formatSize(stats.size)}, more than the ${formatSize(MAX_CONFIG_BYTES)} kata-deploy reads from a config file; shrink it (or remove stray data from it) and run again`);
  }
  const bytes = fs.readFileSync(local);
  const text = bytes.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(bytes)) {
    throw new UserError(`${hostPath}: is not valid UTF-8; re-save it as UTF-8 text`);
  }
  return { hostPath, realHostPath, bytes, text, stats };
}

function formatSize(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(1)} GiB` : `${Math.round(bytes / (1 << 20))} MiB`;
}

const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * Why writing is refused, as the clause after "<path>: ". `dir`: the directory that refuses, when it
 * is not the file itself. Root gets EPERM (not EACCES) only from an immutable or append-only inode.
 */
function notWritableReason(code: string | undefined, dir?: string): string | undefined {
  if (code === "EROFS") return "the file system is read-only; remount it read-write (or mount the config directory writable into the pod)";
  if (code === "EPERM" && isRoot()) {
    return `${dir === undefined ? "" : `its directory ${dir} `}is immutable or append-only (lsattr shows the i or a flag); remove the flag with \`chattr -i -a\` and run again`;
  }
  if (code === "EACCES" || code === "EPERM") return `permission denied writing ${dir ?? "it"}; run the agent as root`;
  return undefined;
}

/**
 * Refuses up front (before anything is written) when `hostPath` cannot be replaced: a read-only file
 * system, an immutable or append-only file or directory (even root gets EPERM; access(2) reports it),
 * a file that is a mount point of its own (a bind-mounted single file: rename(2) over it fails with
 * EBUSY), or a parent that is not a directory. Missing parents are fine (they are created).
 */
export function assertWritable(root: HostRoot, hostPath: string): void {
  const file = root.local(hostPath);
  if (fs.existsSync(file)) {
    try {
      fs.accessSync(file, fs.constants.W_OK);
    } catch (error) {
      const reason = notWritableReason(errnoCode(error));
      if (reason !== undefined) throw new UserError(`${hostPath}: ${reason}`);
      throw error;
    }
    if (mountPoints().has(fs.realpathSync(file))) {
      throw new UserError(
        `${hostPath}: is a mount point of its own (a bind-mounted file), which cannot be replaced atomically (rename(2) fails with EBUSY); mount its directory instead of the single file and run again`,
      );
    }
  }
  assertDirWritable(root, hostPath);
}

function assertDirWritable(root: HostRoot, hostPath: string): void {
  let dir = path.dirname(root.local(hostPath));
  for (;;) {
    try {
      const stats = fs.statSync(dir);
      if (!stats.isDirectory()) throw new UserError(`${hostPath}: ${dir.slice(root.dir.length) || "/"} is not a directory; fix the path on the host`);
      break;
    } catch (error) {
      if (error instanceof UserError) throw error;
      if (errnoCode(error) !== "ENOENT") throw error;
      if (dir === root.dir || dir === path.dirname(dir)) break;
      dir = path.dirname(dir);
    }
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (error) {
    const reason = notWritableReason(errnoCode(error), dir.slice(root.dir === "/" ? 0 : root.dir.length) || "/");
    if (reason !== undefined) throw new UserError(`${hostPath}: ${reason}`);
    throw error;
  }
}

/**
 * Adds the file to a system call error that lacks it (a failed write(2) says only "write"), so the
 * one-line message names the file. The error keeps its code and syscall.
 */
export function withPath(error: unknown, localPath: string): unknown {
  if (error instanceof Error && errnoCode(error) !== undefined && (error as { path?: unknown }).path === undefined) {
    error.message = `${error.message} '${localPath}'`;
    (error as { path?: string }).path = localPath;
  }
  return error;
}

/**
 * Copies the extended attributes (user.*, trusted.*, security.* such as SELinux labels, ACLs) of the
 * file being replaced onto its replacement, with coreutils' `cp --attributes-only` (Node has no xattr
 * calls). A failure is a warning: the content change matters more than a label we cannot set.
 */
function copyXattrs(from: string, to: string): string | undefined {
  const selinux = fs.existsSync("/sys/fs/selinux/enforce");
  const result = spawnSync("cp", ["--attributes-only", `--preserve=xattr${selinux ? ",context" : ""}`, "--", from, to], { encoding: "utf8" });
  if (result.status === 0) return undefined;
  return (result.stderr || result.error?.message || `cp exited with ${result.status}`).trim().split("\n")[0];
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** mkdir -p that returns the directories it created (outermost first), so they can be removed later. */
export async function makeDirs(dir: string, mode = 0o755): Promise<string[]> {
  const missing: string[] = [];
  for (let current = dir; ; current = path.dirname(current)) {
    try {
      const stats = await fsp.stat(current);
      if (!stats.isDirectory()) throw new UserError(`${current}: exists and is not a directory; remove it`);
      break;
    } catch (error) {
      if (error instanceof UserError) throw error;
      if (errnoCode(error) !== "ENOENT") throw error;
      missing.unshift(current);
      if (current === path.dirname(current)) break;
    }
  }
  for (const created of missing) {
    await fsp.mkdir(created, { mode }).catch((error: unknown) => {
      if (errnoCode(error) !== "EEXIST") throw error;
    });
  }
  if (missing.length > 0) await fsyncDir(path.dirname(missing[0]));
  return missing;
}

export interface AtomicWriteOptions {
  /** Keep this file's mode and owner (the file being replaced). */
  like?: fs.Stats;
  /** Mode for a new file. */
  mode?: number;
  /** Called with the complete, durable temp file before it is renamed into place; throwing aborts. */
  beforeRename?: (tempPath: string) => Promise<void>;
  /**
   * false: skip the fsyncs (still atomic against a killed process, not against power loss). For
   * records whose loss only means redoing work, so a run does not pay a journal commit for each.
   */
  durable?: boolean;
  /** false: do not copy the replaced file's extended attributes (our own records). */
  keepXattrs?: boolean;
}

/** Replaces `localPath` with `data`: temp file in the same directory, fsync, rename, fsync directory. */
export async function atomicWrite(localPath: string, data: Buffer | string, options: AtomicWriteOptions = {}): Promise<void> {
  const temp = tempPathFor(localPath);
  const mode = options.like ? options.like.mode & 0o7777 : (options.mode ?? 0o644);
  try {
    const handle = await fsp.open(temp, "w", mode);
    try {
      await handle.writeFile(data);
      await handle.chmod(mode);
      if (options.like && process.getuid?.() === 0) await handle.chown(options.like.uid, options.like.gid);
      if (options.durable !== false) await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    await fsp.rm(temp, { force: true }).catch(() => undefined);
    throw withPath(error, temp);
  }
  if (options.like && options.keepXattrs !== false) {
    const problem = copyXattrs(localPath, temp);
    if (problem !== undefined) log.warn(`${localPath}: extended attributes not kept (${problem})`);
  }
  try {
    if (options.beforeRename) await options.beforeRename(temp);
    await fsp.rename(temp, localPath);
  } catch (error) {
    await fsp.rm(temp, { force: true });
    throw error;
  }
  if (options.durable !== false) await fsyncDir(path.dirname(localPath));
}

/** Deletes a file (if present) durably. */
export async function removeFile(localPath: string): Promise<void> {
  try {
    await fsp.unlink(localPath);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return;
    throw error;
  }
  await fsyncDir(path.dirname(localPath));
}

/** Removes a directory if it is empty; a mount point (EBUSY) or a non-empty directory stays. */
export async function removeDirIfEmpty(localDir: string): Promise<boolean> {
  try {
    await fsp.rmdir(localDir);
    return true;
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT") return true;
    if (code === "ENOTEMPTY" || code === "EEXIST" || code === "EBUSY" || code === "EPERM" || code === "EACCES" || code === "EROFS") return false;
    throw error;
  }
}

/**
 * Test-only fault injection, so the fault tests can stop the agent at the exact instants where a
 * crash is most dangerous instead of hoping a random delay hits them: `KATA_DEPLOY_TEST_CRASH_AT=<point>`
 * SIGKILLs the agent when it reaches `<point>`, `KATA_DEPLOY_TEST_STOP_AT=<point>` SIGSTOPs it there
 * (holding the host lock, until SIGCONT). Unset in production: each call is one env lookup.
 */
export function testPoint(point: string): void {
  if (process.env.KATA_DEPLOY_TEST_CRASH_AT === point) process.kill(process.pid, "SIGKILL");
  if (process.env.KATA_DEPLOY_TEST_STOP_AT === point) process.kill(process.pid, "SIGSTOP");
}

/** Mount points in this mount namespace (real paths), from /proc/self/mountinfo; empty where there is none. */
function mountPoints(): Set<string> {
  let text: string;
  try {
    text = fs.readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return new Set();
  }
  // Field 5 is the mount point, with space, tab, newline and backslash escaped as \ooo.
  const unescape = (field: string): string => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return new Set(text.split("\n").flatMap((line) => (line.trim() === "" ? [] : [unescape(line.split(" ")[4] ?? "")])));
}

/**
 * Whether a directory is a mount point (a hostPath volume, a tmpfs): another device than its parent,
 * or listed in mountinfo (a bind mount of the same file system keeps the device number).
 */
export function isMountPoint(localDir: string): boolean {
  const parent = path.dirname(localDir);
  if (parent === localDir) return true;
  if (fs.lstatSync(localDir).dev !== fs.statSync(parent).dev) return true;
  return mountPoints().has(fs.realpathSync(localDir));
}

/**
 * rm -r that never follows a symlink and tolerates entries vanishing under it, because two agents may
 * remove the same leftover tree at once. `afterFirstEntry` is a test hook (a crash half-way through).
 */
export function removeTree(localPath: string, afterFirstEntry?: () => void): void {
  let removedOne = false;
  const visit = (target: string): void => {
    let stats: fs.Stats;
    try {
      stats = fs.lstatSync(target);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return;
      throw error;
    }
    try {
      if (stats.isDirectory()) {
        for (const name of fs.readdirSync(target)) visit(path.join(target, name));
        fs.rmdirSync(target);
      } else {
        fs.unlinkSync(target);
      }
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error;
    }
    if (!removedOne) {
      removedOne = true;
      afterFirstEntry?.();
    }
  };
  visit(localPath);
}
