// Real builds of images/kata-deploy/Dockerfile, through `npm run image:build`'s script and through plain
// `docker build`, from a debootstrapped base and Kata release assets laid out per version as Kata
// publishes them (tests/support/kata-artifacts.ts makeReleaseAssets: 3.20 one .tar.xz, 3.29 one .tar.zst,
// 4.1 kata-static + kata-go-static), downloaded from a release mirror on the loopback
// (tests/support/release-mirror.ts, GitHub's `<base>/<version>/<asset>` URLs) or taken from local files.
// Then the image's own agent installs onto a host root: what lands is what the chosen shims need.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { hasDocker, requireTool } from "../support/env";
import { makeReleaseAssets, type FixtureAsset, type ReleaseStyle } from "../support/kata-artifacts";
import { ensureBaseImage } from "../support/images";
import { AGENT_BUNDLE } from "../support/build-agent";
import { startReleaseMirror, type ReleaseMirror } from "../support/release-mirror";
import { IMAGE_CONTEXT, IMAGE_PATHS, IMAGE_SCRIPT, carriedFiles, inImage, removeImage, run } from "./kata-deploy-image";

const TAG = (name: string): string => `kata-deploy-test/kata-deploy:${name}-${process.pid}`;
const HEX0 = "0".repeat(64);

/** Installs with the image's agent onto an empty host root (CRI-O drop-in, no restart); lists what landed. */
function installInImage(image: string, shims: string): { status: number | null; stdout: string; stderr: string } {
  return inImage(
    image,
    [
      "mkdir -p /host",
      `kata-deploy install --runtime crio --host-root /host --artifacts ${IMAGE_PATHS.artifacts} --shims ${shims} >/dev/null`,
      "cd /host/opt/kata && find . ! -type d ! -path './.kata-deploy*' | sed 's|^\\./||' | sort",
      "echo ---",
      "cat /host/etc/crio/crio.conf.d/*kata*",
    ].join(" && "),
  );
}

