// Copies the Kata release tree into the install prefix, and removes it again.
//
// Speed: files are copied by the kernel (reflink, else copy_file_range, through fs.copyFile with
// COPYFILE_FICLONE) and made durable with one syncfs(2) (`sync --file-system`) instead of thousands of
// fsyncs — the same work `cp -a && sync` does. Large files (images, kernels, hypervisors) go to libuv's
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

interface SourceFile {
  rel: string;
  stats: fs.Stats;
}

interface SourceTree {
  dirs: { rel: string; mode: number }[];
  files: SourceFile[];
  symlinks: { rel: string; target: string }[];
}

function walk(root: string): SourceTree {
  const tree: SourceTree = { dirs: [], files: [], symlinks: [] };
  const visit = (relDir: string): void => {
    const entries = fs.readdirSync(path.join(root, relDir), { withFileTypes: true });
    for (const entry of entries) {
      const rel = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      const abs = path.join(root, rel);
      if (entry.isSymbolicLink()) {
        tree.symlinks.push({ rel, target: fs.readlinkSync(abs) });
      } else if (entry.isDirectory()) {
        tree.dirs.push({ rel, mode: fs.statSync(abs).mode & 0o7777 });
        visit(rel);
      } else if (entry.isFile()) {
        tree.files.push({ rel, stats: fs.lstatSync(abs) });
      }
      // Sockets, fifos and devices do not belong in a release tree; they are not copied.
    }
  };
  visit("");
  return tree;
}

function walkSource(sourceDir: string): SourceTree {
  let tree: SourceTree;
  try {
    tree = walk(sourceDir);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") throw new UserError(`${sourceDir}: not found; --artifacts must contain the release tree (opt/kata/...)`);
    if (errnoCode(error) === "EACCES" || errnoCode(error) === "EPERM") throw new UserError(`${sourceDir}: cannot read the release tree (${(error as Error).message}); make --artifacts readable by the agent`);
    throw error;
  }
  if (tree.files.length === 0) throw new UserError(`${sourceDir}: contains no files; --artifacts must contain the release tree (opt/kata/...)`);
  return tree;
}

const FOREIGN_SHOWN = 3;

/**
 * What can be checked before anything is copied: every release file is readable, and no entry the
 * release would write is already in the prefix without being ours (a hand-installed Kata, a firmware
 * file, a user's symlink where the release has a directory). Those are refused, not overwritten: the
 * agent never replaces or deletes what it did not create. Directories that exist are shared, not taken.
 */
export function checkArtifacts(sourceDir: string, destDir: string | undefined, previous: ArtifactsState | undefined): SourceTree {
  const tree = walkSource(sourceDir);
  for (const file of tree.files) {
    try {
      fs.accessSync(path.join(sourceDir, file.rel), fs.constants.R_OK);
    } catch (error) {
      throw new UserError(`${path.join(sourceDir, file.rel)}: cannot be read (${errnoCode(error)}); make --artifacts readable by the agent and run again`);
    }
  }
  if (destDir === undefined || !fs.existsSync(destDir)) return tree;
  const ours = previous ?? { files: {}, symlinks: {}, dirs: [] };
  const foreign: string[] = [];
  const check = (rel: string, kind: "file" | "symlink" | "dir"): void => {
    const existing = lstatOrUndefined(path.join(destDir, rel));
    if (existing === undefined) return;
    if (kind === "dir" && existing.isDirectory()) return; // a directory is shared, never removed unless we made it
    if (rel in ours.files || rel in ours.symlinks || ours.dirs.includes(rel)) return;
    foreign.push(`${rel} (${existing.isDirectory() ? "a directory" : existing.isSymbolicLink() ? "a symlink" : "a file"})`);
  };
  for (const dir of tree.dirs) check(dir.rel, "dir");
  for (const file of tree.files) check(file.rel, "file");
  for (const link of tree.symlinks) check(link.rel, "symlink");
  if (foreign.length > 0) {
    const more = foreign.length > FOREIGN_SHOWN ? ` and ${foreign.length - FOREIGN_SHOWN} more` : "";
    throw new UserError(
      `${destDir}: holds ${foreign.slice(0, FOREIGN_SHOWN).join(", ")}${more} that kata-deploy did not install, where the release has its own; kata-deploy does not overwrite or delete files it did not create: move them away (or remove the hand-installed Kata) and run again`,
    );
  }
  return tree;
}

