// Pure planner for containerd's configuration: text in, text out.
//
// Config v1/v2 (containerd 1.x): the Kata runtime tables are spliced into the main file, next to the
// existing runtimes, in the file's own indentation and line endings. Config v3/v4 (containerd 2.x):
// a drop-in file we own entirely, plus one `imports` entry in the main file. Removal takes out exactly
// the text we added, so an untouched file comes back byte-for-byte and anything others changed in the
// meantime stays. See docs/config-shapes.md for the shapes covered.
import * as path from "node:path";
import { isDeepStrictEqual } from "node:util";
import {
  type CstInlineArray,
  type CstTable,
  type TomlDocument,
  type TomlPath,
  type TomlTable,
  detectEol,
  endOfLastNode,
  endOfLine,
  endOfTableContent,
  eolAt,
  formatKeyPath,
  goPathMatch,
  indentationAt,
  inlineTableOnPath,
  isKeyValue,
  isPlainTable,
  isTable,
  lineBreakAt,
  lineBreakBefore,
  offsetOf,
  parseToml,
  pathStartsWith,
  renderKeyValues,
  rootKeyValue,
  splice,
  startOfLine,
  tablePath,
  toPlain,
  valueAt,
} from "../../formats/toml-document";
import { OWNED_FILE_MARKER, checkOwnedFileIsOurs } from "../../formats/owned-file";
import { ConfigError, type FileEdit, type KataConfigRequest } from "../types";
import { BASE_TEMPLATE_HEADER, K0S_MANAGED_MARKER, RUNTIME_PLATFORMS_TABLE_PATH, runtimesTablePath, versionOf, type ContainerdConfigVersion, type ContainerdLayout } from "./layout";

/** A JSON-serialisable record of exactly what we added. */
export interface ContainerdOwned {
  version: ContainerdConfigVersion;
  /** Runtime names whose tables we added (may include `runc`, declared to keep containerd 1.x's built-in one). */
  runtimes: string[];
  /**
   * Runtime names whose `[plugins."io.containerd.cri.v1.images".runtime_platforms.<name>]` table we
   * added (config v3+, runtimes with a snapshotter): containerd 2.x pulls their images with it.
   */
  runtimePlatforms?: string[];
  /** The entry we appended to the main file's `imports`. */
  importEntry?: string;
  /** Host path of the drop-in we own. */
  dropIn?: string;
  /** The main file did not exist: we created it (it is deleted again when nothing but our skeleton is left). */
  createdMain?: boolean;
  /** We added the whole `imports = [...]` line, not only an entry. */
  importsKeyAdded?: boolean;
  /** The template was only a header without a final line break: we added one before our tables. */
  templateHeaderEolAdded?: boolean;
  /**
   * The `untrusted` alias was wanted but someone else already defines a runtime of that name (AKS
   * does, pointing at runc): theirs is left alone and this says where it is.
   */
  untrustedAliasTakenBy?: string;
  /** We added a `[debug]` table (`level = "debug"`) to the v1/v2 main file (a v3+ drop-in carries its own). */
  debugTableAdded?: boolean;
}

type Read = (hostPath: string) => string | undefined;
/** A host directory's entry names, sorted; undefined when it is not a directory (for import globs). */
export type ListDir = (hostDir: string) => string[] | undefined;

interface RuntimeStanza {
  name: string;
  values: TomlTable;
  options?: TomlTable;
  /** The optional `untrusted` alias: skipped, not refused, when the name is taken. */
  isUntrustedAlias?: boolean;
}

const UNTRUSTED_ALIAS = "untrusted";

/**
 * containerd 1.x's built-in runtime, which disappears as soon as a config declares any `runtimes`
 * table (seen with `config dump` on 1.6 and 1.7; 2.x keeps it). `sandbox_mode` is 1.7's built-in
 * value (1.6 ignores the key); options stay unset, i.e. runc's zero-valued defaults, as built in.
 */
const BUILT_IN_RUNC: RuntimeStanza = { name: "runc", values: { runtime_type: "io.containerd.runc.v2", sandbox_mode: "podsandbox" } };

function stanzasFor(request: KataConfigRequest, file: string): RuntimeStanza[] {
  const runtimes = [...request.runtimes];
  if (request.untrustedAlias) runtimes.push({ ...request.untrustedAlias, name: UNTRUSTED_ALIAS });
  const seen = new Set<string>();
  return runtimes.map((runtime, index) => {
    if (seen.has(runtime.name)) throw new ConfigError({ file, problem: `runtime \`${runtime.name}\` is requested twice`, fix: "list each shim once" });
    seen.add(runtime.name);
    return {
      name: runtime.name,
      values: {
        runtime_type: `io.containerd.kata-${runtime.shim}.v2`,
        runtime_path: runtime.shimBinary,
        privileged_without_host_devices: true,
        pod_annotations: ["io.katacontainers.*"],
        ...(runtime.snapshotter ? { snapshotter: runtime.snapshotter } : {}),
      },
      options: { ConfigPath: runtime.configPath },
      ...(request.untrustedAlias && index === runtimes.length - 1 ? { isUntrustedAlias: true } : {}),
    };
  });
}

/**
 * The `untrusted` alias only keeps the seed's annotation working; a platform may already define a
 * runtime of that name for its own purposes (AKS points it at runc). Refusing would block the whole
 * install over an optional alias, and taking it over would change someone else's runtime, so the
 * alias is dropped and the caller is told (`notices`, and `untrustedAliasTakenBy` in the record).
 */
function dropTakenAlias(
  stanzas: RuntimeStanza[],
  definedIn: { doc: TomlDocument; file: string; lineOffset?: number }[],
  runtimesPath: TomlPath,
): { stanzas: RuntimeStanza[]; takenBy?: string; notice?: string } {
  const alias = stanzas.find((stanza) => stanza.isUntrustedAlias);
  if (!alias) return { stanzas };
  for (const { doc, file, lineOffset = 0 } of definedIn) {
    const aliasPath = [...runtimesPath, alias.name];
    if (valueAt(doc.value, aliasPath) === undefined) continue;
    const line = lineDefining(doc, aliasPath);
    const takenBy = `${file}${line === undefined ? "" : `:${line + lineOffset}`}`;
    return {
      stanzas: stanzas.filter((stanza) => stanza !== alias),
      takenBy,
      notice: `runtime \`${alias.name}\` is already defined at ${takenBy} by something other than kata-deploy and is left as it is, so the io.kubernetes.cri.untrusted-workload annotation does not select Kata on this node; use a Kata RuntimeClass instead`,
    };
  }
  return { stanzas };
}

