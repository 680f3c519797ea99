// What the Pulumi CLI does with a project's files before `pulumi preview`/`up` runs the program, ported from
// its source (pulumi/pulumi, read at 1b59498, Aug 2026) so that tests can apply it to every Pulumi.yaml of
// this repository. Each function names the upstream file and function it follows; behaviour the CLI has and
// this repository does not use (ESC environments, stackConfigDir other than the project directory, bun,
// `exports` conditions beyond the three below) is refused or left out, never guessed.
//
//   loadProject            sdk/go/common/workspace/loaders.go LoadProjectBytes; project.go ValidateProject
//                          (+ the JSON schema sdk/go/common/workspace/project.json), RewriteConfigPathIntoStackConfigDir,
//                          RewriteShorthandConfigValues, Project.Validate, ValidateConfigValue
//   loadStack              sdk/go/common/workspace/loaders.go LoadProjectStackBytes, stackConfigNamespacedWithProject;
//                          sdk/go/common/resource/config/value.go (a `secure:` map is a secret, maps/lists are objects)
//   configSet              pkg/cmd/pulumi/config/config.go configSetCmd.Run (ParseConfigKey, --secret, --path,
//                          looksLikeSecret's key pattern); sdk/go/common/resource/config/map.go Map.Set,
//                          object.go coerce
//   validateStackConfig    pkg/workspace/config.go ValidateStackConfigAndApplyProjectConfig → mergeConfig,
//                          validateStackConfigValues, validateStackConfigValue, missingStackConfigurationKeysError
//   programEntry           pkg/engine/project.go getPwdMain; sdk/nodejs/cmd/run/run.ts run (no `main` in Pulumi.yaml:
//                          the nearest package.json upwards decides: `exports`, then `main`)
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";

/** sdk/go/common/workspace/project.go ProjectConfigItemsType. */
export interface ConfigItemsType {
  type: string;
  items?: ConfigItemsType;
}

/** sdk/go/common/workspace/project.go ProjectConfigType. */
export interface ConfigType {
  type?: string;
  items?: ConfigItemsType;
  description?: string;
  default?: unknown;
  value?: unknown;
  secret?: boolean;
}

export interface Project {
  name: string;
  runtime: string | { name: string; options?: Record<string, unknown> };
  main?: string;
  config: Record<string, ConfigType>;
  raw: Record<string, unknown>;
}

/** sdk/go/common/resource/config/value.go Value: the text the program gets, and how it is stored. */
export interface ConfigValue {
  /** The plaintext (for objects: JSON), as the program receives it. */
  value: string;
  secure: boolean;
  object: boolean;
  /**
   * A `secure:` value read from a stack file: `value` is ciphertext, which this model cannot decrypt (the CLI
   * decrypts with the stack's secrets provider), so its type is not checked.
   */
  ciphertext?: boolean;
}

/** Stack config, keyed `<namespace>:<name>`. */
export type StackConfig = Map<string, ConfigValue>;

// project.json $defs.simpleConfigType and configTypeDeclaration's attributes (additionalProperties: false).
const SIMPLE_CONFIG_TYPES = ["string", "integer", "boolean", "array", "object"];
const DECLARATION_ATTRIBUTES = ["type", "items", "description", "secret", "default", "value"];

const isPrimitive = (value: unknown): value is string | number | boolean =>
  typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isInteger(value));
const isPlainObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === "object" && !Array.isArray(value);

/** project.go configKeyIsNamespacedByProject. */
function namespacedByProject(projectName: string, key: string): boolean {
  return !key.includes(":") || key.startsWith(`${projectName}:`);
}

/** project.go InferFullTypeName. */
export function fullTypeName(type: string, items?: ConfigItemsType): string {
  return items !== undefined ? `array<${fullTypeName(items.type, items.items)}>` : type;
}

/**
 * project.go ValidateConfigValue: is `value` (a stack value — a string, or for objects the parsed JSON — or a
 * default from Pulumi.yaml) of the declared type?
 */
