// The node agent against what an image carries: /opt/kata-artifacts/kata-deploy-payload.json, written by
// the image build (images/kata-deploy/release/payload.mjs), lists the shims whose files the image kept.
// `kata-deploy install` refuses any other shim before touching the host (the image test checks the same
// inside a real image; this one runs the agent bundle directly, in milliseconds).
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { AGENT_BUNDLE } from "../support/build-agent";
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
    const result = spawnSync(process.execPath, [AGENT_BUNDLE, "install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts, "--shims", shims], { encoding: "utf8" });
    return { ...result, hostEntries: fs.readdirSync(root) };
  };
  const writePayload = (text: string) => fs.writeFileSync(path.join(artifacts, "kata-deploy-payload.json"), text);

  it("refuses a shim the image does not carry in one line naming it and the fix, and writes nothing", () => {
    writePayload(JSON.stringify({ version: "4.1.0", arch: "amd64", shims: ["qemu", "fc"] }));
    const result = install("qemu,clh");
    assert.equal(result.status, 1);
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
    assert.equal(result.status, 0, result.stderr);
  });

  it("refuses a payload file it cannot read, naming it and the fix", () => {
    writePayload("{");
    const result = install("qemu");
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^kata-deploy: .*kata-deploy-payload\.json: not valid JSON; rebuild the image \(npm run image:build\)\n$/);
  });

  it("without a payload file (artifacts not made by the image build) checks nothing extra", () => {
    fs.rmSync(path.join(artifacts, "kata-deploy-payload.json"));
    assert.equal(install("qemu,clh").status, 0);
  });
});
