// The node agent against what an image carries: /opt/kata-artifacts/kata-deploy-payload.json, written by
// the image build (images/kata-deploy/release/payload.mjs), lists the shims whose files the image kept.
// `kata-deploy install` refuses any other shim before touching the host (the image test checks the same
// inside a real image; this one runs the agent bundle directly, in milliseconds).
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runAgent } from "../agent/agent-harness";
import { makeKataArtifacts, TINY } from "../support/kata-artifacts";

describe("agent: installs only shims the image carries (kata-deploy-payload.json)", function () {
  this.timeout(60_000);
  let dir: string;
  let artifacts: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-payload-agent-"));
    artifacts = makeKataArtifacts(path.join(dir, "artifacts"), TINY);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const install = (shims: string) => {
    const root = fs.mkdtempSync(path.join(dir, "host-"));
    const result = runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts, "--shims", shims]);
    return { ...result, hostEntries: fs.readdirSync(root) };
  };
  const writePayload = (text: string) => fs.writeFileSync(path.join(artifacts, "kata-deploy-payload.json"), text);

  it("refuses a shim the image does not carry in one line naming it and the fix, and writes nothing", () => {
    writePayload(JSON.stringify({ version: "4.1.0", arch: "amd64", shims: ["qemu", "fc"] }));
    const result = install("qemu,clh");
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(
      result.stderr,
      /^kata-deploy: --shims clh: this image carries only qemu,fc \(Kata 4\.1\.0, .*kata-deploy-payload\.json\); rebuild the image with clh in its shims \(KATA_SHIMS build arg, `npm run image:build -- --shims \.\.\.`, or the KataDeployment's shims\)\n$/,
    );
    assert.deepEqual(result.hostEntries, []);
  });

  it("installs shims the image carries", () => {
    writePayload(JSON.stringify({ version: "4.1.0", arch: "amd64", shims: ["qemu", "fc"] }));
    const result = install("fc");
    assert.equal(result.code, 0, result.stderr);
  });

  it("refuses a payload file it cannot read, naming it and the fix", () => {
    writePayload("{");
    const result = install("qemu");
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^kata-deploy: .*kata-deploy-payload\.json: not valid JSON; rebuild the image \(npm run image:build\)\n$/);
  });

  // Kata 3.x shipped runtime-rs's Cloud Hypervisor shim as `cloud-hypervisor`, configured by
  // runtime-rs/configuration-cloud-hypervisor.toml (src/runtime-rs/Makefile CONFDIR and its clh config up to
  // 3.29): a name that does not say "runtime-rs". The image records where it found each shim; the agent uses that.
  describe("a runtime-rs shim whose name does not say so (3.x cloud-hypervisor)", () => {
    const rustBinary = "runtime-rs/bin/containerd-shim-kata-v2";
    const rustConfig = "share/defaults/kata-containers/runtime-rs/configuration-cloud-hypervisor.toml";
    const RUST_MARKER = "runtime-rs configuration of cloud-hypervisor";
    before(() => {
      // The Go shim's file plus a marker, so the installed copy tells which of the two it was made from.
      fs.writeFileSync(
        path.join(artifacts, "opt/kata", rustConfig),
        `${fs.readFileSync(path.join(artifacts, "opt/kata/share/defaults/kata-containers/configuration-clh.toml"), "utf8")}\n# ${RUST_MARKER}\n`,
      );
    });
    after(() => fs.rmSync(path.join(artifacts, "opt/kata", rustConfig), { force: true }));

    const installedDropIn = (root: string): string => {
      const dir = path.join(root, "etc/crio/crio.conf.d");
      return fs.readdirSync(dir).map((file) => fs.readFileSync(path.join(dir, file), "utf8")).join("\n");
    };
    /** The Kata configuration CRI-O's runtime points at (the handler's own copy of a release file), as installed. */
    const installedKataConfig = (root: string): string => {
      const configPath = /^runtime_config_path = "([^"]+)"$/m.exec(installedDropIn(root))?.[1];
      assert.ok(configPath, "the CRI-O runtime names a Kata configuration");
      return fs.readFileSync(path.join(root, configPath), "utf8");
    };
    const installCloudHypervisor = () => {
      const root = fs.mkdtempSync(path.join(dir, "host-"));
      const result = runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts, "--shims", "cloud-hypervisor"]);
      return { result, root };
    };

    it("installs it with the runtime-rs binary and configuration the payload records", () => {
      writePayload(JSON.stringify({
        version: "3.20.0", arch: "amd64", shims: ["cloud-hypervisor"],
        runtimes: { "cloud-hypervisor": { runtime: "rust", binary: rustBinary, config: rustConfig } },
      }));
      const { result, root } = installCloudHypervisor();
      assert.equal(result.code, 0, result.stderr);
      const dropIn = installedDropIn(root);
      assert.match(dropIn, new RegExp(`/opt/kata/${rustBinary.replace(/[/.]/g, "\\$&")}`));
      // Its configuration is the handler's copy of the runtime-rs file the payload names (not the Go shim's).
      assert.ok(installedKataConfig(root).includes(RUST_MARKER), "the installed configuration is a copy of the runtime-rs one");
    });

    it("without a payload file, knows it from the image build's runtime-rs shim list", () => {
      fs.rmSync(path.join(artifacts, "kata-deploy-payload.json"), { force: true });
      const { result, root } = installCloudHypervisor();
      assert.equal(result.code, 0, result.stderr);
      assert.match(installedDropIn(root), /runtime-rs\/bin\/containerd-shim-kata-v2/);
      assert.ok(installedKataConfig(root).includes(RUST_MARKER), "the installed configuration is a copy of the runtime-rs one");
    });

    it("refuses a payload whose recorded paths leave the release tree", () => {
      writePayload(JSON.stringify({
        version: "3.20.0", arch: "amd64", shims: ["cloud-hypervisor"],
        runtimes: { "cloud-hypervisor": { runtime: "rust", binary: "../../usr/bin/sh", config: rustConfig } },
      }));
      const { result } = installCloudHypervisor();
      assert.equal(result.code, 1);
      assert.match(result.stderr, /^kata-deploy: .*kata-deploy-payload\.json: runtimes\.cloud-hypervisor needs "binary" and "config" paths inside opt\/kata; rebuild the image \(npm run image:build\)\n$/);
    });
  });

  it("without a payload file (artifacts not made by the image build) checks nothing extra", () => {
    fs.rmSync(path.join(artifacts, "kata-deploy-payload.json"));
    assert.equal(install("qemu,clh").code, 0);
  });
});
