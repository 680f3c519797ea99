// Which files of an unpacked Kata release a set of shims needs, derived from the release's own content:
// each shim's configuration file (parsed with a real TOML parser) names its hypervisor, kernel, guest
// image/initrd, firmware, virtiofsd and jailer; everything it names under /opt/kata/ is kept, with the
// symlinks it goes through and their targets.
//
// Where the release puts a shim's files (kata-containers/kata-containers at 3.20.0 .. 4.1.0):
// - shim binary: bin/containerd-shim-kata-v2 (Go, src/runtime/Makefile), runtime-rs/bin/containerd-shim-kata-v2
//   (Rust, src/runtime-rs/Makefile `BINDIR := $(EXEC_PREFIX)/runtime-rs/bin/`); tools/packaging/kata-deploy/
//   binary/src/utils/system.rs `get_kata_containers_runtime_path` (4.1.0).
// - configuration: share/defaults/kata-containers/configuration-<shim>.toml (Go), .../runtime-rs/
//   configuration-<shim>.toml (Rust, `CONFDIR := $(DEFAULTSDIR)/$(PROJECT_DIR)/runtime-rs`);
//   system.rs `get_kata_containers_original_config_path`.
// - QEMU's own data, helpers and libraries are not named by the configuration: QEMU is configured with
//   --datadir/--libexecdir/--libdir = <prefix>/{share,libexec,lib}/<hypervisor> where <hypervisor> is
//   kata-qemu[-<suffix>] and the binary qemu-system-<arch>[-<suffix>]
//   (tools/packaging/scripts/configure-hypervisor.sh, tools/packaging/static-build/qemu/build-base-qemu.sh,
//   tools/packaging/static-build/scripts/qemu-build-post.sh, 4.1.0): those directories go with the binary.
// - The Go shim's bin/kata-runtime goes with it: the agent's Docker < 23 runtime form runs it.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "smol-toml";
import { isRustShim, ReleaseError } from "./assets.mjs";

export const RELEASE_PREFIX = "/opt/kata/";
export const DEFAULTS_DIR = "share/defaults/kata-containers";
/** Hypervisor keys that must name a file the release ships when they are set (upstream configuration-*.toml.in). */
const REQUIRED_KEYS = ["path", "kernel", "image", "initrd", "firmware", "firmware_volume", "jailer_path", "virtio_fs_daemon", "ctlpath"];

/**
 * @typedef {{ shim: string; runtime: "go" | "rust"; binary: string; config: string; hypervisor?: string;
 *   files: string[] }} ShimSelection
 *   Paths are relative to opt/kata (e.g. "bin/firecracker"). `files` includes binary and config.
 */

/** @param {string} shim */
export function shimBinary(shim) {
  return isRustShim(shim) ? "runtime-rs/bin/containerd-shim-kata-v2" : "bin/containerd-shim-kata-v2";
}
/** @param {string} shim */
export function shimConfig(shim) {
  return isRustShim(shim) ? `${DEFAULTS_DIR}/runtime-rs/configuration-${shim}.toml` : `${DEFAULTS_DIR}/configuration-${shim}.toml`;
}

/** Shims an unpacked tree (its opt/kata directory) has configurations for. @param {string} kataDir */
export function shimsIn(kataDir) {
  /** @param {string} dir */
  const configs = (dir) =>
    fs.existsSync(path.join(kataDir, dir))
      ? fs.readdirSync(path.join(kataDir, dir)).flatMap((f) => (/^configuration-(.+)\.toml$/.exec(f) ?? []).slice(1, 2))
      : [];
  return [...configs(DEFAULTS_DIR).filter((s) => !isRustShim(s)), ...configs(`${DEFAULTS_DIR}/runtime-rs`).filter((s) => isRustShim(s))].sort();
}

/** Every string (also inside arrays and tables) with its dotted key. @param {unknown} value @param {string} key @returns {[string, string][]} */
function strings(value, key) {
  if (typeof value === "string") return [[key, value]];
  if (Array.isArray(value)) return value.flatMap((v) => strings(v, key));
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    return Object.entries(value).flatMap(([k, v]) => strings(v, key === "" ? k : `${key}.${k}`));
  }
  return [];
}

