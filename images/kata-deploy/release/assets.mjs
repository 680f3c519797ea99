// Which release assets a Kata version publishes, and which of them a set of shims needs. Pure: no I/O.
// Used by images/kata-deploy/image.mjs, by the image build itself (release/payload.mjs, bundled) and by
// the Pulumi component (components/kataDeployment.ts), so all three fetch exactly the same files.
//
// Source of truth (kata-containers/kata-containers, read at each release tag):
// - tools/packaging/release/release.sh `_upload_kata_static_tarball` / `_upload_kata_go_static_tarball`:
//     3.3.0 .. 3.20.x  kata-static-<v>-<arch>.tar.xz                           (3.20.0: `.tar.xz`)
//     3.21.0 .. 4.0.x  kata-static-<v>-<arch>.tar.zst                          (3.21.0, 3.32.0, 4.0.0: `.tar.zst`)
//     4.1.0 ..         kata-static-<v>-<arch>.tar.zst + kata-go-static-<v>-<arch>.tar.zst (4.1.0)
//   Releases before 3.3.0 had no release.sh and named the asset after `x86_64` (3.0.0
//   .github/workflows/release.yaml): not supported.
// - .github/workflows/release.yaml: ARCHITECTURE is amd64, arm64, s390x or ppc64le (3.3.0 .. 4.1.0).
// - tools/packaging/kata-deploy/local-build/kata-release-tarball-inputs.sh (4.1.0): kata-static is
//   "runtime-rs focused" (shim-v2-rust, no firecracker), kata-go-static is "Go runtime focused"
//   (shim-v2-go, firecracker).
// - tools/packaging/kata-deploy/binary/src/utils/system.rs (4.1.0) RUST_SHIMS: the shims run by the
//   Rust shim (runtime-rs/bin/containerd-shim-kata-v2); every other shim is run by the Go shim.
//   3.x's kata-deploy.sh (3.20.0 tools/packaging/kata-deploy/scripts/kata-deploy.sh) adds
//   `cloud-hypervisor` (runtime-rs's clh before it was renamed clh-runtime-rs).

import { URL } from "node:url";

/** The newest Kata release whose asset layout this module knows (upstream tag checked: 4.1.0 is the latest tag). */
export const LATEST_KNOWN_RELEASE = "4.1.0";
/** Default release: the latest published one that supports the default shims (qemu and fc need kata-go-static from 4.1.0). */
export const DEFAULT_KATA_VERSION = "4.1.0";
/** The seed's shims. */
export const DEFAULT_SHIMS = Object.freeze(["qemu", "fc"]);
export const DEFAULT_RELEASE_URL = "https://github.com/kata-containers/kata-containers/releases/download";
/** Release architectures (Go names), as release.yaml passes them to release.sh. */
export const RELEASE_ARCHES = Object.freeze(["amd64", "arm64", "s390x", "ppc64le"]);

/** upstream 4.1.0 tools/packaging/kata-deploy/binary/src/utils/system.rs RUST_SHIMS, plus 3.x's `cloud-hypervisor`. */
export const RUST_SHIMS = Object.freeze([
  "clh-azure-runtime-rs",
  "clh-runtime-rs",
  "cloud-hypervisor",
  "dragonball",
  "openvmm-azure-runtime-rs",
  "qemu-runtime-rs",
  "qemu-nvidia-cpu-runtime-rs",
  "qemu-nvidia-gpu-runtime-rs",
  "qemu-nvidia-gpu-snp-runtime-rs",
  "qemu-nvidia-gpu-tdx-runtime-rs",
  "qemu-coco-dev-runtime-rs",
  "qemu-se-runtime-rs",
  "qemu-snp-runtime-rs",
  "qemu-tdx-runtime-rs",
]);

export class ReleaseError extends Error {
  name = "ReleaseError";
}

/**
 * @typedef {"xz" | "zstd"} Compression
 * @typedef {"kata-static" | "kata-go-static"} AssetKind
 * @typedef {{ name: string; kind: AssetKind; compression: Compression; shims: string[] }} ReleaseAsset
 *   `shims`: the requested shims this asset provides (every requested shim for a one-asset release).
 * @typedef {{ layout: "xz" | "zst" | "split"; compression: Compression; kinds: AssetKind[] }} ReleaseLayout
 */

/** @param {string} version @returns {[number, number, number]} */
export function parseVersion(version) {
  const match = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!match) throw new ReleaseError(`KATA_VERSION=${version}: not a Kata release version (X.Y.Z, e.g. ${DEFAULT_KATA_VERSION})`);
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}

