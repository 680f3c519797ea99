// Mixed-architecture clusters (issue 12 point 3): one installer DaemonSet (one multi-arch image) for every
// architecture, carrying upstream kata-deploy's per-architecture variables SHIMS_<ARCH> / DEFAULT_SHIM_<ARCH>
// (kata-containers 4.1.0 tools/packaging/kata-deploy/helm-chart/kata-deploy/templates/_helpers.tpl
// kata-deploy.commonEnv; binary/src/config.rs get_arch_var_or_base). Each node installs its own architecture's list;
// the node's architecture is faked with the test-only KATA_DEPLOY_TEST_NODE_ARCH (the agent reads process.arch).
// Expected handlers and labels are written out from the deployment's lists, not taken from the agent's output.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { KubeStandin, type KubeObject } from "../support/kube-standin";
import { dumpWithHostContainerd, parseDump } from "../support/runtime-readback";
import { buildRequest } from "../../images/kata-deploy/agent/src/lifecycle/request";
import { planDockerInstall, planDockerUninstall } from "../../images/kata-deploy/agent/src/runtimes/docker/config";
import { FakeHost } from "./config-fixtures";
import { artifacts, isolatedEnv, makeHost, removeTempDirs, runAgentAsync as runAgent, snapshot, tempDir } from "./agent-harness";

const P = "kata-containers.io";
/** What the component writes for shimsByArch { amd64: [clh, qemu] (default qemu), arm64: [qemu, qemu-runtime-rs] (default qemu-runtime-rs), s390x: [] }. */
const DEPLOYMENT = {
  SHIMS_X86_64: "clh qemu",
  DEFAULT_SHIM_X86_64: "qemu",
  SHIMS_AARCH64: "qemu qemu-runtime-rs",
  DEFAULT_SHIM_AARCH64: "qemu-runtime-rs",
  SHIMS_S390X: "",
};

/** containerd's CRI runtimes (config version 2) and the config each names. */
function criRuntimes(root: string): Record<string, string> {
  const config = parseToml(fs.readFileSync(path.join(root, "etc/containerd/config.toml"), "utf8")) as {
    plugins?: Record<string, { containerd?: { runtimes?: Record<string, { options?: { ConfigPath?: string } }> } }>;
  };
  const runtimes = config.plugins?.["io.containerd.grpc.v1.cri"]?.containerd?.runtimes ?? {};
  return Object.fromEntries(Object.entries(runtimes).filter(([name]) => name !== "runc").map(([name, runtime]) => [name, path.basename(runtime.options?.ConfigPath ?? "")]));
}

const install = ["install", "--runtime", "containerd", "--host-root"];

