// Log lines go to stdout; stderr carries only the one-line reason when a command fails (tests and
// operators can rely on that). `status` prints JSON on stdout and logs nothing. One line per phase, with its duration,
// so an operator reading `kubectl logs` sees where time went and where a run stopped.

function stamp(): string {
  return new Date().toISOString();
}

export function info(message: string): void {
  process.stdout.write(`${stamp()} kata-deploy: ${message}\n`);
}

export function warn(message: string): void {
  process.stdout.write(`${stamp()} kata-deploy: warning: ${message}\n`);
}

/** Something the operator should know that is not a failure (e.g. a runtime alias left to its owner). */
export function notice(message: string): void {
  process.stdout.write(`${stamp()} kata-deploy: notice: ${message}\n`);
}

/** Runs one phase and logs `<name>: done in 12 ms` (or `failed after ...`) when it ends. */
export async function phase<T>(name: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    const result = await work();
    info(`${name}: done in ${formatDuration(performance.now() - started)}`);
    return result;
  } catch (error) {
    info(`${name}: failed after ${formatDuration(performance.now() - started)}`);
    throw error;
  }
}

export function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1 << 20) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1 << 30) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
}
