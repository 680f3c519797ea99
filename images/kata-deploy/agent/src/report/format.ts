// The one place an error the operator can act on becomes text: the single stderr line the CLI prints
// before exiting 1, which the kubelet also keeps as the installer container's termination message
// (terminationMessagePolicy FallbackToLogsOnError keeps the log's tail) and `pulumi up` quotes.
// Throw sites pass fields (report/errors.ts); only this module assembles "<file>: line N: <problem>; <fix>".
import { ConfigError, RuntimeRestartError, UserError, errnoCode, type ConfigProblem, type RestartFailure } from "./errors";

/**
 * The one stderr line for a failure the operator can act on, or undefined for a bug. System call
 * failures (no space left, permission denied, I/O error...) are the host's, not ours: Node's message
 * names the call and the path, and every command is safe to re-run once it is fixed.
 */
export function formatForOperator(error: unknown): string | undefined {
  if (error instanceof ConfigError) return error.file === undefined ? formatConfigProblem(error) : `${error.file}: ${formatConfigProblem(error)}`;
  if (error instanceof RuntimeRestartError) return formatRestartFailure(error);
  if (error instanceof UserError) return error.message;
  const code = errnoCode(error);
  const syscall = typeof error === "object" && error !== null ? (error as { syscall?: unknown }).syscall : undefined;
  if (error instanceof Error && code !== undefined && /^E[A-Z0-9]+$/.test(code) && typeof syscall === "string") {
    return `${error.message.split("\n")[0]}; fix that and run the same command again (it resumes where it stopped)`;
  }
  return undefined;
}

/** A config problem without its file: "line 12, column 3: <problem>; <fix>" (the line, column or both may be absent). */
export function formatConfigProblem(problem: ConfigProblem): string {
  const column = problem.column === undefined ? "" : `, column ${problem.column}`;
  const where = problem.line === undefined ? "" : `line ${problem.line}${column}: `;
  return `${where}${problem.problem}; ${problem.fix}`;
}

function formatRestartFailure(failure: RestartFailure): string {
  const { unit, problem } = failure;
  if (failure.rolledBack) {
    const restarted =
      failure.rollbackProblem === undefined ? "restarted it (healthy again)" : `restarting it failed too (${failure.rollbackProblem}): see \`systemctl status ${unit}\``;
    // The main config stands for the whole configuration (it points at the others); restoredFiles lists them all.
    const restored = failure.mainConfig ?? (failure.restoredFiles ?? []).join(", ");
    return `${unit}: did not come back healthy with the new configuration (${problem}); restored the previous ${restored} and ${restarted}`;
  }
  if (failure.step === "uninstall") return `${unit}: not healthy after removing Kata from its configuration (${problem})`;
  if (failure.step === "reset") return `${unit}: not healthy after the restart (${problem}); labels left in place`;
  return `${unit}: not healthy after the restart (${problem})`;
}
