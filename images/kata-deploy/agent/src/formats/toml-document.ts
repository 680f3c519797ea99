// Locating and splicing inside TOML text without re-serialising it.
//
// Two well-kept parsers, each for what it is good at: smol-toml is a strict TOML 1.0 parser with
// precise error positions (it is our validator and value model, and it rejects what containerd's
// go-toml rejects: duplicate tables, redefined keys, extended inline tables); toml-patch's concrete
// syntax tree gives the line/column of every table header, key and array item, so edits can be
// spliced into the original text and everything else (comments, order, spacing, quoting, CRLF)
// stays byte-for-byte. toml-patch's own `patch()` is not used for additions: given a new nested
// table it writes a dotted inline key into the nearest existing parent table
// (`containerd.runtimes.kata-qemu = { ... }` under `[plugins."io.containerd.grpc.v1.cri"]`), which
// reads badly and cannot be removed exactly; see docs/config-shapes.md.
import { parseDocument } from "@decimalturn/toml-patch";
import { parse as parseTomlValue, stringify as stringifyToml, TomlError } from "smol-toml";
import { ConfigError } from "../report/errors";

export type TomlPath = readonly string[];
export type TomlTable = Record<string, unknown>;

/** A position in the text as toml-patch reports it: 1-based line, 0-based UTF-16 column. */
interface CstPosition {
  line: number;
  column: number;
}
interface CstLocation {
  start: CstPosition;
  end: CstPosition;
}

// The subset of toml-patch's CST we read. Its node types are not exported by name, so they are
// described here structurally (and checked at the one place the CST enters: `parseCst`).
export interface CstNode {
  type: string;
  loc: CstLocation;
}
export interface CstKey extends CstNode {
  type: "Key";
  value: string[];
}
export interface CstKeyValue extends CstNode {
  type: "KeyValue";
  key: CstKey;
  value: CstNode;
}
export interface CstTable extends CstNode {
  type: "Table" | "TableArray";
  key: CstNode & { item: CstKey };
  items: CstNode[];
}
export interface CstInlineItem extends CstNode {
  type: "InlineItem";
  item: CstNode & { value?: unknown };
  comma: boolean;
}
export interface CstInlineArray extends CstNode {
  type: "InlineArray";
  items: CstInlineItem[];
}

export const isTable = (node: CstNode): node is CstTable => node.type === "Table" || node.type === "TableArray";
export const isKeyValue = (node: CstNode): node is CstKeyValue => node.type === "KeyValue";

/** A parsed document: the values (smol-toml) and the syntax tree with positions (toml-patch). */
export interface TomlDocument {
  readonly text: string;
  readonly value: TomlTable;
  /** Top-level nodes of the syntax tree (built on first use). */
  readonly blocks: CstNode[];
  /** Offset of the first character of each line. */
  readonly lineStarts: number[];
}

/**
 * Parses `text` or throws a ConfigError naming the line and the fix. `lineOffset` is added to reported
 * line numbers (for template headers stripped before parsing).
 */
export function parseToml(text: string, file: string | undefined, lineOffset = 0): TomlDocument {
  let value: TomlTable;
  try {
    value = parseTomlValue(text) as TomlTable;
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
      // smol-toml's nesting limit is its own, not TOML's: containerd 1.6 reads a 2,000-deep array.
      if (/excessively nested/.test(reason)) {
        throw new ConfigError({
          file,
          line: error.line + lineOffset,
          column: error.column,
          problem: "nested more deeply than kata-deploy's TOML parser allows (containerd itself may accept it)",
          fix: "flatten that value and run again",
        });
      }
      throw new ConfigError({
        file,
        line: error.line + lineOffset,
        column: error.column,
        problem: `invalid TOML: ${reason}`,
        fix: "fix the file (the runtime would refuse it too) and run again",
      });
    }
    throw error;
  }
  // The syntax tree costs several times the validation (about 150 ms against 20 ms for 1 MiB of
  // mirrors), and many parses only need the values: it is built on first use.
  let blocks: CstNode[] | undefined;
  let lineStarts: number[] | undefined;
  return {
    text,
    value,
    // toml-patch accepts everything smol-toml accepts (it also reads TOML 1.1), so this cannot fail here.
    get blocks() {
      return (blocks ??= parseDocument(text).cst as unknown as CstNode[]);
    },
    get lineStarts() {
      return (lineStarts ??= lineStartsOf(text));
    },
  };
}

