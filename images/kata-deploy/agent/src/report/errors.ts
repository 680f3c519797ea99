// Errors the operator can act on, as data: the throw site says what is wrong and what to do, with
// the file, line and key it knows; report/format.ts turns them into the one stderr line the CLI
// prints and exits 1 with. Everything else is a bug and is printed with its stack (exit 2).

/** A refusal: the agent changed nothing (or put everything back) and says what to fix. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** The fields of a problem with an existing config file; see ConfigError. */
export interface ConfigProblem {
  /**
   * Host-absolute path of the offending file. A planner may leave it out when the problem is in the
   * runtime's main config (the lifecycle fills that in) or in no file at all (the request itself).
   */
  file?: string;
  /** 1-based line as an editor shows it: the whole file, k3s/rke2 template header lines included. */
  line?: number;
  /** 1-based column on `line`, when the parser reports one. */
  column?: number;
  /** The key (path) at fault, as TOML/JSON spells it: `version`, `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu`. */
  key?: string;
  /** What is wrong, without where or what to do: "runtime `kata-qemu` is already defined (...) by something other than kata-deploy". */
  problem: string;
  /** What the operator does about it: "remove or rename it (or install other shims) and run again". */
  fix: string;
}

/**
 * A user-fixable problem with an existing config (bad TOML/JSON, duplicate table, a table we would add
 * already defined by someone else, an inline table we cannot extend, ...). Nothing has been written
 * when it is thrown. Throw sites pass fields, never a sentence with the line in it:
 *
 *   throw new ConfigError({ file, line, key: "imports", problem: "`imports` must be an array of file paths", fix: "fix it and run again" });
 *
 * `message` is the problem alone; the operator's line ("<file>: line N: <problem>; <fix>") is built
 * by formatForOperator (report/format.ts) only.
 */
export class ConfigError extends Error implements ConfigProblem {
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  readonly key?: string;
  readonly problem: string;
  readonly fix: string;

  constructor(fields: ConfigProblem) {
    super(fields.problem);
    this.name = "ConfigError";
    this.file = fields.file;
    this.line = fields.line;
    this.column = fields.column;
    this.key = fields.key;
    this.problem = fields.problem;
    this.fix = fields.fix;
  }

  get fields(): ConfigProblem {
    return { file: this.file, line: this.line, column: this.column, key: this.key, problem: this.problem, fix: this.fix };
  }

  /** The same problem `lines` further down its file: it was found in a text parsed without the lines above it (a template header). */
  linesDown(lines: number): ConfigError {
    return this.line === undefined || lines === 0 ? this : new ConfigError({ ...this.fields, line: this.line + lines });
  }

  /** The same problem, in `file` when the planner named no file (the runtime's main config). */
  inFileUnlessNamed(file: string): ConfigError {
    return this.file !== undefined ? this : new ConfigError({ ...this.fields, file });
  }
}

/** The fields of a runtime that did not come back healthy after a restart or reload; see RuntimeRestartError. */
export interface RestartFailure {
  /** The systemd unit restarted (or reloaded), e.g. `containerd`, `k3s`, `docker`. */
  unit: string;
  /** What the health check saw, e.g. "ctr: failed to dial ...". */
  problem: string;
  /**
   * What the restart was for: loading the new configuration (`install`), dropping Kata from it
   * (`uninstall`), or only bringing the runtime back (`reset`, which then leaves the node labels).
   */
  step: "install" | "uninstall" | "reset";
  /** The config files written by this run were put back as they were before it (install only). */
  rolledBack: boolean;
  /** Rolled back: the runtime's main config as the operator knows it (e.g. /etc/containerd/config.toml); the line names it. */
  mainConfig?: string;
  /** Rolled back: every host path put back (symlinks resolved, drop-ins included), in the order they were restored. */
  restoredFiles?: string[];
  /** The restart after the rollback failed too: what its health check saw. */
  rollbackProblem?: string;
}

/** The runtime did not come back healthy; `rolledBack` says whether the previous configuration was restored. */
export class RuntimeRestartError extends Error implements RestartFailure {
  readonly unit: string;
  readonly problem: string;
  readonly step: RestartFailure["step"];
  readonly rolledBack: boolean;
  readonly mainConfig?: string;
  readonly restoredFiles?: string[];
  readonly rollbackProblem?: string;

  constructor(fields: RestartFailure) {
    super(fields.problem);
    this.name = "RuntimeRestartError";
    this.unit = fields.unit;
    this.problem = fields.problem;
    this.step = fields.step;
    this.rolledBack = fields.rolledBack;
    this.mainConfig = fields.mainConfig;
    this.restoredFiles = fields.restoredFiles;
    this.rollbackProblem = fields.rollbackProblem;
  }
}

export function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error ? String((error as { code: unknown }).code) : undefined;
}
