// The Pulumi side of the image build-arg contract (images/kata-deploy/Dockerfile takes BASE_IMAGE,
// KATA_VERSION, KATA_SHIMS, KATA_SHA256, KATA_RELEASE_URL, KATA_TARBALLS): pure functions that check what a
// user gives KataDeployment's `imageBuild` and turn it into the build args and build options of the
// @pulumi/docker Image. No Pulumi resources here, so everything is testable without mocks.
//
// Which assets a release publishes, the KATA_SHA256 syntax, the loopback test and the build args themselves
// come from images/kata-deploy/release/assets.mjs, the module `npm run image:build` (image.mjs) and the
// image's own release step (release/payload.mjs) use: one implementation, the same refusals everywhere.
import * as fs from "node:fs";
import * as path from "node:path";

/** images/kata-deploy/release/assets.mjs, typed by its hand-kept assets.d.mts. @internal */
export type ReleaseModule = typeof import("../images/kata-deploy/release/assets.mjs");

/**
 * Where assets.mjs is: the nearest `images/kata-deploy/release/assets.mjs` above this file. This file runs
 * from components/ (ts-node, this repository) and from a compiled copy (dist/components/); the images/
 * folder sits at the package root in both, as it does for the build context (IMAGE_CONTEXT).
 * @internal
 */
export function releaseModulePath(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "images/kata-deploy/release/assets.mjs");
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) {
      throw new Error(`kata-deploy: no images/kata-deploy/release/assets.mjs above ${from}; the package is incomplete, reinstall it`);
    }
  }
}

// A runtime require of the ES module (Node >= 20.19 / 22.12 load a synchronous .mjs with require()): a
// static import would be compiled to a path relative to the compiled file, which a copy in dist/ lacks.
/** The release module (assets.mjs). @internal */
export const release = loadReleaseModule(releaseModulePath());

function loadReleaseModule(file: string): ReleaseModule {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the path is found at run time, see above
    return require(file) as ReleaseModule;
  } catch (error) {
    // Node 22.0-22.11 load an ES module with require() only behind --experimental-require-module.
    if ((error as NodeJS.ErrnoException).code === "ERR_REQUIRE_ESM") {
      throw new Error(`kata-deploy: Node.js ${process.versions.node} cannot load ${file}; use Node.js >= 22.12 (Node 24 LTS is the target)`, { cause: error });
    }
    throw error;
  }
}

/**
 * The platform the image is built for when `imageBuild.platform` is not given. @pulumi/docker's Image would
 * otherwise store the platform of the machine running Pulumi (pulumi/pulumi-docker provider/provider.go,
 * Check: `hostPlatform := "linux/" + runtime.GOARCH`), so an arm64 laptop would silently build arm64 images
 * for an amd64 cluster, and a colleague on another laptop would rebuild the image.
 */
export const DEFAULT_IMAGE_PLATFORM = "linux/amd64";

/**
 * A release asset's file name as the release names it, and the only names .dockerignore lets into the build
 * context (images/kata-deploy/.dockerignore: kata-static-*.tar.xz, kata-static-*.tar.zst,
 * kata-go-static-*.tar.zst). Group 1: the version.
 */
const LOCAL_ASSET_NAME = /^(?:kata-static-(.+)-[a-z0-9]+\.tar\.(?:xz|zst)|kata-go-static-(.+)-[a-z0-9]+\.tar\.zst)$/;

/**
 * Why a local release asset path cannot be used, or undefined. The Dockerfile copies KATA_TARBALLS from the
 * build context, and only what .dockerignore lets through reaches it: release-named assets at the top of the
 * context, in tarballs/, or one directory below tarballs/ (release/payload.mjs localPath maps exactly these).
 */
