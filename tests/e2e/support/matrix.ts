// The e2e report: node × step → pass/fail, seconds, runtime restarts. Steps record themselves through
// `matrixStep` (a mocha `it` that also measures); the root hook prints the matrix and writes it as
// markdown and JSON under test-output/e2e/.
import * as fs from "node:fs";
import * as path from "node:path";

export type Outcome = "pass" | "fail" | "not run";

export interface MatrixCell {
  node: string;
  step: string;
  outcome: Outcome;
  seconds: number;
  /** Runtime (re)starts observed during the step, per unit; undefined when not measured. */
  restarts?: Record<string, number>;
  /** Extra observations (reloads, exit codes) shown in the report. */
  note?: string;
  error?: string;
}

const cells: MatrixCell[] = [];
const started = Date.now();

export const OUTPUT_DIR = path.resolve(__dirname, "../../../test-output/e2e");

export function recordCell(cell: MatrixCell): void {
  cells.push(cell);
}

export interface StepContext {
  /** Adds a note to this step's cell. */
  note(text: string): void;
}

/**
 * A mocha `it` that becomes one matrix cell. `countRestarts` returns cumulative start counts per unit; it is
 * read before and after, and the difference is the step's restart count.
 */
export function matrixStep(
  node: string,
  step: string,
  countRestarts: (() => Record<string, number>) | undefined,
  body: (step: StepContext) => Promise<void> | void,
): Mocha.Test {
  return it(step, async function () {
    const notes: string[] = [];
    const before = countRestarts?.();
    const t0 = Date.now();
    let error: unknown;
    try {
      await body({ note: (text) => notes.push(text) });
    } catch (caught) {
      error = caught;
    }
    const seconds = (Date.now() - t0) / 1000;
    let restarts: Record<string, number> | undefined;
    try {
      const after = countRestarts?.();
      if (before && after) restarts = Object.fromEntries(Object.entries(after).map(([unit, n]) => [unit, n - (before[unit] ?? 0)]));
    } catch (countError) {
      notes.push(`restart count unavailable: ${(countError as Error).message.split("\n")[0]}`);
    }
    recordCell({
      node,
      step,
      outcome: error ? "fail" : "pass",
      seconds,
      restarts,
      note: notes.join("; ") || undefined,
      error: error ? oneLine(String((error as Error).message ?? error)) : undefined,
    });
    if (error) throw error;
  });
}

/** A multi-line message (assertion text, then the command's output) as one table-friendly line. */
function oneLine(message: string, max = 240): string {
  const text = message.split("\n").map((line) => line.trim()).filter(Boolean).join(" ⏎ ");
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function restartsText(restarts: Record<string, number> | undefined): string {
  if (!restarts) return "–";
  const entries = Object.entries(restarts);
  if (entries.length === 1) return String(entries[0][1]);
  return entries.map(([unit, n]) => `${unit} ${n}`).join(", ");
}

/** The matrix as markdown: one row per node and step, in the order they ran. */
export function renderMarkdown(all: readonly MatrixCell[] = cells): string {
  const seconds = (Date.now() - started) / 1000;
  const lines = [
    `| node | step | result | seconds | restarts | notes |`,
    `|---|---|---|---:|---|---|`,
    ...all.map((c) =>
      `| ${c.node} | ${c.step} | ${c.outcome === "pass" ? "pass" : `**${c.outcome}**`} | ${c.seconds.toFixed(1)} | ${restartsText(c.restarts)} | ${[c.note, c.error].filter(Boolean).join("; ").replace(/\|/g, "\\|")} |`,
    ),
    "",
    `${all.filter((c) => c.outcome === "pass").length}/${all.length} steps passed; e2e wall time ${seconds.toFixed(0)} s.`,
  ];
  return lines.join("\n");
}

/** Prints the matrix and writes matrix.md and matrix.json; called once after all e2e specs. */
export function writeMatrix(): void {
  if (cells.length === 0) return;
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const markdown = renderMarkdown();
  fs.writeFileSync(path.join(OUTPUT_DIR, "matrix.md"), `# kata-deploy e2e matrix (${new Date().toISOString()})\n\n${markdown}\n`);
  fs.writeFileSync(
    path.join(OUTPUT_DIR, "matrix.json"),
    `${JSON.stringify({ finishedAt: new Date().toISOString(), wallSeconds: (Date.now() - started) / 1000, cells }, null, 2)}\n`,
  );
  process.stdout.write(`\nkata-deploy e2e matrix (also in ${path.relative(process.cwd(), OUTPUT_DIR)}/matrix.md):\n\n${markdown}\n`);
}
