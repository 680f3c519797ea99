// Runs inside the image build (Dockerfile, builder stage; bundled to release/dist/kata-release.cjs):
// fetches (or takes from the build context) exactly the release assets the chosen shims need, verifies
// each by sha256, unpacks them (xz or zstd), keeps only the files those shims use (select.mjs) and writes
// /opt/kata-artifacts/opt/kata/... plus /opt/kata-artifacts/kata-deploy-payload.json.
// Inputs are the Dockerfile's build args (image contract, docs/docker.md), read from the environment.
import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { DEFAULT_KATA_VERSION, DEFAULT_RELEASE_URL, DEFAULT_SHIMS, digestsFor, parseSha256, parseShims, parseVersion, releaseArch, releaseAssets, ReleaseError } from "./assets.mjs";
import { selectShim } from "./select.mjs";

export const PAYLOAD_FILE = "kata-deploy-payload.json";

/** @param {string} file */
function sha256Of(file) {
  const hash = createHash("sha256");
  const fd = fs.openSync(file, "r");
  try {
    const buffer = Buffer.alloc(1 << 20);
    for (let n; (n = fs.readSync(fd, buffer, 0, buffer.length, null)) > 0; ) hash.update(buffer.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

/** @param {string} command @param {string[]} args */
function run(command, args) {
  const result = spawnSync(command, args, { encoding: "utf8", stdio: ["ignore", "inherit", "pipe"] });
  if (result.error) throw new ReleaseError(`${command}: ${result.error.message}`);
  return { status: result.status ?? 1, stderr: result.stderr.trim() };
}

/**
 * Maps a KATA_TARBALLS entry (a path in the build context) to where the Dockerfile copied it:
 * `tarballs/<rest>` -> `<localDir>/<rest>`, a top-level `<name>` -> `<localDir>/<name>`.
 * @param {string} entry @param {string} localDir
 */
export function localPath(entry, localDir) {
  const rel = entry.replace(/^\.\//, "");
  if (rel.startsWith("tarballs/")) return path.join(localDir, rel.slice("tarballs/".length));
  if (!rel.includes("/")) return path.join(localDir, rel);
  throw new ReleaseError(`KATA_TARBALLS: ${entry}: put local release assets at the top of the build context or under tarballs/ (the Dockerfile copies only those)`);
}

/**
 * @param {{ env: Record<string, string | undefined>; arch: string; localDir: string; workDir: string; outDir: string; log: (line: string) => void }} io
 */
export function buildPayload({ env, arch: rawArch, localDir, workDir, outDir, log }) {
  const version = env.KATA_VERSION || DEFAULT_KATA_VERSION;
  const shims = parseShims(env.KATA_SHIMS || DEFAULT_SHIMS.join(","));
  const arch = releaseArch(rawArch);
  const releaseUrl = (env.KATA_RELEASE_URL || DEFAULT_RELEASE_URL).replace(/\/+$/, "");
  const assets = releaseAssets({ version, arch, shims });
  const digests = digestsFor(assets, parseSha256(env.KATA_SHA256 || env.KATA_TARBALL_SHA256 || ""));
  const localEntries = (env.KATA_TARBALLS || env.KATA_TARBALL || "").split(",").map((e) => e.trim()).filter((e) => e !== "");
  /** @type {Map<string, string>} */
  const local = new Map();
  for (const entry of localEntries) {
    const file = localPath(entry, localDir);
    const name = path.basename(entry);
    if (!fs.existsSync(file)) throw new ReleaseError(`KATA_TARBALLS: ${entry} is not in the build context`);
    const other = /^kata-(?:go-)?static-(.+)-[a-z0-9]+\.tar\.(?:xz|zst)$/.exec(name);
    if (other && other[1] !== version) {
      throw new ReleaseError(`KATA_TARBALLS: ${name} is release ${other[1]}, but KATA_VERSION is ${version}; pass KATA_VERSION=${other[1]}`);
    }
    if (!assets.some((a) => a.name === name)) {
      log(`${name}: not needed for shims ${shims.join(",")} (this build uses ${assets.map((a) => a.name).join(", ")}); ignored`);
      continue;
    }
    local.set(name, file);
  }
  for (const asset of assets) {
    if (!local.has(asset.name) && digests[asset.name] === undefined) {
      throw new ReleaseError(
        `KATA_SHA256 has no digest for ${asset.name} (needed for shims ${asset.shims.join(",")}): add ${asset.name}=<sha256 from the release page> ` +
          `(${releaseUrl.replace(/\/download$/, "/tag")}/${version}), or pass the file in KATA_TARBALLS`,
      );
    }
  }

  fs.mkdirSync(workDir, { recursive: true });
  const payloadAssets = [];
  /** @type {Record<string, import("./select.mjs").ShimSelection & { asset: string }>} */
  const selections = {};
  /** @type {Map<string, string>} release-relative path -> unpacked opt/kata it is copied from */
  const chosen = new Map();
  for (const asset of assets) {
    let file = local.get(asset.name);
    const source = file ? "build context" : `${releaseUrl}/${version}/${asset.name}`;
    if (!file) {
      file = path.join(workDir, asset.name);
      log(`downloading ${source}`);
      const curl = run("curl", ["-fsSL", "--retry", "3", "-o", file, source]);
      if (curl.status !== 0) {
        const missing = /\b404\b/.test(curl.stderr);
        throw new ReleaseError(
          missing
            ? `${asset.name}: not found at ${source} (HTTP 404): release ${version} publishes no such asset, or KATA_RELEASE_URL is not a mirror of the release page`
            : `${asset.name}: could not download ${source}: ${curl.stderr.split("\n").pop()}`,
        );
      }
    }
    const actual = sha256Of(file);
    const expected = digests[asset.name];
    if (expected !== undefined && expected !== actual) {
      throw new ReleaseError(`${asset.name}: sha256 is ${actual}, KATA_SHA256 says ${expected}`);
    }
    if (expected === undefined) log(`${asset.name}: from the build context, no digest given (sha256 ${actual})`);
    const into = path.join(workDir, asset.kind);
    fs.mkdirSync(into, { recursive: true });
    const tar = run("tar", ["-x", "--numeric-owner", "-I", asset.compression === "xz" ? "xz" : "zstd", "-f", file, "-C", into]);
    if (tar.status !== 0) throw new ReleaseError(`${asset.name}: cannot unpack it as a ${asset.compression} tarball: ${tar.stderr.split("\n").pop()}`);
    const kataDir = path.join(into, "opt/kata");
    if (!fs.existsSync(kataDir)) throw new ReleaseError(`${asset.name} has no ./opt/kata: not a Kata release asset`);
    payloadAssets.push({ name: asset.name, sha256: actual, bytes: fs.statSync(file).size, shims: asset.shims });
    for (const shim of asset.shims) {
      const selection = selectShim(kataDir, shim, asset.name);
      selections[shim] = { ...selection, asset: asset.name };
      for (const rel of selection.files) if (!chosen.has(rel)) chosen.set(rel, kataDir);
      log(`${shim}: ${selection.files.length} files from ${asset.name} (hypervisor ${selection.hypervisor ?? "built into the shim"})`);
    }
    if (!local.has(asset.name)) fs.rmSync(file);
  }

  const outKata = path.join(outDir, "opt/kata");
  let bytes = 0;
  // Every time stamp comes from the release (the newest one for directories and the payload file), so the
  // same inputs give the same layer, byte for byte, whether this step ran again or came from the cache.
  let newest = new Date(0);
  /** @type {Map<string, number>} */
  const directories = new Map();
  for (const rel of [...chosen.keys()].sort()) {
    const from = path.join(/** @type {string} */ (chosen.get(rel)), rel);
    const to = path.join(outKata, rel);
    const stat = fs.lstatSync(from);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    if (stat.mtime > newest) newest = stat.mtime;
    if (stat.isSymbolicLink()) {
      fs.symlinkSync(fs.readlinkSync(from), to);
      fs.lutimesSync(to, stat.atime, stat.mtime);
    } else if (stat.isDirectory()) {
      fs.mkdirSync(to, { recursive: true });
      directories.set(to, stat.mode & 0o7777);
    } else {
      fs.copyFileSync(from, to);
      fs.chmodSync(to, stat.mode & 0o7777);
      fs.utimesSync(to, stat.atime, stat.mtime);
      bytes += stat.size;
    }
  }
  const payload = {
    version,
    arch,
    shims,
    assets: payloadAssets,
    runtimes: Object.fromEntries(
      shims.map((shim) => {
        const s = selections[shim];
        return [shim, { runtime: s.runtime, asset: s.asset, binary: s.binary, config: s.config, hypervisor: s.hypervisor ?? null }];
      }),
    ),
    files: [...chosen.keys()].length,
    bytes,
  };
  fs.writeFileSync(path.join(outDir, PAYLOAD_FILE), `${JSON.stringify(payload, null, 2)}\n`);
  fs.utimesSync(path.join(outDir, PAYLOAD_FILE), newest, newest);
  /** @param {string} dir */
  const stamp = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) stamp(path.join(dir, entry.name));
    if (directories.has(dir)) fs.chmodSync(dir, /** @type {number} */ (directories.get(dir)));
    fs.utimesSync(dir, newest, newest);
  };
  stamp(outDir);
  fs.rmSync(workDir, { recursive: true, force: true });
  log(`carries ${shims.join(",")} of Kata ${version} (${arch}): ${payload.files} files, ${bytes} bytes`);
  return payload;
}

/** Entry point of the bundle: `node kata-release.cjs <arch>`. */
export function main() {
  try {
    parseVersion(process.env.KATA_VERSION || DEFAULT_KATA_VERSION);
    buildPayload({
      env: process.env,
      arch: process.argv[2] ?? "",
      localDir: "/tmp/kata-local",
      workDir: "/tmp/kata-work",
      outDir: "/opt/kata-artifacts",
      log: (line) => process.stdout.write(`kata-deploy image: ${line}\n`),
    });
  } catch (error) {
    if (!(error instanceof ReleaseError)) throw error;
    process.stderr.write(`kata-deploy image: ${error.message}\n`);
    process.exitCode = 1;
  }
}