function lineStartsOf(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}

/** UTF-16 offset of a CST position. */
export function offsetOf(doc: TomlDocument, position: CstPosition): number {
  return doc.lineStarts[position.line - 1] + position.column;
}

/** Offset just before the line ending of the line containing `offset` (or the end of the text). */
export function endOfLine(text: string, offset: number): number {
  const newline = text.indexOf("\n", offset);
  if (newline === -1) return text.length;
  return newline > 0 && text[newline - 1] === "\r" ? newline - 1 : newline;
}

/** Offset of the first character of the line containing `offset`. */
export function startOfLine(text: string, offset: number): number {
  return text.lastIndexOf("\n", offset - 1) + 1;
}

/** The document's line ending: the first one it uses, "\n" when it has none. */
export function detectEol(text: string): string {
  const newline = text.indexOf("\n");
  return newline > 0 && text[newline - 1] === "\r" ? "\r\n" : "\n";
}

/**
 * The line ending to use for text inserted at `offset` (the end of a line): that line's own, else (last
 * line without one) the previous line's, else the document's. Files edited on Windows and then appended
 * to on Linux mix CRLF and LF; new text matches its neighbours, and removal takes exactly what was added.
 */
export function eolAt(text: string, offset: number): string {
  if (text.startsWith("\r\n", offset)) return "\r\n";
  if (text.startsWith("\n", offset)) return "\n";
  const previous = text.lastIndexOf("\n", offset - 1);
  if (previous === -1) return detectEol(text);
  return previous > 0 && text[previous - 1] === "\r" ? "\r\n" : "\n";
}

/** Length of the line break (CRLF: 2, LF: 1, none: 0) that ends just before `offset`. */
export const lineBreakBefore = (text: string, offset: number): number =>
  text.endsWith("\r\n", offset) ? 2 : text.endsWith("\n", offset) ? 1 : 0;

/** Length of the line break (CRLF: 2, LF: 1, none: 0) that starts at `offset`. */
export const lineBreakAt = (text: string, offset: number): number =>
  text.startsWith("\r\n", offset) ? 2 : text.startsWith("\n", offset) ? 1 : 0;

export function tablePath(table: CstTable): string[] {
  return table.key.item.value;
}

export const pathStartsWith = (path: TomlPath, prefix: TomlPath): boolean =>
  path.length >= prefix.length && prefix.every((segment, i) => path[i] === segment);

/** The value at `path`, or undefined. */
export function valueAt(root: TomlTable, path: TomlPath): unknown {
  let current: unknown = root;
  for (const segment of path) {
    if (typeof current !== "object" || current === null || Array.isArray(current)) return undefined;
    current = (current as TomlTable)[segment];
  }
  return current;
}

/**
 * The parsers build tables without a prototype; this gives ordinary objects for deep comparisons.
 * Only for the small runtime tables we compare (strings, booleans, numbers, arrays).
 */
export const toPlain = (value: unknown): unknown => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));

export const isPlainTable = (value: unknown): value is TomlTable =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);

/** `a."b.c".d` — bare where TOML allows, basic-quoted otherwise (containerd's own style). */
export function formatKeyPath(path: TomlPath): string {
  return path.map((segment) => (/^[A-Za-z0-9_-]+$/.test(segment) ? segment : JSON.stringify(segment))).join(".");
}

