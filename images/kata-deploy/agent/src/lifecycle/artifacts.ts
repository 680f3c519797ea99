// Copies the Kata release tree into the install prefix, and removes it again.
//
// Speed: files are copied by the kernel (reflink, else copy_file_range, through fs.copyFile with
// COPYFILE_FICLONE | COPYFILE_EXCL: see COPY_MODE) and made durable with one syncfs(2) (`sync
// --file-system`) instead of thousands of fsyncs — the same work `cp -a && sync` does. The release is
// read once per run (scanRelease, before the lock) and the prefix looked at once under the lock (one
// lstat per entry serves the foreign-file check and the quick check below). Large files (images, kernels, hypervisors) go to libuv's
// thread pool, a few at a time, while the main thread copies the many small files with synchronous
// calls (a thread-pool round trip per small file costs more than the copy itself); the two overlap.
// A re-install skips every file whose source is unchanged (size, mtime, mode) and whose installed copy
// is still the one we wrote (same inode, size and ctime: any write, chmod, chown or replacement of the
// copy changes its ctime, and ctime cannot be set back), so nothing is read or hashed.
// Safety: each file is written under a temp name in its directory and renamed over the old one, so a
// running shim or hypervisor keeps its old inode (no "text file busy") and a crash never leaves a
// truncated binary at the real name. Nothing is made visible to a runtime config before the sync.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { errnoCode, UserError } from "../report/errors";
import { TEMP_SUFFIX, fsyncDir, removeDirIfEmpty, tempPathFor } from "../host/files";
import * as log from "../report/log";
import type { ArtifactsState, InstalledFile } from "./state";

const COPY_CONCURRENCY = 8;
/** Files this big are copied on the thread pool; smaller ones synchronously on the main thread. */
const LARGE_FILE_BYTES = 1 << 20;
/** Large copies at a time: one per core, at most libuv's default pool size (4). */
const LARGE_COPY_CONCURRENCY = Math.max(1, Math.min(4, os.availableParallelism()));
/** Small files copied between two yields to the event loop (so finished large copies get renamed). */
const SMALL_FILES_PER_TURN = 64;
const PROGRESS_EVERY_MS = 2000;
/**
 * Where Kata's build installs a release (upstream PREFIX, the root of the release tarball's opt/kata):
 * an absolute symlink in a release points here. The image keeps such links verbatim
 * (images/kata-deploy/release/select.mjs, RELEASE_PREFIX).
 */
const RELEASE_PREFIX = "/opt/kata";

interface SourceFile {
  rel: string;
  stats: fs.Stats;
  /** access(R_OK) already said yes in this run (checkReadable). */
  checkedReadable?: boolean;
}

/** A symlink of the release and the target the installed copy gets. */
export interface ReleaseLink {
  rel: string;
  /** The target as the release has it (readlink). */
  target: string;
  /** The target we install: an absolute link into the tree made relative, anything else as is. */
  installed: string;
  /** It leads out of the release tree (an absolute path elsewhere, or `..` above the tree's root). */
  outside: boolean;
}

export interface ReleaseTree {
  /** The tree's root, absolute and normalized (`under` joins it with a relative path). */
  root: string;
  dirs: { rel: string; mode: number }[];
  files: SourceFile[];
  symlinks: ReleaseLink[];
}

/**
 * The target to install for a release symlink at `rel` (relative to the tree's root) pointing at
 * `target`. An absolute target inside the tree — under Kata's own prefix /opt/kata or under the
 * release directory itself (the image's /opt/kata-artifacts/opt/kata) — would dangle on the host (or
 * point at another prefix's files), so it becomes the relative path from the link to the same entry:
 * valid wherever the tree is installed and under any host root. A target outside the tree is kept.
 * `treeRoots`: absolute paths that name the tree's root.
 */
export function installedLinkTarget(rel: string, target: string, treeRoots: readonly string[]): { installed: string; outside: boolean } {
  const linkDir = path.posix.dirname(rel);
  if (path.posix.isAbsolute(target)) {
    const normalized = path.posix.normalize(target).replace(/(.)\/+$/, "$1");
    for (const root of treeRoots) {
      if (normalized !== root && !normalized.startsWith(`${root}/`)) continue;
      const inTree = normalized.slice(root.length + 1);
      // path.posix.relative resolves both against the same working directory: only their difference counts.
      return { installed: path.posix.relative(`/${linkDir}`, `/${inTree}`) || ".", outside: false };
    }
    return { installed: target, outside: true };
  }
  const resolved = path.posix.normalize(path.posix.join(linkDir, target));
  return { installed: target, outside: resolved === ".." || resolved.startsWith("../") };
}

