// Where containerd's configuration lives for each flavour (plain or custom containerd, k3s, rke2, k0s,
// microk8s), which config version a file or a containerd release uses, and what the CRI runtimes table is
// called in each.
import { type TomlDocument, parseToml, rootKeyValue } from "../../formats/toml-document";
import { ConfigError } from "../types";

export type ContainerdFlavor = "containerd" | "k3s" | "rke2" | "k0s" | "microk8s";
/** The distributions that render containerd's config from a template of their own (k3s.ts). */
export type K3sFlavor = "k3s" | "rke2";
export const isK3sFlavor = (flavor: ContainerdFlavor): flavor is K3sFlavor => flavor === "k3s" || flavor === "rke2";

/**
 * A containerd that is not where its flavour puts it (plain containerd only): `--containerd-config`,
 * `--containerd-socket`, `--containerd-unit`.
 */
export interface CustomContainerd {
  /** Host path of its config.toml. */
  config?: string;
  /** Host path of its socket (what `ctr --address` talks to). */
  socket?: string;
  /** Its systemd unit. */
  unit?: string;
}
export type ContainerdConfigVersion = 1 | 2 | 3 | 4;

/**
 * How Kata reaches containerd's configuration:
 * - `main`: plain containerd; v1/v2 spliced into the main file, v3+ in our drop-in plus one `imports` entry;
 * - `template`: k3s/rke2; spliced into the config template they render config.toml from;
 * - `drop-in-dir`: k3s/rke2 whose rendered config.toml already imports `config-v3.toml.d/*.toml`, and k0s
 *   (which reads /etc/k0s/containerd.d/*.toml): our drop-in there, and no file of theirs touched.
 * microk8s is `main` on its containerd-template.toml (a whole TOML config that microk8s copies to
 * containerd.toml on every start, substituting ${SNAP}-style placeholders).
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
  /**
   * The file containerd actually reads when the distribution writes it itself (k3s/rke2/microk8s render it
   * from the template on start, k0s writes /etc/k0s/containerd.toml): checked after the restart.
   */
  renderedConfig?: string;
  /** The socket `ctr --address` talks to; undefined: ctr's default, /run/containerd/containerd.sock. */
  socket?: string;
  /**
   * How the running containerd picks up a change: `restart` its systemd unit; `k0s-watch`: k0s watches
   * /etc/k0s/containerd.d and restarts its containerd itself (k0sproject/k0s pkg/component/worker/containerd
   * component.go, watchDropinConfigs: fsnotify, 3 s debounce, then SIGHUP or a stop/start of containerd), so
   * its unit (which also runs the kubelet) is not restarted; upstream kata-deploy does not restart k0s either
   * (tools/packaging/kata-deploy/binary/src/runtime/lifecycle.rs, restart_runtime).
   */
  reload: "restart" | "k0s-watch";
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

export function containerdLayout(flavor: ContainerdFlavor, configVersionHint?: ContainerdConfigVersion, custom: CustomContainerd = {}): ContainerdLayout {
  if (flavor === "containerd") {
    const mainConfig = custom.config ?? "/etc/containerd/config.toml";
    const dir = mainConfig.slice(0, mainConfig.lastIndexOf("/")) || "/";
    return {
      flavor,
      kind: "main",
      mainConfig,
      dropInDir: `${dir}/conf.d`,
      dropIn: `${dir}/conf.d/${DROP_IN_NAME}`,
      systemdUnits: [custom.unit ?? "containerd"],
      socket: custom.socket,
      reload: "restart",
    };
  }
  if (flavor === "k0s") return K0S_LAYOUT;
  if (flavor === "microk8s") return MICROK8S_LAYOUT;
  const version = configVersionHint ?? 2;
  // Which template a node's k3s reads is decided from the node's files (k3s.ts, chooseK3sTarget); this
  // is the template of the generation the version names (config-v3.toml.tmpl for 3+).
  const dir = k3sConfigDir(flavor);
  return k3sLayout(flavor, { kind: "template", file: `${dir}/${version >= 3 ? "config-v3.toml.tmpl" : "config.toml.tmpl"}`, version });
}

/** The directory k3s/rke2 keep containerd's template, drop-in directories and rendered config.toml in. */
export const k3sConfigDir = (flavor: K3sFlavor): string => `/var/lib/rancher/${flavor}/agent/etc/containerd`;

/** Where Kata goes on a k3s/rke2 node (see k3s.ts): a template to edit, or our drop-in in the directory config.toml imports. */
export interface K3sTarget {
  kind: "template" | "drop-in";
  /** Host path of the template, or of our drop-in. */
  file: string;
  /** The config version the tables are written in (what containerd reads after k3s renders). */
  version: ContainerdConfigVersion;
}