/** @param {[number, number, number]} a @param {[number, number, number]} b */
function compare(a, b) {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/**
 * The asset layout `version` was published with; refuses versions whose layout is not known.
 * @param {string} version
 * @returns {ReleaseLayout}
 */
export function releaseLayout(version) {
  const v = parseVersion(version);
  const latest = parseVersion(LATEST_KNOWN_RELEASE);
  if (compare(v, [3, 3, 0]) < 0) {
    throw new ReleaseError(`KATA_VERSION=${version}: releases before 3.3.0 named their asset differently (kata-static-<v>-x86_64.tar.xz); use 3.3.0 or later`);
  }
  if (v[0] > latest[0] || (v[0] === latest[0] && v[1] > latest[1])) {
    throw new ReleaseError(
      `KATA_VERSION=${version}: the asset layout of releases after ${latest[0]}.${latest[1]}.x is not known here; ` +
        `check tools/packaging/release/release.sh at tag ${version} and add it to images/kata-deploy/release/assets.mjs, or use ${LATEST_KNOWN_RELEASE}`,
    );
  }
  if (compare(v, [3, 21, 0]) < 0) return { layout: "xz", compression: "xz", kinds: ["kata-static"] };
  if (compare(v, [4, 1, 0]) < 0) return { layout: "zst", compression: "zstd", kinds: ["kata-static"] };
  return { layout: "split", compression: "zstd", kinds: ["kata-static", "kata-go-static"] };
}

/** dpkg / uname architecture names to the release's (Go) names. @param {string} arch */
export function releaseArch(arch) {
  const mapped = { x86_64: "amd64", aarch64: "arm64", ppc64el: "ppc64le" }[arch] ?? arch;
  if (!RELEASE_ARCHES.includes(mapped)) {
    throw new ReleaseError(`architecture ${arch}: Kata publishes release assets for ${RELEASE_ARCHES.join(", ")} only`);
  }
  return mapped;
}

/** @param {string} shim */
export function isRustShim(shim) {
  return RUST_SHIMS.includes(shim);
}

/** @param {AssetKind} kind @param {string} version @param {string} arch @param {Compression} compression */
export function assetName(kind, version, arch, compression) {
  return `${kind}-${version}-${arch}.tar.${compression === "xz" ? "xz" : "zst"}`;
}

/**
 * Parses a shim list ("qemu,fc", or an array); refuses empty lists, bad names and duplicates.
 * @param {string | readonly string[] | undefined} shims
 * @returns {string[]}
 */
export function parseShims(shims) {
  const list = (typeof shims === "string" ? shims.split(",") : [...(shims ?? DEFAULT_SHIMS)]).map((s) => s.trim()).filter((s) => s !== "");
  if (list.length === 0) throw new ReleaseError(`KATA_SHIMS: give at least one shim, e.g. ${DEFAULT_SHIMS.join(",")}`);
  for (const shim of list) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(shim)) throw new ReleaseError(`KATA_SHIMS: "${shim}" is not a shim name (lowercase letters, digits and -)`);
  }
  if (new Set(list).size !== list.length) throw new ReleaseError(`KATA_SHIMS=${list.join(",")}: lists a shim twice`);
  return list;
}

/**
 * The assets to fetch for `shims` of `version` on `arch`: the one asset up to 4.0.x; from 4.1.0
 * kata-go-static for Go-runtime shims and kata-static for runtime-rs shims (both when mixed).
 * @param {{ version: string; arch: string; shims: readonly string[] }} request
 * @returns {ReleaseAsset[]}
 */
export function releaseAssets({ version, arch, shims }) {
  const layout = releaseLayout(version);
  const goArch = releaseArch(arch);
  const list = parseShims(shims);
  if (layout.layout !== "split") {
    return [{ name: assetName("kata-static", version, goArch, layout.compression), kind: "kata-static", compression: layout.compression, shims: list }];
  }
  /** @type {ReleaseAsset[]} */
  const assets = [];
  for (const kind of /** @type {AssetKind[]} */ (["kata-go-static", "kata-static"])) {
    const provided = list.filter((shim) => isRustShim(shim) === (kind === "kata-static"));
    if (provided.length > 0) assets.push({ name: assetName(kind, version, goArch, "zstd"), kind, compression: "zstd", shims: provided });
  }
  return assets;
}

/**
 * Parses KATA_SHA256 / `--sha256`: comma-separated `ASSET=HEX`, or one bare HEX for a one-asset build.
 * Several values (repeatable flag) may be passed as an array.
 * @param {string | readonly string[] | undefined} text
 * @returns {{ bare?: string; byAsset: Record<string, string> }}
 */
