// Turns the CLI's shim choice into the planners' KataConfigRequest (pure, apart from checking which
// files the release tree actually ships).
import * as fs from "node:fs";
import * as path from "node:path";
// The image build's own list of runtime-rs shims (upstream's RUST_SHIMS): one list for image and agent.
import { isRustShim } from "../../../release/assets.mjs";
import type { KataConfigRequest, KataRuntime, Runtime } from "../runtimes/types";
import { UserError } from "../report/errors";
import { AGENT_ENV, INSTALL_PREFIX, type KataNodeConfig } from "../../../../../components/contract";
import { kataConfigPath, type KataConfigInput, type KataHandler } from "./kata-config";

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
 * A file of the release tree (relative to its opt/kata), following symlinks inside the tree: an absolute
 * link into /opt/kata is read where the tree is, not on this container's own /opt/kata.
 */
export function readReleaseFile(artifactsKata: string, rel: string): string {
  let current = rel;
  for (let hops = 0; hops < 40; hops++) {
    const local = path.join(artifactsKata, current);
    const stats = fs.lstatSync(local);
    if (!stats.isSymbolicLink()) return fs.readFileSync(local, "utf8");
    const target = fs.readlinkSync(local);
    const next = target.startsWith(`${INSTALL_PREFIX}/`) ? target.slice(INSTALL_PREFIX.length + 1) : path.posix.normalize(path.posix.join(path.posix.dirname(current), target));
    if (path.posix.isAbsolute(next) || next.startsWith("../")) throw new UserError(`--artifacts: opt/kata/${current} is a symlink out of the release (${target}); use an unmodified release`);
    current = next;
  }
  throw new UserError(`--artifacts: opt/kata/${rel}: too many levels of symbolic links`);
}

/**
 * Builds the request for `shims` (and the custom runtimes of `kata`) with host paths under `prefix`,
 * checking against the artifact tree (`artifactsKata` = the release's opt/kata) that each shim's binary
 * and configuration exist, so a typo in --shims is refused instead of producing a runtime that cannot
 * start; and what Kata's own configuration needs per handler (lifecycle/kata-config.ts). Every runtime's
 * configuration path is its handler's own copy, next to its config.d (not the release's file).
 */
export function buildRequest(args: {
  /** The container runtime being configured: each one gets its own Kata configuration directories. */
  runtime: Runtime;
  shims: string[];
  defaultShim: string;
  prefix: string;
  artifactsKata: string;
  snapshotters: Map<string, string>;
  /** Shims whose images the guest pulls (CRI-O `runtime_pull_image`); default none. */
  guestPull?: ReadonlySet<string>;
  /** Per shim, the layout the image build recorded (kata-deploy-payload.json); others follow the release's naming. */
  layouts?: ReadonlyMap<string, ShimLayout>;
  /** Kata's settings per shim and the custom runtimes (KATA_DEPLOY_KATA_CONFIG, already checked). */
  kata?: KataNodeConfig;
  /**
   * `--default-handler`: one more runtime of this name that runs this node's default shim (same binary, same Kata
   * configuration), so one RuntimeClass handler means each node's own default shim (mixed-architecture clusters).
   */
  defaultHandler?: string;
}): { request: KataConfigRequest; kata: KataConfigInput } {
  checkMappedShims("SNAPSHOTTER_HANDLER_MAPPING", args.snapshotters.keys(), args.shims);
  checkMappedShims("PULL_TYPE_MAPPING", args.guestPull ?? [], args.shims);
  const handlers: KataHandler[] = [];
  const stockRels = new Map<string, string>();
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
    const name = `kata-${shim}`;
    const runtime: KataRuntime = {
      name,
      shim,
      shimBinary: path.posix.join(args.prefix, binaryRel),
      configPath: kataConfigPath(args.prefix, args.runtime, name, shim),
    };
    const snapshotter = args.snapshotters.get(shim);
    if (snapshotter !== undefined) runtime.snapshotter = snapshotter;
    if (args.guestPull?.has(shim)) runtime.guestPull = true;
    stockRels.set(shim, configRel);
    handlers.push({ handler: name, shim, stockRel: configRel, stockText: readReleaseFile(args.artifactsKata, configRel), settings: { ...(args.kata?.shims?.[shim] ?? {}) }, settingsField: `${AGENT_ENV.kataConfig} shims.${shim}` });
    return runtime;
  });
  const untrustedAlias = runtimes.find((runtime) => runtime.shim === args.defaultShim);
  // A custom runtime runs its base shim's binary with its own copy of the base's configuration, the base's
  // settings (annotations, proxy, debug) and its own drop-in instead of the base's (as upstream's
  // customRuntimes: "Custom runtimes inherit these settings from their base").
  for (const [index, custom] of (args.kata?.customRuntimes ?? []).entries()) {
    const base = runtimes.find((runtime) => runtime.shim === custom.baseShim);
    const stockRel = stockRels.get(custom.baseShim);
    if (base === undefined || stockRel === undefined) throw new UserError(`customRuntimes[${index}].baseShim ${custom.baseShim}: not one of --shims (${args.shims.join(",")})`);
    runtimes.push({ ...base, name: custom.name, configPath: kataConfigPath(args.prefix, args.runtime, custom.name, custom.baseShim) });
    const { dropIn: _baseDropIn, ...inherited } = args.kata?.shims?.[custom.baseShim] ?? {};
    void _baseDropIn;
    handlers.push({
      handler: custom.name,
      shim: custom.baseShim,
      stockRel,
      stockText: readReleaseFile(args.artifactsKata, stockRel),
      settings: { ...inherited, ...(custom.dropIn === undefined ? {} : { dropIn: custom.dropIn }) },
      settingsField: `${AGENT_ENV.kataConfig} customRuntimes[${index}]`,
    });
  }
  if (args.defaultHandler !== undefined) {
    const taken = runtimes.find((runtime) => runtime.name === args.defaultHandler);
    if (taken !== undefined) {
      throw new UserError(`--default-handler ${args.defaultHandler}: a shim's or custom runtime's handler has that name already (base shim ${taken.shim}); give the default RuntimeClass another name`);
    }
    // Same shim binary and Kata configuration copy as kata-<defaultShim>: its settings and drop-ins apply to both.
    const target = runtimes.find((runtime) => runtime.name === `kata-${args.defaultShim}`);
    if (target !== undefined) runtimes.push({ ...target, name: args.defaultHandler });
  }
  const kata: KataConfigInput = {
    runtime: args.runtime,
    prefix: args.prefix,
    handlers,
    releaseHas: (rel) => fs.existsSync(path.join(args.artifactsKata, rel)),
  };
  return { request: { runtimes, untrustedAlias }, kata };
}