/**
 * `key = value` lines for a flat table (strings, booleans, numbers, arrays of those), rendered by
 * smol-toml so quoting and escaping follow the TOML spec exactly.
 */
export function renderKeyValues(values: TomlTable): string[] {
  return stringifyToml(values)
    .split("\n")
    .filter((line) => line.length > 0);
}

/**
 * Key-values and (sub)tables whose full key path is a proper prefix of `path` (or equal to it) and
 * whose value is an inline table: TOML forbids adding `[path...]` tables under them.
 */
export function inlineTableOnPath(doc: TomlDocument, path: TomlPath): { keyPath: string[]; line: number } | undefined {
  let currentTable: string[] = [];
  for (const block of doc.blocks) {
    if (isTable(block)) {
      currentTable = tablePath(block);
      for (const item of block.items) {
        const found = checkKeyValue(item, currentTable);
        if (found) return found;
      }
    } else {
      const found = checkKeyValue(block, currentTable);
      if (found) return found;
    }
  }
  return undefined;

  function checkKeyValue(node: CstNode, table: string[]) {
    if (!isKeyValue(node) || node.value.type !== "InlineTable") return undefined;
    const keyPath = [...table, ...node.key.value];
    return pathStartsWith(path, keyPath) ? { keyPath, line: node.loc.start.line } : undefined;
  }
}

/** The root-level key-value `key` (before the first table header), if any. */
export function rootKeyValue(doc: TomlDocument, key: string): CstKeyValue | undefined {
  for (const block of doc.blocks) {
    if (isTable(block)) return undefined;
    if (isKeyValue(block) && block.key.value.length === 1 && block.key.value[0] === key) return block;
  }
  return undefined;
}

/** Offset just past the last node of the document (its last key-value, comment or table row), or 0. */
export function endOfLastNode(doc: TomlDocument): number {
  const last = doc.blocks.at(-1);
  if (!last) return 0;
  if (isTable(last)) return endOfTableContent(doc, last);
  return endOfLine(doc.text, offsetOf(doc, last.loc.end));
}

/**
 * End of the line holding a table's last key-value (or its header when it has none). Comments after
 * the last key-value are deliberately excluded: they usually introduce whatever follows.
 */
export function endOfTableContent(doc: TomlDocument, table: CstTable): number {
  const lastKeyValue = table.items.filter(isKeyValue).at(-1);
  const end = lastKeyValue ? lastKeyValue.loc.end : table.key.loc.end;
  return endOfLine(doc.text, offsetOf(doc, end));
}

/** Leading whitespace of the line containing `offset`. */
export function indentationAt(text: string, offset: number): string {
  const lineStart = startOfLine(text, offset);
  return /^[ \t]*/.exec(text.slice(lineStart))?.[0] ?? "";
}

/** Replaces [start, end) of `text` with `insert`. */
export const splice = (text: string, start: number, end: number, insert: string): string =>
  text.slice(0, start) + insert + text.slice(end);

/**
 * Go's `filepath.Match` (what containerd uses to expand `imports` globs): `*` and `?` never match
 * `/`, `[...]` classes with `^` negation and ranges, `\` escapes. Not minimatch: no `**`, no braces.
 */
export function goPathMatch(pattern: string, name: string): boolean {
  let regex = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") regex += "[^/]*";
    else if (c === "?") regex += "[^/]";
    else if (c === "\\" && i + 1 < pattern.length) regex += escapeRegex(pattern[++i]);
    else if (c === "[") {
      const close = pattern.indexOf("]", i + 2);
      if (close === -1) return false; // Go: ErrBadPattern, containerd fails to start on it
      let body = pattern.slice(i + 1, close);
      const negate = body.startsWith("^");
      if (negate) body = body.slice(1);
      regex += `[${negate ? "^/" : ""}${body.replace(/[\]\\]/g, "\\$&")}]`;
      i = close;
    } else regex += escapeRegex(c);
  }
  return new RegExp(`${regex}$`, "u").test(name);
}

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
