// The host-level lock that serializes agents on one node (installer, preStop, cleanup, a manual run).
//
// flock(2) on a directory we open ourselves, taken by util-linux `flock <fd>` on that same open file:
// the child inherits the descriptor, locks it and exits at once. A flock(2) lock belongs to the open
// file description, not to the process that asked for it (flock(2): "locks created by flock() are
// associated with an open file description"), so it stays held by our descriptor after the child has
// exited, until we close it or die. (util-linux sys-utils/flock.c: with a number instead of a file it
// calls flock() on that descriptor and, without a command, exits 0 — the `( flock 9; ... ) 9>file`
// idiom.) Why this shape:
// - the kernel owns the lock and ties it to an open file of the host's inode, so it works across PID
//   and mount namespaces (two pods with the same hostPath) and needs no PID or clock comparisons;
// - if we are SIGKILLed the kernel closes our descriptor and drops the lock at once — no stale lock to
//   time out (a mtime-based lock such as proper-lockfile would block the next agent for its stale period);
// - Node has no flock binding and a native addon would need a compiler in the image; one short-lived
//   `flock` process is the only thing started (no shell, no process kept alive while we hold the lock).
// libuv opens every descriptor close-on-exec, so nothing else we start (sync, systemctl) inherits the
// lock; only the `flock` child gets it, explicitly.
// The lock is taken on the host root directory itself (the host's `/`), so nothing extra is left on
// the host, and every agent serializes on it whatever its --prefix: they all edit the same runtime
// configs. (A lock on a directory that can be removed or renamed away would need a waiter to check,
// once it holds the lock, that the path still names the inode it locked; acquireHostLock does.)
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { UserError, errnoCode } from "../report/errors";
import * as log from "../report/log";

export interface HostLock {
  release(): Promise<void>;
}

export type AcquiredHostLock = { lock: HostLock; createdDirs: string[] } | undefined;

/** A lock being taken: await `acquired`, or `abandon` it (a refusal before it was needed). */
export interface PendingHostLock {
  acquired: Promise<AcquiredHostLock>;
  abandon(): Promise<void>;
}

/**
 * Starts taking the host lock on `localDir` now, so that the wait for it (starting `flock` on a busy
 * machine, another agent's run) overlaps the caller's own checks instead of following them.
 */
export function startHostLock(localDir: string): PendingHostLock {
  const controller = new AbortController();
  const acquired = acquireHostLock(localDir, undefined, controller.signal);
  // Awaited by the caller (or by abandon); this keeps a failure from counting as unhandled meanwhile.
  acquired.catch(() => undefined);
  return {
    acquired,
    abandon: async () => {
      controller.abort();
      const got = await acquired.catch(() => undefined);
      await got?.lock.release();
    },
  };
}

/**
 * Takes the host lock on `localDir`. With `create`, a missing directory is created by it (it returns
 * the directories it made, passed on for the state); without, a missing (or meanwhile removed)
 * directory means there is nothing to lock and undefined is returned.
 */
export async function acquireHostLock(localDir: string, create: (() => Promise<string[]>) | undefined, abandoned?: AbortSignal): Promise<AcquiredHostLock> {
  const createdDirs: string[] = [];
  // A function, not a property read: it changes while we wait.
  const isAbandoned = (): boolean => abandoned?.aborted === true;
  const waitNotice = setTimeout(() => log.info(`waiting for another kata-deploy holding the lock on ${localDir}`), 2000);
  try {
    for (;;) {
      if (isAbandoned()) return undefined;
      if (create) createdDirs.push(...(await create()));
      const fd = openDirectory(localDir);
      if (fd === undefined) {
        if (create) continue; // removed right after we created it: create it again
        return undefined;
      }
      let locked = false;
      try {
        const failure = await flockDescriptor(fd, abandoned);
        if (isAbandoned()) return undefined; // closed below, locked or not
        if (failure !== undefined) {
          // A directory that vanished meanwhile is looked at again; otherwise flock(1) itself failed.
          if (currentInode(localDir) === undefined) continue;
          throw new UserError(`cannot take the host lock on ${localDir} with flock(1) (${failure}); install util-linux in the agent's image (nothing was changed)`);
        }
        // Waiting, we may have locked a directory that was removed or replaced meanwhile: the path must still name it.
        const lockedStats = fs.fstatSync(fd);
        if (`${lockedStats.dev}:${lockedStats.ino}` === currentInode(localDir)) {
          locked = true;
          return { lock: { release: async () => fs.closeSync(fd) }, createdDirs };
        }
      } finally {
        if (!locked) fs.closeSync(fd);
      }
    }
  } finally {
    clearTimeout(waitNotice);
  }
}

/** An open descriptor of the directory (read-only, close-on-exec), or undefined when it does not exist. */
function openDirectory(localDir: string): number | undefined {
  try {
    return fs.openSync(localDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
}

function currentInode(localDir: string): string | undefined {
  try {
    const stats = fs.statSync(localDir);
    return `${stats.dev}:${stats.ino}`;
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * Runs `flock --exclusive 3` with our descriptor as its fd 3 and waits for it (it blocks while another
 * agent holds the lock). Returns undefined once the lock is held by our descriptor, else why not.
 */
function flockDescriptor(fd: number, abandoned: AbortSignal | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    // Abandoned: the child is killed (it may be waiting for another agent's lock).
    const child = spawn("flock", ["--exclusive", "3"], { stdio: ["ignore", "ignore", "pipe", fd], signal: abandoned, killSignal: "SIGKILL" });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (error) => resolve(error.message));
    child.on("close", (code, signal) => {
      if (code === 0) return resolve(undefined);
      resolve(stderr.trim().split("\n").slice(-1)[0] || `flock exited with ${code ?? signal}`);
    });
  });
}