/**
 * `dir/rel` for an absolute, normalized `dir` and a relative path from the walk (normalized by
 * construction): path.join without normalizing again, which thousands of calls per run would pay for.
 */
function under(dir: string, rel: string): string {
  return dir === "/" ? `/${rel}` : `${dir}/${rel}`;
}

/** path.posix.dirname of a relative path from the walk. */
function parentOf(rel: string): string {
  const slash = rel.lastIndexOf("/");
  return slash < 0 ? "." : rel.slice(0, slash);
}

/** tempPathFor (files.ts) of an absolute, normalized path, without parsing it again. */
function tempOf(dest: string): string {
  const slash = dest.lastIndexOf("/");
  return `${dest.slice(0, slash + 1)}.${dest.slice(slash + 1)}${TEMP_SUFFIX}`;
}

function walk(root: string, treeRoots: readonly string[]): ReleaseTree {
  const tree: ReleaseTree = { root, dirs: [], files: [], symlinks: [] };
  const visit = (relDir: string, absDir: string): void => {
    const entries = fs.readdirSync(absDir, { withFileTypes: true });
    for (const entry of entries) {
      const rel = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      const abs = under(absDir, entry.name);
      if (entry.isSymbolicLink()) {
        const target = fs.readlinkSync(abs);
        tree.symlinks.push({ rel, target, ...installedLinkTarget(rel, target, treeRoots) });
      } else if (entry.isDirectory()) {
        tree.dirs.push({ rel, mode: fs.statSync(abs).mode & 0o7777 });
        visit(rel, abs);
      } else if (entry.isFile()) {
        tree.files.push({ rel, stats: fs.lstatSync(abs) });
      }
      // Sockets, fifos and devices do not belong in a release tree; they are not copied.
    }
  };
  visit("", root);
  return tree;
}

/**
 * Reads the release tree (`--artifacts`'s opt/kata) once: its directories, files with their lstat, and
 * symlinks with the targets to install. Refuses a missing, unreadable or empty tree.
 */
export function scanRelease(sourceDir: string): ReleaseTree {
  let tree: ReleaseTree;
  try {
    const root = path.resolve(sourceDir);
    const treeRoots = [...new Set([RELEASE_PREFIX, root, fs.realpathSync(root)])];
    tree = walk(root, treeRoots);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") throw new UserError(`${sourceDir}: not found; --artifacts must contain the release tree (opt/kata/...)`);
    if (errnoCode(error) === "EACCES" || errnoCode(error) === "EPERM") throw new UserError(`${sourceDir}: cannot read the release tree (${(error as Error).message}); make --artifacts readable by the agent`);
    throw error;
  }
  if (tree.files.length === 0) throw new UserError(`${sourceDir}: contains no files; --artifacts must contain the release tree (opt/kata/...)`);
  return tree;
}

/** Whether the record was made from a source file with these size, mtime and mode. */
function sameSource(record: InstalledFile | null | undefined, source: fs.Stats): boolean {
  return record !== null && record !== undefined && record.sourceSize === source.size && record.sourceMtimeMs === source.mtimeMs && record.mode === (source.mode & 0o7777);
}

/**
 * Refuses a release file the agent cannot read, before anything is copied: every file that a run may
 * copy, that is all but those `installed` records as copied from the same unchanged source (an intact
 * copy of those is not read again; one that needs re-copying is checked under the lock, before the copy).
 */
export function checkReadable(sourceDir: string, files: readonly SourceFile[], installed: ArtifactsState | undefined): void {
  const root = path.resolve(sourceDir);
  for (const file of files) {
    if (file.checkedReadable === true || sameSource(installed?.files[file.rel], file.stats)) continue;
    try {
      fs.accessSync(under(root, file.rel), fs.constants.R_OK);
    } catch (error) {
      throw new UserError(`${path.join(sourceDir, file.rel)}: cannot be read (${errnoCode(error)}); make --artifacts readable by the agent and run again`);
    }
    file.checkedReadable = true;
  }
}

const FOREIGN_SHOWN = 3;

function lstatOrUndefined(file: string): fs.Stats | undefined {
  try {
    // throwIfNoEntry: a fresh install looks up thousands of missing files; no Error object for each.
    return fs.lstatSync(file, { throwIfNoEntry: false });
  } catch (error) {
    if (errnoCode(error) === "ENOTDIR") return undefined;
    throw error;
  }
}