export function parseSha256(text) {
  /** @type {{ bare?: string; byAsset: Record<string, string> }} */
  const result = { byAsset: {} };
  const entries = (typeof text === "string" ? [text] : [...(text ?? [])]).flatMap((t) => t.split(",")).map((e) => e.trim()).filter((e) => e !== "");
  for (const entry of entries) {
    const eq = entry.lastIndexOf("=");
    const asset = eq < 0 ? undefined : entry.slice(0, eq).trim();
    const hex = (eq < 0 ? entry : entry.slice(eq + 1)).trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) {
      throw new ReleaseError(`KATA_SHA256: "${entry}" is not ASSET=HEX or HEX (64 hex digits), e.g. kata-go-static-${DEFAULT_KATA_VERSION}-amd64.tar.zst=<sha256>`);
    }
    if (asset === undefined) {
      if (result.bare !== undefined) throw new ReleaseError("KATA_SHA256: more than one bare digest; name the asset of each: ASSET=HEX,ASSET=HEX");
      result.bare = hex;
    } else {
      if (!/^[A-Za-z0-9._-]+$/.test(asset)) throw new ReleaseError(`KATA_SHA256: "${asset}" is not a release asset file name`);
      if (asset in result.byAsset && result.byAsset[asset] !== hex) throw new ReleaseError(`KATA_SHA256: two different digests for ${asset}`);
      result.byAsset[asset] = hex;
    }
  }
  return result;
}

/**
 * Assigns a digest to each asset. A bare HEX is accepted only when exactly one asset is fetched;
 * a digest for an asset that is not fetched is refused (a typo would otherwise go unnoticed).
 * @param {ReleaseAsset[]} assets
 * @param {{ bare?: string; byAsset: Record<string, string> }} digests
 * @returns {Record<string, string | undefined>} asset name -> sha256 (undefined: none given)
 */
export function digestsFor(assets, digests) {
  const names = assets.map((a) => a.name);
  for (const asset of Object.keys(digests.byAsset)) {
    if (!names.includes(asset)) throw new ReleaseError(`KATA_SHA256: ${asset} is not fetched by this build (it fetches ${names.join(", ")})`);
  }
  if (digests.bare !== undefined && names.length !== 1) {
    throw new ReleaseError(`KATA_SHA256: a bare digest is ambiguous, this build fetches ${names.join(" and ")}; give ASSET=HEX for each`);
  }
  /** @type {Record<string, string | undefined>} */
  const result = {};
  for (const name of names) result[name] = digests.byAsset[name] ?? (names.length === 1 ? digests.bare : undefined);
  return result;
}

/** True when `url`'s host is on the loopback (127.0.0.0/8, localhost, [::1]): the build then needs host networking. @param {string} url */
export function isLoopbackUrl(url) {
  let host;
  try {
    host = new URL(url).hostname;
  } catch {
    throw new ReleaseError(`KATA_RELEASE_URL=${url}: not a URL (e.g. ${DEFAULT_RELEASE_URL})`);
  }
  host = host.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host.endsWith(".localhost") || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * @typedef {{
 *   baseImage?: string; kataVersion?: string; shims?: string | readonly string[];
 *   sha256?: string | readonly string[]; releaseUrl?: string; tarballs?: readonly string[];
 * }} KataBuildOptions
 *   `tarballs`: paths inside the build context (relative, `/`-separated).
 */

/**
 * The Dockerfile's build args for these options (image contract: empty = not given, so absent keys
 * are left out). Validates what can be validated without the release: version layout, shim names,
 * digest syntax, URL. Also says whether the build needs host networking.
 * @param {KataBuildOptions} options
 * @returns {{ args: Record<string, string>; network?: "host" }}
 */
export function kataBuildArgs(options) {
  /** @type {Record<string, string>} */
  const args = {};
  if (options.baseImage) args.BASE_IMAGE = options.baseImage;
  if (options.kataVersion) {
    releaseLayout(options.kataVersion);
    args.KATA_VERSION = options.kataVersion;
  }
  if (options.shims !== undefined && (typeof options.shims !== "string" || options.shims !== "")) args.KATA_SHIMS = parseShims(options.shims).join(",");
  const digests = parseSha256(options.sha256);
  const sha = [...(digests.bare ? [digests.bare] : []), ...Object.entries(digests.byAsset).map(([asset, hex]) => `${asset}=${hex}`)];
  if (sha.length > 0) args.KATA_SHA256 = sha.join(",");
  let network;
  if (options.releaseUrl) {
    network = isLoopbackUrl(options.releaseUrl) ? /** @type {const} */ ("host") : undefined;
    args.KATA_RELEASE_URL = options.releaseUrl.replace(/\/+$/, "");
  }
  if (options.tarballs && options.tarballs.length > 0) {
    for (const t of options.tarballs) {
      if (t.startsWith("/") || t.split("/").includes("..") || t.includes(",")) throw new ReleaseError(`KATA_TARBALLS: ${t} must be a path inside the build context (relative, no .., no commas)`);
    }
    args.KATA_TARBALLS = options.tarballs.join(",");
  }
  return network ? { args, network } : { args };
}