export function validateConfigValue(type: string, items: ConfigItemsType | undefined, value: unknown): boolean {
  if (type === "string") return typeof value === "string";
  if (type === "integer") {
    if (typeof value === "number") return Number.isInteger(value);
    // strconv.Atoi: optional sign, decimal digits.
    return typeof value === "string" && /^[+-]?\d+$/.test(value);
  }
  if (type === "boolean") return value === "true" || value === "false" || typeof value === "boolean";
  if (type === "object") return isPlainObject(value);
  if (!Array.isArray(value) || items === undefined) return false;
  return value.every((item) => validateConfigValue(items.type, items.items, item));
}

function validateItemsType(items: unknown, where: string): ConfigItemsType {
  // project.json $defs.configItemsType: `type` required; `items` required when type is array.
  if (!isPlainObject(items) || typeof items.type !== "string" || !SIMPLE_CONFIG_TYPES.includes(items.type)) {
    throw new Error(`${where}: items must be an object with a type (${SIMPLE_CONFIG_TYPES.join(", ")})`);
  }
  if (items.type === "array" && items.items === undefined) throw new Error(`${where}: items of type array need their own items`);
  return { type: items.type, items: items.items === undefined ? undefined : validateItemsType(items.items, `${where}/items`) };
}

/** loaders.go LoadProjectBytes: parse, ValidateProject (schema), rewrite shorthands, Project.Validate. */
export function loadProject(text: string, file = "Pulumi.yaml"): Project {
  const raw = parse(text) as unknown;
  if (!isPlainObject(raw)) throw new Error(`could not validate '${file}': expected project to be an object`);
  // ValidateProject: name first, with its own messages.
  if (!("name" in raw)) throw new Error(`could not validate '${file}': project is missing a 'name' attribute`);
  if (typeof raw.name !== "string" || raw.name === "") {
    throw new Error(`could not validate '${file}': project is missing a non-empty string 'name' attribute`);
  }
  const name = raw.name;
  // project.json: runtime is a non-empty string or { name, options } with nothing else.
  const runtime = raw.runtime;
  if (runtime !== undefined) {
    const ok =
      (typeof runtime === "string" && runtime !== "") ||
      (isPlainObject(runtime) && typeof runtime.name === "string" && runtime.name !== "" && Object.keys(runtime).every((key) => key === "name" || key === "options"));
    if (!ok) throw new Error(`could not validate '${file}': #/runtime must be a name or { name, options }`);
  }
  if (raw.main !== undefined && raw.main !== null && typeof raw.main !== "string") throw new Error(`could not validate '${file}': #/main must be a string`);
  if (isPlainObject(raw.backend) && Object.keys(raw.backend).some((key) => key !== "url")) {
    throw new Error(`could not validate '${file}': #/backend allows only 'url'`);
  }
  // RewriteConfigPathIntoStackConfigDir: `config: <string>` is the old spelling of stackConfigDir.
  if (typeof raw.config === "string" || typeof raw.stackConfigDir === "string") {
    throw new Error(`${file}: stackConfigDir is not modelled by tests/support/pulumi-cli-rules.ts`);
  }
  const config: Record<string, ConfigType> = {};
  const rawConfig = raw.config ?? {};
  if (!isPlainObject(rawConfig)) throw new Error(`could not validate '${file}': #/config must be an object`);
  for (const [key, entry] of Object.entries(rawConfig)) {
    const where = `could not validate '${file}': #/config/${key}`;
    // project.json: a config entry is a string, integer, boolean, array or a configTypeDeclaration.
    // RewriteShorthandConfigValues: primitives and arrays become a default (project keys) or a value (others).
    if (isPrimitive(entry) || Array.isArray(entry)) {
      config[key] = namespacedByProject(name, key) ? { default: entry } : { value: entry };
      continue;
    }
    if (!isPlainObject(entry)) throw new Error(`${where}: must be a string, integer, boolean, array or a declaration`);
    const unknown = Object.keys(entry).filter((attribute) => !DECLARATION_ATTRIBUTES.includes(attribute));
    if (unknown.length > 0) {
      throw new Error(`${where}: '${unknown[0]}' not allowed; the allowed attributes are ${DECLARATION_ATTRIBUTES.map((a) => `'${a}'`).join(", ")}`);
    }
    if (entry.type !== undefined && (typeof entry.type !== "string" || !SIMPLE_CONFIG_TYPES.includes(entry.type))) {
      throw new Error(`${where}/type: must be one of ${SIMPLE_CONFIG_TYPES.join(", ")}`);
    }
    if (entry.secret !== undefined && typeof entry.secret !== "boolean") throw new Error(`${where}/secret: must be a boolean`);
    if (entry.description !== undefined && typeof entry.description !== "string") throw new Error(`${where}/description: must be a string`);
    config[key] = {
      type: entry.type as string | undefined,
      items: entry.items === undefined ? undefined : validateItemsType(entry.items, `${where}/items`),
      description: entry.description as string | undefined,
      // yaml: `default:` with no value is null, which Go's `any` field holds as nil (absent).
      default: entry.default ?? undefined,
      value: entry.value ?? undefined,
      secret: entry.secret as boolean | undefined,
    };
  }
  // Project.Validate.
  for (const [key, declaration] of Object.entries(config)) {
    if (declaration.default !== undefined && declaration.value !== undefined) {
      throw new Error(`could not unmarshal '${file}': project config '${key}' cannot have both a 'default' and 'value' attribute`);
    }
    if (namespacedByProject(name, key)) {
      if (declaration.type === "array" && declaration.items === undefined) {
        throw new Error(`could not unmarshal '${file}': The configuration key '${key}' declares an array but does not specify the underlying type via the 'items' attribute`);
      }
      if (declaration.type !== undefined && declaration.default !== undefined && !validateConfigValue(declaration.type, declaration.items, declaration.default)) {
        throw new Error(
          `could not unmarshal '${file}': The default value specified for configuration key '${key}' is not of the expected type '${fullTypeName(declaration.type, declaration.items)}'`,
        );
      }
    } else {
      if (declaration.type !== undefined) throw new Error(`could not unmarshal '${file}': Configuration key '${key}' is not namespaced by the project and should not define a type`);
      if (declaration.default !== undefined) {
        throw new Error(`could not unmarshal '${file}': Configuration key '${key}' is not namespaced by the project and should not define a default value. Did you mean to use the 'value' attribute instead of 'default'?`);
      }
      if (declaration.value === undefined) throw new Error(`could not unmarshal '${file}': Configuration key '${key}' is namespaced and must provide an attribute 'value'`);
    }
  }
  return { name, runtime: raw.runtime as Project["runtime"], main: typeof raw.main === "string" ? raw.main : undefined, config, raw };
}

