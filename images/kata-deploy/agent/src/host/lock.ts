// The host-level lock that serializes agents on one node (installer, preStop, cleanup, a manual run).
//
// flock(2) on the install prefix directory, held by util-linux `flock` in a child process whose stdin
// is a pipe from us. Why this shape:
// - the kernel owns the lock and ties it to an open file of the host's inode, so it works across PID
//   and mount namespaces (two pods with the same hostPath) and needs no PID or clock comparisons;
// - if we are SIGKILLed the pipe closes, the child's `cat` sees EOF and exits, and the kernel drops the
//   lock at once — no stale lock to time out (a mtime-based lock such as proper-lockfile would block
//   the next agent for its stale period);
// - Node has no flock binding and a native addon would need a compiler in the image.
// The lock is taken on the host root directory itself (the host's `/`), so nothing extra is left on
// the host, and every agent serializes on it whatever its --prefix: they all edit the same runtime
// configs. (A lock on a directory that can be removed or renamed away would need a waiter to check,
// once it holds the lock, that the path still names the inode it locked; acquireHostLock does.)
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import * as fs from "node:fs";
import { UserError, errnoCode } from "../report/errors";
import * as log from "../report/log";

const HOLD_SCRIPT = [
  'exec 9<"$1" || exit 3',
  "flock --exclusive 9 || exit 4",
  "stat --dereference --format=%d:%i /dev/fd/9 || exit 5",
  // Keep fd 9 (and so the lock) until our parent closes the pipe, by exit or by death.
  "exec cat >/dev/null",
].join("\n");

export interface HostLock {
  release(): Promise<void>;
}

/**
 * Takes the host lock on `localDir`. With `create`, a missing directory is created by it (it returns
 * the directories it made, passed on for the state); without, a missing (or meanwhile removed)
 * directory means there is nothing to lock and undefined is returned.
 */
export async function acquireHostLock(localDir: string, create: (() => Promise<string[]>) | undefined): Promise<{ lock: HostLock; createdDirs: string[] } | undefined> {
  const createdDirs: string[] = [];
  let lastStderr: string;
  const waitNotice = setTimeout(() => log.info(`waiting for another kata-deploy holding the lock on ${localDir}`), 2000);
  try {
    for (let attempt = 0; ; attempt++) {
      if (create) createdDirs.push(...(await create()));
      else if (currentInode(localDir) === undefined) return undefined;
      const child = spawn("sh", ["-c", HOLD_SCRIPT, "kata-deploy-lock", localDir], { stdio: ["pipe", "pipe", "pipe"] });
      const { line: lockedInode, stderr } = await firstLine(child);
      lastStderr = stderr.trim().split("\n").slice(-1)[0] ?? "";
      if (lockedInode !== undefined && lockedInode === currentInode(localDir)) {
        return { lock: { release: () => releaseChild(child) }, createdDirs };
      }
      await releaseChild(child);
      // No inode and the directory is there: flock(1) itself failed (a vanished directory is retried).
      if (lockedInode === undefined && attempt > 0 && currentInode(localDir) !== undefined) {
        throw new UserError(`cannot take the host lock on ${localDir} with flock(1) (${lastStderr || "it exited without locking"}); install util-linux in the agent's image (nothing was changed)`);
      }
    }
  } finally {
    clearTimeout(waitNotice);
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

/** The child's first stdout line (the locked inode), or undefined when it exited without one; and its stderr. */
function firstLine(child: ChildProcessWithoutNullStreams): Promise<{ line: string | undefined; stderr: string }> {
  return new Promise((resolveBoth) => {
    const resolve = (line: string | undefined): void => resolveBoth({ line, stderr });
    let buffered = "";
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString();
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        child.stdout.off("data", onData);
        resolve(buffered.slice(0, newline).trim());
      }
    };
    child.stdout.on("data", onData);
    child.on("error", (error) => {
      log.warn(`flock: ${error.message}`);
      resolve(undefined);
    });
    child.on("close", () => resolve(undefined));
  });
}

function releaseChild(child: ChildProcessWithoutNullStreams): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.stdin.end();
  });
}