export function k3sLayout(flavor: ContainerdFlavor, target: K3sTarget): ContainerdLayout {
  if (!isK3sFlavor(flavor)) throw new Error("internal: k3sLayout is for k3s and rke2");
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
    socket: CONTAINERD_SOCKETS[flavor],
    reload: "restart",
  };
}

/**
 * k0s (k0sproject/k0s pkg/component/worker/containerd/component_other.go: defaultConfPath
 * /etc/k0s/containerd.toml, DefaultImportsPath /etc/k0s/containerd.d/). The config k0s manages (first line
 * `# k0s_managed=true`) takes every drop-in there: since k0s commit 0955379 (June 2026, configurer.go
 * marshalContainerdConfig) as `imports = ["/etc/k0s/containerd.d/*.toml"]` in version 3, before that by
 * merging the drop-ins' CRI sections into the config it generated (configurer.go handleImports). Socket:
 * `--address=<RunDir>/containerd.sock` (component.go Start, utils_other.go Address), RunDir /run/k0s; units
 * k0scontroller / k0sworker (upstream kata-deploy runtime/manager.rs cri_systemd_unit).
 */
export const K0S_CONFIG = "/etc/k0s/containerd.toml";
export const K0S_DROP_IN_DIR = "/etc/k0s/containerd.d";
/** The marker line of a containerd config k0s manages (component.go isK0sManagedConfig). */
export const K0S_MANAGED_MARKER = "# k0s_managed=true";
const K0S_LAYOUT: ContainerdLayout = {
  flavor: "k0s",
  kind: "drop-in-dir",
  mainConfig: `${K0S_DROP_IN_DIR}/${DROP_IN_NAME}`,
  dropInDir: K0S_DROP_IN_DIR,
  dropIn: `${K0S_DROP_IN_DIR}/${DROP_IN_NAME}`,
  systemdUnits: ["k0sworker", "k0scontroller"],
  renderedConfig: K0S_CONFIG,
  socket: "/run/k0s/containerd.sock",
  reload: "k0s-watch",
};

/**
 * microk8s (canonical/microk8s microk8s-resources/wrappers/run-containerd-with-args: on every start
 * `sed 's@${SNAP}@...@g;...' $SNAP_DATA/args/containerd-template.toml > $SNAP_DATA/args/containerd.toml`;
 * default-args/containerd: `--config ${SNAP_DATA}/args/containerd.toml --address
 * ${SNAP_COMMON}/run/containerd.sock`; snap/snapcraft.yaml app daemon-containerd, i.e. systemd unit
 * snap.microk8s.daemon-containerd). SNAP_DATA is /var/snap/microk8s/current, SNAP_COMMON
 * /var/snap/microk8s/common. Upstream kata-deploy edits the same template (binary/src/config.rs
 * get_containerd_paths, "microk8s").
 */
export const MICROK8S_ARGS_DIR = "/var/snap/microk8s/current/args";
export const MICROK8S_TEMPLATE = `${MICROK8S_ARGS_DIR}/containerd-template.toml`;
const MICROK8S_LAYOUT: ContainerdLayout = {
  flavor: "microk8s",
  kind: "main",
  mainConfig: MICROK8S_TEMPLATE,
  dropInDir: `${MICROK8S_ARGS_DIR}/conf.d`,
  dropIn: `${MICROK8S_ARGS_DIR}/conf.d/${DROP_IN_NAME}`,
  systemdUnits: ["snap.microk8s.daemon-containerd"],
  renderedConfig: `${MICROK8S_ARGS_DIR}/containerd.toml`,
  socket: "/var/snap/microk8s/common/run/containerd.sock",
  reload: "restart",
};

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


export const CONTAINERD_FLAVORS: ContainerdFlavor[] = ["containerd", "k3s", "rke2", "k0s", "microk8s"];

/**
 * The containerd socket `ctr` must talk to, per flavor (undefined: ctr's default,
 * /run/containerd/containerd.sock). k3s: k3s-io/k3s pkg/agent/config/config_linux.go
 * (applyContainerdStateAndAddress: state /run/k3s/containerd, address <state>/containerd.sock).
 * rke2 runs k3s's agent code and documents the same socket (docs.rke2.io/reference/cli_tools:
 * "The Containerd socket is located at /run/k3s/containerd/containerd.sock"). k0s and microk8s: see their
 * layouts above.
 */
export const CONTAINERD_SOCKETS: Readonly<Record<ContainerdFlavor, string | undefined>> = {
  containerd: undefined,
  k3s: "/run/k3s/containerd/containerd.sock",
  rke2: "/run/k3s/containerd/containerd.sock",
  k0s: "/run/k0s/containerd.sock",
  microk8s: "/var/snap/microk8s/common/run/containerd.sock",
};

/** The config version a containerd release writes by default (used only when the config file is missing). */
export function containerdConfigVersionFor(version: { major: number; minor: number }): ContainerdConfigVersion {
  if (version.major < 2) return 2;
  return version.minor >= 3 ? 4 : 3;
}
