// Pure planner for Kata's own configuration files on the node: the release's files in, whole-file edits out.
//
// Each runtime handler gets a directory of its own,
//   <prefix>/share/defaults/kata-containers/runtimes/<container runtime>/<handler>/
//     configuration-<shim>.toml      a copy of the release's file (with a header), never edited otherwise
//     config.d/10-installation-prefix.toml, 20-logging.toml, 30-kernel-params.toml,
//              40-hypervisor-annotations.toml, 50-user-overrides.toml   (only those with something to say)
//     qemu-system-<arch>[-<suffix>]  (QEMU under another prefix only: a wrapper adding -L, below)
// and containerd's ConfigPath / CRI-O's runtime_config_path / Docker's ConfigPath name the copy.
//
// Why a copy per handler: Kata reads `config.d/` in the directory of the *resolved* configuration file, every
// entry in file-name order, each merged over what came before key by key, arrays and strings replaced whole
// (Go: kata-containers src/runtime/pkg/katautils/config.go decodeConfig → decodeDropIns/updateFromDropIn;
// runtime-rs: src/libs/kata-types/src/config/drop_in.rs, used by TomlConfig::load_raw_from_file). All of a
// release's configuration files share one directory, hence one config.d; a symlink to the release's file
// would resolve back to it. Upstream kata-deploy 4.1 does the same (tools/packaging/kata-deploy/binary/src/
// artifacts/install.rs setup_runtime_directory), per shim; here per handler, so custom runtimes get their
// own, and per container runtime, so two runtimes sharing a prefix (containerd and Docker on one host) each
// own, record and remove their files.
//
// The release's files stay untouched: everything kata-deploy sets is a drop-in, including the allowed
// hypervisor annotations. Upstream edits `enable_annotations` in its copy because a drop-in array replaces
// the base's; a drop-in that lists the release's entries plus the requested ones has the same effect, keeps
// the copy byte-identical to the release (so an upgrade is a plain re-copy) and shows every change of ours
// in one place. A user drop-in (50-) that sets `enable_annotations` replaces ours, as it would upstream.
import * as path from "node:path";
import { INSTALL_PREFIX, type KataShimConfig } from "../../../../../components/contract";
import { OWNED_FILE_MARKER } from "../formats/owned-file";
import { isPlainTable, parseToml, type TomlTable } from "../formats/toml-document";
import { stringify as stringifyToml } from "smol-toml";
import { isRustShim } from "../../../release/assets.mjs";
import { ConfigError, type FileEdit, type Runtime } from "../runtimes/types";

/** Where the per-handler directories live, relative to the prefix. */
export const KATA_RUNTIMES_DIR = "share/defaults/kata-containers/runtimes";
export const DROP_IN_DIR = "config.d";
/** Drop-in file names: lexical order is the order Kata applies them in (the user's last). */
export const DROP_INS = {
  installPrefix: "10-installation-prefix.toml",
  logging: "20-logging.toml",
  forceGuestPull: "25-force-guest-pull.toml",
  kernelParams: "30-kernel-params.toml",
  annotations: "40-hypervisor-annotations.toml",
  user: "50-user-overrides.toml",
} as const;

/** One runtime handler whose Kata configuration the plan writes. */
export interface KataHandler {
  /** The handler (containerd runtime, CRI-O runtime, Docker runtime, RuntimeClass handler), e.g. kata-qemu. */
  handler: string;
  /** The shim it runs, e.g. qemu; a custom runtime's base shim. */
  shim: string;
  /** The release's configuration for the shim, relative to opt/kata, and its text. */
  stockRel: string;
  stockText: string;
  /** What to set (a custom runtime: its base shim's settings with its own dropIn). */
  settings: KataShimConfig;
  /** Where `settings` came from, for messages: `shimConfig.qemu`, `customRuntimes[0]`. */
  settingsField: string;
}

export interface KataConfigInput {
  runtime: Runtime;
  /** Install prefix on the host, e.g. /opt/kata. */
  prefix: string;
  handlers: KataHandler[];
  /** Whether the release tree has a directory or file at this path (relative to opt/kata). */
  releaseHas: (rel: string) => boolean;
}

/** What the plan wrote, recorded in the runtime's state: every file, so removal and convergence are exact. */
export interface KataConfigOwned {
  files: string[];
}

type Read = (hostPath: string) => string | undefined;

export function handlerDir(prefix: string, runtime: Runtime, handler: string): string {
  return path.posix.join(prefix, KATA_RUNTIMES_DIR, runtime, handler);
}

