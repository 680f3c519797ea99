// Where containerd's configuration lives for each flavour (plain containerd, k3s, rke2), which config
// version a file or a containerd release uses, and what the CRI runtimes table is called in each.
import { type TomlDocument, parseToml, rootKeyValue } from "../../formats/toml-document";
import { ConfigError } from "../types";

export type ContainerdFlavor = "containerd" | "k3s" | "rke2";
export type ContainerdConfigVersion = 1 | 2 | 3 | 4;

/**
 * How Kata reaches containerd's configuration:
 * - `main`: plain containerd; v1/v2 spliced into the main file, v3+ in our drop-in plus one `imports` entry;
 * - `template`: k3s/rke2; spliced into the config template they render config.toml from;
 * - `drop-in-dir`: k3s/rke2 whose rendered config.toml already imports `config-v3.toml.d/*.toml`: our
 *   drop-in there, and no file of theirs touched.
 */
export type ContainerdLayoutKind = "main" | "template" | "drop-in-dir";

export interface ContainerdLayout {
  flavor: ContainerdFlavor;
  kind: ContainerdLayoutKind;
  /**
   * Host path of the file that points at the others (plain: config.toml; k3s/rke2: the template we edit,
   * or our drop-in when that is the only file we write).
   */
  mainConfig: string;
  dropInDir: string;
  /** Host path of our owned drop-in (plain containerd, config v3+; k3s/rke2 `drop-in-dir`). */
  dropIn: string;
  /** Candidate systemd units, in order of preference. */
  systemdUnits: string[];
  /**
   * k3s/rke2: the config version the template renders (or, for `drop-in-dir`, the rendered config's). A
   * template's TOML part has no `version` key (the base template writes it), so it cannot be detected
   * from the template itself.
   */
  templateVersion?: ContainerdConfigVersion;
  /** k3s/rke2: the file the distribution renders from the template; read its `version` to pick the hint. */
  renderedConfig?: string;
}

/** What the CRI runtimes table is called in each config version. */
export function criRuntimePlugin(version: ContainerdConfigVersion): string {
  if (version === 1) return "cri";
  if (version === 2) return "io.containerd.grpc.v1.cri";
  return "io.containerd.cri.v1.runtime";
}

export const runtimesTablePath = (version: ContainerdConfigVersion): string[] => [
  "plugins",
  criRuntimePlugin(version),
  "containerd",
  "runtimes",
];

/**
 * containerd 2.x (config v3+) picks the snapshotter an image is pulled and unpacked with from the images
 * plugin, not from the runtime's own `snapshotter`: `ImageConfig.RuntimePlatforms`
 * (`toml:"runtime_platforms"`, keyed by runtime handler; containerd internal/cri/config/config.go v2.0-v2.2),
 * read by snapshotterFromPodSandboxConfig (internal/cri/server/images/image_pull.go). Upstream kata-deploy
 * writes it since kata-containers PR #12520 (issue #10795). containerd 1.x has no such table: its pull
 * path reads the runtime's `snapshotter` (pkg/cri/server/image_pull.go v1.7).
 */
export const RUNTIME_PLATFORMS_TABLE_PATH: readonly string[] = ["plugins", "io.containerd.cri.v1.images", "runtime_platforms"];

export const DROP_IN_NAME = "99-kata-deploy.toml";
/** First line(s) of a k3s/rke2 template that extends the distribution's generated config. */
export const BASE_TEMPLATE_HEADER = '{{ template "base" . }}';

export function containerdLayout(flavor: ContainerdFlavor, configVersionHint?: ContainerdConfigVersion): ContainerdLayout {
  if (flavor === "containerd") {
    return {
      flavor,
      kind: "main",
      mainConfig: "/etc/containerd/config.toml",
      dropInDir: "/etc/containerd/conf.d",
      dropIn: `/etc/containerd/conf.d/${DROP_IN_NAME}`,
      systemdUnits: ["containerd"],
    };
  }
  const version = configVersionHint ?? 2;
  // Which template a node's k3s reads is decided from the node's files (k3s.ts, chooseK3sTarget); this
  // is the template of the generation the version names (config-v3.toml.tmpl for 3+).
  const dir = k3sConfigDir(flavor);
  return k3sLayout(flavor, { kind: "template", file: `${dir}/${version >= 3 ? "config-v3.toml.tmpl" : "config.toml.tmpl"}`, version });
}

