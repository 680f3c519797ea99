// The image pushed for real: `npm run image:push` to a registry that requires htpasswd credentials, pulled
// back by digest; and the layer economy the Dockerfile's layer order promises: after an agent-only
// change, a rebuild shares every layer but the agent's, and a push uploads only that one.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { commandWorks, hasDocker, requireTool } from "../support/env";
import { ensureBaseImage } from "../support/images";
import { RELEASE_LIKE } from "../support/kata-artifacts";
import { AGENT_BUNDLE } from "../support/build-agent";
import { IMAGE_CONTEXT, IMAGE_PATHS, KATA_VERSION, imageLayers, imageSize, makeTarball, mebibytes, run, runImageScript } from "./kata-deploy-image";
import { startLocalRegistry, type LocalRegistry } from "./local-registry";

const REPOSITORY = "kata-deploy";

function diffIds(image: string): string[] {
  return JSON.parse(run("docker", ["image", "inspect", "--format", "{{json .RootFS.Layers}}", image])) as string[];
}
function imageId(image: string): string {
  return run("docker", ["image", "inspect", "--format", "{{.Id}}", image]).trim();
}

describe("kata-deploy image: push to a registry with htpasswd auth, and layer economy @integration", function () {
  this.timeout(20 * 60_000);
  let registry: LocalRegistry;
  let tarballDir: string;
  let tarball: string;
  let first: { tag: string; digestRef: string; id: string };
  const cleanupImages: string[] = [];

  before(async function () {
    requireTool(this, "docker engine", hasDocker());
    requireTool(this, "docker-registry (Debian package docker-registry)", commandWorks("docker-registry", ["--version"]));
    requireTool(this, "htpasswd (Debian package apache2-utils)", commandWorks("htpasswd", ["-nbB", "u", "p"]));
    await ensureBaseImage("trixie");
    registry = await startLocalRegistry();
    // Release-like size (~330 MB, ~2,000 files) so the size and share figures mean something.
    ({ tarball, dir: tarballDir } = makeTarball(RELEASE_LIKE));
  });

  after(async () => {
    for (const image of cleanupImages) spawnSync("docker", ["image", "rm", "-f", image], { stdio: "ignore" });
    if (tarballDir) fs.rmSync(tarballDir, { recursive: true, force: true });
    if (registry) await registry.stop();
  });

  it("refuses a push without credentials", async () => {
    const tag = `${registry.address}/${REPOSITORY}:unauthenticated`;
    const base = await ensureBaseImage("trixie");
    run("docker", ["tag", base, tag]);
    cleanupImages.push(tag);
    const push = spawnSync("docker", ["push", tag], { encoding: "utf8", env: registry.env });
    assert.notEqual(push.status, 0);
    assert.match(push.stderr, /no basic auth credentials|unauthorized/);
    assert.equal(registry.storedBytes(), 0, "nothing was stored");
  });

  it("`image:push` logs in with the stored credentials, pushes, and prints the digest reference", async () => {
    registry.login();
    const tag = `${registry.address}/${REPOSITORY}:v1`;
    const digestRef = await runImageScript("push", { tarball, tag, env: registry.env });
    cleanupImages.push(tag);
    assert.match(digestRef, new RegExp(`^${registry.address.replace(/\./g, "\\.")}/${REPOSITORY}@sha256:[0-9a-f]{64}$`));
    first = { tag, digestRef, id: imageId(tag) };
    // The registry serves exactly the layers the local image has (compressed; counted per layer).
    const manifest = await registry.manifest(REPOSITORY, digestRef.split("@")[1]);
    assert.equal(manifest.layers.length, diffIds(tag).length);
    assert.equal(manifest.config.digest, first.id, "the image id is the pushed config's digest");
  });

  it("after an agent-only change, shares every layer but the agent's and pushes only that one", async () => {
    const before = registry.storedBytes();
    // "Change only agent code": a copy of the build context whose bundle differs by one comment, built
    // with the same build args image.mjs passed (the staged tarball path included).
    const context = fs.mkdtempSync(path.join(os.tmpdir(), "kata-context-"));
    cleanupImages.push(`${registry.address}/${REPOSITORY}:v2`);
    try {
      for (const file of ["Dockerfile", ".dockerignore", "kata-deploy", "kata-deploy-docker"]) {
        fs.copyFileSync(path.join(IMAGE_CONTEXT, file), path.join(context, file));
        fs.chmodSync(path.join(context, file), fs.statSync(path.join(IMAGE_CONTEXT, file)).mode);
      }
      fs.mkdirSync(path.join(context, "release/dist"), { recursive: true });
      fs.copyFileSync(path.join(IMAGE_CONTEXT, "release/dist/kata-release.cjs"), path.join(context, "release/dist/kata-release.cjs"));
      fs.mkdirSync(path.join(context, "agent/dist"), { recursive: true });
      fs.writeFileSync(path.join(context, "agent/dist/kata-deploy.cjs"), `${fs.readFileSync(AGENT_BUNDLE, "utf8")}\n// changed ${Date.now()}\n`);
      fs.copyFileSync(`${AGENT_BUNDLE}.map`, path.join(context, "agent/dist/kata-deploy.cjs.map"));
      fs.mkdirSync(path.join(context, "tarballs"));
      fs.linkSync(tarball, path.join(context, "tarballs", path.basename(tarball)));
      const base = await ensureBaseImage("trixie");
      const tag = `${registry.address}/${REPOSITORY}:v2`;
      run("docker", [
        "build",
        "--build-arg", `BASE_IMAGE=${base}`,
        "--build-arg", `KATA_VERSION=${KATA_VERSION}`,
        "--build-arg", `KATA_TARBALL=tarballs/${path.basename(tarball)}`,
        "-t", tag, context,
      ]);

      const [a, b] = [diffIds(first.tag), diffIds(tag)];
      assert.equal(b.length, a.length);
      assert.deepEqual(b.slice(0, -1), a.slice(0, -1), "every layer below the agent's is reused");
      assert.notEqual(b.at(-1), a.at(-1), "the agent layer changed");

      const push = run("docker", ["push", tag], { env: registry.env });
      const pushed = push.split("\n").filter((line) => /: Pushed$/.test(line.trim()));
      const reused = push.split("\n").filter((line) => /: Layer already exists$/.test(line.trim()));
      assert.equal(pushed.length, 1, push);
      assert.equal(reused.length, a.length - 1, push);
      const uploaded = registry.storedBytes() - before;

      // Figures for the README / closing note: the bundle is far below 10 MiB; everything else was reused.
      const bundleBytes = fs.statSync(AGENT_BUNDLE).size;
      assert.ok(uploaded < bundleBytes + (64 << 10), `uploaded ${uploaded} bytes for a ${bundleBytes}-byte bundle`);
      const layers = imageLayers(tag);
      const artifactLayer = layers.find((l) => /COPY/.test(l.createdBy) && l.createdBy.includes(IMAGE_PATHS.artifacts));
      assert.ok(artifactLayer, "the artifacts have their own COPY layer");
      const manifest = await registry.manifest(REPOSITORY, "v2");
      const compressedTotal = manifest.layers.reduce((sum, l) => sum + l.size, 0);
      const compressedArtifacts = manifest.layers[layers.indexOf(artifactLayer)].size;
      const size = imageSize(tag);
      console.log(
        [
          `      image size ${mebibytes(size)} (${size} bytes) uncompressed, ${mebibytes(compressedTotal)} compressed in the registry`,
          `      artifact layer ${mebibytes(artifactLayer.size)} = ${((100 * artifactLayer.size) / size).toFixed(1)}% of the image` +
            ` (${((100 * compressedArtifacts) / compressedTotal).toFixed(1)}% compressed)`,
          `      layers (uncompressed): ${layers.map((l) => mebibytes(l.size)).join(" | ")}`,
          `      push after an agent-only change: ${pushed.length} of ${a.length} layers uploaded, registry grew ${uploaded} bytes` +
            ` (agent bundle ${bundleBytes} bytes uncompressed)`,
        ].join("\n"),
      );
    } finally {
      fs.rmSync(context, { recursive: true, force: true });
    }
  });

  it("default shims vs all shims: image bytes (local and in the registry), bytes copied to a node, install time", async () => {
    // Figures for the README's "Measured numbers" (release-like generated artifacts: RELEASE_LIKE in
    // tests/support/kata-artifacts.ts; real Kata files compress better than these random bytes).
    const all = `${registry.address}/${REPOSITORY}:all-shims`;
    await runImageScript("push", { tarball, tag: all, env: registry.env, extra: ["--shims", "qemu,fc,clh,dragonball,qemu-runtime-rs"] });
    cleanupImages.push(all);
    const measure = async (tag: string, reference: string, shims: string) => {
      const manifest = await registry.manifest(REPOSITORY, reference);
      const layers = imageLayers(tag);
      const artifacts = layers.findIndex((l) => l.createdBy.includes(IMAGE_PATHS.artifacts));
      const hostDir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-node-"));
      try {
        // Onto a host directory on disk (the agent fsyncs what it copies), CRI-O drop-in, no restart.
        const out = run("docker", ["run", "--rm", "-v", `${hostDir}:/host`, "--entrypoint", "/bin/sh", tag, "-c",
          `s=$(date +%s%N); kata-deploy install --runtime crio --host-root /host --artifacts ${IMAGE_PATHS.artifacts} --shims ${shims} >/dev/null; e=$(date +%s%N); ` +
          `echo $(( (e - s) / 1000000 )) $(du -sb --exclude=.kata-deploy /host/opt/kata | cut -f1) $(find /host/opt/kata ! -type d ! -path '*/.kata-deploy*' | wc -l)`]);
        const [ms, bytes, files] = out.trim().split(" ").map(Number);
        return {
          image: imageSize(tag),
          registry: manifest.layers.reduce((sum, l) => sum + l.size, 0),
          artifacts: layers[artifacts].size,
          artifactsCompressed: manifest.layers[artifacts].size,
          copied: bytes,
          files,
          ms,
        };
      } finally {
        fs.rmSync(hostDir, { recursive: true, force: true });
      }
    };
    const defaults = await measure(first.tag, first.digestRef.split("@")[1], "qemu,fc");
    const every = await measure(all, "all-shims", "qemu,fc,clh,dragonball,qemu-runtime-rs");
    assert.ok(defaults.artifacts < every.artifacts, "the default shims' payload is smaller than all shims'");
    assert.ok(defaults.copied < every.copied);
    const layers = imageLayers(first.tag);
    const manifest = await registry.manifest(REPOSITORY, first.digestRef.split("@")[1]);
    const runtimeLayer = layers.findIndex((l) => /apt-get install .*nodejs/.test(l.createdBy));
    const base = await ensureBaseImage("trixie");
    for (const [name, m] of [["qemu,fc", defaults], ["all 5 shims", every]] as const) {
      console.log(
        `      ${name}: image ${mebibytes(m.image)} uncompressed / ${mebibytes(m.registry)} in the registry; payload layer ${mebibytes(m.artifacts)} / ${mebibytes(m.artifactsCompressed)};` +
          ` copied to the node ${mebibytes(m.copied)} in ${m.files} files, install ${m.ms} ms`,
      );
    }
    console.log(
      `      around the payload: base ${mebibytes(imageSize(base))} (debootstrap minbase), runtime layer (nodejs, systemd) ${mebibytes(layers[runtimeLayer].size)} uncompressed / ` +
        `${mebibytes(manifest.layers[runtimeLayer].size)} compressed; wrappers + agent ${mebibytes(layers.slice(runtimeLayer + 2).reduce((sum, l) => sum + l.size, 0))}`,
    );
  });

  it("pulls the first push back by digest, with credentials only", () => {
    // Drop every local copy so the pull really downloads (only the shared base layer stays local).
    for (const image of [first.tag, `${registry.address}/${REPOSITORY}:v2`]) run("docker", ["image", "rm", "-f", image]);
    assert.notEqual(spawnSync("docker", ["image", "inspect", first.id]).status, 0, "the image is gone locally");

    registry.logout();
    const denied = spawnSync("docker", ["pull", first.digestRef], { encoding: "utf8", env: registry.env });
    assert.notEqual(denied.status, 0);
    assert.match(denied.stderr, /no basic auth credentials|unauthorized/);

    registry.login();
    run("docker", ["pull", first.digestRef], { env: registry.env });
    cleanupImages.push(first.digestRef);
    assert.equal(imageId(first.digestRef), first.id, "same image id (config digest) as was pushed");
    const check = run("docker", ["run", "--rm", "--entrypoint", "/bin/sh", first.digestRef, "-c", `test -x ${IMAGE_PATHS.artifacts}/opt/kata/bin/containerd-shim-kata-v2 && test -f ${IMAGE_PATHS.agentBundle} && echo ok`]);
    assert.equal(check.trim(), "ok");
  });
});