/** config.ParseKey after namespacing: `key` → `<project>:key`; `ns:config:key` → `ns:key`. */
function fullKey(projectName: string, key: string): string {
  const parts = key.split(":");
  if (parts.length === 1) return `${projectName}:${key}`;
  if (parts.length === 3 && parts[1] === "config") return `${parts[0]}:${parts[2]}`;
  if (parts.length !== 2) throw new Error(`could not parse ${key} as a configuration key (configuration keys should be of the form \`<namespace>:<name>\`)`);
  return key;
}

/** A value from a stack file (value.go UnmarshalYAML): `{ secure: ... }` is a secret, maps and lists are objects. */
function stackFileValue(raw: unknown): ConfigValue {
  if (isPlainObject(raw) && Object.keys(raw).length === 1 && typeof raw.secure === "string") {
    return { value: raw.secure, secure: true, object: false, ciphertext: true };
  }
  if (Array.isArray(raw) || isPlainObject(raw)) {
    return { value: JSON.stringify(raw), secure: JSON.stringify(raw).includes('"secure"'), object: true };
  }
  return { value: raw === null ? "" : String(raw), secure: false, object: false };
}

/** loaders.go LoadProjectStackBytes: keys without a namespace get the project's (stackConfigNamespacedWithProject). */
export function loadStack(text: string, project: Project): StackConfig {
  const raw = (parse(text) ?? {}) as { config?: Record<string, unknown> };
  const stack: StackConfig = new Map();
  for (const [key, value] of Object.entries(raw.config ?? {})) stack.set(fullKey(project.name, key), stackFileValue(value));
  return stack;
}