function lstatOrUndefined(file: string): fs.Stats | undefined {
  try {
    // throwIfNoEntry: a fresh install looks up thousands of missing files; no Error object for each.
    return fs.lstatSync(file, { throwIfNoEntry: false });
  } catch (error) {
    if (errnoCode(error) === "ENOTDIR") return undefined;
    throw error;
  }
}

function stillOurs(record: InstalledFile | null | undefined, source: fs.Stats, installed: fs.Stats | undefined): boolean {
  return (
    record !== null &&
    record !== undefined &&
    installed !== undefined &&
    installed.isFile() &&
    record.sourceSize === source.size &&
    record.sourceMtimeMs === source.mtimeMs &&
    record.mode === (source.mode & 0o7777) &&
    record.ino === installed.ino &&
    record.ctimeMs === installed.ctimeMs &&
    record.size === installed.size
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
 * Copies one release file into place: kernel copy to a temp name next to the target, owner (as root)
 * and mtime carried over as `cp -a` does (copyFile already gives the source's mode), then a rename.
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
    const dest = path.join(this.destDir, file.rel);
    const temp = tempPathFor(dest);
    fs.copyFileSync(path.join(this.sourceDir, file.rel), temp, fs.constants.COPYFILE_FICLONE);
    if (this.needsChown(file)) fs.chownSync(temp, file.stats.uid, file.stats.gid);
    fs.utimesSync(temp, file.stats.atime, file.stats.mtime);
    fs.renameSync(temp, dest);
  }

  async copy(file: SourceFile): Promise<void> {
    const dest = path.join(this.destDir, file.rel);
    const temp = tempPathFor(dest);
    await fsp.copyFile(path.join(this.sourceDir, file.rel), temp, fs.constants.COPYFILE_FICLONE);
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
 * Installs `sourceDir` (the release's `opt/kata`) into `destDir`. `journal` is called with the set of
 * entries about to be written before any of them is touched, so an interrupted run is resumable.
 */
export async function installArtifacts(
  sourceDir: string,
  destDir: string,
  previous: ArtifactsState,
  journal: (state: ArtifactsState) => Promise<void>,
): Promise<InstallResult> {
  // Under the lock, the authoritative check: nothing that is not ours is in the way.
  const tree = checkArtifacts(sourceDir, destDir, previous);

  const createdDirs = new Set(previous.dirs);
  /** Directories made by this run: empty, so nothing in them needs looking up. */
  const madeNow = new Set<string>();
  // Recorded (journalled below) before they are made: a kill in between must not leave a directory
  // no record names, or uninstall would leave it behind.
  const toMake: { dir: SourceTree["dirs"][number]; replace: boolean }[] = [];
  for (const dir of tree.dirs) {
    const existing = lstatOrUndefined(path.join(destDir, dir.rel));
    if (existing === undefined || !existing.isDirectory()) {
      // Not a directory: our own stale file or link where the new release has a directory: replaced.
      toMake.push({ dir, replace: existing !== undefined });
      createdDirs.add(dir.rel);
      madeNow.add(dir.rel);
    }
  }
  const toCopy: SourceFile[] = [];
  const files: Record<string, InstalledFile | null> = { ...previous.files };
  for (const file of tree.files) {
    const parent = path.posix.dirname(file.rel);
    const installed = madeNow.has(parent) ? undefined : lstatOrUndefined(path.join(destDir, file.rel));
    if (!stillOurs(previous.files[file.rel], file.stats, installed)) {
      toCopy.push(file);
      files[file.rel] = null;
    }
  }
  const symlinks = { ...previous.symlinks };
  for (const link of tree.symlinks) symlinks[link.rel] = link.target;
  const linksChanged = tree.symlinks.some((link) => previous.symlinks[link.rel] !== link.target);
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
  const copier = new FileCopier(sourceDir, destDir);
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
  const written: string[] = toCopy.map((file) => path.join(destDir, file.rel));

  for (const link of tree.symlinks) {
    const dest = path.join(destDir, link.rel);
    const existing = lstatOrUndefined(dest);
    if (existing?.isSymbolicLink() && fs.readlinkSync(dest) === link.target) continue;
    if (existing?.isDirectory()) throw new UserError(`${dest}: is a directory where the release has a symlink; remove it`);
    const temp = tempPathFor(dest);
    await fsp.rm(temp, { force: true });
    await fsp.symlink(link.target, temp);
    await fsp.rename(temp, dest);
    written.push(dest);
  }

  if (written.length > 0) await syncFileSystem(destDir, written);

  // Record what the quick check needs, from the installed copies (inode and ctime after the rename).
  for (const file of toCopy) {
    const installed = fs.lstatSync(path.join(destDir, file.rel));
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
