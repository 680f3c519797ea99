// A real `docker build` of images/kata-deploy/Dockerfile through `npm run image:build`'s script, from a
// debootstrapped base and a generated tarball with Kata's release layout: what the image contains, where,
// and that its two entry points run the bundled agent.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { hasDocker, requireTool } from "../support/env";
import { TINY } from "../support/kata-artifacts";
import { ensureBaseImage } from "../support/images";
import { AGENT_BUNDLE } from "../support/build-agent";
import { IMAGE_PATHS, IMAGE_SCRIPT, IMAGE_CONTEXT, buildKataDeployImage, makeTarball, removeImage, run } from "./kata-deploy-image";

const TAG = `kata-deploy-test/kata-deploy:build-test-${process.pid}`;

/** Runs a shell snippet in the image; returns stdout, stderr and the exit status. */
function inImage(script: string): { stdout: string; stderr: string; status: number | null } {
  const result = spawnSync("docker", ["run", "--rm", "--entrypoint", "/bin/sh", TAG, "-c", script], { encoding: "utf8" });
  return { stdout: result.stdout, stderr: result.stderr, status: result.status };
}

describe("kata-deploy image: docker build", function () {
  this.timeout(10 * 60_000);

  before(async function () {
    requireTool(this, "docker engine", hasDocker());
    await buildKataDeployImage(TAG, TINY);
  });
  after(() => removeImage(TAG));

  it("unpacks the release tarball at /opt/kata-artifacts, keeping its ./opt/kata root, modes and symlinks", () => {
    const { stdout, status } = inImage(
      [
        `cd ${IMAGE_PATHS.artifacts}`,
        "test -x opt/kata/bin/containerd-shim-kata-v2 && echo shim-executable",
        "test -x opt/kata/runtime-rs/bin/containerd-shim-kata-v2 && echo rs-shim-executable",
        "readlink opt/kata/share/defaults/kata-containers/configuration.toml",
        "readlink opt/kata/share/kata-containers/vmlinux.container",
        "ls opt/kata/share/defaults/kata-containers | sort | paste -sd' '",
        "ls -A /tmp | wc -l",
      ].join("; "),
    );
    assert.equal(status, 0);
    assert.deepEqual(stdout.trim().split("\n"), [
      "shim-executable",
      "rs-shim-executable",
      "configuration-qemu.toml",
      "vmlinux-6.12.28-153",
      "configuration-clh.toml configuration-dragonball.toml configuration-fc.toml configuration-qemu-runtime-rs.toml configuration-qemu.toml configuration.toml",
      "0", // the tarball is not left in the image
    ]);
  });

  it("ships the current agent bundle byte-for-byte at the documented path", () => {
    const { stdout, status } = inImage(`sha256sum ${IMAGE_PATHS.agentBundle}`);
    assert.equal(status, 0);
    const local = run("sha256sum", [AGENT_BUNDLE]).split(" ")[0];
    assert.equal(stdout.split(" ")[0], local);
  });

  it("puts kata-deploy and kata-deploy-docker on PATH, running the bundle under the name the agent dispatches on", () => {
    // Until the agent grows its real --help, this proves the wiring itself: each wrapper must run Debian's
    // node on the bundle, with argv[1] named kata-deploy-docker for the Docker flow. A stand-in bundle
    // that prints what node received replaces the real one only inside this throwaway container.
    const probe = `console.log(JSON.stringify({ script: process.argv[1], args: process.argv.slice(2), exec: process.execPath }))`;
    const { stdout, status, stderr } = inImage(
      [
        "command -v kata-deploy",
        "command -v kata-deploy-docker",
        `printf '%s\\n' '${probe}' > ${IMAGE_PATHS.agentBundle}`,
        "kata-deploy install --runtime docker",
        "kata-deploy-docker remove",
      ].join(" && "),
    );
    assert.equal(status, 0, stderr);
    const [kataDeployPath, kataDeployDockerPath, direct, docker] = stdout.trim().split("\n");
    assert.equal(kataDeployPath, IMAGE_PATHS.kataDeploy);
    assert.equal(kataDeployDockerPath, IMAGE_PATHS.kataDeployDocker);
    assert.deepEqual(JSON.parse(direct), { script: IMAGE_PATHS.agentBundle, args: ["install", "--runtime", "docker"], exec: "/usr/bin/node" });
    assert.deepEqual(JSON.parse(docker), {
      script: path.posix.join(path.posix.dirname(IMAGE_PATHS.agentBundle), "kata-deploy-docker"),
      args: ["remove"],
      exec: "/usr/bin/node",
    });
  });

  it("runs `kata-deploy --help` and `kata-deploy-docker --help` with the real agent", function () {
    const help = inImage("kata-deploy --help; echo \"exit=$?\"; kata-deploy-docker --help; echo \"exit=$?\"");
    if (/not implemented yet/.test(help.stderr)) {
      // The node agent (another work item) still ships its placeholder entry point.
      this.skip();
    }
    assert.match(help.stdout, /exit=0[\s\S]*exit=0/, `${help.stdout}\n${help.stderr}`);
    assert.match(help.stdout, /\binstall\b[\s\S]*\buninstall\b/);
    assert.match(help.stdout, /kata-deploy-docker[\s\S]*\bremove\b/);
  });

  it("has Node.js and nsenter, and no package manager caches or build tools left behind", () => {
    const { stdout, status } = inImage(
      "node --version; command -v nsenter; ls -A /var/lib/apt/lists | wc -l; command -v xz curl gcc || true",
    );
    assert.equal(status, 0);
    const [nodeVersion, nsenter, aptLists, ...buildTools] = stdout.trim().split("\n");
    assert.match(nodeVersion, /^v(\d+)\./);
    assert.ok(Number(/^v(\d+)/.exec(nodeVersion)![1]) >= 20, `the bundle targets node20, image has ${nodeVersion}`);
    assert.equal(nsenter, "/usr/bin/nsenter");
    assert.equal(aptLists, "0");
    assert.deepEqual(buildTools, [], "xz/curl belong to the artifacts stage only");
  });
});

