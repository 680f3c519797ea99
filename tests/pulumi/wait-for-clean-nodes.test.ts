// The destroy-time wait script, run for real (a node process, as the Command provider runs it) against a
// local HTTP stand-in of the Kubernetes API that keeps Node objects. What runs is WAIT_SCRIPT, the bundle
// built from components/wait-for-clean-nodes.mjs (tests/support/build-agent.ts rebuilds it for each run).
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { WAIT_SCRIPT } from "../../components/kataDeployment";

interface FakeNode {
  name: string;
  labels: Record<string, string>;
}

/** Serves GET /api/v1/nodes?labelSelector=<key> (existence selectors, as the script sends them). */
class NodeApi {
  readonly requests: { url: string; authorization?: string }[] = [];
  /** Runs before each list request: lets a test change the nodes over time. */
  onList: (listCount: number) => void = () => {};
  private server = http.createServer((req, res) => this.handle(req, res));
  constructor(public nodes: FakeNode[]) {}

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push({ url: req.url ?? "", authorization: req.headers.authorization });
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method !== "GET" || url.pathname !== "/api/v1/nodes") {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", code: 404 }));
      return;
    }
    this.onList(this.requests.length);
    const key = url.searchParams.get("labelSelector");
    const items = this.nodes
      .filter((node) => key === null || key in node.labels)
      .map((node) => ({ apiVersion: "v1", kind: "Node", metadata: { name: node.name, labels: { ...node.labels } } }));
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ apiVersion: "v1", kind: "NodeList", metadata: {}, items }));
  }
}

function kubeconfigFor(server: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    // client-node refuses plain http unless TLS verification is explicitly off.
    clusters: [{ name: "test", cluster: { server, "insecure-skip-tls-verify": true } }],
    users: [{ name: "operator", user: { token: "operator-token" } }],
    contexts: [{ name: "test", context: { cluster: "test", user: "operator" } }],
    "current-context": "test",
  });
}

function runWait(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string; seconds: number; waitedSeconds: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    // Only what the Command provider would pass, plus PATH/HOME: no ambient KUBECONFIG leaks in.
    const child = spawn(process.execPath, [WAIT_SCRIPT], {
      env: { PATH: process.env.PATH ?? "", HOME: "/nonexistent", KATA_DEPLOY_POLL_SECONDS: "0.05", ...env },
    });
    let stdout = "";
    let stderr = "";
    // From its first line on, the script is waiting: loading it (the Kubernetes client) takes seconds more on a busy machine.
    let firstOutput: number | undefined;
    child.stdout.on("data", (chunk) => ((firstOutput ??= Date.now()), (stdout += chunk)));
    child.stderr.on("data", (chunk) => ((firstOutput ??= Date.now()), (stderr += chunk)));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000, waitedSeconds: (Date.now() - (firstOutput ?? started)) / 1000 }));
  });
}

const PREFIX = "kata-containers.io";
const installed = (runtime: string): Record<string, string> => ({
  [`${PREFIX}/container-runtime`]: runtime,
  [`${PREFIX}/kata-runtime`]: "cleanup",
});

