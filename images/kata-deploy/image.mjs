// `npm run image:build` / `npm run image:push`: builds (and pushes) the kata-deploy image without Pulumi,
// with the same context, Dockerfile and build args as the Pulumi component (see the image contract in
// docs/docker.md). Builds the agent and release bundles first so the image always carries the current code.
//
//   node images/kata-deploy/image.mjs build|push [--tag REPO:TAG] [--kata-version V] [--shims qemu,fc]
//        [--sha256 ASSET=HEX ...] [--release-url URL] [--tarball PATH ...] [--base-image IMAGE]
//        [--platform linux/amd64[,linux/arm64]]
//
// --sha256 and --tarball repeat (or take comma-separated lists). Every flag has an environment fallback
// (IMAGE_TAG, KATA_VERSION, KATA_SHIMS, KATA_SHA256 or KATA_TARBALL_SHA256, KATA_RELEASE_URL,
// KATA_TARBALLS or KATA_TARBALL, BASE_IMAGE, PLATFORM). Progress goes to stderr; `push` prints the
// pushed `repo@sha256:...` on stdout.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildAgent } from "./agent/build.mjs";
import {
  DEFAULT_KATA_VERSION,
  DEFAULT_RELEASE_URL,
  digestsFor,
  kataBuildArgs,
  parseSha256,
  parseShims,
  releaseArch,
  releaseAssets,
  ReleaseError,
} from "./release/assets.mjs";

const CONTEXT = path.dirname(fileURLToPath(import.meta.url));
const DOCKERFILE = path.join(CONTEXT, "Dockerfile");
/** Where local tarballs go inside the context (.dockerignore lets release asset names through there). */
const LOCAL_TARBALL_DIR = "tarballs";
const ASSET_NAME = /^kata-(?:go-)?static-(.+)-([a-z0-9]+)\.tar\.(?:xz|zst)$/;

export class UsageError extends Error {}

/** @param {string | string[] | undefined} value */
const list = (value) => (Array.isArray(value) ? value : value === undefined ? [] : [value]).flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);

/** The release architecture a build targets: the single --platform, else this machine's. @param {string[]} platforms */
function targetArch(platforms) {
  if (platforms.length === 1) return releaseArch(platforms[0].split("/")[1] ?? "");
  return releaseArch(/** @type {Partial<Record<string, string>>} */ ({ x64: "amd64", arm64: "arm64", s390x: "s390x", ppc64: "ppc64le" })[process.arch] ?? process.arch);
}

/**
 * @typedef {ReturnType<typeof parseOptions>} ImageOptions
 */

/**
 * Reads flags and env into build options. Pure apart from `env` and checking that local tarballs exist;
 * throws UsageError with the fix.
 * @param {string[]} argv arguments after the command
 * @param {Record<string, string | undefined>} env
 */
