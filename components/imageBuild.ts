// The Pulumi side of the image build-arg contract (images/kata-deploy/Dockerfile takes BASE_IMAGE,
// KATA_VERSION, KATA_SHIMS, KATA_SHA256, KATA_RELEASE_URL, KATA_TARBALLS): pure functions that check what a
// user gives KataDeployment's `imageBuild` and turn it into the build args and build options of the
// @pulumi/docker Image. No Pulumi resources here, so everything is testable without mocks.
//
// Coordinator note: `npm run image:build`/`image:push` (images/kata-deploy/image.mjs) maps its flags to the
// same build args; when the image helper's pure functions for asset names and build args land in
// images/kata-deploy/release/, this file should call them instead of repeating the mapping.
import * as fs from "node:fs";
import * as path from "node:path";

/**
 * The platform the image is built for when `imageBuild.platform` is not given. @pulumi/docker's Image would
 * otherwise store the platform of the machine running Pulumi (pulumi/pulumi-docker provider/provider.go,
 * Check: `hostPlatform := "linux/" + runtime.GOARCH`), so an arm64 laptop would silently build arm64 images
 * for an amd64 cluster, and a colleague on another laptop would rebuild the image.
 */
export const DEFAULT_IMAGE_PLATFORM = "linux/amd64";

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
// An asset as the release page names it: a file name, no path, no separators of this syntax.
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** One `ASSET=HEX` entry of KATA_SHA256; `asset` is undefined for the bare-HEX form. */
export interface AssetDigest {
  asset?: string;
  sha256: string;
}

/**
 * Parses KATA_SHA256's syntax: comma-separated `ASSET=HEX` entries, or one bare `HEX` (a one-asset release).
 * Returns the entries, or a one-line problem (without the field name; the caller prefixes it).
 */
export function parseKataSha256(value: string): AssetDigest[] | string {
  const entries = value.split(",").map((entry) => entry.trim());
  if (entries.length === 1 && SHA256_HEX.test(entries[0])) return [{ sha256: entries[0].toLowerCase() }];
  const parsed: AssetDigest[] = [];
  for (const entry of entries) {
    const match = /^([^=]+)=(.*)$/.exec(entry);
    if (match === null) {
      return `'${entry}' is neither ASSET=HEX nor a bare HEX; write kata-go-static-<version>-<arch>.tar.zst=<64 hex digits>[,ASSET=HEX...], or one bare HEX for a one-asset release`;
    }
    const [, asset, hex] = match;
    if (!ASSET_NAME.test(asset)) return `'${asset}' is not a release asset file name (e.g. kata-static-3.29.0-amd64.tar.zst)`;
    if (!SHA256_HEX.test(hex)) return `the digest of ${asset} must be 64 hex digits, got '${hex}'`;
    if (parsed.some((other) => other.asset === asset)) return `${asset} is given twice`;
    parsed.push({ asset, sha256: hex.toLowerCase() });
  }
  return parsed;
}

/** True when the URL's host is the loopback (127.0.0.0/8, localhost, ::1): the build then needs host networking. */
export function isLoopbackUrl(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return false;
  }
  host = host.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host.endsWith(".localhost") || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Why a release base URL cannot be used, or undefined. */
export function releaseUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `'${url}' is not a URL; give the base the assets are fetched from as <url>/<version>/<asset>, e.g. https://github.com/kata-containers/kata-containers/releases/download`;
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return `'${url}' must be an http(s) URL`;
  return undefined;
}

/**
 * Why a local release asset path cannot be used, or undefined. The Dockerfile copies KATA_TARBALLS from the
 * build context, so each path is relative to `contextDir`, stays inside it and names an existing file.
 */
export function localTarballProblem(file: string, contextDir: string): string | undefined {
  const fix = `copy the release asset into ${contextDir}/tarballs/ and give tarballs/<asset>`;
  if (path.isAbsolute(file) || path.normalize(file).split(/[\\/]/)[0] === "..") {
    return `'${file}' must be a path inside the build context ${contextDir}, relative to it; ${fix}`;
  }
  if (!fs.existsSync(path.join(contextDir, file))) return `'${file}' does not exist in ${contextDir}; ${fix}`;
  return undefined;
}

/**
 * The image-build settings that become build args. `V` is the type of the single-valued settings: plain
 * strings, or `pulumi.Input<string>` when the component passes values that may be known only later.
 */
export interface KataBuildArgInputs<V = string> {
  baseImage?: V;
  kataVersion?: V;
  /** The deployment's shims: the image carries exactly these. */
  shims: readonly string[];
  kataSha256?: V;
  releaseUrl?: V;
  /** Paths inside the build context. */
  kataTarballs?: readonly string[];
}

/**
 * The Dockerfile's build args for these settings (images/kata-deploy/Dockerfile; contract in
 * briefs/image-contract.md). Only settings that are given are passed, so the Dockerfile's defaults apply to
 * the rest; KATA_SHIMS is always passed.
 */
export function kataBuildArgs<V = string>(inputs: KataBuildArgInputs<V>): Record<string, V | string> {
  const args: Record<string, V | string> = {};
  if (inputs.baseImage !== undefined) args.BASE_IMAGE = inputs.baseImage;
  if (inputs.kataVersion !== undefined) args.KATA_VERSION = inputs.kataVersion;
  args.KATA_SHIMS = inputs.shims.join(",");
  if (inputs.kataSha256 !== undefined) args.KATA_SHA256 = inputs.kataSha256;
  if (inputs.releaseUrl !== undefined) args.KATA_RELEASE_URL = inputs.releaseUrl;
  if (inputs.kataTarballs !== undefined && inputs.kataTarballs.length > 0) args.KATA_TARBALLS = inputs.kataTarballs.join(",");
  return args;
}

/**
 * A path as it is stored in the stack's state. Pulumi runs the program and its providers in the directory of
 * the program (pulumi/pulumi pkg/engine/project.go getPwdMain; sdk/go/common/resource/plugin/plugin.go runs
 * plugins with `cmd.Dir = pwd`), and @pulumi/docker compares `build.context`/`build.dockerfile` as given
 * (pulumi/pulumi-docker provider/provider.go Diff: `oldInputs.Diff(news)`). An absolute path differs between
 * two checkouts and would rebuild and roll out the image; a path relative to the program's directory does
 * not. A target outside that directory's parent chain keeps its absolute path.
 */
export function pathForState(target: string, cwd: string = process.cwd()): string {
  const relative = path.relative(cwd, target);
  return relative === "" ? "." : path.isAbsolute(relative) ? target : relative;
}