/**
 * Adds `rel` (relative to kataDir) and, for a symlink, its target (recursively); a directory adds its whole tree.
 * Returns false when `rel` does not exist. A symlink leading out of the tree is refused.
 * @param {string} kataDir @param {string} rel @param {Set<string>} out
 */
function addPath(kataDir, rel, out) {
  const abs = path.join(kataDir, rel);
  let stat;
  try {
    stat = fs.lstatSync(abs);
  } catch {
    return false;
  }
  if (out.has(rel)) return true;
  out.add(rel);
  if (stat.isSymbolicLink()) {
    const target = fs.readlinkSync(abs);
    const resolved = target.startsWith(RELEASE_PREFIX) ? target.slice(RELEASE_PREFIX.length) : path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
    if (path.posix.isAbsolute(resolved) || resolved.startsWith("../")) throw new ReleaseError(`opt/kata/${rel} is a symlink out of the release (${target})`);
    if (!addPath(kataDir, resolved, out)) throw new ReleaseError(`opt/kata/${rel} is a dangling symlink (${target})`);
  } else if (stat.isDirectory()) {
    for (const entry of fs.readdirSync(abs)) addPath(kataDir, path.posix.join(rel, entry), out);
  }
  return true;
}

/**
 * The files `shim` needs from the unpacked tree `kataDir` (an asset's opt/kata). `assetName` is used in messages.
 * @param {string} kataDir @param {string} shim @param {string} assetName
 * @returns {ShimSelection}
 */
export function selectShim(kataDir, shim, assetName) {
  const binary = shimBinary(shim);
  const config = shimConfig(shim);
  const available = () => shimsIn(kataDir).join(", ") || "none";
  if (!fs.existsSync(path.join(kataDir, config))) {
    throw new ReleaseError(`shim ${shim}: ${assetName} has no opt/kata/${config}; the shims it ships: ${available()}`);
  }
  if (!fs.existsSync(path.join(kataDir, binary))) throw new ReleaseError(`shim ${shim}: ${assetName} has no opt/kata/${binary}`);
  /** @type {Record<string, unknown>} */
  let toml;
  try {
    toml = parse(fs.readFileSync(path.join(kataDir, config), "utf8"));
  } catch (error) {
    throw new ReleaseError(`shim ${shim}: ${assetName}: opt/kata/${config} is not valid TOML: ${/** @type {Error} */ (error).message.split("\n")[0]}`);
  }
  const files = new Set();
  addPath(kataDir, binary, files);
  addPath(kataDir, config, files);
  if (!isRustShim(shim)) addPath(kataDir, "bin/kata-runtime", files);
  const hypervisors = toml.hypervisor !== null && typeof toml.hypervisor === "object" ? Object.keys(toml.hypervisor) : [];
  if (hypervisors.length !== 1) throw new ReleaseError(`shim ${shim}: opt/kata/${config} has ${hypervisors.length} [hypervisor.*] tables, expected one`);
  /** @type {string | undefined} */
  let hypervisorBinary;
  for (const [key, value] of strings(toml, "")) {
    if (!value.startsWith(RELEASE_PREFIX)) continue;
    const rel = path.posix.normalize(value.slice(RELEASE_PREFIX.length));
    const [table, name, field, ...rest] = key.split(".");
    const required = table === "hypervisor" && rest.length === 0 && REQUIRED_KEYS.includes(field ?? "");
    if (!addPath(kataDir, rel, files) && required) {
      throw new ReleaseError(`shim ${shim}: opt/kata/${config} [hypervisor.${name}] ${field} = "${value}", which ${assetName} does not contain`);
    }
    if (table === "hypervisor" && field === "path" && rest.length === 0) hypervisorBinary = rel;
  }
  const qemu = hypervisorBinary === undefined ? null : /^bin\/qemu-system-[a-z0-9_]+?(?:-(.+))?$/.exec(hypervisorBinary);
  if (qemu) {
    const name = qemu[1] ? `kata-qemu-${qemu[1]}` : "kata-qemu";
    for (const dir of ["share", "libexec", "lib"]) addPath(kataDir, `${dir}/${name}`, files);
  }
  return { shim, runtime: isRustShim(shim) ? "rust" : "go", binary, config, hypervisor: hypervisorBinary, files: [...files].sort() };
}
