// The contract between the pure config planners (config/*.ts: text in, text out, no I/O) and the
// agent's side-effecting edge (reading files, state, atomic writes, restarts).

/** The container runtimes the agent configures (one record each in the state, one folder each here). */
export const RUNTIMES = ["containerd", "crio", "docker"] as const;
export type Runtime = (typeof RUNTIMES)[number];

/** One Kata runtime handler to configure, with host-absolute paths. */
export interface KataRuntime {
  /** Runtime / handler / RuntimeClass name, e.g. "kata-qemu". */
  name: string;
  /** Kata shim (hypervisor flavour), e.g. "qemu", "fc", "qemu-runtime-rs". */
  shim: string;
  /** Host path of the shim-v2 binary, e.g. /opt/kata/bin/containerd-shim-kata-v2 (runtime-rs shims: /opt/kata/runtime-rs/bin/...). */
  shimBinary: string;
  /** Host path of the Kata configuration, e.g. /opt/kata/share/defaults/kata-containers/configuration-qemu.toml. */
  configPath: string;
  /** containerd snapshotter for this runtime (Firecracker needs a block one such as "devmapper"), when configured. */
  snapshotter?: string;
  /** The guest pulls this runtime's images (confidential containers); CRI-O: `runtime_pull_image = true`. */
  guestPull?: boolean;
}

/** What an install wants configured. */
export interface KataConfigRequest {
  runtimes: KataRuntime[];
  /**
   * The runtime that the containerd alias `untrusted` points at, so the seed's
   * `io.kubernetes.cri.untrusted-workload: "true"` annotation selects Kata. Undefined: no alias.
   */
  untrustedAlias?: KataRuntime;
  /**
   * Also raise the container runtime's own log level to debug (containerd `[debug] level`, CRI-O
   * `[crio.runtime] log_level`), as upstream kata-deploy does with DEBUG=true.
   */
  runtimeDebug?: boolean;
}

/**
 * A whole-file outcome of a plan. `after === undefined` means the file must not exist
 * (delete it if it does). `before` is what the planner was given, so callers can skip no-op writes.
 */
export interface FileEdit {
  /** Host-absolute path (as seen on the node, not prefixed with --host-root). */
  path: string;
  before: string | undefined;
  after: string | undefined;
}

export { ConfigError } from "../report/errors";
