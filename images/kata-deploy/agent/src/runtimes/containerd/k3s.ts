// k3s and rke2 write containerd's config.toml themselves, on every start, from a template. Kata's
// tables therefore go where k3s will pick them up: the template k3s actually renders from, or a drop-in
// in the directory the rendered config imports. Which one follows k3s's own template selection.
//
// k3s-io/k3s pkg/agent/containerd/config.go, writeContainerdConfig (since k3s PR #11626 "Update to
// containerd v2.0", first in v1.31.6+k3s1 / v1.32.2+k3s1; rke2 runs the same code through
// rancher/rke2 pkg/executor/staticpod, `containerd.Run`):
//
//   var templateGenerations = []templateGeneration{
//       {version: 3, filename: "config-v3.toml.tmpl", base: templates.ContainerdConfigTemplateV3},
//       {version: 2, filename: "config.toml.tmpl",    base: templates.ContainerdConfigTemplate},
//   }
//   // use v3 template by default
//   userTemplate := templates.ContainerdConfigTemplateV3; baseTemplate := ...V3; cfg.Containerd.ConfigVersion = 3
//   for _, tg := range templateGenerations {
//       b, err := os.ReadFile(filepath.Join(cfg.Containerd.Template, tg.filename))
//       if err == nil { baseTemplate = tg.base; userTemplate = string(b); cfg.Containerd.ConfigVersion = tg.version; break }
//   }
//   ... util2.WriteFile(cfg.Containerd.Config, parsedTemplate)   // always <dir>/config.toml
//
// So a config-v3.toml.tmpl wins over config.toml.tmpl, and creating config.toml.tmpl on a node that had
// no template switches k3s from its v3 base to the legacy v2 one, dropping what the v3 base imports
// (`config-v3.toml.d/*.toml`, k3s PR #13680). k3s before containerd 2 (v1.31.5 and earlier, v1.32.0-1)
// read only config.toml.tmpl and otherwise rendered the v2 base. The rendered config.toml's `version`
// (2 from the v2 base, 3 from the v3 one) tells the two apart when there is no template.
import { ConfigError } from "../../report/errors";
import { parseToml } from "../../formats/toml-document";
import { importCovers } from "./config";
import { BASE_TEMPLATE_HEADER, DROP_IN_NAME, k3sConfigDir, versionOf, type ContainerdConfigVersion, type K3sFlavor, type K3sTarget } from "./layout";

/** k3s's templateGenerations, in its order of preference (config.go), with the drop-in directory each base imports. */
export const K3S_TEMPLATE_GENERATIONS = [
  { version: 3, filename: "config-v3.toml.tmpl", dropInDir: "config-v3.toml.d" },
  { version: 2, filename: "config.toml.tmpl", dropInDir: "config.toml.d" },
] as const;

/**
 * What a containerd-2 k3s renders from, given which template files exist in its template directory:
 * writeContainerdConfig's loop (first existing generation wins; none: the built-in v3 base).
 */
export function k3sTemplateInUse(exists: (filename: string) => boolean): { template?: string; configVersion: 2 | 3 } {
  for (const generation of K3S_TEMPLATE_GENERATIONS) {
    if (exists(generation.filename)) return { template: generation.filename, configVersion: generation.version };
  }
  return { configVersion: 3 };
}

export interface K3sChoice extends K3sTarget {
  /** Why this file (logged, so an operator can see which of k3s's situations the node is in). */
  reason: string;
}

/**
 * Where Kata goes on this k3s/rke2 node, from its template directory as it is now (`read` returns a
 * host file's text, undefined when missing). `containerdMajor` (when known) only decides a node that
 * has neither a template nor a rendered config yet. Throws ConfigError when k3s's choice cannot be told
 * or cannot be extended.
 */
export function chooseK3sTarget(a: { flavor: K3sFlavor; read: (hostPath: string) => string | undefined; containerdMajor?: number }): K3sChoice {
  const dir = k3sConfigDir(a.flavor);
  const rendered = `${dir}/config.toml`;
  const inUse = k3sTemplateInUse((filename) => a.read(`${dir}/${filename}`) !== undefined);
  const renderedText = a.read(rendered);
  const renderedDoc = renderedText === undefined ? undefined : parseToml(renderedText, rendered);
  const renderedVersion = renderedDoc === undefined ? undefined : versionOf(renderedDoc, rendered);

  let generation: 2 | 3;
  let why: string;
  if (inUse.template !== undefined) {
    generation = inUse.configVersion;
    why = `${inUse.template} exists, and ${a.flavor} renders config.toml from it${generation === 2 && a.read(`${dir}/config-v3.toml.tmpl`) === undefined ? " (with its legacy v2 base)" : ""}`;
  } else if (renderedDoc !== undefined) {
    if (renderedVersion === undefined) {
      throw new ConfigError({
        file: rendered,
        problem: `has no \`version\` key (config version 1): this ${a.flavor} predates templates that extend its base (\`${BASE_TEMPLATE_HEADER}\`, k3s September 2023 releases), so Kata cannot be added without replacing its whole config`,
        fix: `upgrade ${a.flavor} and run again`,
      });
    }
    generation = renderedVersion >= 3 ? 3 : 2;
    why = `there is no template, and config.toml is version ${renderedVersion}, i.e. ${a.flavor} renders its built-in ${generation === 3 ? "v3" : "v2"} base`;
  } else if (a.containerdMajor !== undefined) {
    generation = a.containerdMajor >= 2 ? 3 : 2;
    why = `there is neither a template nor a rendered config.toml yet, and containerd is ${a.containerdMajor}.x`;
  } else {
    throw new ConfigError({
      file: rendered,
      problem: `is missing, as are config-v3.toml.tmpl and config.toml.tmpl, so which template ${a.flavor} reads cannot be told`,
      fix: `start ${a.flavor} once (it writes config.toml) and run again`,
    });
  }

  const dropIn = `${dir}/${K3S_TEMPLATE_GENERATIONS[0].dropInDir}/${DROP_IN_NAME}`;
  const imports = Array.isArray(renderedDoc?.value.imports) ? renderedDoc.value.imports.filter((entry): entry is string => typeof entry === "string") : [];
  if (generation === 3 && renderedVersion !== undefined && renderedVersion >= 3 && imports.some((entry) => importCovers(entry, rendered, dropIn))) {
    return { kind: "drop-in", file: dropIn, version: renderedVersion, reason: `${why}, which imports ${dir}/${K3S_TEMPLATE_GENERATIONS[0].dropInDir}/*.toml: Kata goes into a drop-in there and no template is touched` };
  }
  const template = `${dir}/${generation === 3 ? K3S_TEMPLATE_GENERATIONS[0].filename : K3S_TEMPLATE_GENERATIONS[1].filename}`;
  // A config-v3 template extending the v3 base renders what the base says (3; containerd 2.3's k3s may say 4).
  const version: ContainerdConfigVersion = generation === 3 ? (renderedVersion !== undefined && renderedVersion >= 3 ? renderedVersion : 3) : 2;
  const action = inUse.template !== undefined ? "edited" : `created (as \`${BASE_TEMPLATE_HEADER}\` plus Kata's tables)`;
  return { kind: "template", file: template, version, reason: `${why}: ${template} is ${action}` };
}
