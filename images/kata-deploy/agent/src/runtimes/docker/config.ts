// Pure planner for Docker's daemon.json: text in, text out.
//
// jsonc-parser locates properties (offsets of every key and value); the edit itself is a splice of
// text rendered in the file's own indentation and line endings, because jsonc-parser's `modify`
// re-formats the sibling properties around an insertion and leaves `{\n}` behind a removal (checked;
// see docs/config-shapes.md). Removal takes out exactly the text we added: an untouched file comes
// back byte-for-byte and every other key, with its formatting, is kept.
import * as path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { type Node as JsonNode, type ParseError, parse as parseJsonValue, parseTree, printParseErrorCode } from "jsonc-parser";
import { ConfigError, type FileEdit, type KataConfigRequest, type KataRuntime } from "../types";

export type DockerRuntimeForm = "shim-v2" | "runc";
export const DOCKER_DAEMON_JSON = "/etc/docker/daemon.json";

/** Docker >= 23 runs shim-v2 runtimes (`runtimeType`); older versions silently ignore that key. */
export function dockerRuntimeFormFor(dockerVersion: string): DockerRuntimeForm {
  const major = /^v?(\d+)\./.exec(dockerVersion.trim());
  if (!major) {
    throw new ConfigError({ problem: `cannot read a Docker version from "${dockerVersion}"`, fix: "pass --docker-runtime-form shim-v2 or runc" });
  }
  return Number(major[1]) >= 23 ? "shim-v2" : "runc";
}

/** A JSON-serialisable record of exactly what we added. */
export interface DockerOwned {
  path: string;
  form: DockerRuntimeForm;
  runtimes: string[];
  /** daemon.json did not exist: deleted again when nothing but `{}` is left. */
  createdFile?: boolean;
  /** daemon.json held only whitespace: that text comes back when nothing else is left. */
  emptyFileText?: string;
  /** We added the `runtimes` key itself. */
  createdRuntimesKey?: boolean;
  /** What was between the braces of the object that had no properties when we added the first one. */
  emptyObjectInner?: string;
}

type Read = (hostPath: string) => string | undefined;

/** The daemon.json value for one runtime. */
export function dockerRuntimeEntry(runtime: KataRuntime, form: DockerRuntimeForm): Record<string, unknown> {
  if (form === "shim-v2") return { runtimeType: runtime.shimBinary, options: { ConfigPath: runtime.configPath } };
  // Kata 1.x style: an OCI runtime binary next to the shim, told which Kata config to use.
  return { path: path.posix.join(path.posix.dirname(runtime.shimBinary), "kata-runtime"), runtimeArgs: ["--kata-config", runtime.configPath] };
}

// ---------------------------------------------------------------------------------------------------

interface JsonDocument {
  text: string;
  root: JsonNode;
}

const PARSE_OPTIONS = { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false };

/**
 * jsonc-parser recurses once per nesting level, so a file nested thousands of levels deep would
 * overflow the stack. dockerd's encoding/json accepts up to 10,000 levels (golang/go
 * src/encoding/json/scanner.go, maxNestingDepth); no real daemon.json comes close to ours.
 */
export const MAX_JSON_DEPTH = 1000;

/** The first offset where `text` nests deeper than `limit` arrays/objects (strings skipped), or -1. */
function tooDeepAt(text: string, limit: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

function parseDaemonJson(text: string, file: string): JsonDocument {
  const deep = tooDeepAt(text, MAX_JSON_DEPTH);
  if (deep >= 0) {
    throw new ConfigError({
      file,
      ...lineColumn(text, deep),
      problem: `nested more than ${MAX_JSON_DEPTH} levels deep, more than kata-deploy edits (dockerd accepts up to 10000)`,
      fix: "flatten that value and run again",
    });
  }
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, PARSE_OPTIONS);
  if (errors.length > 0 || !root) {
    const error = errors[0];
    throw new ConfigError({
      file,
      ...(error ? lineColumn(text, error.offset) : {}),
      problem: `invalid JSON (${error ? printParseErrorCode(error.error) : "no JSON value"})`,
      fix: "dockerd would refuse it too: fix the file and run again",
    });
  }
  if (root.type !== "object") {
    throw new ConfigError({ file, problem: `daemon.json must hold a JSON object, not ${root.type === "array" ? "an array" : `a ${root.type}`}`, fix: "fix the file and run again" });
  }
  return { text, root };
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  return { line: before.split("\n").length, column: offset - before.lastIndexOf("\n") };
}

