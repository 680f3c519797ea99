// The release step of the image build without Docker: which assets each Kata version publishes
// (release/assets.mjs), which files a shim needs (release/select.mjs, reading the shim's configuration),
// and the whole step (release/payload.mjs: download from a loopback mirror, sha256, xz/zstd, selection,
// payload file) against fixture assets laid out like the real releases (tests/support/kata-artifacts.ts
// names the upstream files each layout follows).
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  DEFAULT_KATA_VERSION,
  digestsFor,
  isLoopbackUrl,
  kataBuildArgs,
  parseSha256,
  releaseAssets,
  releaseLayout,
} from "../../images/kata-deploy/release/assets.mjs";
import { buildPayload, type Payload } from "../../images/kata-deploy/release/payload.mjs";
import { selectShim, shimsIn } from "../../images/kata-deploy/release/select.mjs";
import { makeReleaseAssets, type FixtureAsset, type ReleaseStyle } from "../support/kata-artifacts";
import { startReleaseMirror, type ReleaseMirror } from "../support/release-mirror";
import { commandWorks, requireTool } from "../support/env";

const HEX = (c: string): string => c.repeat(64);

describe("release assets: what each Kata version publishes", () => {
  // Expected names read from kata-containers/kata-containers tools/packaging/release/release.sh at the tags.
  const cases: [string, string[], string[]][] = [
    ["3.3.0", ["qemu", "fc"], ["kata-static-3.3.0-amd64.tar.xz"]],
    ["3.20.0", ["qemu", "fc"], ["kata-static-3.20.0-amd64.tar.xz"]],
    ["3.21.0", ["qemu", "fc"], ["kata-static-3.21.0-amd64.tar.zst"]],
    ["3.29.0", ["qemu", "dragonball"], ["kata-static-3.29.0-amd64.tar.zst"]],
    ["3.32.0", ["fc"], ["kata-static-3.32.0-amd64.tar.zst"]],
    ["4.0.0", ["qemu", "fc"], ["kata-static-4.0.0-amd64.tar.zst"]],
    ["4.1.0", ["qemu", "fc"], ["kata-go-static-4.1.0-amd64.tar.zst"]],
    ["4.1.0", ["dragonball", "qemu-runtime-rs"], ["kata-static-4.1.0-amd64.tar.zst"]],
    ["4.1.0", ["qemu", "fc", "clh", "dragonball", "qemu-runtime-rs", "clh-runtime-rs"], ["kata-go-static-4.1.0-amd64.tar.zst", "kata-static-4.1.0-amd64.tar.zst"]],
    ["4.1.2", ["qemu-tdx"], ["kata-go-static-4.1.2-amd64.tar.zst"]],
  ];
  for (const [version, shims, names] of cases) {
    it(`${version} for ${shims.join(",")}: ${names.join(" + ")}`, () => {
      assert.deepEqual(releaseAssets({ version, arch: "amd64", shims }).map((a) => a.name), names);
    });
  }

  it("says which requested shims each 4.1 asset provides (Go runtime: kata-go-static; runtime-rs: kata-static)", () => {
    const assets = releaseAssets({ version: "4.1.0", arch: "arm64", shims: ["qemu", "dragonball", "fc"] });
    assert.deepEqual(assets.map((a) => [a.name, a.shims]), [
      ["kata-go-static-4.1.0-arm64.tar.zst", ["qemu", "fc"]],
      ["kata-static-4.1.0-arm64.tar.zst", ["dragonball"]],
    ]);
  });

  it("names arm64/ppc64le assets as the release does, from dpkg or uname names", () => {
    assert.equal(releaseAssets({ version: "3.29.0", arch: "ppc64el", shims: ["qemu"] })[0].name, "kata-static-3.29.0-ppc64le.tar.zst");
    assert.equal(releaseAssets({ version: "3.20.0", arch: "aarch64", shims: ["qemu"] })[0].name, "kata-static-3.20.0-arm64.tar.xz");
    assert.throws(() => releaseAssets({ version: "4.1.0", arch: "riscv64", shims: ["qemu"] }), /riscv64: Kata publishes release assets for amd64, arm64, s390x, ppc64le only/);
  });

  it("refuses versions whose layout is unknown, with the fix", () => {
    assert.throws(() => releaseLayout("main"), /KATA_VERSION=main: not a Kata release version \(X\.Y\.Z/);
    assert.throws(() => releaseLayout("v4.1.0"), /not a Kata release version/);
    assert.throws(() => releaseLayout("4.2.0"), /KATA_VERSION=4\.2\.0: the asset layout of releases after 4\.1\.x is not known here; check tools\/packaging\/release\/release\.sh/);
    assert.throws(() => releaseLayout("3.2.0"), /releases before 3\.3\.0 named their asset differently/);
  });

  it("defaults to 4.1.0, the latest release (upstream tags end at 4.1.0) and the first whose qemu and fc come from kata-go-static", () => {
    assert.equal(DEFAULT_KATA_VERSION, "4.1.0");
    assert.equal(releaseLayout(DEFAULT_KATA_VERSION).layout, "split");
  });

  it("reads ASSET=HEX lists and a bare HEX, and refuses what would be ambiguous or a typo", () => {
    const two = releaseAssets({ version: "4.1.0", arch: "amd64", shims: ["qemu", "dragonball"] });
    const go = "kata-go-static-4.1.0-amd64.tar.zst";
    const rs = "kata-static-4.1.0-amd64.tar.zst";
    assert.deepEqual(digestsFor(two, parseSha256([`${go}=${HEX("a")}`, `${rs}=${HEX("B")}`])), { [go]: HEX("a"), [rs]: HEX("b") });
    assert.deepEqual(digestsFor(two, parseSha256(`${go}=${HEX("a")}`)), { [go]: HEX("a"), [rs]: undefined });
    assert.throws(() => digestsFor(two, parseSha256(HEX("a"))), /a bare digest is ambiguous, this build fetches kata-go-static-4\.1\.0-amd64\.tar\.zst and kata-static-4\.1\.0-amd64\.tar\.zst; give ASSET=HEX for each/);
    assert.throws(() => digestsFor(two, parseSha256(`kata-go-static-4.1.0-arm64.tar.zst=${HEX("a")}`)), /kata-go-static-4\.1\.0-arm64\.tar\.zst is not fetched by this build/);
    const one = releaseAssets({ version: "3.29.0", arch: "amd64", shims: ["qemu"] });
    assert.deepEqual(digestsFor(one, parseSha256(HEX("c"))), { "kata-static-3.29.0-amd64.tar.zst": HEX("c") });
    assert.throws(() => parseSha256("kata-static-3.29.0-amd64.tar.zst=abc"), /"kata-static-3\.29\.0-amd64\.tar\.zst=abc" is not ASSET=HEX or HEX/);
  });

  it("knows which release URLs are on the loopback (the build then needs host networking)", () => {
    for (const url of ["http://127.0.0.1:8080/d", "http://127.1.2.3/d", "http://localhost:1/d", "http://[::1]:9/d"]) assert.equal(isLoopbackUrl(url), true, url);
    for (const url of ["https://github.com/x", "http://10.0.0.1/d", "http://127.example.com/d"]) assert.equal(isLoopbackUrl(url), false, url);
    assert.deepEqual(kataBuildArgs({ kataVersion: "4.1.0", shims: ["qemu", "fc"], sha256: HEX("a"), releaseUrl: "http://127.0.0.1:1/dl/" }), {
      args: { KATA_VERSION: "4.1.0", KATA_SHIMS: "qemu,fc", KATA_SHA256: HEX("a"), KATA_RELEASE_URL: "http://127.0.0.1:1/dl" },
      network: "host",
    });
    assert.deepEqual(kataBuildArgs({}), { args: {} });
  });
});

describe("release files: what a shim needs, read from its configuration", function () {
  this.timeout(60_000);
  let dir: string;
  let trees: Record<string, string>;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-select-"));
    trees = {};
    for (const style of ["3.29", "4.1"] as ReleaseStyle[]) {
      for (const asset of makeReleaseAssets(path.join(dir, style), style)) {
        const into = path.join(dir, "unpacked", asset.name);
        fs.mkdirSync(into, { recursive: true });
        execFileSync("tar", ["-x", "-I", "zstd", "-f", asset.file, "-C", into]);
        trees[asset.name] = path.join(into, "opt/kata");
      }
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("fc (4.1, kata-go-static): the Go shim, firecracker and its jailer, the kernel and image its configuration names, with their symlink targets", () => {
    const fc = selectShim(trees["kata-go-static-4.1.0-amd64.tar.zst"], "fc", "kata-go-static-4.1.0-amd64.tar.zst");
    assert.deepEqual(fc.files, [
      "bin/containerd-shim-kata-v2",
      "bin/firecracker",
      "bin/jailer",
      "bin/kata-runtime",
      "share/defaults/kata-containers/configuration-fc.toml",
      "share/kata-containers/kata-containers.img",
      "share/kata-containers/kata-ubuntu-noble.image",
      "share/kata-containers/vmlinux-6.12.47-172",
      "share/kata-containers/vmlinux.container",
    ]);
    assert.equal(fc.hypervisor, "bin/firecracker");
  });

  it("qemu: also virtiofsd and QEMU's data directory (share/kata-qemu, its --datadir), not the snp-experimental build", () => {
    const qemu = selectShim(trees["kata-go-static-4.1.0-amd64.tar.zst"], "qemu", "x");
    assert.ok(qemu.files.includes("libexec/virtiofsd"));
    assert.ok(qemu.files.includes("share/kata-qemu/qemu/bios-256k.bin"));
    assert.ok(qemu.files.includes("bin/qemu-system-x86_64"));
    assert.ok(!qemu.files.some((f) => f.includes("snp-experimental") || f.includes("nydus") || f.includes("initrd") || f.includes("confidential")), qemu.files.join(" "));
  });

  it("runtime-rs shims: the Rust shim and runtime-rs/ configuration; dragonball's hypervisor is built in (path is empty)", () => {
    const db = selectShim(trees["kata-static-4.1.0-amd64.tar.zst"], "dragonball", "x");
    assert.equal(db.runtime, "rust");
    assert.equal(db.hypervisor, undefined);
    assert.deepEqual(db.files, [
      "runtime-rs/bin/containerd-shim-kata-v2",
      "share/defaults/kata-containers/runtime-rs/configuration-dragonball.toml",
      "share/kata-containers/kata-containers.img",
      "share/kata-containers/kata-ubuntu-noble.image",
      "share/kata-containers/vmlinux-dragonball-experimental-6.1.62-172",
      "share/kata-containers/vmlinux-dragonball-experimental.container",
    ]);
  });

  it("refuses a shim the asset does not ship, listing the ones it does (fc is not in 4.1's kata-static)", () => {
    assert.deepEqual(shimsIn(trees["kata-static-4.1.0-amd64.tar.zst"]), ["clh-runtime-rs", "dragonball", "qemu-runtime-rs"]);
    assert.throws(
      () => selectShim(trees["kata-static-4.1.0-amd64.tar.zst"], "fc", "kata-static-4.1.0-amd64.tar.zst"),
      /^ReleaseError: shim fc: kata-static-4\.1\.0-amd64\.tar\.zst has no opt\/kata\/share\/defaults\/kata-containers\/configuration-fc\.toml; the shims it ships: clh-runtime-rs, dragonball, qemu-runtime-rs$/,
    );
  });

  it("refuses a configuration that names a file the release does not contain", () => {
    const tree = trees["kata-static-3.29.0-amd64.tar.zst"];
    fs.rmSync(path.join(tree, "bin/jailer"));
    assert.throws(() => selectShim(tree, "fc", "kata-static-3.29.0-amd64.tar.zst"), /shim fc: opt\/kata\/share\/defaults\/kata-containers\/configuration-fc\.toml \[hypervisor\.firecracker\] jailer_path = "\/opt\/kata\/bin\/jailer", which kata-static-3\.29\.0-amd64\.tar\.zst does not contain/);
  });
});

describe("release step (payload.mjs): download, verify, unpack, select, payload file @integration", function () {
  this.timeout(120_000);
  let dir: string;
  let mirror: ReleaseMirror;
  const assets: Record<string, FixtureAsset> = {};

  before(async function () {
    for (const tool of ["curl", "zstd", "xz"]) requireTool(this, tool, commandWorks(tool, ["--version"]));
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-payload-"));
    const files: Record<string, string> = {};
    for (const style of ["3.20", "3.29", "4.1"] as ReleaseStyle[]) {
      for (const asset of makeReleaseAssets(path.join(dir, "assets", style), style)) {
        assets[asset.name] = asset;
        files[`${asset.name.replace(/^kata-(?:go-)?static-([^-]+)-.*$/, "$1")}/${asset.name}`] = asset.file;
      }
    }
    mirror = await startReleaseMirror(files);
  });
  after(async () => {
    await mirror?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  let run = 0;
  function payload(env: Record<string, string>): { out: string; payload: Payload; log: string[] } {
    const out = path.join(dir, `out-${++run}`);
    const log: string[] = [];
    const result = buildPayload({ env: { KATA_RELEASE_URL: mirror.url, ...env }, arch: "amd64", localDir: path.join(dir, "local"), workDir: path.join(dir, `work-${run}`), outDir: out, log: (l) => log.push(l) });
    return { out, payload: result, log };
  }
  const tree = (out: string): string[] => {
    const walk = (rel: string): string[] => fs.readdirSync(path.join(out, rel), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(rel, e.name)) : [path.join(rel, e.name)]));
    return walk("opt/kata").map((p) => p.slice("opt/kata/".length)).sort();
  };

  it("4.1, qemu+fc: downloads only kata-go-static and keeps only qemu's and fc's files", () => {
    const go = assets["kata-go-static-4.1.0-amd64.tar.zst"];
    const { out, payload: p } = payload({ KATA_VERSION: "4.1.0", KATA_SHIMS: "qemu,fc", KATA_SHA256: `${go.name}=${go.sha256}` });
    assert.deepEqual(p.assets.map((a) => [a.name, a.sha256]), [[go.name, go.sha256]]);
    assert.deepEqual(p.shims, ["qemu", "fc"]);
    assert.deepEqual(Object.keys(p.runtimes), ["qemu", "fc"]);
    const files = tree(out);
    for (const f of ["bin/firecracker", "bin/jailer", "bin/qemu-system-x86_64", "libexec/virtiofsd", "share/defaults/kata-containers/configuration-qemu.toml", "share/defaults/kata-containers/configuration-fc.toml"]) {
      assert.ok(files.includes(f), f);
    }
    for (const f of files) assert.doesNotMatch(f, /runtime-rs|clh|cloud-hypervisor|nydus|snp|confidential|initrd|kata-monitor|configuration\.toml$/);
    assert.equal(JSON.parse(fs.readFileSync(path.join(out, "kata-deploy-payload.json"), "utf8")).version, "4.1.0");
  });

  it("4.1, mixed Go and runtime-rs shims: both assets, merged", () => {
    const go = assets["kata-go-static-4.1.0-amd64.tar.zst"];
    const rs = assets["kata-static-4.1.0-amd64.tar.zst"];
    const { out, payload: p } = payload({ KATA_VERSION: "4.1.0", KATA_SHIMS: "fc,dragonball", KATA_SHA256: `${rs.name}=${rs.sha256},${go.name}=${go.sha256}` });
    assert.deepEqual(p.assets.map((a) => [a.name, a.shims]), [[go.name, ["fc"]], [rs.name, ["dragonball"]]]);
    const files = tree(out);
    assert.ok(files.includes("bin/firecracker") && files.includes("runtime-rs/bin/containerd-shim-kata-v2"));
    assert.ok(!files.includes("bin/qemu-system-x86_64"));
  });

  it("3.20 (xz) and 3.29 (zstd), one asset with both runtimes: a bare digest works", () => {
    for (const version of ["3.20.0", "3.29.0"]) {
      const asset = Object.values(assets).find((a) => a.name.startsWith(`kata-static-${version}-`))!;
      const { out } = payload({ KATA_VERSION: version, KATA_SHIMS: "clh,cloud-hypervisor", KATA_SHA256: asset.sha256 });
      const files = tree(out);
      assert.ok(files.includes("bin/cloud-hypervisor") && files.includes("runtime-rs/bin/containerd-shim-kata-v2") && files.includes("bin/containerd-shim-kata-v2"), version);
      assert.ok(!files.some((f) => f.includes("qemu") || f.includes("firecracker")), version);
    }
  });

  it("refuses a wrong digest, naming the asset and both sums", () => {
    const go = assets["kata-go-static-4.1.0-amd64.tar.zst"];
    assert.throws(() => payload({ KATA_VERSION: "4.1.0", KATA_SHA256: `${go.name}=${HEX("0")}` }), new RegExp(`^ReleaseError: ${go.name}: sha256 is ${go.sha256}, KATA_SHA256 says ${HEX("0")}$`));
  });

  it("refuses a download without a digest, naming the asset", () => {
    assert.throws(() => payload({ KATA_VERSION: "4.1.0", KATA_SHIMS: "qemu,dragonball", KATA_SHA256: `kata-go-static-4.1.0-amd64.tar.zst=${HEX("a")}` }), /KATA_SHA256 has no digest for kata-static-4\.1\.0-amd64\.tar\.zst \(needed for shims dragonball\)/);
  });

  it("refuses an asset the release does not publish (404 from the mirror)", () => {
    // 4.0.0 is not served by the mirror: like a version whose assets were never uploaded for this arch.
    assert.throws(() => payload({ KATA_VERSION: "4.0.0", KATA_SHA256: HEX("a") }), /^ReleaseError: kata-static-4\.0\.0-amd64\.tar\.zst: not found at http:\/\/127\.0\.0\.1:\d+\/.*\/4\.0\.0\/kata-static-4\.0\.0-amd64\.tar\.zst \(HTTP 404\)/);
  });
});
