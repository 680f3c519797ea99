// Reads configs back with the real runtimes: `containerd -c FILE config dump` (the host's containerd,
// or one inside a node image) and `dockerd --validate --config-file FILE` (node images, docker >= 23).
// Each image is started once per batch of files, so a whole corpus costs one `docker run`.
import { execFileSync, spawnSync } from "node:child_process";
import { parse as parseToml } from "smol-toml";

export type TomlTable = Record<string, unknown>;

export interface ReadBack {
  ok: boolean;
  /** stdout of the tool (the dumped config for containerd). */
  output: string;
  /** stderr (containerd's and dockerd's error messages). */
  errors: string;
}

/** `containerd -c FILE config dump` with the host's containerd. */
export function dumpWithHostContainerd(file: string): ReadBack {
  const result = spawnSync("containerd", ["-c", file, "config", "dump"], { encoding: "utf8", timeout: 60_000 });
  return { ok: result.status === 0, output: result.stdout, errors: result.stderr };
}

const quote = (file: string): string => `'${file.replace(/'/g, "'\\''")}'`;

/**
 * Runs `script FILE` for every file inside one container of `image` (directories bind-mounted at the
 * same paths, read-only) and returns each file's result.
 */
function runBatchInImage(image: string, binds: string[], files: string[], command: string): Map<string, ReadBack> {
  // The separator lines cannot occur in TOML/JSON dumps or in the tools' messages.
  const script = files
    .map(
      (file, i) =>
        `echo '@@@BEGIN ${i}'; echo '@@@BEGIN ${i}' >&2; ${command.includes("__FILE__") ? command.replace("__FILE__", quote(file)) : `${command} ${quote(file)}`}; echo "@@@END ${i} $?"; echo '@@@END ${i}' >&2`,
    )
    .join("\n");
  const result = spawnSync(
    "docker",
    ["run", "--rm", ...[...new Set(binds)].flatMap((dir) => ["-v", `${dir}:${dir}:ro`]), image, "sh", "-c", script],
    { encoding: "utf8", maxBuffer: 256 << 20, timeout: 300_000 },
  );
  if (result.error) throw result.error;
  const results = new Map<string, ReadBack>();
  files.forEach((file, i) => {
    const out = new RegExp(`@@@BEGIN ${i}\\n([\\s\\S]*?)@@@END ${i} (\\d+)`).exec(result.stdout);
    const err = new RegExp(`@@@BEGIN ${i}\\n([\\s\\S]*?)@@@END ${i}`).exec(result.stderr);
    if (!out) throw new Error(`no result for ${file} from ${image}:\n${result.stdout.slice(-2000)}\n${result.stderr.slice(-2000)}`);
    results.set(file, { ok: out[2] === "0", output: out[1], errors: err?.[1] ?? "" });
  });
  return results;
}

/** `containerd -c FILE config dump` inside `image` for each file. */
export function dumpInImage(image: string, binds: string[], files: string[]): Map<string, ReadBack> {
  return runBatchInImage(image, binds, files, "containerd -c __FILE__ config dump");
}

/** `dockerd --validate --config-file FILE` inside `image` for each file. */
export function validateDockerInImage(image: string, binds: string[], files: string[]): Map<string, ReadBack> {
  return runBatchInImage(image, binds, files, "dockerd --validate --config-file");
}

/** Parses a `config dump` (throws with the tool's messages when the dump failed). */
export function parseDump(readBack: ReadBack, what: string): TomlTable {
  if (!readBack.ok) throw new Error(`containerd refused ${what}:\n${readBack.errors.slice(-3000)}`);
  // Ordinary objects (the parser builds prototype-less ones), so strict deep comparisons work.
  return JSON.parse(JSON.stringify(parseToml(readBack.output))) as TomlTable;
}

export const hostContainerdVersion = (): string => execFileSync("containerd", ["--version"], { encoding: "utf8" }).trim();
