// `npm run image:build` / `npm run image:push`: builds (and pushes) the kata-deploy image without Pulumi,
// with the same context, Dockerfile and build args as the Pulumi component (see the image contract in
// docs/docker.md). Builds the agent bundle first so the image always carries the current agent.
//
//   node images/kata-deploy/image.mjs build|push [--tag REPO:TAG] [--kata-version V] [--sha256 HEX]
//        [--tarball PATH] [--base-image IMAGE] [--platform linux/amd64[,linux/arm64]]
//
// Every flag has an environment fallback (IMAGE_TAG, KATA_VERSION, KATA_TARBALL_SHA256, KATA_TARBALL,
// BASE_IMAGE, PLATFORM). Progress goes to stderr; `push` prints the pushed `repo@sha256:...` on stdout.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildAgent } from "./agent/build.mjs";

const CONTEXT = path.dirname(fileURLToPath(import.meta.url));
const DOCKERFILE = path.join(CONTEXT, "Dockerfile");
/** Where local tarballs go inside the context (.dockerignore lets kata-static-*.tar.xz through there). */
const LOCAL_TARBALL_DIR = "tarballs";
const TARBALL_NAME = /^kata-static-.+-[a-z0-9]+\.tar\.xz$/;
const SHA256 = /^[0-9a-f]{64}$/;

export class UsageError extends Error {}

/**
 * Reads flags and env into build options. Pure apart from `env`; throws UsageError with the fix.
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
      sha256: { type: "string" },
      tarball: { type: "string" },
      "base-image": { type: "string" },
      platform: { type: "string" },
    },
  });
  // An empty flag or variable means "not given", as it does for the Dockerfile's build args.
  const pick = (flag, variable) => (values[flag] || env[variable] || undefined);
  const options = {
    tag: pick("tag", "IMAGE_TAG") ?? "kata-deploy:latest",
    kataVersion: pick("kata-version", "KATA_VERSION"),
    sha256: pick("sha256", "KATA_TARBALL_SHA256")?.toLowerCase(),
    tarball: pick("tarball", "KATA_TARBALL"),
    baseImage: pick("base-image", "BASE_IMAGE"),
    platforms: pick("platform", "PLATFORM")?.split(",").map((p) => p.trim()).filter(Boolean) ?? [],
  };
  if (options.sha256 !== undefined && !SHA256.test(options.sha256)) {
    throw new UsageError(`--sha256 (KATA_TARBALL_SHA256) must be 64 hex digits, got '${options.sha256}'`);
  }
  if (options.tarball !== undefined) {
    if (!TARBALL_NAME.test(path.basename(options.tarball))) {
      throw new UsageError(`--tarball ${options.tarball}: expected a Kata release file named kata-static-<version>-<arch>.tar.xz`);
    }
    if (!fs.existsSync(options.tarball)) throw new UsageError(`--tarball ${options.tarball}: no such file`);
  } else if (options.kataVersion === undefined || options.sha256 === undefined) {
    throw new UsageError(
      "to download Kata give --kata-version and --sha256 (from the release page), or --tarball PATH for a local kata-static-<version>-<arch>.tar.xz",
    );
  }
  return options;
}

/**
 * The build args the Dockerfile takes, exactly as the Pulumi component passes them.
 * `contextTarball` is the tarball's path relative to the context, when building from a local tarball.
 */
export function dockerBuildArgs(options, contextTarball) {
  /** @type {Record<string, string>} */
  const args = {};
  if (options.baseImage) args.BASE_IMAGE = options.baseImage;
  if (options.kataVersion) args.KATA_VERSION = options.kataVersion;
  if (options.sha256) args.KATA_TARBALL_SHA256 = options.sha256;
  if (contextTarball) args.KATA_TARBALL = contextTarball;
  return args;
}

/**
 * Makes a tarball that lies outside the context visible to the build: a hard link (or copy) in a
 * directory of this build's own under tarballs/, which .dockerignore lets through. Returns
 * [path relative to the context, cleanup].
 */
function stageTarball(tarball) {
  const absolute = path.resolve(tarball);
  const relative = path.relative(CONTEXT, absolute).split(path.sep).join("/");
  if (!relative.startsWith("../") && !path.isAbsolute(relative)) return [relative, () => {}];
  const stagingRoot = path.join(CONTEXT, LOCAL_TARBALL_DIR);
  fs.mkdirSync(stagingRoot, { recursive: true });
  const dir = fs.mkdtempSync(path.join(stagingRoot, "staged-"));
  const staged = path.join(dir, path.basename(absolute));
  try {
    fs.linkSync(absolute, staged); // same file system: no copy of a multi-hundred-MB file
  } catch {
    fs.copyFileSync(absolute, staged);
  }
  return [
    path.relative(CONTEXT, staged).split(path.sep).join("/"),
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

function run(command, args) {
  process.stderr.write(`+ ${command} ${args.join(" ")}\n`);
  const result = spawnSync(command, args, { stdio: ["ignore", process.stderr, "inherit"] });
  if (result.error) throw new UsageError(`${command}: ${result.error.message}`);
  if (result.status !== 0) throw new UsageError(`${command} ${args[0]} failed (exit ${result.status})`);
}

/** The registry digest reference (`repo@sha256:...`) of a pushed tag. */
function pushedDigest(tag) {
  const repository = tag.replace(/@.*$/, "").replace(/:[^:/]+$/, "");
  const result = spawnSync("docker", ["image", "inspect", "--format", "{{json .RepoDigests}}", tag], { encoding: "utf8" });
  if (result.status !== 0) throw new UsageError(`docker image inspect ${tag}: ${result.stderr.trim()}`);
  const digests = JSON.parse(result.stdout);
  const match = digests.find((d) => d.startsWith(`${repository}@`));
  if (!match) throw new UsageError(`no registry digest for ${tag} after push (have: ${digests.join(", ") || "none"})`);
  return match;
}

/** Builds the image (and pushes it when `push`); returns the tag, or the pushed digest reference. */
export async function buildImage(options, { push }) {
  await buildAgent();
  const [contextTarball, cleanup] = options.tarball ? stageTarball(options.tarball) : [undefined, () => {}];
  try {
    const buildArgs = Object.entries(dockerBuildArgs(options, contextTarball)).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]);
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
    throw new UsageError("usage: image.mjs build|push [--tag REPO:TAG] [--kata-version V --sha256 HEX | --tarball PATH] [--base-image IMAGE] [--platform P]");
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
