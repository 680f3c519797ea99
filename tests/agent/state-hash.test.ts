// The hash in the install record (`written`, `beforeSha`/`afterSha` of a pending transaction) decides
// whether removal restores a config file exactly or surgically. Records written by earlier agents (which
// hashed with node:crypto) must still match: the agent's sha256 is plain SHA-256, hex.
import { strict as assert } from "node:assert";
import { createHash } from "node:crypto";
import { sha256 } from "../../images/kata-deploy/agent/src/host/files";

describe("agent: the install record's file hash", () => {
  it("is SHA-256 in hex (FIPS 180-2 test vector) and equals node:crypto's for bytes and text", () => {
    assert.equal(sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const samples: (Buffer | string)[] = ["", 'version = 3\n[plugins."io.containerd.cri.v1.runtime"]\n', "größe ✓ 🚀", Buffer.alloc(0), Buffer.from([0, 255, 1, 254]), Buffer.alloc(70_000, 0x61)];
    for (const sample of samples) assert.equal(sha256(sample), createHash("sha256").update(sample).digest("hex"), JSON.stringify(sample.slice(0, 20)));
  });
});