/** One `pulumi config set` as a user types it. */
export interface ConfigSet {
  key: string;
  value: string;
  secret: boolean;
  plaintext: boolean;
  path: boolean;
  /** The line as written (for messages). */
  line: string;
}

// pkg/cmd/pulumi/config/config.go keyPattern: keys that looksLikeSecret checks (it then refuses a
// high-entropy value unless --secret or --plaintext is given). The entropy test (zxcvbn) is not ported:
// such keys must carry --secret or --plaintext wherever the docs show them.
const SECRET_LOOKING_KEY = /passwd|pass|password|pwd|secret|token/i;

/**
 * Splits a documented command line into words: quotes as a POSIX shell reads them, and a `<placeholder>`
 * (docs' stand-in for a value the user fills in; a shell would read `<` as a redirect) as one word.
 */
export function commandWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === "'" || char === '"') {
      const end = line.indexOf(char, i + 1);
      if (end < 0) throw new Error(`unterminated ${char} in: ${line}`);
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (char === "<") {
      const end = line.indexOf(">", i + 1);
      if (end < 0) throw new Error(`unterminated <placeholder> in: ${line}`);
      word = (word ?? "") + line.slice(i, end + 1);
      i = end;
    } else if (char === "#" && word === undefined) {
      break;
    } else if (/\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? "") + char;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/**
 * The `pulumi config set` commands in a shell snippet, in order. Lines that are comments (`#`) are not run
 * and so not returned. Refuses flags the CLI does not have.
 */
export function configSetCommands(snippet: string): ConfigSet[] {
  const commands: ConfigSet[] = [];
  for (const line of snippet.split("\n")) {
    const words = commandWords(line.trim());
    if (words[0] !== "pulumi" || words[1] !== "config" || words[2] !== "set") continue;
    const command: ConfigSet = { key: "", value: "", secret: false, plaintext: false, path: false, line: line.trim() };
    const positional: string[] = [];
    for (let i = 3; i < words.length; i++) {
      const word = words[i];
      if (word === "--secret") command.secret = true;
      else if (word === "--plaintext") command.plaintext = true;
      else if (word === "--path") command.path = true;
      else if (word === "-s" || word === "--stack") i++;
      else if (word === "--") {
        positional.push(...words.slice(i + 1));
        break;
      } else if (word.startsWith("-")) throw new Error(`\`${line.trim()}\`: pulumi config set has no flag ${word} in this model`);
      else positional.push(word);
    }
    if (command.secret && command.plaintext) throw new Error(`\`${line.trim()}\`: --secret and --plaintext are mutually exclusive`);
    if (positional.length !== 2) throw new Error(`\`${line.trim()}\`: expected a key and a value`);
    [command.key, command.value] = positional;
    commands.push(command);
  }
  return commands;
}

/** object.go coerce: "true"/"false" become booleans and decimal integers (no leading 0) numbers. */
function coerce(value: string): unknown {
  if (value === "true") return true;
  if (value === "false") return false;
  if (value.length > 1 && value.startsWith("0")) return value;
  return /^-?\d+$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : value;
}

/** resource.ParsePropertyPathStrict for the forms docs use: `name`, `.name`, `[N]`, `["name"]`. */
function parsePropertyPath(text: string): (string | number)[] {
  const segments: (string | number)[] = [];
  const pattern = /^(?:\.?([^.[\]"]+)|\[(\d+)\]|\["([^"]*)"\])/;
  let rest = text;
  while (rest.length > 0) {
    const match = pattern.exec(rest);
    if (match === null) throw new Error(`invalid config key path: ${text}`);
    segments.push(match[2] !== undefined ? Number(match[2]) : (match[1] ?? match[3]));
    rest = rest.slice(match[0].length);
  }
  return segments;
}

/** configSetCmd.Run + Map.Set: what `pulumi config set` stores in the stack's config. */
export function configSet(stack: StackConfig, projectName: string, command: ConfigSet): void {
  const where = `\`${command.line}\``;
  if (!command.secret && !command.plaintext && SECRET_LOOKING_KEY.test(command.key)) {
    throw new Error(`${where}: config value for '${command.key}' looks like a secret; rerun with --secret to encrypt it, or --plaintext if you meant to store in plaintext`);
  }
  if (!command.path) {
    stack.set(fullKey(projectName, command.key), { value: command.value, secure: command.secret, object: false });
    return;
  }
  const separator = command.key.lastIndexOf(":");
  const namespace = separator < 0 ? projectName : command.key.slice(0, separator);
  const segments = parsePropertyPath(separator < 0 ? command.key : command.key.slice(separator + 1));
  const [first, ...rest] = segments;
  if (typeof first !== "string" || first === "") throw new Error(`${where}: first path segment of config key must be a string`);
  const key = fullKey(namespace, first);
  if (rest.length === 0) {
    stack.set(key, { value: command.value, secure: command.secret, object: false });
    return;
  }
  if (command.secret) throw new Error(`${where}: secrets inside structured values are not modelled by tests/support/pulumi-cli-rules.ts`);
  const existing = stack.get(key);
  const root: unknown = existing?.object ? JSON.parse(existing.value) : typeof rest[0] === "number" ? [] : {};
  let container = root as Record<string | number, unknown>;
  rest.forEach((segment, index) => {
    const last = index === rest.length - 1;
    if (typeof segment === "number" && (!Array.isArray(container) || segment > container.length)) {
      throw new Error(`${where}: index ${segment} is out of range or not into a list`);
    }
    if (last) container[segment] = coerce(command.value);
    else container = (container[segment] ??= typeof rest[index + 1] === "number" ? [] : {}) as Record<string | number, unknown>;
  });
  stack.set(key, { value: JSON.stringify(root), secure: false, object: true });
}

/** config.go missingStackConfigurationKeysError + formatMissingKeys. */
function missingKeysError(keys: string[], stackName: string): string {
  const sorted = keys.length === 1 ? keys : [...keys].sort();
  const quoted = sorted.map((key) => `'${key}'`);
  const list = quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(", ")} and ${quoted[quoted.length - 1]}`;
  return `Stack '${stackName}' is missing configuration ${keys.length > 1 ? "values" : "value"} ${list}`;
}

/** config.go createConfigValue: a default or value from Pulumi.yaml as stack config. */
function projectValue(raw: unknown): ConfigValue {
  return isPrimitive(raw) ? { value: String(raw), secure: false, object: false } : { value: JSON.stringify(raw), secure: false, object: true };
}

/**
 * pkg/workspace/config.go ValidateStackConfigAndApplyProjectConfig: applies the project's defaults/values to
 * the stack config and validates it. Returns the first error message the CLI would print (then the program
 * does not run), or the config the program receives.
 */
export function validateStackConfig(stackName: string, project: Project, stack: StackConfig): { error: string } | { config: StackConfig } {
  const merged: StackConfig = new Map(stack);
  const missing: string[] = [];
  const keys = Object.keys(project.config).sort();
  for (const key of keys) {
    const declaration = project.config[key];
    const full = fullKey(project.name, key);
    const found = merged.has(full);
    const hasDefault = declaration.default !== undefined;
    const hasValue = declaration.value !== undefined;
    if (!found && !hasValue && !hasDefault && full.split(":")[0] === project.name) {
      missing.push(key);
      continue;
    }
    if (!found && (hasValue || hasDefault)) merged.set(full, projectValue(hasDefault ? declaration.default : declaration.value));
  }
  if (missing.length > 0) return { error: missingKeysError(missing, stackName) };
  // validateStackConfigValues → validateStackConfigValue, for explicitly typed keys.
  for (const key of keys) {
    const declaration = project.config[key];
    if (declaration.type === undefined) continue;
    const value = merged.get(fullKey(project.name, key)) ?? { value: "", secure: false, object: false };
    if (declaration.secret === true && !value.secure) return { error: `Stack '${stackName}' with configuration key '${key}' must be encrypted as it's secret` };
    if (value.ciphertext === true) continue;
    const content: unknown = value.object ? JSON.parse(value.value) : value.value;
    if (!validateConfigValue(declaration.type, declaration.items, content)) {
      return { error: `Stack '${stackName}' with configuration key '${key}' must be of type '${fullTypeName(declaration.type, declaration.items)}'` };
    }
  }
  return { config: merged };
}

/** The config as the language host hands it to the program: `PULUMI_CONFIG` values and the secret keys. */
export function programConfig(config: StackConfig): { values: Record<string, string>; secretKeys: string[] } {
  return {
    values: Object.fromEntries([...config].map(([key, value]) => [key, value.value])),
    secretKeys: [...config].filter(([, value]) => value.secure).map(([key]) => key),
  };
}

/** run.ts searchupPackageManifest: the nearest package.json (or package.yaml) from `dir` upwards. */
function searchUpPackageManifest(dir: string): string | undefined {
  for (let current = dir; ; current = path.dirname(current)) {
    for (const name of ["package.json", "package.yaml"]) {
      if (fs.existsSync(path.join(current, name))) return path.join(current, name);
    }
    if (path.dirname(current) === current) return undefined;
  }
}

/**
 * The file the nodejs language host runs for the project in `projectDir`: getPwdMain (pkg/engine/project.go)
 * turns Pulumi.yaml's `main` into a working directory and entry point; without `main` the entry point is "."
 * and run.ts takes the `exports` or `main` of the nearest package manifest searching upwards
 * (resolveEntrypoint: a missing file falls back to the directory). A directory is what Node's require makes of
 * it: its own package.json `main`, else index.js (index.ts under ts-node).
 */
export function programEntry(projectDir: string, project: Project): { pwd: string; program: string } {
  let pwd = projectDir;
  let main = ".";
  if (project.main !== undefined && project.main !== "") {
    const target = path.resolve(projectDir, project.main);
    if (!fs.existsSync(target)) throw new Error(`project 'main' could not be read: ${target} does not exist`);
    if (fs.statSync(target).isDirectory()) pwd = target;
    else [pwd, main] = [path.dirname(target), path.basename(target)];
  }
  let program = path.join(pwd, main);
  if (main === ".") {
    const manifest = searchUpPackageManifest(program);
    if (manifest !== undefined && manifest.endsWith(".json")) {
      const packageRoot = path.dirname(manifest);
      const packageObject = JSON.parse(fs.readFileSync(manifest, "utf8")) as { exports?: unknown; main?: unknown };
      const resolveEntrypoint = (entry: unknown): string =>
        typeof entry === "string" && fs.existsSync(path.join(packageRoot, entry)) ? path.join(packageRoot, entry) : program;
      if (typeof packageObject.exports === "string") program = resolveEntrypoint(packageObject.exports);
      else if (isPlainObject(packageObject.exports)) {
        const dot = packageObject.exports["."];
        program = resolveEntrypoint(isPlainObject(dot) ? (dot.default ?? dot.require ?? dot.import) : dot);
      } else if (packageObject.main) program = resolveEntrypoint(packageObject.main);
    }
  }
  if (fs.existsSync(program) && fs.statSync(program).isDirectory()) {
    const own = path.join(program, "package.json");
    const ownMain = fs.existsSync(own) ? (JSON.parse(fs.readFileSync(own, "utf8")) as { main?: string }).main : undefined;
    const candidates = [ownMain && path.join(program, ownMain), path.join(program, "index.js"), path.join(program, "index.ts")].filter(
      (candidate): candidate is string => typeof candidate === "string" && fs.existsSync(candidate),
    );
    if (candidates.length === 0) throw new Error(`We failed to locate the entry point for your program: ${program}`);
    program = candidates[0];
  }
  return { pwd, program };
}
