// Turns the CLI's shim choice into the planners' KataConfigRequest (pure, apart from checking which
// files the release tree actually ships).
import * as fs from "node:fs";
import * as path from "node:path";
// The image build's own list of runtime-rs shims (upstream's RUST_SHIMS): one list for image and agent.
import { isRustShim } from "../../../release/assets.mjs";
import type { KataConfigRequest, KataRuntime } from "../runtimes/types";
import { UserError } from "../report/errors";

const KATA_DEFAULTS = "share/defaults/kata-containers";

/** Where one shim's binary and configuration are in the release tree (paths relative to its opt/kata). */
export interface ShimLayout {
  binary: string;
  config: string;
}

/**
 * Parses `SNAPSHOTTER_HANDLER_MAPPING` (upstream kata-deploy's variable): `fc:devmapper,qemu:nydus`.
 * A block snapshotter is what Firecracker needs under containerd.
 */
export function parseSnapshotterMapping(value: string | undefined): Map<string, string> {
  const mapping = new Map<string, string>();
  for (const pair of (value ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const [shim, snapshotter, extra] = pair.split(":");
    if (!shim || !snapshotter || extra !== undefined) {
      throw new UserError(`SNAPSHOTTER_HANDLER_MAPPING: "${pair}" is not <shim>:<snapshotter> (e.g. fc:devmapper)`);
    }
    if (mapping.has(shim)) throw new UserError(`SNAPSHOTTER_HANDLER_MAPPING: shim ${shim} is mapped twice (${mapping.get(shim)}, ${snapshotter}); give each shim one snapshotter`);
    mapping.set(shim, snapshotter);
  }
  return mapping;
}

/**
 * Parses `PULL_TYPE_MAPPING` (upstream kata-deploy's variable, which its chart fills from
 * `shims.<shim>.crio.guestPull`): `qemu-coco-dev:guest-pull,...`. The shims whose images are pulled
 * inside the guest; CRI-O then leaves the pull to the runtime (`runtime_pull_image`).
 */
export function parsePullTypeMapping(value: string | undefined): Set<string> {
  const shims = new Set<string>();
  for (const pair of (value ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const [shim, pullType, extra] = pair.split(":");
    if (!shim || pullType !== "guest-pull" || extra !== undefined) {
      throw new UserError(`PULL_TYPE_MAPPING: "${pair}" is not <shim>:guest-pull (e.g. qemu-coco-dev:guest-pull)`);
    }
    shims.add(shim);
  }
  return shims;
}

/** Refuses a per-shim mapping that names a shim not being installed: it would be ignored without a word. */
function checkMappedShims(variable: string, mapped: Iterable<string>, shims: readonly string[]): void {
  const unknown = [...mapped].filter((shim) => !shims.includes(shim));
  if (unknown.length > 0) {
    throw new UserError(`${variable} names ${unknown.map((shim) => `shim ${shim}`).join(", ")}, which --shims (${shims.join(",")}) does not install; remove ${unknown.length === 1 ? "it" : "them"} from ${variable} or add ${unknown.length === 1 ? "it" : "them"} to --shims`);
  }
}

/**
 * Builds the request for `shims` with host paths under `prefix`, checking against the artifact tree
 * (`artifactsKata` = the release's opt/kata) that each shim's binary and configuration exist, so a
 * typo in --shims is refused instead of producing a runtime that cannot start.
 */
export function buildRequest(args: {
  shims: string[];
  defaultShim: string;
  prefix: string;
  artifactsKata: string;
  snapshotters: Map<string, string>;
  /** Shims whose images the guest pulls (CRI-O `runtime_pull_image`); default none. */
  guestPull?: ReadonlySet<string>;
  /** Per shim, the layout the image build recorded (kata-deploy-payload.json); others follow the release's naming. */
  layouts?: ReadonlyMap<string, ShimLayout>;
}): KataConfigRequest {
  checkMappedShims("SNAPSHOTTER_HANDLER_MAPPING", args.snapshotters.keys(), args.shims);
  checkMappedShims("PULL_TYPE_MAPPING", args.guestPull ?? [], args.shims);
  const runtimes: KataRuntime[] = args.shims.map((shim) => {
    const recorded = args.layouts?.get(shim);
    const rust = isRustShim(shim);
    const binaryRel = recorded?.binary ?? (rust ? "runtime-rs/bin/containerd-shim-kata-v2" : "bin/containerd-shim-kata-v2");
    const configCandidates = recorded
      ? [recorded.config]
      : rust
        ? [`${KATA_DEFAULTS}/runtime-rs/configuration-${shim}.toml`, `${KATA_DEFAULTS}/configuration-${shim}.toml`]
        : [`${KATA_DEFAULTS}/configuration-${shim}.toml`];
    const configRel = configCandidates.find((rel) => fs.existsSync(path.join(args.artifactsKata, rel)));
    if (configRel === undefined) {
      throw new UserError(`--shims ${shim}: the artifacts have no ${configCandidates[0]} (under ${args.artifactsKata}); pick shims this Kata release ships`);
    }
    if (!fs.existsSync(path.join(args.artifactsKata, binaryRel))) {
      throw new UserError(`--shims ${shim}: the artifacts have no ${binaryRel} (under ${args.artifactsKata})`);
    }
    const runtime: KataRuntime = {
      name: `kata-${shim}`,
      shim,
      shimBinary: path.posix.join(args.prefix, binaryRel),
      configPath: path.posix.join(args.prefix, configRel),
    };
    const snapshotter = args.snapshotters.get(shim);
    if (snapshotter !== undefined) runtime.snapshotter = snapshotter;
    if (args.guestPull?.has(shim)) runtime.guestPull = true;
    return runtime;
  });
  return { runtimes, untrustedAlias: runtimes.find((runtime) => runtime.shim === args.defaultShim) };
}