export function localTarballProblem(file: string, contextDir: string): string | undefined {
  const fix = `copy the release asset into ${contextDir}/tarballs/ and give tarballs/<asset>`;
  const relative = file.replace(/^\.\//, "");
  if (path.isAbsolute(file) || relative.split(/[\\/]/).includes("..")) {
    return `'${file}' must be a path inside the build context ${contextDir}, relative to it; ${fix}`;
  }
  const parts = relative.split("/");
  const placed = parts.length === 1 || (parts[0] === "tarballs" && (parts.length === 2 || parts.length === 3));
  if (!placed || parts.some((part) => part === "")) {
    return `'${file}' is not where the Dockerfile takes local assets from (the top of ${contextDir} or its tarballs/ folder); ${fix}`;
  }
  if (!LOCAL_ASSET_NAME.test(parts[parts.length - 1])) {
    return `'${file}' is not named as the release names its assets (kata-static-<version>-<arch>.tar.{xz,zst} or kata-go-static-<version>-<arch>.tar.zst), so the build context leaves it out; rename it to the name on the release page`;
  }
  if (!fs.existsSync(path.join(contextDir, relative))) return `'${file}' does not exist in ${contextDir}; ${fix}`;
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
  /** `os/arch`; default DEFAULT_IMAGE_PLATFORM. */
  platform?: V;
}

/** A setting's problem: the `imageBuild` field it is in, and the message (one line, with the fix). */
export interface ImageBuildProblem {
  field: string;
  message: string;
}

/** Runs `check`; a ReleaseError becomes the problem of `field`, any other error is rethrown. */
function inField(field: string, check: () => void): ImageBuildProblem | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    if (error instanceof release.ReleaseError) return { field, message: error.message };
    throw error;
  }
}

/**
 * The first problem of these settings, or undefined. Every value that is a plain string is checked now, so a
 * typo fails at preview; values that are not (Outputs known only later) are left to the build, whose release
 * step (release/payload.mjs) runs the same checks. When version, digests and platform are all known (or left
 * to their defaults), the assets the build will fetch are computed and each must have a digest or a local
 * file, and every digest must be for one of them: the refusals `npm run image:build` gives, in the same words.
 */
export function imageBuildProblem<V>(inputs: KataBuildArgInputs<V>, contextDir: string): ImageBuildProblem | undefined {
  const known = (value: V | undefined): value is V & string => typeof value === "string";
  const given = (value: V | undefined): string | undefined => (known(value) && value !== "" ? value : undefined);
  const tarballs = inputs.kataTarballs ?? [];
  for (const [index, file] of tarballs.entries()) {
    const message = localTarballProblem(file, contextDir);
    if (message !== undefined) return { field: `kataTarballs[${index}]`, message };
  }
  const problem =
    inField("kataSha256", () => known(inputs.kataSha256) && release.parseSha256(inputs.kataSha256)) ??
    inField("releaseUrl", () => given(inputs.releaseUrl) !== undefined && release.isLoopbackUrl(inputs.releaseUrl as string)) ??
    inField("kataVersion", () => given(inputs.kataVersion) !== undefined && release.releaseLayout(inputs.kataVersion as string)) ??
    inField("shims", () => release.parseShims(inputs.shims)) ??
    inField("platform", () => known(inputs.platform) && release.releaseArch(inputs.platform.split("/")[1] ?? ""));
  if (problem !== undefined) return problem;

  const unknown = [inputs.kataVersion, inputs.kataSha256, inputs.platform].some((value) => value !== undefined && !known(value));
  if (unknown) return undefined;
  const version = given(inputs.kataVersion) ?? release.DEFAULT_KATA_VERSION;
  for (const [index, file] of tarballs.entries()) {
    const name = path.basename(file);
    const match = LOCAL_ASSET_NAME.exec(name);
    const other = match?.[1] ?? match?.[2];
    if (other !== undefined && other !== version) {
      return {
        field: `kataTarballs[${index}]`,
        message: `${name} is release ${other}, but the build packages Kata ${version}; set imageBuild.kataVersion to ${other}, or give the assets of ${version}`,
      };
    }
  }
  const platform = (known(inputs.platform) ? inputs.platform : undefined) ?? DEFAULT_IMAGE_PLATFORM;
  let assets: ReturnType<ReleaseModule["releaseAssets"]> = [];
  let digests: Record<string, string | undefined> = {};
  const fetched =
    inField("kataVersion", () => (assets = release.releaseAssets({ version, arch: platform.split("/")[1] ?? "", shims: inputs.shims }))) ??
    inField("kataSha256", () => (digests = release.digestsFor(assets, release.parseSha256(known(inputs.kataSha256) ? inputs.kataSha256 : undefined))));
  if (fetched !== undefined) return fetched;
  const local = new Set(tarballs.map((file) => path.basename(file)));
  const missing = assets.filter((asset) => !local.has(asset.name) && digests[asset.name] === undefined);
  if (missing.length > 0) {
    const releaseUrl = given(inputs.releaseUrl) ?? release.DEFAULT_RELEASE_URL;
    return {
      field: "kataSha256",
      message:
        `to download Kata ${version} for shims ${inputs.shims.join(",")} give ${missing.map((asset) => `${asset.name}=<sha256>`).join(",")} ` +
        `(from the release page, ${releaseUrl.replace(/\/download\/?$/, "/tag")}/${version}), or imageBuild.kataTarballs for local assets`,
    };
  }
  return undefined;
}

