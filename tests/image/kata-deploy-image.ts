// Builds the real kata-deploy image for tests: the repository's Dockerfile and `image.mjs`, a base image
// made with debootstrap (no registry on the internet is reachable here) and a generated tarball with
// Kata's release layout (no Kata release can be downloaded either). Cached per tarball shape.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { makeKataArtifacts, makeKataTarball, type ArtifactShape } from "../support/kata-artifacts";
import { ensureBaseImage } from "../support/images";

export const REPO_ROOT = path.resolve(__dirname, "../..");
export const IMAGE_CONTEXT = path.join(REPO_ROOT, "images/kata-deploy");
export const IMAGE_SCRIPT = path.join(IMAGE_CONTEXT, "image.mjs");
export const KATA_VERSION = "3.23.0";

/** Paths the image promises (docs/docker.md and the CLI contract). */
export const IMAGE_PATHS = {
  artifacts: "/opt/kata-artifacts",
  payload: "/opt/kata-artifacts/kata-deploy-payload.json",
  agentBundle: "/usr/local/lib/kata-deploy/kata-deploy.cjs",
  kataDeploy: "/usr/local/bin/kata-deploy",
  kataDeployDocker: "/usr/local/bin/kata-deploy-docker",
};

/** Runs a command, returns stdout; on failure throws with its stderr. */
export function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string | Buffer } = {}): string {
  const result = spawnSync(command, args, {
    encoding: "utf8",
    env: options.env ?? process.env,
    input: options.input,
    maxBuffer: 256 << 20,
  });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

/** A release-shaped tarball in a temp dir (named and compressed as release KATA_VERSION was: .tar.zst). */
export function makeTarball(shape: ArtifactShape, arch = "amd64"): { tarball: string; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-tarball-"));
  const root = makeKataArtifacts(path.join(dir, "root"), shape, KATA_VERSION);
  const tarball = makeKataTarball(root, path.join(dir, "out"), KATA_VERSION, arch);
  fs.rmSync(path.join(dir, "root"), { recursive: true, force: true });
  return { tarball, dir };
}

/**
 * `npm run image:build` / `image:push` (node images/kata-deploy/image.mjs) from a local tarball on the
 * trixie test base. Returns what the script prints: the tag (build) or `repo@sha256:...` (push).
 */
export async function runImageScript(
  command: "build" | "push",
  options: { tarball?: string; tag: string; env?: NodeJS.ProcessEnv; extra?: string[] },
): Promise<string> {
  const base = await ensureBaseImage("trixie");
  const args = [IMAGE_SCRIPT, command, ...(options.tarball ? ["--tarball", options.tarball] : []), ...(options.extra ?? []), "--base-image", base, "--tag", options.tag];
  return run(process.execPath, args, { env: options.env }).trim();
}

/** Runs a shell snippet in `image` (entrypoint /bin/sh); returns stdout, stderr and the exit status. */
export function inImage(image: string, script: string, dockerArgs: string[] = []): { stdout: string; stderr: string; status: number | null } {
  const result = spawnSync("docker", ["run", "--rm", ...dockerArgs, "--entrypoint", "/bin/sh", image, "-c", script], { encoding: "utf8" });
  return { stdout: result.stdout, stderr: result.stderr, status: result.status };
}

/** Files and symlinks under /opt/kata-artifacts/opt/kata of `image`, relative to it, sorted. */
export function carriedFiles(image: string): string[] {
  const listed = inImage(image, `cd ${IMAGE_PATHS.artifacts}/opt/kata && find . ! -type d | sed 's|^\\./||' | sort`);
  if (listed.status !== 0) throw new Error(`listing ${image}: ${listed.stderr}`);
  return listed.stdout.split("\n").filter(Boolean);
}

/** Builds `tag` from a fresh tarball of `shape` (the layer cache makes repeats cheap). */
export async function buildKataDeployImage(tag: string, shape: ArtifactShape): Promise<string> {
  const { tarball, dir } = makeTarball(shape);
  try {
    const printed = await runImageScript("build", { tarball, tag });
    if (printed !== tag) throw new Error(`image.mjs build printed '${printed}', expected the tag ${tag}`);
    return tag;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface ImageLayer {
  /** Uncompressed size in bytes, as `docker history` reports it. */
  size: number;
  createdBy: string;
}

/** The image's filesystem layers, bottom first (history entries that add no layer are dropped). */
export function imageLayers(tag: string): ImageLayer[] {
  const lines = run("docker", ["history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag]).trim().split("\n");
  const history = lines.map((line) => JSON.parse(line) as { Size: string; CreatedBy: string }).reverse();
  const diffIds = JSON.parse(run("docker", ["image", "inspect", "--format", "{{json .RootFS.Layers}}", tag])) as string[];
  // An instruction adds a layer unless it only changes metadata; a zero-byte COPY/RUN still adds one, so
  // match history to RootFS by dropping metadata-only instructions (#(nop) without COPY/ADD).
  const layered = history.filter((h) => !/#\(nop\)\s+(?!COPY|ADD)/.test(h.CreatedBy) && !/^(ARG|ENV|CMD|LABEL|ENTRYPOINT|WORKDIR|USER)\b/.test(h.CreatedBy));
  if (layered.length !== diffIds.length) {
    throw new Error(`docker history of ${tag} lists ${layered.length} layers, RootFS has ${diffIds.length}`);
  }
  return layered.map((h) => ({ size: Number(h.Size), createdBy: h.CreatedBy }));
}

export function imageSize(tag: string): number {
  return Number(run("docker", ["image", "inspect", "--format", "{{.Size}}", tag]).trim());
}

export function removeImage(tag: string): void {
  execFileSync("docker", ["image", "rm", "-f", tag], { stdio: "ignore" });
}

export const mebibytes = (bytes: number): string => `${(bytes / (1 << 20)).toFixed(1)} MiB`;