describe("kata-deploy image: docker build from Kata releases as published @integration", function () {
  this.timeout(15 * 60_000);
  let dir: string;
  let mirror: ReleaseMirror;
  let base: string;
  const assets: Record<string, FixtureAsset> = {};
  const images: string[] = [];

  before(async function () {
    requireTool(this, "docker engine", hasDocker());
    base = await ensureBaseImage("trixie");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-image-"));
    const served: Record<string, string> = {};
    for (const style of ["3.20", "3.29", "4.1"] as ReleaseStyle[]) {
      for (const asset of makeReleaseAssets(path.join(dir, style), style)) {
        assets[asset.name] = asset;
        // 3.20's asset is given as a local file only, so a download of it would 404.
        if (style !== "3.20") served[`${asset.name.replace(/^kata-(?:go-)?static-([^-]+)-.*$/, "$1")}/${asset.name}`] = asset.file;
      }
    }
    mirror = await startReleaseMirror(served);
  });
  after(async () => {
    for (const image of images) removeImage(image);
    await mirror?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe("4.1 split release, default shims, `npm run image:build` from the loopback mirror", () => {
    const tag = TAG("v41");
    const go = (): FixtureAsset => assets["kata-go-static-4.1.0-amd64.tar.zst"];
    before(() => {
      const printed = run(process.execPath, [IMAGE_SCRIPT, "build", "--release-url", mirror.url, "--sha256", `${go().name}=${go().sha256}`, "--base-image", base, "--tag", tag]).trim();
      images.push(tag);
      assert.equal(printed, tag);
    });

    it("fetched only kata-go-static (qemu and fc are Go-runtime shims) and records it in the payload file", async () => {
      await new Promise((resolve) => setTimeout(resolve, 100)); // let the mirror's log reach us
      const downloads = mirror.requests().filter((r) => r.includes("/releases/download/4.1.0/"));
      // Cached builds fetch nothing; a fresh one fetches exactly the one asset.
      assert.ok(downloads.every((r) => r.endsWith("/kata-go-static-4.1.0-amd64.tar.zst")), downloads.join(" "));
      const payload = JSON.parse(inImage(tag, `cat ${IMAGE_PATHS.payload}`).stdout) as { version: string; arch: string; shims: string[]; assets: { name: string; sha256: string }[] };
      assert.equal(payload.version, "4.1.0");
      assert.equal(payload.arch, "amd64");
      assert.deepEqual(payload.shims, ["qemu", "fc"]);
      assert.deepEqual(payload.assets.map((a) => [a.name, a.sha256]), [[go().name, go().sha256]]);
    });

    it("carries qemu's and fc's files and nothing of the release they do not use", () => {
      const carried = carriedFiles(tag);
      const expected = [
        "bin/containerd-shim-kata-v2", "bin/firecracker", "bin/jailer", "bin/kata-runtime", "bin/qemu-system-x86_64",
        "libexec/virtiofsd",
        "share/defaults/kata-containers/configuration-fc.toml", "share/defaults/kata-containers/configuration-qemu.toml",
        "share/kata-containers/kata-containers.img", "share/kata-containers/kata-ubuntu-noble.image",
        "share/kata-containers/vmlinux-6.12.47-172", "share/kata-containers/vmlinux.container",
      ];
      const qemuData = go().entries.filter((e) => e.startsWith("share/kata-qemu/"));
      assert.deepEqual(carried, [...expected, ...qemuData].sort());
      const notCarried = go().entries.filter((e) => !carried.includes(e));
      for (const left of ["bin/cloud-hypervisor", "bin/kata-monitor", "libexec/nydusd", "bin/qemu-system-x86_64-snp-experimental", "share/kata-containers/kata-containers-initrd.img", "share/defaults/kata-containers/configuration-clh.toml"]) {
        assert.ok(notCarried.includes(left), left);
      }
      // Modes and symlinks as released.
      const probe = inImage(tag, `cd ${IMAGE_PATHS.artifacts}/opt/kata && test -x bin/firecracker && readlink share/kata-containers/vmlinux.container && ls -A /tmp | wc -l`);
      assert.deepEqual(probe.stdout.trim().split("\n"), ["vmlinux-6.12.47-172", "0"]);
    });

    it("its agent installs exactly what the image carries, and configures both shims", () => {
      const result = installInImage(tag, "qemu,fc");
      assert.equal(result.status, 0, result.stderr);
      const [installed, dropIn] = result.stdout.split("---\n");
      // The release tree as carried, plus Kata's configuration per runtime handler the agent writes beside it
      // (a copy of the release's file for each handler, which CRI-O's runtime_config_path names).
      const HANDLER_CONFIGS = "share/defaults/kata-containers/runtimes/";
      const files = installed.trim().split("\n");
      assert.deepEqual(files.filter((file) => !file.startsWith(HANDLER_CONFIGS)), carriedFiles(tag));
      assert.deepEqual(files.filter((file) => file.startsWith(HANDLER_CONFIGS)), [
        `${HANDLER_CONFIGS}crio/kata-fc/configuration-fc.toml`,
        `${HANDLER_CONFIGS}crio/kata-qemu/configuration-qemu.toml`,
      ]);
      assert.match(dropIn, new RegExp(`runtime_config_path = "/opt/kata/${HANDLER_CONFIGS}crio/kata-qemu/configuration-qemu\\.toml"`));
      assert.match(dropIn, new RegExp(`runtime_config_path = "/opt/kata/${HANDLER_CONFIGS}crio/kata-fc/configuration-fc\\.toml"`));
    });

    it("refuses to install a shim the image does not carry, in one line naming the shim and the fix", () => {
      const result = inImage(tag, `mkdir -p /host && kata-deploy install --runtime crio --host-root /host --artifacts ${IMAGE_PATHS.artifacts} --shims qemu,clh; echo "exit=$?"; ls -A /host`);
      assert.match(result.stdout, /exit=1\n$/, "nothing written to the host root");
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^kata-deploy: --shims clh: this image carries only qemu,fc \(Kata 4\.1\.0, .*kata-deploy-payload\.json\); rebuild the image with clh in its shims/);
    });

    it("ships the current agent bundle byte-for-byte at the documented path", () => {
      const { stdout, status } = inImage(tag, `sha256sum ${IMAGE_PATHS.agentBundle}`);
      assert.equal(status, 0);
      assert.equal(stdout.split(" ")[0], run("sha256sum", [AGENT_BUNDLE]).split(" ")[0]);
    });

    it("puts kata-deploy and kata-deploy-docker on PATH, running the bundle under the name the agent dispatches on", () => {
      // A stand-in bundle that prints what node received replaces the real one only inside this throwaway container.
      const probe = `console.log(JSON.stringify({ script: process.argv[1], args: process.argv.slice(2), exec: process.execPath }))`;
      const { stdout, status, stderr } = inImage(
        tag,
        ["command -v kata-deploy", "command -v kata-deploy-docker", `printf '%s\\n' '${probe}' > ${IMAGE_PATHS.agentBundle}`, "kata-deploy install --runtime docker", "kata-deploy-docker remove"].join(" && "),
      );
      assert.equal(status, 0, stderr);
      const [kataDeployPath, kataDeployDockerPath, direct, docker] = stdout.trim().split("\n");
      assert.equal(kataDeployPath, IMAGE_PATHS.kataDeploy);
      assert.equal(kataDeployDockerPath, IMAGE_PATHS.kataDeployDocker);
      assert.deepEqual(JSON.parse(direct), { script: IMAGE_PATHS.agentBundle, args: ["install", "--runtime", "docker"], exec: "/usr/bin/node" });
      assert.deepEqual(JSON.parse(docker), { script: path.posix.join(path.posix.dirname(IMAGE_PATHS.agentBundle), "kata-deploy-docker"), args: ["remove"], exec: "/usr/bin/node" });
    });

    it("runs `kata-deploy --help` and `kata-deploy-docker --help` with the real agent", () => {
      const help = inImage(tag, "kata-deploy --help; echo \"exit=$?\"; kata-deploy-docker --help; echo \"exit=$?\"");
      assert.match(help.stdout, /exit=0[\s\S]*exit=0/, `${help.stdout}\n${help.stderr}`);
      assert.match(help.stdout, /\binstall\b[\s\S]*\buninstall\b/);
      assert.match(help.stdout, /kata-deploy-docker[\s\S]*\bremove\b/);
    });

    it("has Node.js, nsenter and systemctl, and no package caches, docs or builder tools left behind", () => {
      const { stdout, status } = inImage(tag, "node --version; command -v nsenter; command -v systemctl; ls -A /var/lib/apt/lists | wc -l; ls /usr/share/doc | wc -l; find /usr/share/doc -type f ! -name copyright | wc -l; command -v xz zstd curl gcc || true");
      assert.equal(status, 0);
      const [nodeVersion, nsenter, systemctl, aptLists, docPackages, docFiles, ...buildTools] = stdout.trim().split("\n");
      assert.ok(Number(/^v(\d+)/.exec(nodeVersion)![1]) >= 20, `the bundle targets node20, image has ${nodeVersion}`);
      assert.equal(nsenter, "/usr/bin/nsenter");
      assert.equal(systemctl, "/usr/bin/systemctl");
      assert.equal(aptLists, "0");
      assert.ok(Number(docPackages) > 0, "copyright files stay");
      // The debootstrapped base brings its own docs; the packages this image adds bring none.
      assert.ok(Number(docFiles) < 400, `${docFiles} documentation files`);
      assert.deepEqual(buildTools, [], "xz/zstd/curl belong to the builder stage only");
    });
  });

  it("3.29 (one .tar.zst), runtime-rs and Go shims mixed, plain `docker build --network host` from the mirror", () => {
    const asset = assets["kata-static-3.29.0-amd64.tar.zst"];
    const tag = TAG("v329");
    run("docker", [
      "build", "--network", "host",
      "--build-arg", `BASE_IMAGE=${base}`, "--build-arg", "KATA_VERSION=3.29.0", "--build-arg", "KATA_SHIMS=clh,dragonball",
      "--build-arg", `KATA_SHA256=${asset.sha256}`, "--build-arg", `KATA_RELEASE_URL=${mirror.url}`,
      "-t", tag, IMAGE_CONTEXT,
    ]);
    images.push(tag);
    const result = installInImage(tag, "clh,dragonball");
    assert.equal(result.status, 0, result.stderr);
    const installed = result.stdout.split("---\n")[0].trim().split("\n");
    for (const f of ["bin/containerd-shim-kata-v2", "runtime-rs/bin/containerd-shim-kata-v2", "bin/cloud-hypervisor", "share/defaults/kata-containers/configuration-clh.toml", "share/defaults/kata-containers/runtime-rs/configuration-dragonball.toml", "share/kata-containers/vmlinux-dragonball-experimental.container"]) {
      assert.ok(installed.includes(f), f);
    }
    assert.deepEqual(installed.filter((f) => /qemu|firecracker|jailer|nydus/.test(f)), []);
  });

  it("3.20 (one .tar.xz) from a local file, `npm run image:build -- --tarball`, the version taken from its name", () => {
    const asset = assets["kata-static-3.20.0-amd64.tar.xz"];
    const tag = TAG("v320");
    const before = mirror.requests().length;
    run(process.execPath, [IMAGE_SCRIPT, "build", "--tarball", asset.file, "--sha256", asset.sha256, "--shims", "qemu", "--base-image", base, "--tag", tag]);
    images.push(tag);
    const payload = JSON.parse(inImage(tag, `cat ${IMAGE_PATHS.payload}`).stdout) as { version: string; shims: string[] };
    assert.deepEqual([payload.version, payload.shims], ["3.20.0", ["qemu"]]);
    const carried = carriedFiles(tag);
    assert.ok(carried.includes("bin/qemu-system-x86_64") && !carried.includes("bin/firecracker"));
    assert.equal(mirror.requests().length, before, "nothing downloaded");
    assert.deepEqual(fs.readdirSync(IMAGE_CONTEXT).filter((f) => f === "tarballs"), [], "the staged tarball is cleaned up");
  });

  describe("bad build inputs fail with the reason, naming the asset", () => {
    /** A plain docker build that must fail; returns its stderr. */
    function failingBuild(args: string[]): string {
      const result = spawnSync("docker", ["build", "--network", "host", "--build-arg", `BASE_IMAGE=${base}`, "--build-arg", `KATA_RELEASE_URL=${mirror.url}`, ...args, "-t", TAG("bad"), IMAGE_CONTEXT], { encoding: "utf8" });
      assert.notEqual(result.status, 0, result.stdout);
      assert.notEqual(spawnSync("docker", ["image", "inspect", TAG("bad")]).status, 0, "no image tagged");
      // The classic builder prints a RUN step's output, stderr included, on its own stdout.
      return `${result.stdout}${result.stderr}`;
    }

    it("a wrong digest (`npm run image:build`): the asset and both sums", () => {
      const go = assets["kata-go-static-4.1.0-amd64.tar.zst"];
      const result = spawnSync(process.execPath, [IMAGE_SCRIPT, "build", "--release-url", mirror.url, "--sha256", `${go.name}=${HEX0}`, "--base-image", base, "--tag", TAG("bad")], { encoding: "utf8" });
      assert.notEqual(result.status, 0);
      assert.match(result.stderr, new RegExp(`kata-deploy image: ${go.name}: sha256 is ${go.sha256}, KATA_SHA256 says ${HEX0}`));
    });

    it("an asset the release does not publish (HTTP 404)", () => {
      const stderr = failingBuild(["--build-arg", "KATA_VERSION=3.21.0", "--build-arg", `KATA_SHA256=${HEX0}`]);
      assert.match(stderr, /kata-deploy image: kata-static-3\.21\.0-amd64\.tar\.zst: not found at http:\/\/127\.0\.0\.1:\d+\/.*\/3\.21\.0\/kata-static-3\.21\.0-amd64\.tar\.zst \(HTTP 404\)/);
    });

    it("a digest missing for one of two assets", () => {
      const stderr = failingBuild(["--build-arg", "KATA_SHIMS=qemu,dragonball", "--build-arg", `KATA_SHA256=kata-go-static-4.1.0-amd64.tar.zst=${HEX0}`]);
      assert.match(stderr, /kata-deploy image: KATA_SHA256 has no digest for kata-static-4\.1\.0-amd64\.tar\.zst \(needed for shims dragonball\)/);
    });

    it("a version whose asset layout is not known", () => {
      const stderr = failingBuild(["--build-arg", "KATA_VERSION=4.2.0", "--build-arg", `KATA_SHA256=${HEX0}`]);
      assert.match(stderr, /kata-deploy image: KATA_VERSION=4\.2\.0: the asset layout of releases after 4\.1\.x is not known here/);
    });

    it("a shim the release does not ship, listing the ones it does", () => {
      const asset = assets["kata-static-3.29.0-amd64.tar.zst"];
      const stderr = failingBuild(["--build-arg", "KATA_VERSION=3.29.0", "--build-arg", "KATA_SHIMS=qemu,fcx", "--build-arg", `KATA_SHA256=${asset.sha256}`]);
      assert.match(stderr, /kata-deploy image: shim fcx: kata-static-3\.29\.0-amd64\.tar\.zst has no opt\/kata\/share\/defaults\/kata-containers\/configuration-fcx\.toml; the shims it ships: clh, cloud-hypervisor, dragonball, fc, qemu, qemu-runtime-rs/);
    });

    it("`npm run image:build` refuses a download without a digest before running docker", () => {
      const result = spawnSync(process.execPath, [IMAGE_SCRIPT, "build", "--kata-version", "4.1.0", "--shims", "qemu,dragonball"], {
        encoding: "utf8",
        env: { ...process.env, KATA_SHA256: "", KATA_TARBALL_SHA256: "", KATA_TARBALLS: "", KATA_TARBALL: "" },
      });
      assert.equal(result.status, 1);
      assert.match(result.stderr, /give --sha256 kata-go-static-4\.1\.0-amd64\.tar\.zst=<sha256> --sha256 kata-static-4\.1\.0-amd64\.tar\.zst=<sha256> \(from the release page, https:\/\/github\.com\/kata-containers\/kata-containers\/releases\/tag\/4\.1\.0\), or --tarball PATH/);
      assert.doesNotMatch(result.stderr, /\+ docker/);
    });

    it("`npm run image:build` refuses a tarball that is not named like a release asset", () => {
      const stray = path.join(dir, "kata.tar.zst");
      fs.writeFileSync(stray, "");
      const result = spawnSync(process.execPath, [IMAGE_SCRIPT, "build", "--tarball", stray], { encoding: "utf8" });
      assert.equal(result.status, 1);
      assert.match(result.stderr, /--tarball .*kata\.tar\.zst: expected a Kata release asset named as the release names it: kata-static-<version>-<arch>\.tar\.\{xz,zst\} or kata-go-static-<version>-<arch>\.tar\.zst/);
    });
  });
});
