// One adapter per container runtime: which planner to call, which file is the "main" one (it points at
// the others, so it is written last on install and first on removal), how the runtime's own parser
// validates a candidate, and how the runtime is restarted and checked. Each runtime's adapter lives in
// runtimes/<runtime>/service.ts; the lifecycle (install, uninstall, reset, status) sees only this interface.
import type { HostCommands } from "../host/commands";
import type { FileEdit, KataConfigRequest, Runtime } from "./types";

export type ReadHostFile = (hostPath: string) => string | undefined;

export interface RuntimeAdapter {
  runtime: Runtime;
  /** The file that references the others (written last on install, first on removal). */
  mainConfig: string;
  /** How it was set up, recorded in the state. */
  details: Record<string, string | string[] | number | undefined>;
  /**
   * Checks on the node what the request needs but no config file can tell (containerd: that each
   * requested snapshotter exists), before anything is changed; throws a UserError to refuse. `host` is
   * undefined with --restart none (no host commands): the check is then skipped and logged.
   */
  preflight?(host: HostCommands | undefined, request: KataConfigRequest): Promise<void>;
  /** `notices`: things the operator should know that are not errors (e.g. an alias left to its owner). */
  /** `list`: a host directory's entries (sorted), for import globs; undefined when it is not a directory. */
  planInstall(read: ReadHostFile, request: KataConfigRequest, previousOwned: unknown, list?: (hostDir: string) => string[] | undefined): { edits: FileEdit[]; owned: unknown; notices?: string[] };
  planUninstall(read: ReadHostFile, owned: unknown): FileEdit[];
  /**
   * Checks a candidate main config (a temp file next to the real one, so relative imports resolve)
   * with the runtime's own parser; returns the parser's complaint, or undefined when it is fine or
   * the parser is not reachable.
   */
  validate(host: HostCommands, candidateHostPath: string, expectedRuntimes?: string[]): Promise<string | undefined>;
  /**
   * Restarts (or reloads) the runtime and waits until it answers and, where the runtime can tell,
   * lists every runtime in `present` and none in `absent`; returns the unit and any problem.
   */
  restartAndVerify(host: HostCommands, present: string[], absent?: string[]): Promise<{ unit: string; problem?: string }>;
  /**
   * Removal only, when a reload would keep what the restored file no longer mentions: the content to
   * write (and reload) first so the runtime drops our entries; undefined when not needed.
   */
  removalStep?(current: string, restored: string | undefined): string | undefined;
}

/** Parses "x.y" out of a version banner (`containerd github.com/containerd/containerd v1.7.24 ...`). */
export function parseVersion(banner: string): { major: number; minor: number } | undefined {
  const match = /\bv?(\d+)\.(\d+)(?:\.\d+)?/.exec(banner);
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
}
