// Errors the operator can act on. The CLI prints exactly one stderr line for them and exits 1;
// everything else is a bug and is printed with its stack (exit 2).

/** A refusal: the agent changed nothing (or put everything back) and says what to fix. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** The runtime did not come back with the new configuration; the previous one was restored. */
export class RuntimeRestartError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = "RuntimeRestartError";
  }
}

export function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error ? String((error as { code: unknown }).code) : undefined;
}

/**
 * The one stderr line for a failure the operator can act on, or undefined for a bug. System call
 * failures (no space left, permission denied, I/O error...) are the host's, not ours: Node's message
 * names the call and the path, and every command is safe to re-run once it is fixed.
 */
export function oneLineReason(error: unknown): string | undefined {
  if (error instanceof UserError) return error.message;
  const code = errnoCode(error);
  const syscall = typeof error === "object" && error !== null ? (error as { syscall?: unknown }).syscall : undefined;
  if (error instanceof Error && code !== undefined && /^E[A-Z0-9]+$/.test(code) && typeof syscall === "string") {
    return `${error.message.split("\n")[0]}; fix that and run the same command again (it resumes where it stopped)`;
  }
  return undefined;
}

/**
 * A user-fixable problem with an existing config (bad TOML/JSON, duplicate table, a table we would add
 * already defined by someone else, an inline table we cannot extend, ...). The message names the
 * problem and the fix; the caller prefixes the file path. Nothing has been written when it is thrown.
 */
export class ConfigError extends Error {
  constructor(
    message: string,
    /** Host-absolute path of the offending file, when the planner knows it. */
    readonly file?: string,
  ) {
    super(message);
    this.name = "ConfigError";
  }
}
