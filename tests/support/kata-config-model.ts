// How Kata itself reads a configuration file and its drop-ins, written from its source (kata-containers
// 4.1.0), so tests can assert the values Kata will use rather than the files kata-deploy wrote:
//
// Go runtime, src/runtime/pkg/katautils/config.go:
// - decodeConfig: `ResolvePath` (filepath.Abs + EvalSymlinks, utils.go) first, then decodeDropIns(resolved):
//   the drop-in directory is `config.d` next to the *resolved* file;
// - decodeDropIns: `os.ReadDir` (entries sorted by file name), every entry read (no extension filter); a
//   missing directory is fine; an entry that cannot be read as a file (a directory) fails the load;
// - updateFromDropIn: each file is `toml.Decode`d over the config decoded so far, so only keys the file
//   sets change; `[hypervisor.<name>]` and `[agent.<name>]` are Go maps, for which a key the file sets
//   replaces that field whole (applyKey → applyHypervisorKey/applyAgentKey → copyFieldValue); arrays and
//   strings are replaced, never appended.
// runtime-rs, src/libs/kata-types/src/config/drop_in.rs (TomlConfig::load_raw_from_file, after
// `fs::canonicalize`): `config.d` next to the canonical file, entries sorted by file name, each a regular
// file (or a symlink to one) or the load fails; merged as a TOML tree: tables deep-merged, every other
// value (arrays included) replaced.
// Both refuse a hypervisor with both `image` and `initrd` (Go config.go: "having both an image and an initrd
// defined in the configuration file is not supported"; runtime-rs kata-types config/hypervisor/mod.rs
// BootInfo::validate: "Can not configure both initrd and image for boot"). Not modelled: Go's refusal of a
// drop-in key that its structs do not know (copyFieldValue "key not found"), runtime-rs' deny_unknown_fields.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "smol-toml";
import { isRustShim } from "../../images/kata-deploy/release/assets.mjs";

export type TomlTable = Record<string, unknown>;
export type KataRuntimeKind = "go" | "rust";

const isTable = (value: unknown): value is TomlTable => typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
/** Ordinary objects (smol-toml builds prototype-less ones, which strict deepEqual tells apart). */
const plain = (value: unknown): TomlTable => JSON.parse(JSON.stringify(value)) as TomlTable;

/** runtime-rs' drop_in::merge. */
function mergeTree(base: TomlTable, dropIn: TomlTable): void {
  for (const [key, value] of Object.entries(dropIn)) {
    const current = base[key];
    if (isTable(value) && isTable(current)) mergeTree(current, value);
    else base[key] = value;
  }
}

/** The Go runtime's updateFromDropIn: struct tables field by field, per-name maps field-whole. */
function mergeGo(base: TomlTable, dropIn: TomlTable): void {
  for (const [key, value] of Object.entries(dropIn)) {
    const current = base[key];
    if ((key === "hypervisor" || key === "agent") && isTable(value) && isTable(current)) {
      for (const [name, fields] of Object.entries(value)) {
        const target = (current[name] ??= {}) as TomlTable;
        if (isTable(fields)) for (const [field, fieldValue] of Object.entries(fields)) target[field] = fieldValue;
      }
    } else if (isTable(value) && isTable(current)) {
      mergeTree(current, value);
    } else {
      base[key] = value;
    }
  }
}

export interface KataView {
  /** The file Kata reads (symlinks resolved), as a host path. */
  file: string;
  /** The drop-ins applied, in order (host paths). */
  dropIns: string[];
  /** The configuration as Kata uses it. */
  value: TomlTable;
}

/** Which runtime reads a `configuration-<shim>.toml` (by the shim in its name; Go when it names none). */
export function runtimeKindOf(configPath: string): KataRuntimeKind {
  const shim = /configuration-(.+)\.toml$/.exec(path.posix.basename(configPath))?.[1];
  return shim !== undefined && isRustShim(shim) ? "rust" : "go";
}

/**
 * What Kata reads for `hostPath` on a host whose `/` is `hostRoot` (symlinks are resolved with realpath on
 * this machine, so a test keeps its links inside the root).
 */
export function kataView(hostRoot: string, hostPath: string, kind: KataRuntimeKind = runtimeKindOf(hostPath)): KataView {
  const resolvedLocal = fs.realpathSync(path.join(hostRoot, hostPath));
  const file = `/${path.relative(hostRoot, resolvedLocal)}`;
  const value = plain(parse(fs.readFileSync(resolvedLocal, "utf8")));
  const dir = path.join(path.dirname(resolvedLocal), "config.d");
  const names = fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
  const dropIns: string[] = [];
  for (const name of names) {
    const entry = path.join(dir, name);
    if (kind === "rust" && !fs.statSync(entry).isFile()) throw new Error(`${entry}: drop-in cfg file can only be a regular file or a symlink (runtime-rs)`);
    const dropIn = plain(parse(fs.readFileSync(entry, "utf8"))); // a directory fails here (EISDIR), as os.ReadFile does
    if (kind === "go") mergeGo(value, dropIn);
    else mergeTree(value, dropIn);
    dropIns.push(`/${path.relative(hostRoot, entry)}`);
  }
  for (const [name, hypervisor] of Object.entries(isTable(value.hypervisor) ? value.hypervisor : {})) {
    if (isTable(hypervisor) && typeof hypervisor.image === "string" && hypervisor.image !== "" && typeof hypervisor.initrd === "string" && hypervisor.initrd !== "") {
      throw new Error(`${file}: [hypervisor.${name}] sets both image and initrd after its drop-ins; Kata refuses to start such a configuration`);
    }
  }
  return { file, dropIns, value };
}

/** The one `[hypervisor.<name>]` table of a view. */
export function hypervisorOf(view: KataView): { name: string; table: TomlTable } {
  const tables = Object.entries(isTable(view.value.hypervisor) ? view.value.hypervisor : {});
  if (tables.length !== 1) throw new Error(`${view.file}: ${tables.length} hypervisor tables after the drop-ins`);
  return { name: tables[0][0], table: tables[0][1] as TomlTable };
}

/**
 * Hypervisor keys that name a file Kata opens when set (the keys images/kata-deploy/release/select.mjs
 * requires the release to ship).
 */
export const KATA_FILE_KEYS = ["path", "kernel", "image", "initrd", "firmware", "firmware_volume", "jailer_path", "virtio_fs_daemon", "ctlpath"] as const;

/** The host files Kata opens for this configuration (non-empty KATA_FILE_KEYS of its hypervisor). */
export function kataReferencedFiles(view: KataView): string[] {
  const { table } = hypervisorOf(view);
  return KATA_FILE_KEYS.map((key) => table[key]).filter((value): value is string => typeof value === "string" && value.startsWith("/"));
}