/**
 * containerRuntimeDebug: containerd's own log level (the top-level `[debug]` table, `level`; containerd
 * services/server/config Debug.Level, read in both config versions), as upstream kata-deploy 4.1.0 writes it with
 * DEBUG=true (tools/packaging/kata-deploy/binary/src/runtime/containerd.rs containerd_debug_level_toml_path).
 */
const DEBUG_STANZA: RuntimeStanza = { name: "debug", values: { level: "debug" } };

/**
 * A `[debug]` table (or `debug` key) the main file already has is the node's own: refused rather than edited (its
 * `level` would have to be changed in place and given back on removal, and may be set there on purpose).
 */
function checkNoDebugTable(doc: TomlDocument, file: string): void {
  if (valueAt(doc.value, [DEBUG_STANZA.name]) === undefined) return;
  throw new ConfigError({
    file,
    line: lineDefining(doc, [DEBUG_STANZA.name]),
    key: DEBUG_STANZA.name,
    problem: "containerRuntimeDebug: the file already has a [debug] section, which kata-deploy does not edit",
    fix: 'set `level = "debug"` there yourself and containerRuntimeDebug to false, or remove the section',
  });
}

/** The effective table containerd sees for a stanza (for self-checks and tests). */
export function stanzaTable(stanza: RuntimeStanza): TomlTable {
  return stanza.options ? { ...stanza.values, options: stanza.options } : { ...stanza.values };
}

/**
 * The images plugin's entries for the runtimes that have a snapshotter (see RUNTIME_PLATFORMS_TABLE_PATH):
 * without one, containerd 2.x unpacks their images with the default snapshotter. `platform` stays
 * unset: the images plugin then uses the node's own (platforms.DefaultSpec).
 *
 * Also in config v2: containerd 2.x migrates a v2 file into the images plugin's section *on top of*
 * that section as the file has it (plugins/cri/images/plugin.go configMigration), and its migration
 * does not carry a runtime's `snapshotter` over (migrateConfig reads `runtime_platform`/`snapshot`, not
 * the real keys), so the entry must be there already; containerd 1.6/1.7 ignore a section for a plugin
 * they do not have (checked with `config dump`, see tests/agent/config-containerd.test.ts). Not in v1:
 * containerd 2.x does not read v1 CRI settings at all.
 */
function platformStanzas(stanzas: RuntimeStanza[], version: ContainerdConfigVersion): RuntimeStanza[] {
  if (version < 2) return [];
  return stanzas.flatMap((stanza) => (typeof stanza.values.snapshotter === "string" ? [{ name: stanza.name, values: { snapshotter: stanza.values.snapshotter } }] : []));
}

// ---------------------------------------------------------------------------------------------------
// The working set: files as they will be after the plan, starting from what `read` returns.

/**
 * A UTF-8 byte-order mark, as editors on Windows write it. containerd 1.x reads such a file (2.x
 * refuses it with or without us); the planners work on the text after it and put it back unchanged.
 */
const BOM = "\uFEFF";

class FileView {
  private readonly changed = new Map<string, string | undefined>();
  private readonly withBom = new Set<string>();
  constructor(private readonly read: Read) {}
  /** The file as the plan has it so far, without a byte-order mark. */
  get(file: string): string | undefined {
    if (this.changed.has(file)) return this.changed.get(file);
    const text = this.read(file);
    if (!text?.startsWith(BOM)) return text;
    this.withBom.add(file);
    return text.slice(BOM.length);
  }
  set(file: string, text: string | undefined): void {
    this.get(file); // notes a byte-order mark before the first change
    this.changed.set(file, text);
  }
  edits(): FileEdit[] {
    return [...this.changed].map(([file, after]) => ({
      path: file,
      before: this.read(file),
      after: after !== undefined && this.withBom.has(file) ? BOM + after : after,
    }));
  }
}

// ---------------------------------------------------------------------------------------------------
// Template flavours (k3s, rke2): leading `{{ template ... }}` lines are kept verbatim, the rest is TOML.

interface SplitText {
  header: string;
  body: string;
}

