// containerRuntimeDebug (issue 12 point 1, "the runtime's log level too if the user asks"): the agent also sets
// the container runtime's own log level, as upstream kata-deploy 4.1.0 does with DEBUG=true
// (tools/packaging/kata-deploy/binary/src/runtime/containerd.rs: `.debug.level = "debug"`; runtime/crio.rs:
// `[crio.runtime] log_level = "debug"` in a crio.conf.d drop-in), recorded and removed byte for byte like every
// other edit. Expected texts are written out here; containerd's reading of it is checked with the real binary.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { planContainerdInstall } from "../../images/kata-deploy/agent/src/runtimes/containerd/config";
import { containerdLayout } from "../../images/kata-deploy/agent/src/runtimes/containerd/layout";
import { ConfigError } from "../../images/kata-deploy/agent/src/runtimes/types";
import { formatConfigProblem } from "../../images/kata-deploy/agent/src/report/format";
import { dumpInImage, dumpWithHostContainerd, parseDump, type ReadBack } from "../support/runtime-readback";
import { hasDocker, requireTool } from "../support/env";
import { ensureNodeImage } from "../support/images";
import { artifacts, isolatedEnv, makeHost, removeTempDirs, runAgentAsync as runAgent, snapshot } from "./agent-harness";
import { QEMU } from "./config-fixtures";

const install = (runtime: string, root: string): string[] => ["install", "--runtime", runtime, "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu", "--container-runtime-debug"];
const read = (root: string, hostPath: string): string => fs.readFileSync(path.join(root, hostPath), "utf8");
/** The top-level `debug` table of a TOML text, as an ordinary object (smol-toml builds prototype-less ones). */
const debugTable = (text: string): unknown => JSON.parse(JSON.stringify((parseToml(text) as { debug?: unknown }).debug ?? null));

