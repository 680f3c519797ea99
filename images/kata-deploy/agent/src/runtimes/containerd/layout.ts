// Where containerd's configuration lives for each flavour (plain containerd, k3s, rke2), which config
// version a file or a containerd release uses, and what the CRI runtimes table is called in each.
import { type TomlDocument, parseToml, rootKeyValue } from "../../formats/toml-document";
import { ConfigError } from "../types";

export type ContainerdFlavor = "containerd" | "k3s" | "rke2";
export type ContainerdConfigVersion = 1 | 2 | 3 | 4;

export interface ContainerdLayout {
  flavor: ContainerdFlavor;
  /** Host path of the file we edit (k3s/rke2: the config template, which they render into config.toml on start). */
  mainConfig: string;
  dropInDir: string;
  /** Host path of our owned drop-in (plain containerd, config v3+). Template flavours keep everything in the template. */
  dropIn: string;
  /** Candidate systemd units, in order of preference. */
  systemdUnits: string[];
  /**
   * k3s/rke2: the config version the template renders. A template's TOML part has no `version` key
   * (the base template writes it), so it cannot be detected from the template itself.
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

const DROP_IN_NAME = "99-kata-deploy.toml";
/** First line(s) of a k3s/rke2 template that extends the distribution's generated config. */
export const BASE_TEMPLATE_HEADER = '{{ template "base" . }}';

export function containerdLayout(flavor: ContainerdFlavor, configVersionHint?: ContainerdConfigVersion): ContainerdLayout {
  if (flavor === "containerd") {
    return {
      flavor,
      mainConfig: "/etc/containerd/config.toml",
      dropInDir: "/etc/containerd/conf.d",
      dropIn: `/etc/containerd/conf.d/${DROP_IN_NAME}`,
      systemdUnits: ["containerd"],
    };
  }
  const dir = `/var/lib/rancher/${flavor}/agent/etc/containerd`;
  const version = configVersionHint ?? 2;
  // k3s/rke2 read config-v3.toml.tmpl when they run containerd 2.x, config.toml.tmpl before.
  const v3 = version >= 3;
  const dropInDir = `${dir}/${v3 ? "config-v3.toml.d" : "config.toml.d"}`;
  return {
    flavor,
    mainConfig: `${dir}/${v3 ? "config-v3.toml.tmpl" : "config.toml.tmpl"}`,
    dropInDir,
    dropIn: `${dropInDir}/${DROP_IN_NAME}`,
    systemdUnits: flavor === "k3s" ? ["k3s", "k3s-agent"] : ["rke2-server", "rke2-agent"],
    templateVersion: version,
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
