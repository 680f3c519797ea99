// The agent's Kubernetes calls against the local API stand-in: exact label patches, rollout detection,
// deletion in progress, reset. The expected patches are written out here from the contract, not taken
// from the agent's output.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { KubeStandin, type KubeObject } from "../support/kube-standin";
import { spawn } from "node:child_process";
import * as net from "node:net";
import { AGENT_BUNDLE, artifacts, fakeSystemd, isolatedEnv, makeHost, removeTempDirs, runAgentAsync as runAgent, tempDir } from "./agent-harness";
// The stand-in serves from this process, so the agent must run asynchronously (spawnSync would block it).

const P = "kata-containers.io";

function node(name: string, runtimeVersion: string, labels: Record<string, string> = {}): KubeObject {
  return { metadata: { name, labels: { "kubernetes.io/hostname": name, ...labels } }, status: { nodeInfo: { containerRuntimeVersion: runtimeVersion } } };
}

function installerDaemonSet(extra: Partial<KubeObject["metadata"]> = {}): KubeObject {
  return {
    metadata: { name: "kata-deploy-containerd", namespace: "kube-system", ...extra },
    spec: { template: { spec: { nodeSelector: { [`${P}/container-runtime`]: "containerd" } } } },
  };
}

describe("agent Kubernetes calls (against the API stand-in)", function () {
  let kube: KubeStandin;
  let env: NodeJS.ProcessEnv;

  beforeEach(async function () {
    kube = await KubeStandin.start();
    env = isolatedEnv({ KUBECONFIG: kube.writeKubeconfig(tempDir("kube")), NODE_NAME: "n1", POD_NAMESPACE: "kube-system", DAEMONSET_NAME: "kata-deploy-containerd" });
  });
  afterEach(async () => kube.close());
  after(removeTempDirs);

  const patches = (): { path: string; contentType: string | undefined; body: unknown }[] =>
    kube.writes.map((request) => ({ path: request.path, contentType: request.contentType, body: request.body }));

  it("label: containerd:// → container-runtime=containerd, one merge patch", async function () {
    kube.putNode(node("n1", "containerd://1.7.24"));
    const result = await runAgent(["label"], env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(patches(), [
      { path: "/api/v1/nodes/n1", contentType: "application/merge-patch+json", body: { metadata: { labels: { [`${P}/container-runtime`]: "containerd" } } } },
    ]);
    assert.equal(kube.node("n1")?.metadata.labels?.[`${P}/container-runtime`], "containerd");
  });

  it("label: cri-o:// → crio, with a custom label prefix", async function () {
    kube.putNode(node("n1", "cri-o://1.29.1"));
    const result = await runAgent(["label", "--label-prefix", "example.org"], env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(kube.node("n1")?.metadata.labels?.["example.org/container-runtime"], "crio");
  });

  it("label: another runtime is refused with a clear message and no patch", async function () {
    kube.putNode(node("n1", "docker://24.0.7"));
    const result = await runAgent(["label"], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr.trim(), /^kata-deploy: node n1: container runtime "docker:\/\/24\.0\.7" is not supported/);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.deepEqual(kube.writes, []);
  });

  it("label --daemon on another runtime (cri-dockerd) says so once, stays up unlabelled, and exits 0 on SIGTERM", async function () {
    kube.putNode(node("n1", "docker://24.0.7"));
    const child = spawn(process.execPath, [AGENT_BUNDLE, "label", "--daemon"], { env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    for (let i = 0; i < 100 && !stdout.includes("waiting for SIGTERM"); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(child.exitCode, null, `still running (a DaemonSet pod that exits crash-loops):\n${stdout}${stderr}`);
    const said = stdout.split("\n").filter((line) => line.includes("is not supported"));
    assert.equal(said.length, 1, stdout);
    assert.match(said[0], /node n1: container runtime "docker:\/\/24\.0\.7" is not supported; Kata needs containerd:\/\/ or cri-o:\/\/; not labelling it/);
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.equal(stderr, "");
    assert.deepEqual(kube.writes, [], "the node is not labelled, so no installer is scheduled on it");
  });

  it("install labels kata-runtime=true after the install, exactly once", async function () {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd" }));
    const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
    const result = await runAgent(["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts()], env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(patches(), [{ path: "/api/v1/nodes/n1", contentType: "application/merge-patch+json", body: { metadata: { labels: { [`${P}/kata-runtime`]: "true" } } } }]);
  });

  it("uninstall during a rollout (DaemonSet still selects the node) does nothing", async function () {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd" }));
    kube.putDaemonSet(installerDaemonSet());
    const root = makeHost({ "/etc/containerd/config.toml": "version = 2\n" });
    assert.equal((await runAgent(["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts()], env)).code, 0);
    const installed = fs.readFileSync(path.join(root, "etc/containerd/config.toml"), "utf8");
    kube.requests.length = 0;
    const result = await runAgent(["uninstall", "--runtime", "containerd", "--host-root", root], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /rollout/);
    assert.deepEqual(kube.writes, [], "no label change on a rollout");
    assert.equal(fs.readFileSync(path.join(root, "etc/containerd/config.toml"), "utf8"), installed, "config untouched");
    assert.ok(fs.existsSync(path.join(root, "opt/kata/bin/containerd-shim-kata-v2")), "artifacts untouched");
  });

  for (const [why, setup] of [
    ["the DaemonSet is being deleted", (k: KubeStandin) => k.putDaemonSet(installerDaemonSet({ deletionTimestamp: "2026-01-01T00:00:00Z" }))],
    ["the DaemonSet is gone", () => undefined],
    ["the DaemonSet no longer selects the node", (k: KubeStandin) => k.putDaemonSet({ ...installerDaemonSet(), spec: { template: { spec: { nodeSelector: { [`${P}/container-runtime`]: "crio" } } } } })],
  ] as const) {
    it(`uninstall proceeds when ${why}, and labels kata-runtime=cleanup`, async function () {
      kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd" }));
      const original = "version = 2\n";
      const root = makeHost({ "/etc/containerd/config.toml": original });
      assert.equal((await runAgent(["install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts()], env)).code, 0);
      setup(kube);
      kube.requests.length = 0;
      const result = await runAgent(["uninstall", "--runtime", "containerd", "--host-root", root], env);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(fs.readFileSync(path.join(root, "etc/containerd/config.toml"), "utf8"), original);
      assert.deepEqual(patches(), [{ path: "/api/v1/nodes/n1", contentType: "application/merge-patch+json", body: { metadata: { labels: { [`${P}/kata-runtime`]: "cleanup" } } } }]);
    });
  }

  it("reset restarts the labelled runtime through systemd, then removes both labels", async function () {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd", [`${P}/kata-runtime`]: "cleanup" }));
    const root = makeHost();
    const systemd = fakeSystemd(root);
    const result = await runAgent(["reset", "--host-root", root, "--restart", "systemd"], { ...env, ...systemd.env });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(systemd.calls().includes("restart containerd"), systemd.calls().join("; "));
    assert.deepEqual(patches(), [
      { path: "/api/v1/nodes/n1", contentType: "application/merge-patch+json", body: { metadata: { labels: { [`${P}/container-runtime`]: null, [`${P}/kata-runtime`]: null } } } },
    ]);
    const labels = kube.node("n1")?.metadata.labels ?? {};
    assert.equal(labels[`${P}/container-runtime`], undefined);
    assert.equal(labels[`${P}/kata-runtime`], undefined);
    assert.equal(labels["kubernetes.io/hostname"], "n1", "other labels stay");
  });

  it("reset leaves the labels when the runtime does not come back", async function () {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd" }));
    const root = makeHost({ "/etc/broken": "kata-deploy\n" });
    const systemd = fakeSystemd(root, { hostPath: "/etc/broken", needle: "kata-deploy" });
    const result = await runAgent(["reset", "--host-root", root, "--restart", "systemd"], { ...env, ...systemd.env });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /containerd: not healthy after the restart/);
    assert.deepEqual(kube.writes, []);
  });

  it("an API server that does not answer is one stderr line, not a stack trace", async function () {
    // A port nobody listens on: bind, note the port, close.
    const closedPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const dir = tempDir("kube-down");
    const kubeconfig = fs.readFileSync(kube.writeKubeconfig(dir), "utf8").replace(/http:\/\/127\.0\.0\.1:\d+/, `http://127.0.0.1:${closedPort}`);
    const file = path.join(dir, "down.kubeconfig");
    fs.writeFileSync(file, kubeconfig);
    const result = await runAgent(["label"], { ...env, KUBECONFIG: file });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr, /^kata-deploy: reading node n1: the Kubernetes API is not reachable \(.*ECONNREFUSED.*\)/);
  });

  it("never prints the token from the kubeconfig", async function () {
    kube.putNode(node("n1", "containerd://1.7.24"));
    const result = await runAgent(["label"], env);
    assert.doesNotMatch(result.stdout + result.stderr, /standin-token-not-secret/);
  });
});

describe("agent Kubernetes credentials", function () {
  after(removeTempDirs);
  const SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount";

  it("in a pod without the service account token mounted: one line naming the missing file and the fix", async function () {
    if (fs.existsSync(`${SERVICE_ACCOUNT}/ca.crt`)) this.skip(); // this test machine is itself a pod
    const result = await runAgent(["label"], isolatedEnv({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: "6443", NODE_NAME: "n1" }));
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /^kata-deploy: \/var\/run\/secrets\/kubernetes\.io\/serviceaccount\/ca\.crt: missing/);
    assert.match(lines[0], /automountServiceAccountToken: true/);
    assert.match(lines[0], /serviceAccountName/);
  });

  it("a KUBECONFIG that does not exist: one line naming it", async function () {
    const missing = path.join(tempDir("kube-missing"), "nope.kubeconfig");
    const result = await runAgent(["label"], isolatedEnv({ KUBECONFIG: missing, NODE_NAME: "n1" }));
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`^kata-deploy: KUBECONFIG ${missing.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: cannot be loaded`));
  });
});