const propertiesOf = (object: JsonNode): JsonNode[] => object.children ?? [];
const keyOf = (property: JsonNode): unknown => property.children?.[0]?.value;
const valueNodeOf = (property: JsonNode): JsonNode | undefined => property.children?.[1];
const findProperty = (object: JsonNode, key: string): JsonNode | undefined => propertiesOf(object).find((property) => keyOf(property) === key);
const endOf = (node: JsonNode): number => node.offset + node.length;

const detectEol = (text: string): string => (/\r\n/.test(text) ? "\r\n" : "\n");
const indentationOfLine = (text: string, offset: number): string => /^[ \t]*/.exec(text.slice(text.lastIndexOf("\n", offset - 1) + 1))?.[0] ?? "";
const splice = (text: string, start: number, end: number, insert: string): string => text.slice(0, start) + insert + text.slice(end);

/** The file's indentation unit: how far its first property is indented, two spaces when it does not say. */
function indentUnit(doc: JsonDocument): string {
  for (const property of propertiesOf(doc.root)) {
    const lineStart = doc.text.lastIndexOf("\n", property.offset - 1) + 1;
    const before = doc.text.slice(lineStart, property.offset);
    if (lineStart > 0 && /^[ \t]+$/.test(before)) return before;
  }
  return "  ";
}

/** Adds `"key": value` as the last property of `object`, in the object's own layout. */
function addProperty(doc: JsonDocument, object: JsonNode, key: string, value: unknown): { text: string; emptyInner?: string } {
  const { text } = doc;
  const eol = detectEol(text);
  const unit = indentUnit(doc);
  const properties = propertiesOf(object);
  const closingIndent = indentationOfLine(text, object.offset);
  const render = (indent: string) => `${JSON.stringify(key)}: ${JSON.stringify(value, null, unit).split("\n").join(eol + indent)}`;
  const last = properties.at(-1);
  if (!last) {
    const childIndent = closingIndent + unit;
    const inner = text.slice(object.offset + 1, endOf(object) - 1);
    return { text: splice(text, object.offset + 1, endOf(object) - 1, eol + childIndent + render(childIndent) + eol + closingIndent), emptyInner: inner };
  }
  const singleLine = !text.slice(object.offset, endOf(object)).includes("\n");
  if (singleLine) return { text: splice(text, endOf(last), endOf(last), `, ${JSON.stringify(key)}: ${JSON.stringify(value)}`) };
  const lastIndent = indentationOfLine(text, last.offset);
  return { text: splice(text, endOf(last), endOf(last), `,${eol}${lastIndent}${render(lastIndent)}`) };
}

/** Removes property `key` of `object` with the separator that joined it to its neighbours. */
function removeProperty(doc: JsonDocument, object: JsonNode, key: string, emptyInner: string | undefined): string {
  const properties = propertiesOf(object);
  const index = properties.findIndex((property) => keyOf(property) === key);
  if (index === -1) return doc.text;
  const ours = properties[index];
  const previous = properties[index - 1];
  const next = properties[index + 1];
  if (previous) return splice(doc.text, endOf(previous), endOf(ours), "");
  if (next) return splice(doc.text, ours.offset, next.offset, "");
  return splice(doc.text, object.offset + 1, endOf(object) - 1, emptyInner ?? "");
}