/** The directory k3s/rke2 keep containerd's template, drop-in directories and rendered config.toml in. */
export const k3sConfigDir = (flavor: Exclude<ContainerdFlavor, "containerd">): string => `/var/lib/rancher/${flavor}/agent/etc/containerd`;

/** Where Kata goes on a k3s/rke2 node (see k3s.ts): a template to edit, or our drop-in in the directory config.toml imports. */
export interface K3sTarget {
  kind: "template" | "drop-in";
  /** Host path of the template, or of our drop-in. */
  file: string;
  /** The config version the tables are written in (what containerd reads after k3s renders). */
  version: ContainerdConfigVersion;
}

export function k3sLayout(flavor: ContainerdFlavor, target: K3sTarget): ContainerdLayout {
  if (flavor === "containerd") throw new Error("internal: k3sLayout is for k3s and rke2");
  const dir = k3sConfigDir(flavor);
  const dropInDir = target.kind === "drop-in" ? target.file.slice(0, target.file.lastIndexOf("/")) : `${dir}/${target.version >= 3 ? "config-v3.toml.d" : "config.toml.d"}`;
  return {
    flavor,
    kind: target.kind === "drop-in" ? "drop-in-dir" : "template",
    mainConfig: target.file,
    dropInDir,
    dropIn: target.kind === "drop-in" ? target.file : `${dropInDir}/${DROP_IN_NAME}`,
    systemdUnits: flavor === "k3s" ? ["k3s", "k3s-agent"] : ["rke2-server", "rke2-agent"],
    templateVersion: target.version,
    renderedConfig: `${dir}/config.toml`,
  };
}

/**
 * The config version of a containerd config: its root `version` key, 1 when absent (containerd's
 * rule). A missing file (`text === undefined`) reads as 2, what kata-deploy writes by default.
 */
export function detectContainerdConfigVersion(text: string | undefined, file?: string): ContainerdConfigVersion {
  if (text === undefined) return 2;
  return versionOf(parseToml(text, file), file) ?? 1;
}

export function versionOf(doc: TomlDocument, file: string | undefined): ContainerdConfigVersion | undefined {
  const version = doc.value.version;
  if (version === undefined) return undefined;
  if (version === 1 || version === 2 || version === 3 || version === 4) return version;
  throw new ConfigError({
    file,
    line: rootKeyValue(doc, "version")?.loc.start.line,
    key: "version",
    problem: `\`version = ${JSON.stringify(version)}\` is not a containerd config version (1, 2, 3 or 4)`,
    fix: "fix it and run again",
  });
}


export const CONTAINERD_FLAVORS: ContainerdFlavor[] = ["containerd", "k3s", "rke2"];

/**
 * The containerd socket `ctr` must talk to, per flavor (undefined: ctr's default,
 * /run/containerd/containerd.sock). k3s: k3s-io/k3s pkg/agent/config/config_linux.go
 * (applyContainerdStateAndAddress: state /run/k3s/containerd, address <state>/containerd.sock).
 * rke2 runs k3s's agent code and documents the same socket (docs.rke2.io/reference/cli_tools:
 * "The Containerd socket is located at /run/k3s/containerd/containerd.sock").
 */
export const CONTAINERD_SOCKETS: Readonly<Record<ContainerdFlavor, string | undefined>> = {
  containerd: undefined,
  k3s: "/run/k3s/containerd/containerd.sock",
  rke2: "/run/k3s/containerd/containerd.sock",
};

/** The config version a containerd release writes by default (used only when the config file is missing). */
export function containerdConfigVersionFor(version: { major: number; minor: number }): ContainerdConfigVersion {
  if (version.major < 2) return 2;
  return version.minor >= 3 ? 4 : 3;
}