describe("--container-runtime-debug: the container runtime's own log level", function () {
  this.timeout(60_000);
  after(removeTempDirs);

  it("containerd v2: a [debug] table with level = \"debug\" is added to config.toml; uninstall gives the file back byte for byte", async function () {
    const original = 'version = 2\r\n\r\n[plugins."io.containerd.grpc.v1.cri"]\r\n  sandbox_image = "registry.k8s.io/pause:3.9"\r\n';
    const root = makeHost({ "/etc/containerd/config.toml": original });
    const before = snapshot(root);
    const result = await runAgent(install("containerd", root));
    assert.equal(result.code, 0, result.stderr);
    const text = read(root, "etc/containerd/config.toml");
    assert.deepEqual(debugTable(text), { level: "debug" });
    assert.match(text, /\r\n\r\n\[debug\]\r\n {2}level = "debug"/, "in the file's own line endings");
    const removal = await runAgent(["uninstall", "--runtime", "containerd", "--host-root", root]);
    assert.equal(removal.code, 0, removal.stderr);
    assert.deepEqual(snapshot(root), before);
  });

  it("@integration containerd 1.6 (host binary) reads the level from the edited config.toml (config dump)", async function () {
    const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
    const result = await runAgent(install("containerd", root));
    assert.equal(result.code, 0, result.stderr);
    const dump = parseDump(dumpWithHostContainerd(path.join(root, "etc/containerd/config.toml")), "config with [debug]") as { debug: { level: string } };
    assert.equal(dump.debug.level, "debug");
    const plain = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
    assert.equal((await runAgent(install("containerd", plain).filter((arg) => arg !== "--container-runtime-debug"))).code, 0);
    const without = parseDump(dumpWithHostContainerd(path.join(plain, "etc/containerd/config.toml")), "config without [debug]") as { debug: { level: string } };
    assert.equal(without.debug.level, "", "without the flag containerd keeps its default (no level set)");
  });

  it("containerd v3: the level goes into the kata-deploy drop-in, the main file only gets the import", async function () {
    const root = makeHost({ "/etc/containerd/config.toml": "version = 3\n" });
    const result = await runAgent(install("containerd", root));
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(debugTable(read(root, "etc/containerd/conf.d/99-kata-deploy.toml")), { level: "debug" });
    assert.equal(debugTable(read(root, "etc/containerd/config.toml")), null);
  });

  it("@integration containerd 2.1 (sid node image) takes the level from the imported drop-in of a v3 config (config dump)", async function () {
    requireTool(this, "docker", hasDocker());
    this.timeout(600_000);
    const root = makeHost({ "/etc/containerd/config.toml": "version = 3\n" });
    const result = await runAgent(install("containerd", root));
    assert.equal(result.code, 0, result.stderr);
    // The main file imports the drop-in by its host path: read both where they are, under the host root.
    const main = path.join(root, "etc/containerd/config.toml");
    fs.writeFileSync(main, read(root, "etc/containerd/config.toml").replace("/etc/containerd/conf.d/", `${root}/etc/containerd/conf.d/`));
    const image = await ensureNodeImage("sid");
    const dump = parseDump(dumpInImage(image, [root], [main]).get(main) as ReadBack, "v3 config importing the drop-in") as { debug: { level: string } };
    assert.equal(dump.debug.level, "debug");
  });

  it("containerd: a config.toml with its own [debug] section is refused, naming the line and the way out, and left untouched", async function () {
    const root = makeHost({ "/etc/containerd/config.toml": 'version = 2\n\n[debug]\n  level = "info"\n' });
    const before = snapshot(root);
    const result = await runAgent(install("containerd", root));
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr.trim(), /^kata-deploy: \/etc\/containerd\/config\.toml: line 3: containerRuntimeDebug: the file already has a \[debug\] section, which kata-deploy does not edit; set `level = "debug"` there yourself and containerRuntimeDebug to false, or remove the section$/);
    assert.deepEqual(snapshot(root), before);
  });

  it("k3s, rke2, k0s and microk8s are refused: they start containerd themselves (k3s/rke2 with the level of CONTAINERD_LOG_LEVEL, k3s pkg/agent/containerd/containerd.go Run)", function () {
    const k3sReason = (flavor: string): string =>
      `containerRuntimeDebug: ${flavor} starts containerd itself and sets its log level from its own environment, not from this configuration; set CONTAINERD_LOG_LEVEL=debug in the ${flavor} service's environment instead, and containerRuntimeDebug to false`;
    const ownReason = (flavor: string): string =>
      `containerRuntimeDebug: ${flavor} starts containerd itself, and kata-deploy sets containerd's log level only for a plain containerd; set it through ${flavor}'s own configuration, and containerRuntimeDebug to false`;
    for (const [flavor, reason] of [["k3s", k3sReason], ["rke2", k3sReason], ["k0s", ownReason], ["microk8s", ownReason]] as const) {
      assert.throws(
        () => planContainerdInstall({ layout: containerdLayout(flavor), read: () => undefined, request: { runtimes: [QEMU], runtimeDebug: true } }),
        (error: unknown) => error instanceof ConfigError && formatConfigProblem(error) === reason(flavor),
        flavor,
      );
    }
  });

  it("CRI-O: [crio.runtime] log_level = \"debug\" in the kata-deploy drop-in, gone with it on uninstall", async function () {
    const root = makeHost({ "/etc/crio/crio.conf": "[crio.runtime]\nlog_level = \"info\"\n" });
    const before = snapshot(root);
    const result = await runAgent(install("crio", root));
    assert.equal(result.code, 0, result.stderr);
    const dropIn = parseToml(read(root, "etc/crio/crio.conf.d/99-kata-deploy.toml")) as { crio: { runtime: { log_level?: string; runtimes: Record<string, unknown> } } };
    assert.equal(dropIn.crio.runtime.log_level, "debug");
    assert.deepEqual(Object.keys(dropIn.crio.runtime.runtimes), ["kata-qemu"]);
    const removal = await runAgent(["uninstall", "--runtime", "crio", "--host-root", root], isolatedEnv());
    assert.equal(removal.code, 0, removal.stderr);
    assert.deepEqual(snapshot(root), before);
  });
});