/** The configuration file a runtime's config names for `handler` (ConfigPath, runtime_config_path). */
export function kataConfigPath(prefix: string, runtime: Runtime, handler: string, shim: string): string {
  return path.posix.join(handlerDir(prefix, runtime, handler), `configuration-${shim}.toml`);
}

/** The host directory holding every handler directory of `runtime` (what removal empties). */
export function kataRuntimeRoot(prefix: string, runtime: Runtime): string {
  return path.posix.join(prefix, KATA_RUNTIMES_DIR, runtime);
}

/** Whether `text` is a file kata-deploy wrote (the marker on its first line, or its second after a `#!` line). */
export function isOwnedKataFile(text: string): boolean {
  const [first = "", second = ""] = text.split("\n", 2);
  return first.startsWith(OWNED_FILE_MARKER) || (first.startsWith("#!") && second.startsWith(OWNED_FILE_MARKER));
}

// ---------------------------------------------------------------------------------------------------
// The install prefix: every path the release's configuration names under /opt/kata is moved to the prefix.

/** `/opt/kata` as a whole path component, at the start of a string or after a separator (`=`, `:`, `,`, space). */
const RELEASE_PREFIX_IN_TEXT = /(^|[\s=:,;"'])\/opt\/kata(?=$|[/\s,:;"'])/g;
// The pattern above spells the release's prefix out; the contract's default prefix must be that one.
if (INSTALL_PREFIX !== "/opt/kata") throw new Error("internal: RELEASE_PREFIX_IN_TEXT assumes the release prefix /opt/kata");

function movedString(text: string, prefix: string): string {
  return text.replace(RELEASE_PREFIX_IN_TEXT, (_match, before: string) => `${before}${prefix}`);
}

/** `value` with every release path moved to `prefix` (strings, arrays, tables, arrays of tables). */
function moved(value: unknown, prefix: string): unknown {
  if (typeof value === "string") return movedString(value, prefix);
  if (Array.isArray(value)) return value.map((item) => moved(item, prefix));
  if (isPlainTable(value)) return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, moved(item, prefix)]));
  return value;
}

const sameValue = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * The keys whose value names a release path, with the moved value, as a drop-in table. Each changed key is
 * written whole: Kata's Go runtime copies a `[hypervisor.<name>]`/`[agent.<name>]` field from a drop-in as a
 * whole (config.go applyHypervisorKey/copyFieldValue), and both runtimes replace arrays (of tables) whole.
 * Tables that are not per-name maps (`[runtime]`, `[factory]`, ...) are merged key by key by both.
 */
function installPrefixTables(stock: TomlTable, prefix: string): TomlTable {
  const out: TomlTable = {};
  const changedKeys = (table: TomlTable): TomlTable | undefined => {
    const changed: TomlTable = {};
    for (const [key, value] of Object.entries(table)) {
      const after = moved(value, prefix);
      if (!sameValue(after, value)) changed[key] = after;
    }
    return Object.keys(changed).length > 0 ? changed : undefined;
  };
  for (const [key, value] of Object.entries(stock)) {
    if ((key === "hypervisor" || key === "agent") && isPlainTable(value)) {
      for (const [name, table] of Object.entries(value)) {
        const changed = isPlainTable(table) ? changedKeys(table) : undefined;
        if (changed) ((out[key] ??= {}) as TomlTable)[name] = changed;
      }
    } else if (isPlainTable(value)) {
      const changed = changedKeys(value);
      if (changed) out[key] = changed;
    } else if (!sameValue(moved(value, prefix), value)) {
      out[key] = moved(value, prefix);
    }
  }
  return out;
}

/**
 * The release's QEMU is built with --disable-relocatable (kata-containers tools/packaging/scripts/
 * configure-hypervisor.sh) and --datadir=/opt/kata/share/kata-qemu[-<suffix>], so under another prefix it would
 * look for its firmware where there is none. Like upstream (install.rs create_qemu_wrapper_script), the
 * hypervisor path then names a wrapper that adds `-L <prefix>/share/kata-qemu[-<suffix>]/qemu`. The binary is
 * qemu-system-<arch>[-<suffix>] (images/kata-deploy/release/select.mjs reads the same names).
 */