describe("kata-deploy image: bad build inputs fail with the reason", function () {
  this.timeout(5 * 60_000);
  let tarballDir: string | undefined;
  before(function () {
    requireTool(this, "docker engine", hasDocker());
  });
  after(() => {
    if (tarballDir) fs.rmSync(tarballDir, { recursive: true, force: true });
  });

  it("refuses a tarball whose sha256 differs from KATA_TARBALL_SHA256, naming both sums", async () => {
    const base = await ensureBaseImage("trixie");
    const made = makeTarball(TINY);
    tarballDir = made.dir;
    const wrong = "0".repeat(64);
    const result = spawnSync(
      process.execPath,
      [IMAGE_SCRIPT, "build", "--tarball", made.tarball, "--sha256", wrong, "--base-image", base, "--tag", "kata-deploy-test/kata-deploy:bad-sum"],
      { encoding: "utf8" },
    );
    assert.notEqual(result.status, 0);
    const actual = run("sha256sum", [made.tarball]).split(" ")[0];
    assert.match(result.stderr, new RegExp(`sha256 is ${actual}, build arg KATA_TARBALL_SHA256 says ${wrong}`));
    assert.equal(spawnSync("docker", ["image", "inspect", "kata-deploy-test/kata-deploy:bad-sum"]).status, 1, "no image tagged");
    assert.deepEqual(fs.readdirSync(IMAGE_CONTEXT).filter((f) => f === "tarballs"), [], "the staged tarball is cleaned up");
  });

  it("refuses to download without a checksum, before running docker", () => {
    const result = spawnSync(process.execPath, [IMAGE_SCRIPT, "build", "--kata-version", "3.23.0"], {
      encoding: "utf8",
      env: { ...process.env, KATA_TARBALL_SHA256: "", KATA_TARBALL: "" },
    });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /give --kata-version and --sha256 .* or --tarball PATH/);
    assert.doesNotMatch(result.stderr, /\+ docker/);
  });

  it("refuses a tarball that is not named like a release", () => {
    const stray = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "kata-bad-")), "kata.tar.xz");
    fs.writeFileSync(stray, "");
    const result = spawnSync(process.execPath, [IMAGE_SCRIPT, "build", "--tarball", stray], { encoding: "utf8" });
    fs.rmSync(path.dirname(stray), { recursive: true, force: true });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /expected a Kata release file named kata-static-<version>-<arch>\.tar\.xz/);
  });
});