function runtimesObject(doc: JsonDocument, file: string): JsonNode | undefined {
  // Go's encoding/json keeps the last of duplicate keys without a word (dockerd --validate says
  // "configuration OK"), so runtimes added to the first would silently not exist.
  const all = propertiesOf(doc.root).filter((property) => keyOf(property) === "runtimes");
  if (all.length > 1) {
    const lines = all.map((property) => lineColumn(doc.text, property.offset).line).join(", ");
    throw new ConfigError({ file, key: "runtimes", problem: `"runtimes" appears ${all.length} times (lines ${lines}) and dockerd uses only the last one`, fix: "merge them into one and run again" });
  }
  const property = all[0];
  if (!property) return undefined;
  const value = valueNodeOf(property);
  if (value?.type !== "object") {
    throw new ConfigError({ file, key: "runtimes", problem: `"runtimes" must be a JSON object of runtime name -> settings, not ${value?.type ?? "nothing"}`, fix: "fix it and run again" });
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------

/**
 * dockerd reads a daemon.json that starts with a UTF-8 byte-order mark (checked: `dockerd --validate`
 * 26 and 28 accept one); jsonc-parser does not. The mark is set aside and put back unchanged.
 */
const BOM = "\uFEFF";
const withoutBom = (text: string | undefined): { bom: string; text: string | undefined } =>
  text?.startsWith(BOM) ? { bom: BOM, text: text.slice(BOM.length) } : { bom: "", text };

export function planDockerInstall(a: {
  read: Read;
  request: KataConfigRequest;
  form: DockerRuntimeForm;
  previous?: DockerOwned;
  path?: string;
}): { edits: FileEdit[]; owned: DockerOwned } {
  const file = a.path ?? DOCKER_DAEMON_JSON;
  const before = a.read(file);
  const edits: FileEdit[] = [];
  const { bom, text: beforeText } = withoutBom(before);
  let current = beforeText;
  if (a.previous) {
    if (a.previous.path !== file) edits.push(...planDockerUninstall({ read: a.read, previous: a.previous }));
    else current = uninstallText(current, a.previous);
  }

  const owned: DockerOwned = { path: file, form: a.form, runtimes: [] };
  let text: string;
  if (current === undefined) {
    owned.createdFile = true;
    text = "{}\n";
  } else if (current.trim() === "") {
    owned.emptyFileText = current;
    text = "{}\n";
  } else text = current;

  const seen = new Set<string>();
  const entries = a.request.runtimes.map((runtime) => {
    if (seen.has(runtime.name)) throw new ConfigError({ file, problem: `runtime \`${runtime.name}\` is requested twice`, fix: "list each shim once" });
    seen.add(runtime.name);
    return [runtime.name, dockerRuntimeEntry(runtime, a.form)] as const;
  });

  let doc = parseDaemonJson(text, file);
  const existing = runtimesObject(doc, file);
  for (const [name] of entries) {
    if (existing && findProperty(existing, name)) {
      throw new ConfigError({ file, key: `runtimes.${name}`, problem: `runtime "${name}" is already defined in "runtimes" by something other than kata-deploy`, fix: "remove or rename it and run again" });
    }
  }
  if (entries.length > 0 && !existing) {
    const added = addProperty(doc, doc.root, "runtimes", Object.fromEntries(entries));
    text = added.text;
    owned.createdRuntimesKey = true;
    if (added.emptyInner !== undefined) owned.emptyObjectInner = added.emptyInner;
  } else {
    for (const [name, entry] of entries) {
      const added = addProperty(doc, runtimesObject(doc, file) as JsonNode, name, entry);
      text = added.text;
      if (added.emptyInner !== undefined) owned.emptyObjectInner = added.emptyInner;
      doc = parseDaemonJson(text, file);
    }
  }
  owned.runtimes = entries.map(([name]) => name);

  // Self-check: valid JSON, and dockerd will read exactly our entries.
  const check = parseJsonValue(text) as { runtimes?: Record<string, unknown> };
  for (const [name, entry] of entries) {
    if (!isDeepStrictEqual(check.runtimes?.[name], entry)) throw new Error(`internal error: the edit of ${file} does not define runtime ${name} as intended`);
  }
  edits.push({ path: file, before, after: bom + text });
  return { edits, owned };
}

export function planDockerUninstall(a: { read: Read; previous: DockerOwned; path?: string }): FileEdit[] {
  const file = a.path ?? a.previous.path;
  const before = a.read(file);
  return [{ path: file, before, after: uninstallText(before, { ...a.previous, path: file }) }];
}

function uninstallText(textWithBom: string | undefined, previous: DockerOwned): string | undefined {
  const { bom, text } = withoutBom(textWithBom);
  if (text === undefined) return undefined;
  const result = uninstallJson(text, previous);
  return result === undefined ? undefined : bom + result;
}

function uninstallJson(text: string, previous: DockerOwned): string | undefined {
  const file = previous.path;
  let doc = parseDaemonJson(text, file);
  let runtimes = runtimesObject(doc, file);
  if (runtimes) {
    const remaining = propertiesOf(runtimes).filter((property) => !previous.runtimes.includes(String(keyOf(property))));
    if (previous.createdRuntimesKey && remaining.length === 0) {
      doc = parseDaemonJson(removeProperty(doc, doc.root, "runtimes", previous.emptyObjectInner), file);
    } else {
      // Last first, so each removal pairs with the separator its insertion added.
      for (const name of [...previous.runtimes].reverse()) {
        doc = parseDaemonJson(removeProperty(doc, runtimes, name, previous.emptyObjectInner), file);
        runtimes = runtimesObject(doc, file) as JsonNode;
      }
    }
  }
  if (propertiesOf(doc.root).length === 0) {
    if (previous.createdFile) return undefined;
    if (previous.emptyFileText !== undefined) return previous.emptyFileText;
  }
  return doc.text;
}