export function parseOptions(argv, env) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      tag: { type: "string" },
      "kata-version": { type: "string" },
      shims: { type: "string" },
      sha256: { type: "string", multiple: true },
      "release-url": { type: "string" },
      tarball: { type: "string", multiple: true },
      "base-image": { type: "string" },
      platform: { type: "string" },
    },
  });
  // An empty flag or variable means "not given", as it does for the Dockerfile's build args.
  /** @param {"tag" | "kata-version" | "shims" | "release-url" | "base-image" | "platform"} flag @param {string} variable */
  const pick = (flag, variable) => (values[flag] || env[variable] || undefined);
  const sha256 = list(values.sha256).length > 0 ? list(values.sha256) : list(env.KATA_SHA256 || env.KATA_TARBALL_SHA256);
  const tarballs = list(values.tarball).length > 0 ? list(values.tarball) : list(env.KATA_TARBALLS || env.KATA_TARBALL);
  const options = {
    tag: pick("tag", "IMAGE_TAG") ?? "kata-deploy:latest",
    kataVersion: pick("kata-version", "KATA_VERSION"),
    shims: pick("shims", "KATA_SHIMS"),
    sha256,
    releaseUrl: pick("release-url", "KATA_RELEASE_URL"),
    tarballs,
    baseImage: pick("base-image", "BASE_IMAGE"),
    platforms: pick("platform", "PLATFORM")?.split(",").map((p) => p.trim()).filter(Boolean) ?? [],
  };
  for (const tarball of tarballs) {
    const match = ASSET_NAME.exec(path.basename(tarball));
    if (!match) throw new UsageError(`--tarball ${tarball}: expected a Kata release asset named as the release names it: kata-static-<version>-<arch>.tar.{xz,zst} or kata-go-static-<version>-<arch>.tar.zst`);
    if (!fs.existsSync(tarball)) throw new UsageError(`--tarball ${tarball}: no such file`);
    // Without --kata-version, the local assets say which release this is.
    if (options.kataVersion === undefined) options.kataVersion = match[1];
    else if (match[1] !== options.kataVersion) throw new UsageError(`--tarball ${tarball} is release ${match[1]}, but --kata-version is ${options.kataVersion}`);
  }
  try {
    const shims = parseShims(options.shims);
    // Checked here too (the build checks again) so a missing digest fails before docker runs.
    const assets = releaseAssets({ version: options.kataVersion ?? DEFAULT_KATA_VERSION, arch: targetArch(options.platforms), shims });
    const digests = digestsFor(assets, parseSha256(sha256));
    const local = new Set(tarballs.map((t) => path.basename(t)));
    const missing = assets.filter((a) => !local.has(a.name) && digests[a.name] === undefined);
    if (missing.length > 0) {
      const version = options.kataVersion ?? DEFAULT_KATA_VERSION;
      throw new UsageError(
        `to download Kata ${version} for shims ${shims.join(",")} give --sha256 ${missing.map((a) => `${a.name}=<sha256>`).join(" --sha256 ")} ` +
          `(from the release page, ${(options.releaseUrl ?? DEFAULT_RELEASE_URL).replace(/\/download\/?$/, "/tag")}/${version}), or --tarball PATH for local assets`,
      );
    }
    kataBuildArgs({ ...options, tarballs: [] });
  } catch (error) {
    if (error instanceof ReleaseError) throw new UsageError(error.message);
    throw error;
  }
  return options;
}

/**
 * The build args the Dockerfile takes, exactly as the Pulumi component passes them, and whether the
 * build needs host networking (a loopback KATA_RELEASE_URL).
 * `contextTarballs` are the local tarballs' paths relative to the context.
 * @param {ImageOptions} options
 * @param {string[]} [contextTarballs]
 * @returns {{ args: Record<string, string>; network?: "host" }}
 */
export function dockerBuildArgs(options, contextTarballs = []) {
  return kataBuildArgs({
    baseImage: options.baseImage,
    kataVersion: options.kataVersion,
    shims: options.shims,
    sha256: options.sha256,
    releaseUrl: options.releaseUrl,
    tarballs: contextTarballs,
  });
}

/**
 * Makes tarballs that lie outside the context visible to the build: hard links (or copies) in a
 * directory of this build's own under tarballs/, which .dockerignore lets through. The directory is
 * named after the files' contents, so the same tarballs give the same build context (and cache).
 * Returns [paths relative to the context, cleanup].
 * @param {string[]} tarballs
 * @returns {[string[], () => void]}
 */
function stageTarballs(tarballs) {
  /** @type {string[]} */
  const inside = [];
  /** @type {string[]} */
  const outside = [];
  for (const tarball of tarballs) {
    const relative = path.relative(CONTEXT, path.resolve(tarball)).split(path.sep).join("/");
    if (!relative.startsWith("../") && !path.isAbsolute(relative)) inside.push(relative);
    else outside.push(path.resolve(tarball));
  }
  if (outside.length === 0) return [inside, () => {}];
  const hash = createHash("sha256");
  for (const file of outside) {
    const stat = fs.statSync(file);
    hash.update(`${path.basename(file)}\0${stat.size}\0${stat.mtimeMs}\0`);
  }
  const stagingRoot = path.join(CONTEXT, LOCAL_TARBALL_DIR);
  fs.mkdirSync(stagingRoot, { recursive: true });
  let dir = path.join(stagingRoot, `staged-${hash.digest("hex").slice(0, 16)}`);
  try {
    fs.mkdirSync(dir);
  } catch {
    dir = fs.mkdtempSync(`${dir}-`); // the same tarballs are being built right now by another build
  }
  /** @type {string[]} */
  const staged = [];
  for (const file of outside) {
    const target = path.join(dir, path.basename(file));
    try {
      fs.linkSync(file, target); // same file system: no copy of a multi-hundred-MB file
    } catch {
      fs.copyFileSync(file, target);
      const stat = fs.statSync(file);
      fs.utimesSync(target, stat.atime, stat.mtime);
    }
    staged.push(path.relative(CONTEXT, target).split(path.sep).join("/"));
  }
  return [
    [...inside, ...staged],
    () => {
      fs.rmSync(dir, { recursive: true, force: true });
      try {
        fs.rmdirSync(stagingRoot); // only when empty: it may hold the user's own tarballs
      } catch {
        // not empty, or another build's staging directory is in it
      }
    },
  ];
}