describe("agent on mixed-architecture clusters (SHIMS_<ARCH>, issue 12 point 3)", function () {
  this.timeout(60_000);
  after(removeTempDirs);

  for (const [arch, expected] of [
    ["amd64", { "kata-clh": "configuration-clh.toml", "kata-qemu": "configuration-qemu.toml", untrusted: "configuration-qemu.toml" }],
    ["arm64", { "kata-qemu": "configuration-qemu.toml", "kata-qemu-runtime-rs": "configuration-qemu-runtime-rs.toml", untrusted: "configuration-qemu-runtime-rs.toml" }],
  ] as const) {
    it(`an ${arch} node installs ${arch}'s shims, with ${arch}'s default shim behind containerd's untrusted alias`, async function () {
      const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
      const result = await runAgent([...install, root, "--artifacts", artifacts()], isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: arch }));
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(criRuntimes(root), expected);
      assert.equal((await runAgent(["status", "--host-root", root, "--ready", "--runtime", "containerd"], isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: arch }))).code, 0, "ready");
    });
  }

  it("a node whose architecture has no shims installs nothing, says so, is ready, and its preStop uninstall does nothing", async function () {
    for (const arch of ["s390x", "ppc64le"]) {
      // s390x: listed with []; ppc64le: not listed at all. Neither falls back to a default list (upstream would).
      const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
      const before = snapshot(root);
      const env = isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: arch });
      const result = await runAgent([...install, root, "--artifacts", artifacts(), "--restart", "systemd"], env);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`this node's architecture ${arch} has no shims \\(SHIMS_(S390X is empty|PPC64LE is not set)\\); installing nothing on this node`));
      assert.deepEqual(snapshot(root), before, "the host is untouched (no restart either: systemd was never reached)");
      assert.equal((await runAgent(["status", "--host-root", root, "--ready", "--runtime", "containerd"], env)).code, 0, "the readiness probe passes, or the DaemonSet never becomes ready");
      const removal = await runAgent(["uninstall", "--runtime", "containerd", "--host-root", root], env);
      assert.equal(removal.code, 0, removal.stderr);
      assert.match(removal.stdout, new RegExp(`nothing installed \\(this node's architecture ${arch} has no shims\\)`));
      assert.deepEqual(snapshot(root), before);
    }
  });

  it("refuses --shims together with the per-architecture variables, naming both", async function () {
    const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
    const result = await runAgent([...install, root, "--artifacts", artifacts(), "--shims", "qemu"], isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: "amd64" }));
    assert.equal(result.code, 1);
    assert.match(result.stderr.trim(), /^kata-deploy: --shims\/--default-shim and SHIMS_X86_64 are both given; the per-architecture variables replace the flags: drop the flags$/);
  });

  // The default RuntimeClass of a deployment whose architectures' default shims differ names handler `kata`
  // (components/manifests.ts perNodeDefaultHandler); the installer passes --default-handler kata, and each node's
  // `kata` must run that node's own default shim: DEFAULT_SHIM_X86_64=qemu, DEFAULT_SHIM_AARCH64=qemu-runtime-rs.
  describe("the default RuntimeClass's per-node handler (--default-handler)", function () {
    type CriRuntime = { runtime_type?: string; runtime_path?: string; options?: { ConfigPath?: string } };
    const v2Runtimes = (text: string): Record<string, CriRuntime> =>
      ((parseToml(text) as { plugins?: Record<string, { containerd?: { runtimes?: Record<string, CriRuntime> } }> }).plugins?.["io.containerd.grpc.v1.cri"]?.containerd?.runtimes ?? {});

    for (const [arch, defaultShim] of [["amd64", "qemu"], ["arm64", "qemu-runtime-rs"]] as const) {
      it(`containerd on ${arch}: \`kata\` runs ${arch}'s default shim ${defaultShim} (binary, type and Kata configuration of kata-${defaultShim}), and uninstall gives the config back byte for byte`, async function () {
        const original = "version = 2\n\n# the node's own settings\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n";
        const root = makeHost({ "/etc/containerd/config.toml": original });
        const before = snapshot(root);
        const env = isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: arch });
        const result = await runAgent([...install, root, "--artifacts", artifacts(), "--default-handler", "kata"], env);
        assert.equal(result.code, 0, result.stderr);
        const runtimes = v2Runtimes(fs.readFileSync(path.join(root, "etc/containerd/config.toml"), "utf8"));
        assert.ok(runtimes.kata, "a runtime named kata");
        assert.deepEqual(runtimes.kata, runtimes[`kata-${defaultShim}`], `kata is kata-${defaultShim} under another name`);
        assert.equal(runtimes.kata.runtime_type, `io.containerd.kata-${defaultShim}.v2`);
        assert.equal((await runAgent(["status", "--host-root", root, "--ready", "--runtime", "containerd"], env)).code, 0, "ready");
        const removal = await runAgent(["uninstall", "--runtime", "containerd", "--host-root", root], env);
        assert.equal(removal.code, 0, removal.stderr);
        assert.deepEqual(snapshot(root), before);
      });
    }

    it("@integration real containerd (config dump) reads the kata runtime the agent wrote, pointing at the node's default shim's configuration", async function () {
      const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
      const result = await runAgent([...install, root, "--artifacts", artifacts(), "--default-handler", "kata"], isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: "arm64" }));
      assert.equal(result.code, 0, result.stderr);
      const dump = parseDump(dumpWithHostContainerd(path.join(root, "etc/containerd/config.toml")), "config with the kata handler") as {
        plugins: Record<string, { containerd: { runtimes: Record<string, CriRuntime> } }>;
      };
      const effective = dump.plugins["io.containerd.grpc.v1.cri"].containerd.runtimes;
      assert.equal(effective.kata?.runtime_type, "io.containerd.kata-qemu-runtime-rs.v2");
      assert.equal(effective.kata?.runtime_path, effective["kata-qemu-runtime-rs"]?.runtime_path);
      assert.equal(effective.kata?.options?.ConfigPath, effective["kata-qemu-runtime-rs"]?.options?.ConfigPath);
      assert.match(effective.kata?.options?.ConfigPath ?? "", /configuration-qemu-runtime-rs\.toml$/);
    });

    it("CRI-O on arm64: the drop-in's `kata` runtime runs qemu-runtime-rs; uninstall removes the drop-in", async function () {
      const root = makeHost({ "/etc/crio/crio.conf": "[crio.runtime]\n" });
      const before = snapshot(root);
      const env = isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: "arm64" });
      const result = await runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts(), "--default-handler", "kata"], env);
      assert.equal(result.code, 0, result.stderr);
      const dropIn = parseToml(fs.readFileSync(path.join(root, "etc/crio/crio.conf.d/99-kata-deploy.toml"), "utf8")) as { crio: { runtime: { runtimes: Record<string, Record<string, unknown>> } } };
      const runtimes = dropIn.crio.runtime.runtimes;
      assert.deepEqual(Object.keys(runtimes).sort(), ["kata", "kata-qemu", "kata-qemu-runtime-rs"]);
      assert.deepEqual(runtimes.kata, runtimes["kata-qemu-runtime-rs"]);
      const removal = await runAgent(["uninstall", "--runtime", "crio", "--host-root", root], env);
      assert.equal(removal.code, 0, removal.stderr);
      assert.deepEqual(snapshot(root), before);
    });

    it("Docker (shim-v2 form): daemon.json gets a runtime `kata` like kata-<default shim>; removal gives the file back byte for byte", function () {
      const original = '{\n  "log-driver": "journald"\n}\n';
      const host = new FakeHost({ "/etc/docker/daemon.json": original });
      const { request } = buildRequest({
        runtime: "docker", shims: ["clh", "qemu"], defaultShim: "qemu", prefix: "/opt/kata",
        artifactsKata: path.join(artifacts(), "opt/kata"), snapshotters: new Map(), defaultHandler: "kata",
      });
      const plan = planDockerInstall({ read: host.read, request, form: "shim-v2" });
      host.apply(plan.edits);
      const runtimes = (JSON.parse(host.read("/etc/docker/daemon.json") ?? "{}") as { runtimes: Record<string, unknown> }).runtimes;
      assert.deepEqual(Object.keys(runtimes).sort(), ["kata", "kata-clh", "kata-qemu"]);
      assert.deepEqual(runtimes.kata, runtimes["kata-qemu"]);
      host.apply(planDockerUninstall({ read: host.read, previous: plan.owned }));
      assert.equal(host.read("/etc/docker/daemon.json"), original);
    });

    it("refuses a handler that is not a DNS label, or that a shim's runtime already has, before touching the host", async function () {
      for (const [handler, message] of [
        ["Kata.default", /^kata-deploy: --default-handler Kata\.default: must be a DNS label \(lowercase letters, digits and -, at most 63\), as a RuntimeClass handler is$/],
        ["kata-qemu", /^kata-deploy: --default-handler kata-qemu: a shim's or custom runtime's handler has that name already \(base shim qemu\); give the default RuntimeClass another name$/],
      ] as const) {
        const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
        const before = snapshot(root);
        const result = await runAgent([...install, root, "--artifacts", artifacts(), "--default-handler", handler], isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: "amd64" }));
        assert.equal(result.code, 1, result.stdout);
        assert.match(result.stderr.trim(), message);
        assert.deepEqual(snapshot(root), before);
      }
    });
  });

  describe("node labels (against the API stand-in)", function () {
    let kube: KubeStandin;
    let env: NodeJS.ProcessEnv;
    const node = (labels: Record<string, string> = {}): KubeObject => ({
      metadata: { name: "n1", labels: { "kubernetes.io/hostname": "n1", [`${P}/container-runtime`]: "containerd", ...labels } },
      status: { nodeInfo: { containerRuntimeVersion: "containerd://1.7.24" } },
    });
    const labelPatches = (): unknown[] => kube.writes.map((request) => (request.body as { metadata: { labels: unknown } }).metadata.labels);
    beforeEach(async function () {
      kube = await KubeStandin.start();
      env = isolatedEnv({ ...DEPLOYMENT, KATA_DEPLOY_TEST_NODE_ARCH: "arm64", KUBECONFIG: kube.writeKubeconfig(tempDir("kube")), NODE_NAME: "n1" });
    });
    afterEach(async () => kube.close());

    it("labels each shim it installed (<prefix>/kata-<shim>), moves them when the list changes, and removes them on uninstall", async function () {
      kube.putNode(node());
      const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
      assert.equal((await runAgent([...install, root, "--artifacts", artifacts()], env)).code, 0);
      assert.deepEqual(labelPatches(), [{ [`${P}/kata-runtime`]: "true", [`${P}/kata-qemu`]: "true", [`${P}/kata-qemu-runtime-rs`]: "true" }]);
      kube.requests.length = 0;
      // The deployment drops qemu from arm64: the node no longer has kata-qemu, so its label goes.
      const fewer = await runAgent([...install, root, "--artifacts", artifacts()], { ...env, SHIMS_AARCH64: "qemu-runtime-rs" });
      assert.equal(fewer.code, 0, fewer.stderr);
      assert.deepEqual(labelPatches(), [{ [`${P}/kata-runtime`]: "true", [`${P}/kata-qemu`]: null, [`${P}/kata-qemu-runtime-rs`]: "true" }]);
      assert.deepEqual(Object.keys(criRuntimes(root)).sort(), ["kata-qemu-runtime-rs", "untrusted"]);
      kube.requests.length = 0;
      const removal = await runAgent(["uninstall", "--runtime", "containerd", "--host-root", root], { ...env, SHIMS_AARCH64: "qemu-runtime-rs" });
      assert.equal(removal.code, 0, removal.stderr);
      assert.deepEqual(labelPatches(), [{ [`${P}/kata-runtime`]: "cleanup", [`${P}/kata-qemu-runtime-rs`]: null }]);
    });

    it("an architecture that lost its shims: the next install removes the Kata installed before and its labels", async function () {
      kube.putNode(node());
      const original = "version = 2\n";
      const root = makeHost({ "/etc/containerd/config.toml": original });
      assert.equal((await runAgent([...install, root, "--artifacts", artifacts()], env)).code, 0);
      kube.requests.length = 0;
      // As the component writes it for `arm64: []`: an empty list and no default.
      const lost: NodeJS.ProcessEnv = { ...env, SHIMS_AARCH64: "" };
      delete lost.DEFAULT_SHIM_AARCH64;
      const result = await runAgent([...install, root, "--artifacts", artifacts()], lost);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /this node's architecture arm64 has no shims \(SHIMS_AARCH64 is empty\); removed the Kata installed earlier/);
      assert.equal(fs.readFileSync(path.join(root, "etc/containerd/config.toml"), "utf8"), original);
      assert.deepEqual(labelPatches(), [{ [`${P}/kata-runtime`]: null, [`${P}/kata-qemu`]: null, [`${P}/kata-qemu-runtime-rs`]: null }]);
    });
  });
});