describe("wait-for-clean-nodes (destroy-time wait)", () => {
  let api: NodeApi;
  let kubeconfig: string;
  beforeEach(async () => {
    api = new NodeApi([
      { name: "node-a", labels: installed("containerd") },
      { name: "node-b", labels: installed("crio") },
      { name: "node-c", labels: { "kubernetes.io/os": "linux" } },
    ]);
    kubeconfig = kubeconfigFor(await api.start());
  });
  afterEach(() => api.stop());

  it("returns once the cleanup has removed every Kata label, using the kubeconfig it was given", async () => {
    api.onList = (count) => {
      if (count === 4) delete api.nodes[0].labels[`${PREFIX}/kata-runtime`];
      if (count === 6) api.nodes[0].labels = {};
      if (count === 8) api.nodes[1].labels = {};
    };
    const result = await runWait({ KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_LABEL_PREFIX: PREFIX, KATA_DEPLOY_TIMEOUT_SECONDS: "30" });
    assert.equal(result.code, 0, result.stderr);
    // Nothing else on stderr: the bundle prints no warning that its dependencies, loaded from node_modules, would not.
    assert.equal(result.stderr, "");
    assert.match(result.stdout, /waiting for cleanup of 2 node\(s\): node-a .*node-b/);
    assert.match(result.stdout, /every node is clean/);
    assert.ok(api.requests.length >= 8, `kept polling (${api.requests.length} requests)`);
    assert.ok(api.requests.every((request) => request.authorization === "Bearer operator-token"));
    assert.deepEqual(
      [...new Set(api.requests.map((request) => decodeURIComponent(new URL(request.url, "http://x").searchParams.get("labelSelector") ?? "")))].sort(),
      [`${PREFIX}/container-runtime`, `${PREFIX}/kata-runtime`],
    );
  });

  it("fails after the timeout, naming the nodes still labelled and how to force the destroy", async () => {
    api.onList = () => {
      api.nodes[0].labels = {}; // node-a is cleaned; node-b never is (unreachable)
    };
    const result = await runWait({ KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_LABEL_PREFIX: PREFIX, KATA_DEPLOY_TIMEOUT_SECONDS: "1" });
    assert.equal(result.code, 1);
    assert.ok(result.waitedSeconds < 10, `bounded by the timeout (${result.waitedSeconds}s after its first line)`);
    assert.match(result.stderr, /timed out after 1s .*nodes still labelled: node-b \(kata-containers\.io\/kata-runtime=cleanup, kata-containers\.io\/container-runtime=crio\)/);
    assert.doesNotMatch(result.stderr, /node-a|node-c/);
    assert.match(result.stderr, /KATA_DEPLOY_IGNORE_NODES=node-b pulumi destroy/);
  });

  it("does not wait for a node labelled with a runtime that had no installer, and says how to drop its label", async () => {
    // Only containerd was deployed: node-b's CRI-O label comes from the labeler alone, and no installer ran there.
    api.nodes[1].labels = { [`${PREFIX}/container-runtime`]: "crio" };
    api.onList = (count) => {
      if (count === 4) api.nodes[0].labels = {};
    };
    const env = { KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_LABEL_PREFIX: PREFIX, KATA_DEPLOY_TIMEOUT_SECONDS: "20" };
    const result = await runWait({ ...env, KATA_DEPLOY_RUNTIMES: "containerd" });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /waiting for cleanup of 1 node\(s\): node-a /);
    assert.match(result.stdout, /note: node-b still carries kata-containers\.io\/container-runtime .*kubectl label node node-b kata-containers\.io\/container-runtime-/);

    // A node an installer touched (kata-runtime set) is waited for whatever its runtime label says.
    api.nodes = [{ name: "node-b", labels: installed("crio") }];
    api.onList = () => {};
    const touched = await runWait({ ...env, KATA_DEPLOY_TIMEOUT_SECONDS: "0.5", KATA_DEPLOY_RUNTIMES: "containerd" });
    assert.equal(touched.code, 1);
    assert.match(touched.stderr, /nodes still labelled: node-b/);
  });

  it("does not wait for nodes the operator names in KATA_DEPLOY_IGNORE_NODES", async () => {
    api.onList = () => {
      api.nodes[0].labels = {};
    };
    const result = await runWait({
      KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_LABEL_PREFIX: PREFIX, KATA_DEPLOY_TIMEOUT_SECONDS: "20", KATA_DEPLOY_IGNORE_NODES: "node-b",
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /not waiting for node\(s\): node-b/);
  });

  it("watches the configured label prefix, not the default one", async () => {
    api.nodes = [{ name: "node-a", labels: installed("containerd") }];
    const result = await runWait({ KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_LABEL_PREFIX: "example.com", KATA_DEPLOY_TIMEOUT_SECONDS: "5" });
    assert.equal(result.code, 0, result.stderr);
    const other = await runWait({ KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_LABEL_PREFIX: PREFIX, KATA_DEPLOY_TIMEOUT_SECONDS: "0.5" });
    assert.equal(other.code, 1);
  });

  it("keeps trying while the API is unreachable and then fails with the reason", async () => {
    await api.stop();
    const result = await runWait({ KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_TIMEOUT_SECONDS: "1" });
    api = new NodeApi([]); // afterEach stops a server
    await api.start();
    assert.equal(result.code, 1);
    assert.ok(result.seconds >= 0.9, `waited for the timeout (${result.seconds}s)`);
    assert.match(result.stderr, /timed out after 1s: the Kubernetes API could not be queried/);
  });

  it("rejects a malformed timeout with the variable's name", async () => {
    const result = await runWait({ KATA_DEPLOY_KUBECONFIG: kubeconfig, KATA_DEPLOY_TIMEOUT_SECONDS: "ten minutes" });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /KATA_DEPLOY_TIMEOUT_SECONDS="ten minutes" is not a positive number of seconds/);
  });
});