/**
 * The Dockerfile's build args for these settings (images/kata-deploy/Dockerfile; contract in
 * briefs/image-contract.md) and whether the build needs host networking (a loopback release URL). Plain
 * strings go through assets.mjs `kataBuildArgs` (as `npm run image:build` passes them); other values (Outputs)
 * are passed as given. Only settings that are given are passed, so the Dockerfile's defaults apply to the
 * rest; KATA_SHIMS is always passed. Throws assets.mjs's ReleaseError for a bad plain value (check with
 * imageBuildProblem first to name the field).
 */
export function kataBuildArgs<V = string>(inputs: KataBuildArgInputs<V>): { args: Record<string, V | string>; network?: "host" } {
  const plain = (value: V | undefined): string | undefined => (typeof value === "string" ? value : undefined);
  const built = release.kataBuildArgs({
    baseImage: plain(inputs.baseImage),
    kataVersion: plain(inputs.kataVersion),
    shims: inputs.shims,
    sha256: plain(inputs.kataSha256),
    releaseUrl: plain(inputs.releaseUrl),
    tarballs: inputs.kataTarballs?.map((file) => file.replace(/^\.\//, "")),
  });
  const args: Record<string, V | string> = { ...built.args };
  const later: [string, V | undefined][] = [
    ["BASE_IMAGE", inputs.baseImage],
    ["KATA_VERSION", inputs.kataVersion],
    ["KATA_SHA256", inputs.kataSha256],
    ["KATA_RELEASE_URL", inputs.releaseUrl],
  ];
  for (const [name, value] of later) if (value !== undefined && typeof value !== "string") args[name] = value;
  // Key order as the contract lists the args (and as before): BASE_IMAGE, KATA_VERSION, KATA_SHIMS, ...
  const order = ["BASE_IMAGE", "KATA_VERSION", "KATA_SHIMS", "KATA_SHA256", "KATA_RELEASE_URL", "KATA_TARBALLS"];
  const sorted = Object.fromEntries(order.filter((name) => name in args).map((name) => [name, args[name]]));
  return built.network === undefined ? { args: sorted } : { args: sorted, network: built.network };
}

/** True when the URL's host is the loopback (127.0.0.0/8, localhost, ::1); false for what is not a URL. */
export function isLoopbackUrl(url: string): boolean {
  try {
    return release.isLoopbackUrl(url);
  } catch (error) {
    if (error instanceof release.ReleaseError) return false;
    throw error;
  }
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