function splitTemplate(text: string, file: string): SplitText {
  let header = "";
  let rest = text;
  for (;;) {
    const lineEnd = rest.indexOf("\n");
    const line = lineEnd === -1 ? rest : rest.slice(0, lineEnd);
    if (!/^\s*\{\{-?\s*template\s.*\}\}\s*$/.test(line)) break;
    header += lineEnd === -1 ? rest : rest.slice(0, lineEnd + 1);
    rest = lineEnd === -1 ? "" : rest.slice(lineEnd + 1);
  }
  const action = /\{\{/.exec(rest);
  if (action) {
    const line = header.split("\n").length + rest.slice(0, action.index).split("\n").length - 1;
    throw new ConfigError({
      file,
      line,
      problem: "Go template actions below the header are not supported",
      fix: `keep \`${BASE_TEMPLATE_HEADER}\` as the first line and plain TOML after it, then run again`,
    });
  }
  return { header, body: rest };
}

const headerLines = (header: string): number => (header === "" ? 0 : header.split("\n").length - 1);

// ---------------------------------------------------------------------------------------------------
// Install

export function planContainerdInstall(a: {
  layout: ContainerdLayout;
  read: Read;
  /** Lists host directories, to expand glob imports; without it globs match nothing. */
  list?: ListDir;
  request: KataConfigRequest;
  previous?: ContainerdOwned;
  defaultVersionWhenMissing?: ContainerdConfigVersion;
}): { edits: FileEdit[]; owned: ContainerdOwned; notices: string[] } {
  const { layout, request, previous } = a;
  const view = new FileView(a.read);
  // Re-install: take out what the previous install added (exactly), then add what is wanted now.
  // Unchanged input therefore gives identical bytes, and shims no longer wanted disappear.
  const kept = previous ? uninstallInto(view, layout, previous) : { runcKept: false };
  const stanzas = stanzasFor(request, layout.mainConfig);
  const list = a.list ?? (() => undefined);
  if (request.runtimeDebug === true && layout.flavor !== "containerd") {
    // k3s/rke2 start containerd themselves and set its log level on the command line from the environment
    // (k3s pkg/agent/containerd/containerd.go Run: CONTAINERD_LOG_LEVEL → `-l`), which wins over the config.
    // k0s and microk8s start containerd themselves too; kata-deploy sets the level only where it owns the main file's tables.
    const k3sLike = layout.flavor === "k3s" || layout.flavor === "rke2";
    throw new ConfigError({
      file: layout.mainConfig,
      problem: k3sLike
        ? `containerRuntimeDebug: ${layout.flavor} starts containerd itself and sets its log level from its own environment, not from this configuration`
        : `containerRuntimeDebug: ${layout.flavor} starts containerd itself, and kata-deploy sets containerd's log level only for a plain containerd`,
      fix: k3sLike
        ? `set CONTAINERD_LOG_LEVEL=debug in the ${layout.flavor} service's environment instead, and containerRuntimeDebug to false`
        : `set it through ${layout.flavor}'s own configuration, and containerRuntimeDebug to false`,
    });
  }
  const { owned, notices } =
    layout.kind === "template"
      ? installIntoTemplate(view, layout, stanzas)
      : layout.kind === "drop-in-dir"
        ? installIntoDropInDir(view, layout, stanzas, list)
        : installIntoPlain(view, layout, stanzas, a.defaultVersionWhenMissing ?? 2, list, request.runtimeDebug === true);
  // A runc we declared earlier and had to keep (others declared runtimes since) stays ours.
  if (kept.runcKept && !owned.runtimes.includes(BUILT_IN_RUNC.name)) owned.runtimes.unshift(BUILT_IN_RUNC.name);
  return { edits: view.edits(), owned, notices };
}

interface Installed {
  owned: ContainerdOwned;
  notices: string[];
}

function installIntoTemplate(view: FileView, layout: ContainerdLayout, wanted: RuntimeStanza[]): Installed {
  const file = layout.mainConfig;
  const existing = view.get(file);
  const split = existing === undefined ? { header: `${BASE_TEMPLATE_HEADER}\n`, body: "" } : splitTemplate(existing, file);
  const { body } = split;
  // A header that ends the file without a line break needs one before our tables.
  const eolAdded = split.header !== "" && !split.header.endsWith("\n");
  const header = eolAdded ? split.header + detectEol(split.header) : split.header;
  const lineOffset = headerLines(header);
  const doc = parseToml(body, file, lineOffset);
  const version = versionOf(doc, file) ?? (split.header === "" ? undefined : layout.templateVersion) ?? refuseVersionless(file);
  const runtimesPath = runtimesTablePath(version);
  checkCriEnabled(doc, version, file);
  const { stanzas, takenBy, notice } = dropTakenAlias(wanted, [{ doc, file, lineOffset }], runtimesPath);
  // A template that extends the base output gets runc from it. One without the header is the whole
  // config (users often copy the rendered config.toml), so it needs the same care as a plain file.
  const keepRunc = split.header === "" ? runcStandIn(doc, version, runtimesPath) : [];
  const all = [...keepRunc, ...stanzas];
  const platforms = platformStanzas(stanzas, version);
  view.set(file, header + addRuntimeStanzas(doc, file, runtimesPath, all, lineOffset, platforms));
  return {
    owned: {
      version,
      runtimes: all.map((stanza) => stanza.name),
      ...(platforms.length > 0 ? { runtimePlatforms: platforms.map((stanza) => stanza.name) } : {}),
      ...(existing === undefined ? { createdMain: true } : {}),
      ...(eolAdded ? { templateHeaderEolAdded: true } : {}),
      ...(takenBy ? { untrustedAliasTakenBy: takenBy } : {}),
    },
    notices: notice ? [notice] : [],
  };
}

/**
 * A template without the base header is the whole config, and without `version` containerd reads it as
 * config version 1 (plugin `cri`; containerd 2.x does not read v1 CRI settings at all), so tables written
 * for the version k3s's base would have had are ignored and only runc is listed.
 */
function refuseVersionless(file: string): never {
  throw new ConfigError({
    file,
    problem: `has neither \`${BASE_TEMPLATE_HEADER}\` as its first line nor a \`version\` key, so containerd reads the rendered config as version 1 and would ignore Kata's runtimes`,
    fix: `start the template with \`${BASE_TEMPLATE_HEADER}\` (recommended), or add the \`version\` its tables are written in (\`version = 2\` for [plugins."io.containerd.grpc.v1.cri"], \`version = 3\` for [plugins."io.containerd.cri.v1.runtime"]), and run again`,
  });
}

/**
 * containerd 1.x replaces its built-in runtimes map as soon as a config declares a `runtimes` table
 * (even an empty one), so runc must be declared along with ours when the config has none. 2.x merges.
 */
const runcStandIn = (doc: TomlDocument, version: ContainerdConfigVersion, runtimesPath: TomlPath): RuntimeStanza[] =>
  version <= 2 && valueAt(doc.value, runtimesPath) === undefined ? [BUILT_IN_RUNC] : [];

function installIntoPlain(view: FileView, layout: ContainerdLayout, wanted: RuntimeStanza[], defaultVersion: ContainerdConfigVersion, list: ListDir, debug: boolean): Installed {
  const file = layout.mainConfig;
  const existing = view.get(file);
  if (existing === undefined && layout.flavor === "microk8s") {
    // microk8s installs its template with the snap (snap/hooks/install); without it this is no microk8s node.
    throw new ConfigError({ file, problem: "is missing, so microk8s's containerd has no template to render its config from", fix: "check that microk8s is installed on this node (or set containerdFlavor to what it runs) and run again" });
  }
  const mainText = existing ?? skeleton(defaultVersion);
  const doc = parseToml(mainText, file);
  const version = versionOf(doc, file) ?? (existing === undefined ? defaultVersion : 1);
  const created = existing === undefined ? { createdMain: true } : {};
  const runtimesPath = runtimesTablePath(version);
  checkCriEnabled(doc, version, file);

  if (version <= 2) {
    // containerd 1.x replaces a whole plugin section when an import defines it, so the runtimes go
    // into the main file, and only take effect there when no import defines the CRI section.
    for (const imported of importedFiles(view, doc, file, version, list, undefined)) checkNoCriSection(imported, version, file);
    const { stanzas, takenBy, notice } = dropTakenAlias(wanted, [{ doc, file }], runtimesPath);
    const all = [...runcStandIn(doc, version, runtimesPath), ...stanzas];
    const platforms = platformStanzas(stanzas, version);
    if (debug) checkNoDebugTable(doc, file);
    view.set(file, addRuntimeStanzas(doc, file, runtimesPath, all, 0, platforms, debug ? [DEBUG_STANZA] : []));
    return {
      owned: {
        version,
        runtimes: all.map((stanza) => stanza.name),
        ...(platforms.length > 0 ? { runtimePlatforms: platforms.map((stanza) => stanza.name) } : {}),
        ...(debug ? { debugTableAdded: true } : {}),
        ...created,
        ...(takenBy ? { untrustedAliasTakenBy: takenBy } : {}),
      },
      notices: notice ? [notice] : [],
    };
  }

  // v3+: containerd 2.x merges imported plugin sections key by key (and keeps the built-in runc).
  const imported = importedFiles(view, doc, file, version, list, layout.dropIn);
  const { stanzas, takenBy, notice } = dropTakenAlias(wanted, [{ doc, file }, ...imported], runtimesPath);
  const platforms = platformStanzas(stanzas, version);
  checkNoneDefined([{ doc, file }, ...imported], runtimesPath, stanzas, platforms);
  checkOwnedFileIsOurs(view.get(layout.dropIn), layout.dropIn);
  const { text: withImport, entry, keyAdded } = ensureImport(doc, file, layout.dropIn);
  view.set(file, withImport);
  view.set(layout.dropIn, renderDropIn(version, stanzas, platforms, `imported from ${layout.mainConfig}; \`kata-deploy uninstall\` removes both`, debug));
  return {
    owned: {
      version,
      runtimes: stanzas.map((stanza) => stanza.name),
      ...(platforms.length > 0 ? { runtimePlatforms: platforms.map((stanza) => stanza.name) } : {}),
      dropIn: layout.dropIn,
      ...(entry === undefined ? {} : { importEntry: entry }),
      ...(keyAdded ? { importsKeyAdded: true } : {}),
      ...created,
      ...(takenBy ? { untrustedAliasTakenBy: takenBy } : {}),
    },
    notices: notice ? [notice] : [],
  };
}

/** Refuses a runtime (or images platform entry) we would add that one of `files` already defines. */
function checkNoneDefined(files: ImportedDoc[], runtimesPath: TomlPath, stanzas: RuntimeStanza[], platforms: RuntimeStanza[]): void {
  for (const definedIn of files) {
    for (const stanza of stanzas) checkNotDefined(definedIn.doc, runtimesPath, stanza.name, definedIn.file);
    for (const platform of platforms) checkNotDefined(definedIn.doc, RUNTIME_PLATFORMS_TABLE_PATH, platform.name, definedIn.file);
  }
}

/**
 * k3s/rke2 whose rendered config.toml imports `<dir>/config-v3.toml.d/*.toml` (k3s PR #13680 added that
 * import to its base templates): our drop-in goes there and no file of theirs is touched. config.toml is
 * only read: k3s rewrites it on every start, and what it imports is what containerd reads.
 */
function installIntoDropInDir(view: FileView, layout: ContainerdLayout, wanted: RuntimeStanza[], list: ListDir): Installed {
  const rendered = layout.renderedConfig;
  const renderedText = rendered === undefined ? undefined : view.get(rendered);
  if (rendered === undefined || renderedText === undefined) {
    throw new ConfigError({
      file: rendered ?? layout.mainConfig,
      problem: "is missing, so what it imports cannot be checked",
      fix: `start ${layout.flavor} once (it writes this file) and run again`,
    });
  }
  const doc = parseToml(renderedText, rendered);
  const version = versionOf(doc, rendered) ?? 1;
  const problem = dropInNotRead(layout, renderedText, doc, version);
  if (problem !== undefined) {
    throw new ConfigError({ file: rendered, problem: problem.consequence === undefined ? problem.condition : `${problem.condition}, ${problem.consequence}`, fix: problem.fix });
  }
  const runtimesPath = runtimesTablePath(version);
  checkCriEnabled(doc, version, rendered);
  const imported = importedFiles(view, doc, rendered, version, list, layout.dropIn);
  const { stanzas, takenBy, notice } = dropTakenAlias(wanted, [{ doc, file: rendered }, ...imported], runtimesPath);
  const platforms = platformStanzas(stanzas, version);
  checkNoneDefined([{ doc, file: rendered }, ...imported], runtimesPath, stanzas, platforms);
  checkOwnedFileIsOurs(view.get(layout.dropIn), layout.dropIn);
  view.set(layout.dropIn, renderDropIn(version, stanzas, platforms, `imported by ${rendered} (which ${layout.flavor} renders); \`kata-deploy uninstall\` removes it`));
  return {
    owned: {
      version,
      runtimes: stanzas.map((stanza) => stanza.name),
      ...(platforms.length > 0 ? { runtimePlatforms: platforms.map((stanza) => stanza.name) } : {}),
      dropIn: layout.dropIn,
      ...(takenBy ? { untrustedAliasTakenBy: takenBy } : {}),
    },
    notices: notice ? [notice] : [],
  };
}

/**
 * Why containerd would not read our drop-in through `renderedText` (the config it reads), or undefined when
 * it would: the config imports it (k3s/rke2 v3 bases, k0s since June 2026), or it is a config k0s manages
 * (first line `# k0s_managed=true`), whose older releases merge the drop-ins' CRI sections themselves
 * (k0sproject/k0s pkg/component/worker/containerd configurer.go before commit 0955379). `condition` is what is
 * wrong with the file; `consequence`, when given, what install adds to it (the post-restart check says its own).
 */
export function dropInNotRead(
  layout: ContainerdLayout,
  renderedText: string,
  doc: TomlDocument,
  version: ContainerdConfigVersion,
): { condition: string; consequence?: string; fix: string } | undefined {
  const rendered = layout.renderedConfig ?? layout.mainConfig;
  if (importEntries(doc).some((entry) => importCovers(entry, rendered, layout.dropIn)) && (version >= 3 || layout.flavor === "k0s")) return undefined;
  if (layout.flavor === "k0s") {
    if (renderedText.split(/\r?\n/, 1)[0] === K0S_MANAGED_MARKER) return undefined;
    return {
      condition: `is not managed by k0s (its first line is not \`${K0S_MANAGED_MARKER}\`) and does not import ${layout.dropInDir}/*.toml`,
      consequence: "so containerd would never read Kata's drop-in there",
      fix: `add \`imports = ["${layout.dropInDir}/*.toml"]\` to it (what the config k0s manages says), or let k0s manage it, and run again`,
    };
  }
  return { condition: `no longer imports ${layout.dropInDir}/*.toml (config version ${version})`, fix: "run the install again so it picks the file to edit anew" };
}

/** The raw string entries of a config's `imports` (what the file says, before resolution). */
const importEntries = (doc: TomlDocument): string[] => (Array.isArray(doc.value.imports) ? doc.value.imports.filter((entry): entry is string => typeof entry === "string") : []);

const skeleton = (version: ContainerdConfigVersion): string => `version = ${version}\n`;

function checkCriEnabled(doc: TomlDocument, version: ContainerdConfigVersion, file: string): void {
  const disabled = doc.value.disabled_plugins;
  if (!Array.isArray(disabled)) return;
  const names = version <= 2 ? ["cri", "io.containerd.grpc.v1.cri"] : ["io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri"];
  const hit = disabled.find((name) => names.includes(String(name)));
  if (hit !== undefined) {
    throw new ConfigError({
      file,
      line: rootKeyValue(doc, "disabled_plugins")?.loc.start.line,
      key: "disabled_plugins",
      problem: `the CRI plugin is disabled (disabled_plugins contains "${hit}"), so Kubernetes cannot use Kata through this containerd`,
      fix: "remove it from disabled_plugins and run again",
    });
  }
}

function checkNotDefined(doc: TomlDocument, runtimesPath: TomlPath, name: string, file: string): void {
  const runtimePath = [...runtimesPath, name];
  if (valueAt(doc.value, runtimePath) === undefined) return;
  const key = formatKeyPath(runtimePath);
  throw new ConfigError({
    file,
    line: lineDefining(doc, runtimePath),
    key,
    problem: `runtime \`${name}\` is already defined ([${key}]) by something other than kata-deploy`,
    fix: "remove or rename it (or install other shims) and run again",
  });
}

/** Line of the first table header or key that defines `keyPath` or something under it. */
function lineDefining(doc: TomlDocument, keyPath: TomlPath): number | undefined {
  for (const block of doc.blocks) {
    if (isTable(block)) {
      const current = tablePath(block);
      if (pathStartsWith(current, keyPath)) return block.loc.start.line;
      for (const item of block.items) {
        if (isKeyValue(item) && pathStartsWith([...current, ...item.key.value], keyPath)) return item.loc.start.line;
        if (isKeyValue(item) && pathStartsWith(keyPath, [...current, ...item.key.value])) return item.loc.start.line;
      }
    } else if (isKeyValue(block)) {
      const full = block.key.value;
      if (pathStartsWith(full, keyPath) || pathStartsWith(keyPath, full)) return block.loc.start.line;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Adding and removing runtime tables in a TOML text (v1/v2 main file, template body).

interface StanzaStyle {
  header: string;
  key: string;
  optionsHeader: string;
  optionsKey: string;
}

/**
 * Indentation for new runtime tables: copied from an existing runtime table (and its options table)
 * when there is one, else containerd's own style (`config default`): sub-tables indented by two.
 */
function styleFor(doc: TomlDocument, runtimesPath: TomlPath): StanzaStyle {
  const tables = doc.blocks.filter(isTable);
  const sibling = tables.find((table) => tablePath(table).length === runtimesPath.length + 1 && pathStartsWith(tablePath(table), runtimesPath));
  if (!sibling) return { header: "", key: "  ", optionsHeader: "  ", optionsKey: "    " };
  const indentOf = (table: CstTable) => indentationAt(doc.text, offsetOf(doc, table.key.loc.start));
  const keyIndentOf = (table: CstTable, fallback: string) => {
    const first = table.items.find(isKeyValue);
    return first ? indentationAt(doc.text, offsetOf(doc, first.loc.start)) : fallback;
  };
  const header = indentOf(sibling);
  const key = keyIndentOf(sibling, `${header}  `);
  const unit = key.startsWith(header) ? key.slice(header.length) : "  ";
  const options = tables.find((table) => isDeepStrictEqual(tablePath(table), [...tablePath(sibling), "options"]));
  const optionsHeader = options ? indentOf(options) : key;
  return { header, key, optionsHeader, optionsKey: options ? keyIndentOf(options, optionsHeader + unit) : optionsHeader + unit };
}

function renderStanza(stanza: RuntimeStanza, runtimesPath: TomlPath, style: StanzaStyle, eol: string): string {
  const tablePathOf = [...runtimesPath, stanza.name];
  const lines = [`${style.header}[${formatKeyPath(tablePathOf)}]`, ...renderKeyValues(stanza.values).map((line) => style.key + line)];
  if (stanza.options) {
    lines.push(
      `${style.optionsHeader}[${formatKeyPath([...tablePathOf, "options"])}]`,
      ...renderKeyValues(stanza.options).map((line) => style.optionsKey + line),
    );
  }
  return lines.join(eol);
}

/**
 * Where new runtime tables go: after the last existing runtime table, else at the end of the nearest
 * enclosing plugin section, else at the end of the file. Always at the end of a line that ends a
 * table's last key-value, so no key changes the table it belongs to.
 */
function insertionPoint(doc: TomlDocument, runtimesPath: TomlPath): number {
  const tables = doc.blocks.filter(isTable);
  for (let depth = runtimesPath.length; depth >= 2; depth--) {
    const prefix = runtimesPath.slice(0, depth);
    const last = tables.filter((table) => pathStartsWith(tablePath(table), prefix)).at(-1);
    if (last) return endOfTableContent(doc, last);
  }
  return endOfLastNode(doc);
}

/**
 * Splices the runtime tables, followed by their images-plugin platform entries (`platforms`), into the
 * text as one block: after the last runtime table (see insertionPoint). A table header ends the block's
 * last table wherever it lands, so the platform tables may sit inside the CRI section.
 */
function addRuntimeStanzas(doc: TomlDocument, file: string, runtimesPath: TomlPath, stanzas: RuntimeStanza[], lineOffset: number, platforms: RuntimeStanza[] = [], topLevel: RuntimeStanza[] = []): string {
  const { text } = doc;
  const groups = [
    { path: runtimesPath, stanzas },
    { path: RUNTIME_PLATFORMS_TABLE_PATH, stanzas: platforms },
    { path: [] as TomlPath, stanzas: topLevel },
  ];
  for (const group of groups.filter((g) => g.stanzas.length > 0)) {
    for (let depth = 1; depth <= group.path.length; depth++) {
      const value = valueAt(doc.value, group.path.slice(0, depth));
      if (value !== undefined && !isPlainTable(value)) {
        const key = formatKeyPath(group.path.slice(0, depth));
        throw new ConfigError({
          file,
          key,
          problem: `\`${key}\` must be a table but is ${Array.isArray(value) ? "an array" : `the value ${JSON.stringify(value)}`}`,
          fix: "fix it and run again",
        });
      }
    }
    for (const stanza of group.stanzas) {
      const blocking = inlineTableOnPath(doc, [...group.path, stanza.name]);
      if (blocking) {
        const key = formatKeyPath(blocking.keyPath);
        throw new ConfigError({
          file,
          line: blocking.line + lineOffset,
          key,
          problem: `\`${key}\` is an inline table, which TOML does not allow to be extended`,
          fix: `rewrite it as [${key}...] table sections and run again`,
        });
      }
      try {
        checkNotDefined(doc, group.path, stanza.name, file);
      } catch (error) {
        // `doc` is the text below a template header: the editor's line is `lineOffset` further down.
        throw error instanceof ConfigError ? error.linesDown(lineOffset) : error;
      }
    }
  }
  if (stanzas.length + platforms.length === 0) return text;

  const at = insertionPoint(doc, runtimesPath);
  const eol = eolAt(text, at);
  const style = styleFor(doc, runtimesPath);
  const rendered = groups.flatMap((group) => group.stanzas.map((stanza) => renderStanza(stanza, group.path, style, eol)));
  const result =
    doc.blocks.length === 0
      ? rendered.join(eol + eol) + eol + text // nothing to follow: the tables open the (empty) document
      : splice(text, at, at, rendered.map((stanza) => eol + eol + stanza).join(""));

  // Self-check with the strict parser: valid, and containerd will see exactly our values.
  const check = parseToml(result, file, lineOffset);
  for (const group of groups) {
    for (const stanza of group.stanzas) {
      if (!isDeepStrictEqual(toPlain(valueAt(check.value, [...group.path, stanza.name])), stanzaTable(stanza))) {
        throw new Error(`internal error: the edit of ${file} does not define ${formatKeyPath([...group.path, stanza.name])} as intended`);
      }
    }
  }
  return result;
}

/**
 * Removes the tables of the named runtimes (and their sub-tables) with the line breaks that were
 * added in front of them. A table's trailing comments are kept: they may introduce what follows.
 */
function removeRuntimeStanzas(text: string, file: string, runtimesPath: TomlPath, names: readonly string[], lineOffset: number): string {
  if (names.length === 0) return text;
  const doc = parseToml(text, file, lineOffset);
  const ours = doc.blocks
    .filter(isTable)
    .filter((table) => names.some((name) => pathStartsWith(tablePath(table), [...runtimesPath, name])));
  // From the end, so the positions of the tables before each removal are still those of `doc`.
  let result = text;
  for (const table of ours.reverse()) result = removeTable(result, doc, table, tablePath(table).length === runtimesPath.length + 1);
  return result;
}

/**
 * Takes a table out of `text`, which equals `doc.text` up to the end of that table. Its trailing
 * comments are kept: they may introduce what follows.
 */
function removeTable(text: string, doc: TomlDocument, table: CstTable, isStanzaHead: boolean): string {
  const start = startOfLine(text, offsetOf(doc, table.key.loc.start));
  const end = endOfTableContent(doc, table);
  // The tables opened the document: the line break after them was ours.
  if (start === 0) return splice(text, 0, end + lineBreakAt(text, end), "");
  // Inserted as line break + blank line + table (a stanza) or line break + table (its options).
  const first = lineBreakBefore(text, start);
  const second = lineBreakBefore(text, start - first);
  const from = start - (isStanzaHead && first > 0 && second > 0 ? first + second : first);
  return splice(text, from, end, "");
}

// ---------------------------------------------------------------------------------------------------
// imports (v3+ main file)

// How containerd finds the files a config imports (containerd/containerd, `resolveImports` and
// `LoadConfig` in services/server/config/config.go (1.x) and cmd/containerd/server/config/config.go
// (2.x)): an entry is cleaned and, when relative, joined to the importing file's directory; only an
// entry containing `*` is a glob (`?` and `[` alone are literal), expanded with Go's filepath.Glob
// (directory by directory, names sorted, errors ignored, dot files matched); the imported files'
// own imports follow, breadth first, each file loaded once. containerd 1.6 up to 1.6.2x globbed the
// raw entry (a relative glob then resolves against containerd's working directory, `/` under
// systemd) and joined only literal entries; for v1/v2 configs both readings are taken.

const hasGoMeta = (pattern: string): boolean => /[*?[\\]/.test(pattern);

/** Go's filepath.Glob over host directories (`list`), in Go's order. */
export function goGlob(pattern: string, list: ListDir): string[] {
  const dir = path.posix.dirname(pattern);
  const file = path.posix.basename(pattern);
  const dirs = dir !== pattern && hasGoMeta(dir) ? goGlob(dir, list) : [dir];
  return dirs.flatMap((d) => (list(d) ?? []).filter((name) => goPathMatch(file, name)).map((name) => path.posix.join(d, name)));
}

const joinImport = (entry: string, importingFile: string): string => {
  const clean = path.posix.normalize(entry);
  return path.posix.isAbsolute(clean) ? clean : path.posix.join(path.posix.dirname(importingFile), clean);
};

/** The files one config's `imports` name, in containerd's order. */
export function resolveImports(entries: unknown, importingFile: string, version: ContainerdConfigVersion, list: ListDir): string[] {
  if (!Array.isArray(entries)) return [];
  return entries.flatMap((entry) => {
    if (typeof entry !== "string") return [];
    const joined = joinImport(entry, importingFile);
    if (!entry.includes("*")) return [joined];
    const matches = goGlob(joined, list);
    if (version <= 2 && !path.posix.isAbsolute(entry)) matches.push(...goGlob(path.posix.join("/", entry), list).filter((m) => !matches.includes(m)));
    return matches;
  });
}

interface ImportedDoc {
  doc: TomlDocument;
  file: string;
}

/** Every file the main config imports, directly or through other imports (breadth first, once each), except `skip`. */
function importedFiles(view: FileView, mainDoc: TomlDocument, mainFile: string, version: ContainerdConfigVersion, list: ListDir, skip: string | undefined): ImportedDoc[] {
  const loaded = new Set([mainFile]);
  const pending = resolveImports(mainDoc.value.imports, mainFile, version, list);
  const out: ImportedDoc[] = [];
  while (pending.length > 0) {
    const file = pending.shift() as string;
    if (loaded.has(file)) continue;
    loaded.add(file);
    if (file === skip) continue;
    const text = view.get(file);
    if (text === undefined) continue;
    const doc = parseToml(text, file);
    out.push({ doc, file });
    pending.push(...resolveImports(doc.value.imports, file, version, list));
  }
  return out;
}

/**
 * containerd 1.x merges an imported file's plugin sections by replacing the whole section (its
 * mergeConfig: "Replace entire sections instead of merging map's values"), so runtimes added to the
 * main file's CRI section vanish when an import defines that section.
 */
function checkNoCriSection(imported: ImportedDoc, version: ContainerdConfigVersion, mainFile: string): void {
  for (const plugin of version === 1 ? ["cri"] : ["io.containerd.grpc.v1.cri", "cri"]) {
    const sectionPath = ["plugins", plugin];
    if (valueAt(imported.doc.value, sectionPath) === undefined) continue;
    const key = formatKeyPath(sectionPath);
    throw new ConfigError({
      file: imported.file,
      line: lineDefining(imported.doc, sectionPath),
      key,
      problem: `defines [${key}], which replaces the whole CRI section of ${mainFile} in containerd 1.x, so Kata runtimes added there would not take effect`,
      fix: `move this file's CRI settings into ${mainFile} (or stop importing it) and run again`,
    });
  }
}

/** Whether an `imports` entry of `importingFile` loads `target` (a literal path, or a glob matching it). */
export function importCovers(entry: string, importingFile: string, target: string): boolean {
  const resolved = joinImport(entry, importingFile);
  return entry.includes("*") ? goPathMatch(resolved, target) : resolved === target;
}

function ensureImport(doc: TomlDocument, file: string, target: string): { text: string; entry?: string; keyAdded: boolean } {
  const text = doc.text;
  const entryText = JSON.stringify(target);
  const imports = rootKeyValue(doc, "imports");
  if (!imports) {
    // Right under `version` (root keys must precede the first table).
    const version = rootKeyValue(doc, "version");
    const line = `imports = [${entryText}]`;
    const at = version ? endOfLine(text, offsetOf(doc, version.loc.end)) : 0;
    const result = version ? insertAt(text, at, eolAt(text, at) + line) : line + detectEol(text) + text;
    return { text: result, entry: target, keyAdded: true };
  }
  const value = doc.value.imports;
  if (imports.value.type !== "InlineArray" || !Array.isArray(value) || value.some((entry) => typeof entry !== "string")) {
    throw new ConfigError({ file, line: imports.loc.start.line, key: "imports", problem: "`imports` must be an array of file paths", fix: "fix it and run again" });
  }
  if ((value as string[]).some((entry) => importCovers(entry, file, target))) return { text, keyAdded: false };
  const array = imports.value as CstInlineArray;
  const last = array.items.at(-1);
  const result = last
    ? insertAt(text, offsetOf(doc, last.item.loc.end), `, ${entryText}`) // before a trailing comma, if any
    : insertAt(text, offsetOf(doc, array.loc.start) + 1, entryText);
  return { text: result, entry: target, keyAdded: false };
}

const insertAt = (text: string, at: number, insert: string): string => splice(text, at, at, insert);

function removeImport(text: string, file: string, entry: string, keyAdded: boolean): string {
  const doc = parseToml(text, file);
  const imports = rootKeyValue(doc, "imports");
  if (!imports || imports.value.type !== "InlineArray") return text;
  const items = (imports.value as CstInlineArray).items;
  const index = items.findLastIndex((item) => item.item.type === "String" && item.item.value === entry);
  if (index === -1) return text;
  if (keyAdded && items.length === 1) {
    const start = startOfLine(text, offsetOf(doc, imports.loc.start));
    const end = endOfLine(text, offsetOf(doc, imports.loc.end));
    return start === 0 ? splice(text, 0, end + lineBreakAt(text, end), "") : splice(text, start - lineBreakBefore(text, start), end, "");
  }
  const ours = items[index];
  const previous = items[index - 1];
  const next = items[index + 1];
  if (previous) return splice(text, offsetOf(doc, previous.item.loc.end), offsetOf(doc, ours.item.loc.end), "");
  if (next) return splice(text, offsetOf(doc, ours.item.loc.start), offsetOf(doc, next.item.loc.start), "");
  return splice(text, offsetOf(doc, ours.item.loc.start), offsetOf(doc, ours.item.loc.end), "");
}

function renderDropIn(version: ContainerdConfigVersion, stanzas: RuntimeStanza[], platforms: RuntimeStanza[], provenance: string, debug = false): string {
  const runtimesPath = runtimesTablePath(version);
  const style: StanzaStyle = { header: "", key: "  ", optionsHeader: "  ", optionsKey: "    " };
  const tables = [
    ...stanzas.map((stanza) => renderStanza(stanza, runtimesPath, style, "\n")),
    ...platforms.map((platform) => renderStanza(platform, RUNTIME_PLATFORMS_TABLE_PATH, style, "\n")),
    // containerd 2.x merges an imported file's top-level settings over the main file's (cmd/containerd/server/
    // config/config.go mergeConfig: mergo.Merge WithOverride), so this level wins unless the command line sets one.
    ...(debug ? [renderStanza(DEBUG_STANZA, [], style, "\n")] : []),
  ];
  return [
    `${OWNED_FILE_MARKER} and ${provenance}.`,
    "# Local changes to this file are overwritten.",
    `version = ${version}`,
    "",
    tables.join("\n\n"),
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------------
// Uninstall

export function planContainerdUninstall(a: { layout: ContainerdLayout; read: Read; previous: ContainerdOwned }): FileEdit[] {
  const view = new FileView(a.read);
  uninstallInto(view, a.layout, a.previous);
  return view.edits();
}

function uninstallInto(view: FileView, layout: ContainerdLayout, previous: ContainerdOwned): { runcKept: boolean } {
  const file = layout.mainConfig;
  const existing = view.get(file);
  if (previous.dropIn !== undefined) view.set(previous.dropIn, undefined);
  if (existing === undefined) return { runcKept: false };
  const runtimesPath = runtimesTablePath(previous.version);

  if (layout.kind === "drop-in-dir") return { runcKept: false }; // the drop-in (deleted above) is all we wrote

  if (layout.kind === "template") {
    const { header, body } = splitTemplate(existing, file);
    const withoutPlatforms = removeRuntimeStanzas(body, file, RUNTIME_PLATFORMS_TABLE_PATH, previous.runtimePlatforms ?? [], headerLines(header));
    const removed = removeOurRuntimes(withoutPlatforms, file, runtimesPath, previous, headerLines(header));
    const result = previous.templateHeaderEolAdded && removed.text === "" ? header.replace(/\r?\n$/, "") : header + removed.text;
    view.set(file, previous.createdMain && result === `${BASE_TEMPLATE_HEADER}\n` ? undefined : result);
    return { runcKept: removed.runcKept };
  }

  let result = existing;
  if (previous.importEntry !== undefined) result = removeImport(result, file, previous.importEntry, previous.importsKeyAdded ?? false);
  let runcKept = false;
  if (previous.version <= 2) {
    if (previous.debugTableAdded) result = removeRuntimeStanzas(result, file, [], [DEBUG_STANZA.name], 0);
    result = removeRuntimeStanzas(result, file, RUNTIME_PLATFORMS_TABLE_PATH, previous.runtimePlatforms ?? [], 0);
    ({ text: result, runcKept } = removeOurRuntimes(result, file, runtimesPath, previous, 0));
  }
  view.set(file, previous.createdMain && result === skeleton(previous.version) ? undefined : result);
  return { runcKept };
}

/**
 * Removes our runtime tables from a v1/v2 text (main file or template body). The runc we declared
 * stands in for containerd 1.x's built-in one: if others have declared runtimes since, the built-in
 * one would vanish with ours, so ours is kept then.
 */
function removeOurRuntimes(
  text: string,
  file: string,
  runtimesPath: TomlPath,
  previous: ContainerdOwned,
  lineOffset: number,
): { text: string; runcKept: boolean } {
  if (previous.runtimes.length === 0) return { text, runcKept: false };
  const kata = previous.runtimes.filter((name) => name !== BUILT_IN_RUNC.name);
  let result = removeRuntimeStanzas(text, file, runtimesPath, kata, lineOffset);
  if (!previous.runtimes.includes(BUILT_IN_RUNC.name)) return { text: result, runcKept: false };
  const remaining = valueAt(parseToml(result, file, lineOffset).value, runtimesPath);
  const others = isPlainTable(remaining) ? Object.keys(remaining).filter((name) => name !== BUILT_IN_RUNC.name) : [];
  if (others.length > 0) return { text: result, runcKept: true };
  result = removeRuntimeStanzas(result, file, runtimesPath, [BUILT_IN_RUNC.name], lineOffset);
  return { text: result, runcKept: false };
}

// ---------------------------------------------------------------------------------------------------
// Reading back the effective configuration

/**
 * The CRI runtime names in the output of `containerd config dump` (the merged, effective config:
 * 1.x dumps version 2, `plugins."io.containerd.grpc.v1.cri".containerd.runtimes`; 2.x version 3,
 * `plugins."io.containerd.cri.v1.runtime".containerd.runtimes`). undefined: the dump has no CRI runtimes table.
 */
export function runtimesInDump(dump: string): string[] | undefined {
  let doc: TomlDocument;
  try {
    doc = parseToml(dump, "containerd config dump");
  } catch {
    return undefined;
  }
  for (const version of [2, 3] as const) {
    const table = valueAt(doc.value, runtimesTablePath(version));
    if (isPlainTable(table)) return Object.keys(table);
  }
  return undefined;
}

/** What is wrong with a dump that should define `expected`: undefined when every name is there. */
export function dumpProblem(dump: string, expected: readonly string[]): string | undefined {
  const names = runtimesInDump(dump) ?? [];
  const missing = expected.filter((name) => !names.includes(name));
  if (missing.length === 0) return undefined;
  return `\`containerd config dump\` (the effective configuration, imports merged) has no runtime ${missing.join(", ")}, so the new tables would not take effect; an imported file probably replaces them`;
}