function qemuWrapper(stockPath: unknown, prefix: string, releaseHas: (rel: string) => boolean): { name: string; text: string } | undefined {
  if (typeof stockPath !== "string") return undefined;
  const match = /^\/opt\/kata\/bin\/(qemu-system-[a-z0-9_]+?(?:-(.+))?)$/.exec(stockPath);
  if (!match) return undefined;
  const dataDir = `share/${match[2] ? `kata-qemu-${match[2]}` : "kata-qemu"}/qemu`;
  if (!releaseHas(dataDir)) return undefined;
  const quote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;
  const text = [
    "#!/bin/sh",
    `${OWNED_FILE_MARKER}: QEMU under the install prefix ${prefix}, which it was not built for; \`kata-deploy uninstall\` removes it.`,
    `exec ${quote(path.posix.join(prefix, "bin", match[1]))} "$@" -L ${quote(path.posix.join(prefix, dataDir))}`,
    "",
  ].join("\n");
  return { name: match[1], text };
}

// ---------------------------------------------------------------------------------------------------

function header(lines: string[]): string {
  return [`${OWNED_FILE_MARKER}; \`kata-deploy uninstall\` removes it. Local changes are overwritten.`, ...lines.map((line) => `# ${line}`), ""].join("\n");
}

function render(lines: string[], tables: TomlTable): string {
  return `${header(lines)}\n${stringifyToml(tables)}`;
}

/** The single `[hypervisor.<name>]` of a release configuration (what every hypervisor setting goes under). */
function hypervisorName(stock: TomlTable, file: string): string {
  const names = isPlainTable(stock.hypervisor) ? Object.keys(stock.hypervisor) : [];
  if (names.length !== 1) throw new ConfigError({ file, problem: `has ${names.length} [hypervisor.*] tables`, fix: "kata-deploy writes hypervisor settings for a configuration with exactly one; use a release configuration with one" });
  return names[0];
}

/** The `[agent.<name>]` tables of a release configuration (`kata` when it has none: both runtimes' default agent). */
function agentNames(stock: TomlTable): string[] {
  const names = isPlainTable(stock.agent) ? Object.keys(stock.agent) : [];
  return names.length > 0 ? names : ["kata"];
}

/**
 * Refuses a user drop-in that is not TOML, or whose `[hypervisor.<name>]`/`[agent.<name>]` tables are not the
 * configuration's own: Kata would add a second hypervisor (or agent) instead of changing this one.
 */
function checkUserDropIn(text: string, field: string, hypervisor: string, agents: string[], shim: string, file: string): void {
  let value: TomlTable;
  try {
    value = parseToml(text, file).value;
  } catch (error) {
    // The drop-in is written verbatim as `file`, so its line and column are that file's.
    if (error instanceof ConfigError) {
      throw new ConfigError({ file, ...(error.line === undefined ? {} : { line: error.line }), ...(error.column === undefined ? {} : { column: error.column }), problem: `${field}.dropIn: ${error.problem}`, fix: "fix the drop-in" });
    }
    throw error;
  }
  for (const name of isPlainTable(value.hypervisor) ? Object.keys(value.hypervisor) : []) {
    if (name !== hypervisor) throw new ConfigError({ file, problem: `${field}.dropIn: sets [hypervisor.${name}], but the configuration of shim ${shim} has [hypervisor.${hypervisor}]`, fix: "use that table name" });
  }
  for (const name of isPlainTable(value.agent) ? Object.keys(value.agent) : []) {
    if (!agents.includes(name)) throw new ConfigError({ file, problem: `${field}.dropIn: sets [agent.${name}], but the configuration of shim ${shim} has [agent.${agents.join("], [agent.")}]`, fix: "use that table name" });
  }
}

interface PlannedFile {
  path: string;
  text: string;
  mode?: number;
}