/** @param {string} command @param {string[]} args */
function run(command, args) {
  process.stderr.write(`+ ${command} ${args.join(" ")}\n`);
  const result = spawnSync(command, args, { stdio: ["ignore", process.stderr, "inherit"] });
  if (result.error) throw new UsageError(`${command}: ${result.error.message}`);
  if (result.status !== 0) throw new UsageError(`${command} ${args[0]} failed (exit ${result.status})`);
}

/** The registry digest reference (`repo@sha256:...`) of a pushed tag. @param {string} tag */
function pushedDigest(tag) {
  const repository = tag.replace(/@.*$/, "").replace(/:[^:/]+$/, "");
  const result = spawnSync("docker", ["image", "inspect", "--format", "{{json .RepoDigests}}", tag], { encoding: "utf8" });
  if (result.status !== 0) throw new UsageError(`docker image inspect ${tag}: ${result.stderr.trim()}`);
  /** @type {string[]} */
  const digests = JSON.parse(result.stdout);
  const match = digests.find((d) => d.startsWith(`${repository}@`));
  if (!match) throw new UsageError(`no registry digest for ${tag} after push (have: ${digests.join(", ") || "none"})`);
  return match;
}

/**
 * Builds the image (and pushes it when `push`); returns the tag, or the pushed digest reference.
 * @param {ImageOptions} options
 * @param {{ push: boolean }} mode
 * @returns {Promise<string>}
 */
export async function buildImage(options, { push }) {
  await buildAgent();
  const [contextTarballs, cleanup] = stageTarballs(options.tarballs);
  try {
    const { args, network } = dockerBuildArgs(options, contextTarballs);
    // A release mirror on the loopback is reachable from the build's RUN steps only with host networking.
    const buildArgs = [...(network ? ["--network", network] : []), ...Object.entries(args).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`])];
    if (options.platforms.length > 1) {
      // Several platforms make a manifest list, which only buildx builds and which lives only in a registry.
      if (!push) throw new UsageError("several --platform values need `image:push` (a multi-platform image exists only in a registry)");
      run("docker", ["buildx", "build", "--platform", options.platforms.join(","), ...buildArgs, "-f", DOCKERFILE, "-t", options.tag, "--push", CONTEXT]);
      const inspect = spawnSync("docker", ["buildx", "imagetools", "inspect", "--format", "{{json .Manifest.Digest}}", options.tag], { encoding: "utf8" });
      if (inspect.status !== 0) throw new UsageError(`docker buildx imagetools inspect ${options.tag}: ${inspect.stderr.trim()}`);
      return `${options.tag.replace(/:[^:/]+$/, "")}@${JSON.parse(inspect.stdout)}`;
    }
    const platform = options.platforms.length === 1 ? ["--platform", options.platforms[0]] : [];
    run("docker", ["build", ...platform, ...buildArgs, "-f", DOCKERFILE, "-t", options.tag, CONTEXT]);
    if (!push) return options.tag;
    run("docker", ["push", options.tag]);
    return pushedDigest(options.tag);
  } finally {
    cleanup();
  }
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  if (command !== "build" && command !== "push") {
    throw new UsageError(
      "usage: image.mjs build|push [--tag REPO:TAG] [--kata-version V] [--shims qemu,fc] [--sha256 ASSET=HEX ...] [--release-url URL] [--tarball PATH ...] [--base-image IMAGE] [--platform P]",
    );
  }
  const reference = await buildImage(parseOptions(rest, process.env), { push: command === "push" });
  process.stdout.write(`${reference}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    process.stderr.write(`image: ${error instanceof UsageError || error?.code?.startsWith?.("ERR_PARSE_ARGS") ? error.message : error?.stack ?? error}\n`);
    process.exit(1);
  });
}