/**
 * Unchanged since we installed it: the source has the size, mtime and mode the copy was made from,
 * and the installed file is still the inode we wrote, with its size and ctime (any write, chmod, chown
 * or replacement changes the ctime, which cannot be set back).
 */
function stillOurs(record: InstalledFile | null | undefined, source: fs.Stats, installed: fs.Stats | undefined): boolean {
  return (
    sameSource(record, source) &&
    installed !== undefined &&
    installed.isFile() &&
    (record as InstalledFile).ino === installed.ino &&
    (record as InstalledFile).ctimeMs === installed.ctimeMs &&
    (record as InstalledFile).size === installed.size
  );
}

async function runLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(workers);
}

/** Makes everything written under `dir` durable: syncfs(2) of its file system, or per-file fsync as a fallback. */
async function syncFileSystem(dir: string, files: string[]): Promise<void> {
  try {
    await promisify(execFile)("sync", ["--file-system", dir]);
    return;
  } catch (error) {
    log.warn(`sync --file-system ${dir} failed (${(error as Error).message.split("\n")[0]}); falling back to fsync per file`);
  }
  await runLimited(files, COPY_CONCURRENCY, async (file) => {
    const handle = await fsp.open(file, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  });
  const dirs = new Set(files.map((file) => path.dirname(file)));
  for (const d of dirs) await fsyncDir(d);
}

/**
 * copyFile's mode: a kernel copy (reflink, else copy_file_range) into a file that must not exist yet.
 * With COPYFILE_EXCL libuv opens the new file O_EXCL and skips its ftruncate(0) (nodejs/node
 * deps/uv/src/unix/fs.c, uv__fs_copyfile). That truncate matters on ext4: a file truncated to size 0
 * is marked for auto_da_alloc (fs/ext4/inode.c, ext4_truncate: EXT4_STATE_DA_ALLOC_CLOSE) and starts
 * its own write-back when closed — thousands of small write-outs at copy time instead of the one
 * syncfs that writes everything (what `cp -a`, which creates O_EXCL, gets).
 */
const COPY_MODE = fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE;

/**
 * Copies one release file into place: kernel copy to a temp name next to the target, owner (as root)
 * and mtime carried over as `cp -a` does (copyFile already gives the source's mode), then a rename.
 * A temp file left by a killed run is removed first (EEXIST).
 */
class FileCopier {
  private readonly chownAsRoot = process.getuid?.() === 0;
  private readonly uid = process.getuid?.();
  private readonly gid = process.getgid?.();

  constructor(
    private readonly sourceDir: string,
    private readonly destDir: string,
  ) {}

  private needsChown(file: SourceFile): boolean {
    return this.chownAsRoot && (file.stats.uid !== this.uid || file.stats.gid !== this.gid);
  }

  copySync(file: SourceFile): void {
    const dest = under(this.destDir, file.rel);
    const temp = tempOf(dest);
    const source = under(this.sourceDir, file.rel);
    try {
      fs.copyFileSync(source, temp, COPY_MODE);
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") throw error;
      fs.rmSync(temp, { force: true });
      fs.copyFileSync(source, temp, COPY_MODE);
    }
    if (this.needsChown(file)) fs.chownSync(temp, file.stats.uid, file.stats.gid);
    fs.utimesSync(temp, file.stats.atime, file.stats.mtime);
    fs.renameSync(temp, dest);
  }

  async copy(file: SourceFile): Promise<void> {
    const dest = under(this.destDir, file.rel);
    const temp = tempOf(dest);
    const source = under(this.sourceDir, file.rel);
    try {
      await fsp.copyFile(source, temp, COPY_MODE);
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") throw error;
      await fsp.rm(temp, { force: true });
      await fsp.copyFile(source, temp, COPY_MODE);
    }
    if (this.needsChown(file)) await fsp.chown(temp, file.stats.uid, file.stats.gid);
    await fsp.utimes(temp, file.stats.atime, file.stats.mtime);
    await fsp.rename(temp, dest);
  }
}

export interface InstallResult {
  /** Anything was written (the caller saves the state only then). */
  changed: boolean;
  /** Every entry we may own now: the new tree plus stale entries not yet removed. */
  state: ArtifactsState;
  /** Entries of the previous install that the new tree no longer ships (remove after configs moved on). */
  stale: ArtifactsState;
  copiedFiles: number;
  copiedBytes: number;
  unchangedFiles: number;
}

/**
 * Installs the release tree `tree` (scanned from `sourceDir`, the release's `opt/kata`) into `destDir`.
 * `journal` is called with the set of entries about to be written before any of them is touched, so an
 * interrupted run is resumable.
 */
export async function installArtifacts(
  sourceDir: string,
  prefixDir: string,
  tree: ReleaseTree,
  previous: ArtifactsState,
  journal: (state: ArtifactsState) => Promise<void>,
): Promise<InstallResult> {
  const destDir = path.resolve(prefixDir);
  // Under the lock, the authoritative look at the prefix, one lstat per entry: nothing that is not ours
  // is in the way (refused, see below), and which of our files are still the copies we made.
  const foreign: string[] = [];
  const notOurs = (rel: string, existing: fs.Stats): void => {
    if (rel in previous.files || rel in previous.symlinks || previous.dirs.includes(rel)) return;
    foreign.push(`${rel} (${existing.isDirectory() ? "a directory" : existing.isSymbolicLink() ? "a symlink" : "a file"})`);
  };
  const createdDirs = new Set(previous.dirs);
  /** Directories this run makes: empty, so nothing in them needs looking up. */
  const madeNow = new Set<string>();
  // Recorded (journalled below) before they are made: a kill in between must not leave a directory
  // no record names, or uninstall would leave it behind.
  const toMake: { dir: ReleaseTree["dirs"][number]; replace: boolean }[] = [];
  for (const dir of tree.dirs) {
    // Parents come before their children in the walk.
    const existing = madeNow.has(parentOf(dir.rel)) ? undefined : lstatOrUndefined(under(destDir, dir.rel));
    if (existing?.isDirectory()) continue; // a directory is shared, never removed unless we made it
    if (existing !== undefined) notOurs(dir.rel, existing);
    // Not a directory: our own stale file or link where the new release has a directory: replaced.
    toMake.push({ dir, replace: existing !== undefined });
    createdDirs.add(dir.rel);
    madeNow.add(dir.rel);
  }
  const toCopy: SourceFile[] = [];
  const files: Record<string, InstalledFile | null> = { ...previous.files };
  for (const file of tree.files) {
    const installed = madeNow.has(parentOf(file.rel)) ? undefined : lstatOrUndefined(under(destDir, file.rel));
    if (installed !== undefined) notOurs(file.rel, installed);
    if (!stillOurs(previous.files[file.rel], file.stats, installed)) {
      toCopy.push(file);
      files[file.rel] = null;
    }
  }
  for (const link of tree.symlinks) {
    const existing = madeNow.has(parentOf(link.rel)) ? undefined : lstatOrUndefined(under(destDir, link.rel));
    if (existing !== undefined) notOurs(link.rel, existing);
  }
  if (foreign.length > 0) {
    const more = foreign.length > FOREIGN_SHOWN ? ` and ${foreign.length - FOREIGN_SHOWN} more` : "";
    throw new UserError(
      `${destDir}: holds ${foreign.slice(0, FOREIGN_SHOWN).join(", ")}${more} that kata-deploy did not install, where the release has its own; kata-deploy does not overwrite or delete files it did not create: move them away (or remove the hand-installed Kata) and run again`,
    );
  }
  // Files the check before the lock did not look at (their copies seemed intact then): readable too.
  checkReadable(sourceDir, toCopy, undefined);

  const symlinks = { ...previous.symlinks };
  for (const link of tree.symlinks) symlinks[link.rel] = link.installed;
  const linksChanged = tree.symlinks.some((link) => previous.symlinks[link.rel] !== link.installed);
  const dirsChanged = createdDirs.size !== previous.dirs.length;
  // Journal what is about to be written (nothing to journal on a no-op re-install).
  if (toCopy.length > 0 || linksChanged || dirsChanged) await journal({ files, symlinks, dirs: [...createdDirs] });
  for (const { dir, replace } of toMake) {
    const dest = path.join(destDir, dir.rel);
    if (replace) await fsp.rm(dest, { force: true });
    fs.mkdirSync(dest, { mode: dir.mode });
    fs.chmodSync(dest, dir.mode);
  }

  const totalBytes = toCopy.reduce((sum, file) => sum + file.stats.size, 0);
  let copiedBytes = 0;
  let lastProgress = performance.now();
  const copied = (file: SourceFile): void => {
    copiedBytes += file.stats.size;
    if (performance.now() - lastProgress > PROGRESS_EVERY_MS) {
      lastProgress = performance.now();
      log.info(`artifacts: copied ${log.formatBytes(copiedBytes)} of ${log.formatBytes(totalBytes)}`);
    }
  };
  const copier = new FileCopier(tree.root, destDir);
  const large = toCopy.filter((file) => file.stats.size >= LARGE_FILE_BYTES).sort((a, b) => b.stats.size - a.stats.size);
  const small = toCopy.filter((file) => file.stats.size < LARGE_FILE_BYTES);
  const largeDone = runLimited(large, LARGE_COPY_CONCURRENCY, async (file) => {
    await copier.copy(file);
    copied(file);
  });
  // Awaited below; this only keeps an early failure from counting as unhandled meanwhile.
  largeDone.catch(() => undefined);
  for (const [index, file] of small.entries()) {
    copier.copySync(file);
    copied(file);
    if (index % SMALL_FILES_PER_TURN === SMALL_FILES_PER_TURN - 1) await new Promise((resolve) => setImmediate(resolve));
  }
  await largeDone;
  const written: string[] = toCopy.map((file) => under(destDir, file.rel));

  for (const link of tree.symlinks) {
    const dest = path.join(destDir, link.rel);
    const existing = lstatOrUndefined(dest);
    // The installed target, re-pointed or not, is what the link is compared with: ours and unchanged.
    if (existing?.isSymbolicLink() && fs.readlinkSync(dest) === link.installed) continue;
    if (existing?.isDirectory()) throw new UserError(`${dest}: is a directory where the release has a symlink; remove it`);
    if (link.installed !== link.target) log.info(`artifacts: ${link.rel} -> ${link.target} points into the release tree; installed as ${link.rel} -> ${link.installed}`);
    else if (link.outside) log.notice(`artifacts: ${link.rel} -> ${link.target} points outside the release tree; installed as it is (it resolves on the host, not in the release)`);
    const temp = tempPathFor(dest);
    await fsp.rm(temp, { force: true });
    await fsp.symlink(link.installed, temp);
    await fsp.rename(temp, dest);
    written.push(dest);
  }

  if (written.length > 0) await syncFileSystem(destDir, written);

  // Record what the quick check needs, from the installed copies (inode and ctime after the rename).
  for (const file of toCopy) {
    const installed = fs.lstatSync(under(destDir, file.rel));
    files[file.rel] = {
      size: installed.size,
      mtimeMs: installed.mtimeMs,
      mode: installed.mode & 0o7777,
      ino: installed.ino,
      ctimeMs: installed.ctimeMs,
      sourceSize: file.stats.size,
      sourceMtimeMs: file.stats.mtimeMs,
    };
  }

  const shippedFiles = new Set(tree.files.map((file) => file.rel));
  const shippedLinks = new Set(tree.symlinks.map((link) => link.rel));
  const shippedDirs = new Set(tree.dirs.map((dir) => dir.rel));
  const stale: ArtifactsState = {
    files: Object.fromEntries(Object.entries(files).filter(([rel]) => !shippedFiles.has(rel))),
    symlinks: Object.fromEntries(Object.entries(symlinks).filter(([rel]) => !shippedLinks.has(rel))),
    dirs: [...createdDirs].filter((rel) => !shippedDirs.has(rel)),
  };
  return {
    changed: written.length > 0 || dirsChanged,
    state: { files, symlinks, dirs: [...createdDirs] },
    stale,
    copiedFiles: toCopy.length,
    copiedBytes,
    unchangedFiles: tree.files.length - toCopy.length,
  };
}

/**
 * Removes the given entries (ours) from `destDir`: files, links, then the directories we created,
 * deepest first and only when empty (a directory holding someone else's files stays).
 */
export async function removeArtifacts(destDir: string, entries: ArtifactsState): Promise<void> {
  const remove = async (rel: string): Promise<void> => {
    const dest = path.join(destDir, rel);
    await fsp.rm(dest, { force: true });
    await fsp.rm(tempPathFor(dest), { force: true });
  };
  // The record names what we installed (the install refused to write over anything foreign), so a
  // recorded path is ours; a file someone put there since goes with it (see docs/node-agent.md, limits).
  await runLimited(Object.keys(entries.files), COPY_CONCURRENCY, remove);
  for (const rel of Object.keys(entries.symlinks)) {
    const existing = lstatOrUndefined(path.join(destDir, rel));
    if (existing === undefined || existing.isSymbolicLink()) await remove(rel);
  }
  const deepestFirst = [...entries.dirs].sort((a, b) => b.split("/").length - a.split("/").length || b.localeCompare(a));
  for (const rel of deepestFirst) {
    const dir = path.join(destDir, rel);
    // A crash can leave our temp files; they must not keep our directories alive.
    const names = await fsp.readdir(dir).catch(() => [] as string[]);
    for (const name of names) if (name.endsWith(TEMP_SUFFIX)) await fsp.rm(path.join(dir, name), { force: true });
    await removeDirIfEmpty(dir);
  }
}