function filesFor(input: KataConfigInput, handler: KataHandler): PlannedFile[] {
  const dir = handlerDir(input.prefix, input.runtime, handler.handler);
  const dropIns = path.posix.join(dir, DROP_IN_DIR);
  const releaseFile = path.posix.join(INSTALL_PREFIX, handler.stockRel);
  const stock = parseToml(handler.stockText, releaseFile).value;
  const { settings } = handler;
  const files: PlannedFile[] = [
    {
      path: kataConfigPath(input.prefix, input.runtime, handler.handler, handler.shim),
      text:
        header([
          `Copy of the Kata release's ${handler.stockRel} for runtime handler ${handler.handler}; kata-deploy copies it again on every install.`,
          "Kata applies the drop-ins in config.d/ next to this file after it, in file-name order: a later file wins key by key,",
          "and an array or string it sets replaces the whole value. Set your own in the KataDeployment's shimConfig.<shim>.dropIn",
          `(config.d/${DROP_INS.user}), not here.`,
        ]) + handler.stockText,
    },
  ];
  // Force guest pull (containerd only: on CRI-O the guest pulls through runtime_pull_image, the runtime's own).
  if (settings.forceGuestPull === true && input.runtime === "containerd") {
    const rust = isRustShim(handler.shim);
    // Go: src/runtime/pkg/katautils/config.go runtime `ForceGuestPull bool toml:"experimental_force_guest_pull"`.
    // runtime-rs: kata-types config/runtime.rs `experimental` (a list, replaced whole by a drop-in, so the release's
    // entries are kept) holding "force_guest_pull" (kata-types mount.rs KATA_IMAGE_FORCE_GUEST_PULL, read by
    // runtime-rs crates/resource manager_inner.rs is_experiment_enabled). Upstream kata-deploy 4.1.0 sets the Go
    // key in every shim's configuration (binary/src/artifacts/install.rs configure_experimental_force_guest_pull).
    const stockRuntime = isPlainTable(stock.runtime) ? stock.runtime : {};
    const released = Array.isArray(stockRuntime.experimental) ? stockRuntime.experimental.filter((item): item is string => typeof item === "string") : [];
    const runtimeTable: TomlTable = rust ? { experimental: [...new Set([...released, "force_guest_pull"])] } : { experimental_force_guest_pull: true };
    files.push({ path: path.posix.join(dropIns, DROP_INS.forceGuestPull), text: render([`From ${handler.settingsField}.forceGuestPull: the guest pulls the images.`], { runtime: runtimeTable }) });
  }
  const moves = input.prefix !== INSTALL_PREFIX;
  const needsHypervisor = moves || settings.debug === true || settings.agentHttpsProxy !== undefined || settings.agentNoProxy !== undefined || (settings.allowedHypervisorAnnotations ?? []).length > 0 || settings.dropIn !== undefined;
  if (!needsHypervisor && settings.runtimeLogLevel === undefined) return files;
  const hypervisor = hypervisorName(stock, releaseFile);
  const stockHypervisor = (stock.hypervisor as Record<string, TomlTable>)[hypervisor] ?? {};
  /** A hypervisor value as Kata sees it after the release's file and our prefix drop-in. */
  const effective = (key: string): unknown => (moves ? moved(stockHypervisor[key], input.prefix) : stockHypervisor[key]);
  const agents = agentNames(stock);

  if (moves) {
    const tables = installPrefixTables(stock, input.prefix);
    const wrapper = hypervisor === "qemu" ? qemuWrapper(stockHypervisor.path, input.prefix, input.releaseHas) : undefined;
    if (wrapper) {
      const wrapperPath = path.posix.join(dir, wrapper.name);
      files.push({ path: wrapperPath, text: wrapper.text, mode: 0o755 });
      const hv = ((tables.hypervisor ??= {}) as TomlTable)[hypervisor] as TomlTable | undefined;
      ((tables.hypervisor as TomlTable)[hypervisor] = { ...(hv ?? {}), path: wrapperPath });
    }
    if (Object.keys(tables).length > 0) {
      files.push({
        path: path.posix.join(dropIns, DROP_INS.installPrefix),
        text: render([`Kata installed under ${input.prefix}: the release's /opt/kata paths moved there.`], tables),
      });
    }
  }

  if (settings.debug === true || settings.runtimeLogLevel !== undefined) {
    const tables: TomlTable = {};
    if (settings.debug === true) {
      // enable_debug: the hypervisor's and the runtime's debug logs; the agent's adds `agent.log=debug` to the
      // guest kernel command line (Go: virtcontainers/kata_agent.go KataAgentKernelParams; runtime-rs:
      // kata-types config/mod.rs get_agent_kernel_params).
      tables.hypervisor = { [hypervisor]: { enable_debug: true } };
      tables.runtime = { enable_debug: true };
      tables.agent = Object.fromEntries(agents.map((name) => [name, { enable_debug: true }]));
    }
    if (settings.runtimeLogLevel !== undefined) tables.runtime = { ...((tables.runtime as TomlTable | undefined) ?? {}), log_level: settings.runtimeLogLevel };
    files.push({ path: path.posix.join(dropIns, DROP_INS.logging), text: render([`From ${handler.settingsField}.debug / runtimeLogLevel.`], tables) });
  }

  if (settings.agentHttpsProxy !== undefined || settings.agentNoProxy !== undefined) {
    // A drop-in string replaces the whole value, so it carries the release's parameters too (as upstream's
    // generate_kernel_params_drop_in does); a user drop-in that sets kernel_params replaces this one.
    const base = effective("kernel_params");
    const params = [
      ...(typeof base === "string" && base.trim() !== "" ? [base.trim()] : []),
      ...(settings.agentHttpsProxy !== undefined ? [`agent.https_proxy=${settings.agentHttpsProxy}`] : []),
      ...(settings.agentNoProxy !== undefined ? [`agent.no_proxy=${settings.agentNoProxy}`] : []),
    ];
    files.push({
      path: path.posix.join(dropIns, DROP_INS.kernelParams),
      text: render([`From ${handler.settingsField}.agentHttpsProxy / agentNoProxy, after the release's own kernel_params.`], { hypervisor: { [hypervisor]: { kernel_params: params.join(" ") } } }),
    });
  }

  const annotations = settings.allowedHypervisorAnnotations ?? [];
  if (annotations.length > 0) {
    const base = effective("enable_annotations");
    // Kata matches each entry as an unanchored regular expression (Go: pkg/oci/utils.go regexpContains;
    // runtime-rs: RegexSet::is_match): `path` alone would also allow `jailer_path`. Names are anchored.
    const list = [...new Set([...(Array.isArray(base) ? base.filter((item): item is string => typeof item === "string") : []), ...annotations.map((name) => `^${name}$`)])];
    files.push({
      path: path.posix.join(dropIns, DROP_INS.annotations),
      text: render([`From ${handler.settingsField}.allowedHypervisorAnnotations: the release's list plus those names.`], { hypervisor: { [hypervisor]: { enable_annotations: list } } }),
    });
  }

  if (settings.dropIn !== undefined) {
    const userFile = path.posix.join(dropIns, DROP_INS.user);
    checkUserDropIn(settings.dropIn, handler.settingsField, hypervisor, agents, handler.shim, userFile);
    const body = settings.dropIn.endsWith("\n") || settings.dropIn === "" ? settings.dropIn : `${settings.dropIn}\n`;
    files.push({ path: userFile, text: `${header([`From ${handler.settingsField}.dropIn, verbatim below.`])}\n${body}` });
  }
  return files;
}

