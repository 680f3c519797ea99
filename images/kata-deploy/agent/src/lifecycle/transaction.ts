// Config changes as journalled transactions: the complete set of writes (new bytes included) is saved
// in the state BEFORE the first config file is touched, then the files are written one by one
// (atomically), then the transaction is committed. A run that finds a pending transaction rolls it
// forward first, so a kill at any instant converges to the uninterrupted result.
import * as fs from "node:fs";
import * as path from "node:path";
import { errnoCode } from "../report/errors";
import { atomicWrite, makeDirs, removeDirIfEmpty, removeFile, sha256, tempPathFor, type HostRoot } from "../host/files";
import * as log from "../report/log";
import { saveState, type AgentState, type PendingWrite, type Runtime, type RuntimeRecord, type Transaction } from "./state";

/** A planned write with its old bytes kept in memory (for undo), journalled as a PendingWrite. */
export interface PlannedWrite {
  /** Real (symlink-resolved) host path. */
  hostPath: string;
  before: Buffer | undefined;
  after: Buffer | undefined;
  /** Mode/owner to keep. */
  like?: fs.Stats;
  /** Mode of a file this write creates (an existing file keeps its own, `like`); default 0644. */
  mode?: number;
}

function toPending(write: PlannedWrite): PendingWrite {
  const pending: PendingWrite = {
    hostPath: write.hostPath,
    beforeSha: write.before === undefined ? null : sha256(write.before),
    after: write.after === undefined ? null : write.after.toString("base64"),
    afterSha: write.after === undefined ? null : sha256(write.after),
  };
  if (write.like) {
    pending.mode = write.like.mode & 0o7777;
    pending.uid = write.like.uid;
    pending.gid = write.like.gid;
  } else if (write.mode !== undefined) {
    pending.mode = write.mode;
  }
  return pending;
}

function currentSha(root: HostRoot, hostPath: string): string | null {
  try {
    return sha256(fs.readFileSync(root.local(hostPath)));
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return null;
    throw error;
  }
}

async function performWrite(root: HostRoot, write: PendingWrite, beforeRename?: (tempHostPath: string) => Promise<void>): Promise<void> {
  const local = root.local(write.hostPath);
  if (currentSha(root, write.hostPath) === write.afterSha) {
    await fs.promises.rm(tempPathFor(local), { force: true });
    return;
  }
  if (write.after === null) {
    await removeFile(local);
    return;
  }
  await makeDirs(path.dirname(local));
  let like: fs.Stats | undefined;
  try {
    like = fs.statSync(local);
  } catch {
    like = undefined;
  }
  await atomicWrite(local, Buffer.from(write.after, "base64"), {
    like,
    mode: write.mode ?? 0o644,
    beforeRename: beforeRename ? (temp) => beforeRename(temp.slice(root.dir === "/" ? 0 : root.dir.length)) : undefined,
  });
  if (!like && write.uid !== undefined && write.gid !== undefined && process.getuid?.() === 0) {
    fs.chownSync(local, write.uid, write.gid);
  }
}

function commit(state: AgentState, tx: Transaction): void {
  if (tx.recordAfter === null) delete state.runtimes[tx.runtime];
  else state.runtimes[tx.runtime] = tx.recordAfter;
  delete state.pending;
}

/**
 * Journals and applies `writes` for `runtime`, then records `recordAfter`. `validateMain`, when given,
 * is called with the host path of the main file's complete temp copy before it is renamed into place;
 * if it throws, the writes already made are undone and the state is left as it was.
 */
export async function applyTransaction(args: {
  root: HostRoot;
  state: AgentState;
  runtime: Runtime;
  writes: PlannedWrite[];
  recordAfter: RuntimeRecord | null;
  /** Directories (host paths) to remove when empty once the writes are done; part of the transaction. */
  removeDirs?: string[];
  /**
   * Directories (host paths) the writes create. If the transaction is undone they are removed (when
   * empty) by the undo transaction itself, i.e. while the journal still names them: removed after the
   * undo's commit, a kill in between would leave a directory no record knows we made.
   */
  createsDirs?: string[];
  validate?: { hostPath: string; check: (tempHostPath: string) => Promise<void> };
}): Promise<void> {
  const { root, state } = args;
  const recordBefore = state.runtimes[args.runtime];
  if (args.writes.length === 0 && (args.removeDirs ?? []).length === 0) {
    // Nothing to write: no journal needed, only the record (saved by the caller's next save).
    commit(state, { runtime: args.runtime, writes: [], recordAfter: args.recordAfter });
    return;
  }
  const tx: Transaction = { runtime: args.runtime, writes: args.writes.map(toPending), recordAfter: args.recordAfter, removeDirs: args.removeDirs };
  state.pending = tx;
  await saveState(root, state);
  const done: PlannedWrite[] = [];
  try {
    for (const [index, write] of args.writes.entries()) {
      const check = args.validate && args.validate.hostPath === write.hostPath ? args.validate.check : undefined;
      await performWrite(root, tx.writes[index], check);
      done.push(write);
    }
  } catch (error) {
    // Put back what this transaction already wrote, then forget it: the host is as before the run.
    const undo = done.reverse().map((write): PlannedWrite => ({ hostPath: write.hostPath, before: write.after, after: write.before, like: write.like }));
    const undoTx: Transaction = { runtime: args.runtime, writes: undo.map(toPending), recordAfter: recordBefore ?? null, removeDirs: args.createsDirs };
    state.pending = undoTx;
    await saveState(root, state);
    for (const write of undoTx.writes) await performWrite(root, write);
    await removeCreatedDirs(root, undoTx.removeDirs ?? []);
    commit(state, undoTx);
    await saveState(root, state);
    throw error;
  }
  await removeCreatedDirs(root, tx.removeDirs ?? []);
  commit(state, tx);
  // Not durable: if this commit is lost the next run rolls the (complete) transaction forward again.
  await saveState(root, state, false);
}

/** Finishes a transaction an interrupted run left behind. */
export async function resumePending(root: HostRoot, state: AgentState): Promise<void> {
  const tx = state.pending;
  if (tx === undefined) return;
  log.info(`resuming an interrupted ${tx.runtime} configuration change (${tx.writes.length} file(s))`);
  for (const write of tx.writes) {
    const current = currentSha(root, write.hostPath);
    if (current === write.afterSha || current === write.beforeSha) {
      await performWrite(root, write);
    } else {
      // Someone changed the file between our journal and now: leave their version; removal later is surgical.
      log.warn(`${write.hostPath}: changed by someone else since the interrupted run; leaving it as it is`);
    }
  }
  await removeCreatedDirs(root, tx.removeDirs ?? []);
  commit(state, tx);
  await saveState(root, state);
}

/** Removes config directories we created, deepest first, when they are empty. */
export async function removeCreatedDirs(root: HostRoot, hostDirs: string[]): Promise<void> {
  for (const dir of [...hostDirs].sort((a, b) => b.length - a.length)) await removeDirIfEmpty(root.local(dir));
}