/**
 * The edits that make the host's Kata configuration files exactly the planned ones: new and changed files
 * (each checked to be ours when it already exists and was not recorded), and the removal of files an
 * earlier install wrote that are no longer wanted (a custom runtime dropped, a setting cleared).
 * `modes`: the mode of files that must be executable (the QEMU wrapper).
 */
export function planKataConfig(read: Read, input: KataConfigInput, previous: KataConfigOwned | undefined): { edits: FileEdit[]; owned: KataConfigOwned; modes: Map<string, number> } {
  const seen = new Set<string>();
  for (const handler of input.handlers) {
    if (seen.has(handler.handler)) throw new ConfigError({ file: handlerDir(input.prefix, input.runtime, handler.handler), problem: `runtime handler ${handler.handler} is configured twice`, fix: "give each custom runtime its own name" });
    seen.add(handler.handler);
  }
  const planned = input.handlers.flatMap((handler) => filesFor(input, handler));
  const recorded = new Set(previous?.files ?? []);
  const edits: FileEdit[] = [];
  const modes = new Map<string, number>();
  for (const file of planned) {
    const before = read(file.path);
    if (before !== undefined && !recorded.has(file.path) && !isOwnedKataFile(before)) {
      throw new ConfigError({ file: file.path, problem: "was not written by kata-deploy but is where kata-deploy keeps Kata's configuration for this runtime handler", fix: "move it elsewhere and run again" });
    }
    edits.push({ path: file.path, before, after: file.text });
    if (file.mode !== undefined) modes.set(file.path, file.mode);
  }
  const wanted = new Set(planned.map((file) => file.path));
  for (const stale of recorded) if (!wanted.has(stale)) edits.push({ path: stale, before: read(stale), after: undefined });
  return { edits, owned: { files: planned.map((file) => file.path) }, modes };
}

/** Removal: every file the install recorded goes (they are ours whole; a file someone added beside them stays). */
export function planKataConfigRemoval(read: Read, owned: KataConfigOwned): FileEdit[] {
  return owned.files.map((file) => ({ path: file, before: read(file), after: undefined }));
}
