// Startup taints (issue 12 point 5): the installer removes the deployment's startup taints from its node once
// Kata is installed there and the node is labelled, against the API stand-in (which applies JSON patches, refuses
// a failed `test`, authorizes with RBAC and runs validating admission policies as the API server does: see
// tests/support/kube-standin.ts). The expected taints are written out here from the node each test sets up, not
// taken from the agent's output.
import { strict as assert } from "node:assert";
import { buildRbac } from "../../components/manifests";
import { KubeStandin, type KubeObject } from "../support/kube-standin";
import { artifacts, isolatedEnv, makeHost, removeTempDirs, runAgentAsync as runAgent, tempDir } from "./agent-harness";

const P = "kata-containers.io";
const JSON_PATCH = "application/json-patch+json";

interface Taint {
  key: string;
  value?: string;
  effect: string;
  timeAdded?: string;
}

const PENDING: Taint = { key: "example.com/kata-not-ready", value: "true", effect: "NoSchedule" };
const PENDING_EXECUTE: Taint = { key: "example.com/kata-not-ready", effect: "NoExecute", timeAdded: "2026-06-01T10:00:00Z" };
const GPU: Taint = { key: "nvidia.com/gpu", value: "present", effect: "NoSchedule" };
const CORDONED: Taint = { key: "node.kubernetes.io/unschedulable", effect: "NoSchedule", timeAdded: "2026-06-01T10:00:00Z" };

function node(taints: Taint[]): KubeObject {
  return {
    metadata: { name: "n1", labels: { "kubernetes.io/hostname": "n1", [`${P}/container-runtime`]: "containerd" } },
    spec: { taints },
    status: { nodeInfo: { containerRuntimeVersion: "containerd://1.7.24" } },
  };
}

const installArgs = (root: string, startupTaints: string): string[] => [
  "install", "--runtime", "containerd", "--host-root", root, "--artifacts", artifacts(), "--startup-taints", startupTaints,
];

describe("agent: startup taints removed after the install (against the API stand-in)", function () {
  let kube: KubeStandin;
  let env: NodeJS.ProcessEnv;

  beforeEach(async function () {
    kube = await KubeStandin.start();
    env = isolatedEnv({ KUBECONFIG: kube.writeKubeconfig(tempDir("kube")), NODE_NAME: "n1" });
  });
  afterEach(async () => kube.close());
  after(removeTempDirs);

  const taintsOf = (): Taint[] => ((kube.node("n1")?.spec as { taints?: Taint[] } | undefined)?.taints ?? []);
  const jsonPatches = () => kube.requests.filter((request) => request.method === "PATCH" && request.contentType === JSON_PATCH);
  const host = (): string => makeHost({ "/etc/containerd/config.toml": "version = 2\n" });

  it("removes only the listed key and effect, after labelling, with one resourceVersion-guarded JSON patch; every other taint stays as it was", async function () {
    kube.putNode(node([GPU, PENDING, PENDING_EXECUTE, CORDONED]));
    const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), env);
    assert.equal(result.code, 0, result.stderr);
    // NoExecute has the same key but another effect: not listed, so it stays; so do the GPU and cordon taints.
    assert.deepEqual(taintsOf(), [GPU, PENDING_EXECUTE, CORDONED]);
    assert.equal(kube.node("n1")!.metadata.labels?.[`${P}/kata-runtime`], "true");
    const writes = kube.writes.map((request) => request.contentType);
    assert.deepEqual(writes, ["application/merge-patch+json", JSON_PATCH], "labelled first, then the taints");
    // Applied (200), so its `test` named the resourceVersion the node had after the label patch.
    const [patch] = jsonPatches();
    assert.deepEqual((patch.body as { op: string; path: string }[]).map(({ op, path }) => `${op} ${path}`), ["test /metadata/resourceVersion", "replace /spec/taints"]);
    assert.equal(patch.status, 200);
    assert.match(result.stdout, /removed startup taint\(s\) example\.com\/kata-not-ready:NoSchedule/);
  });

  it("a key without an effect removes that key's taints of every effect", async function () {
    kube.putNode(node([PENDING, GPU, PENDING_EXECUTE]));
    const result = await runAgent(installArgs(host(), "example.com/kata-not-ready"), env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(taintsOf(), [GPU]);
  });

  it("a listed taint that is not on the node is fine: nothing is patched (a restart, a rollout, or a node that never had it)", async function () {
    kube.putNode(node([GPU]));
    const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(jsonPatches(), []);
    assert.deepEqual(taintsOf(), [GPU]);
    assert.match(result.stdout, /no startup taint to remove/);
  });

  it("a taint another controller adds between the agent's read and its patch is not lost: the patch is refused, read again and retried", async function () {
    kube.putNode(node([PENDING, GPU]));
    const added: Taint = { key: "autoscaler.example.com/scale-down", value: "soon", effect: "PreferNoSchedule" };
    let raced = false;
    kube.beforeWrite = (request) => {
      if (raced || request.contentType !== JSON_PATCH) return;
      raced = true;
      const current = kube.node("n1")!;
      kube.putNode({ ...current, spec: { taints: [...taintsOf(), added] } });
    };
    const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(jsonPatches().map((request) => request.status), [422, 200], "the stale write refused, the fresh one applied");
    assert.deepEqual(taintsOf(), [GPU, added]);
    assert.match(result.stdout, /changed while its taints were being removed \(attempt 1\/5\)/);
  });

  it("a node that changes on every attempt: gives up after 5, exits 1 naming the taint, the reason and the kubectl fix; Kata stays installed", async function () {
    kube.putNode(node([PENDING]));
    let bumps = 0;
    kube.beforeWrite = (request) => {
      if (request.contentType !== JSON_PATCH) return;
      const current = kube.node("n1")!;
      kube.putNode({ ...current, metadata: { ...current.metadata, annotations: { "example.com/heartbeat": String(++bumps) } } });
    };
    const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), env);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(jsonPatches().length, 5);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /^kata-deploy: node n1: Kata is installed and labelled kata-containers\.io\/kata-runtime=true, but startup taint\(s\) example\.com\/kata-not-ready:NoSchedule were not removed: the node changed between reading and writing its taints on each of 5 attempts/);
    assert.match(lines[0], /kubectl taint node n1 example\.com\/kata-not-ready:NoSchedule-$/);
    assert.deepEqual(taintsOf(), [PENDING]);
  });

  it("an admission policy that guards node taints (422, like a failed test): refused at once, not retried, with the policy's message", async function () {
    kube.putNode(node([PENDING, GPU]));
    kube.admissionPolicies.push({
      name: "protect-node-taints",
      binding: "protect-node-taints-binding",
      validate: (request, before, after) =>
        request.resource === "nodes" && JSON.stringify(before.spec) !== JSON.stringify(after.spec) ? "only cluster admins change node taints" : undefined,
    });
    const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), env);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(jsonPatches().length, 1, "a refusal that is not a conflict is not retried");
    assert.match(
      result.stderr.trim(),
      /^kata-deploy: node n1: .*startup taint\(s\) example\.com\/kata-not-ready:NoSchedule were not removed: the API server refused the change \(HTTP 422: nodes "n1" is forbidden: ValidatingAdmissionPolicy 'protect-node-taints' with binding 'protect-node-taints-binding' denied request: only cluster admins change node taints\); the node stays closed/,
    );
    assert.equal(kube.node("n1")!.metadata.labels?.[`${P}/kata-runtime`], "true", "labels are not guarded by that policy");
    assert.deepEqual(taintsOf(), [PENDING, GPU]);
  });

  describe("RBAC", function () {
    /** A ServiceAccount bound to a ClusterRole with `rules`, and a kubeconfig with its token. */
    function serviceAccountEnv(rules: unknown[]): NodeJS.ProcessEnv {
      kube.apply({ kind: "ServiceAccount", metadata: { name: "kata-deploy", namespace: "kata-deploy" } });
      kube.apply({ kind: "ClusterRole", metadata: { name: "kata-deploy" }, rules });
      kube.apply({
        kind: "ClusterRoleBinding",
        metadata: { name: "kata-deploy" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "kata-deploy" },
        subjects: [{ kind: "ServiceAccount", name: "kata-deploy", namespace: "kata-deploy" }],
      });
      return { ...env, KUBECONFIG: kube.writeKubeconfig(tempDir("sa"), kube.serviceAccountToken("kata-deploy", "kata-deploy")) };
    }

    it("the component's own ClusterRole is enough: removing taints needs no rule beyond the labels' get/patch on nodes", async function () {
      kube.putNode(node([PENDING, GPU]));
      const saEnv = serviceAccountEnv(buildRbac({ namespace: "kata-deploy", runtimes: ["containerd"] }).clusterRole.rules);
      const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), saEnv);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(kube.forbidden, []);
      assert.deepEqual(taintsOf(), [GPU]);
      assert.ok(jsonPatches().every((request) => request.user === "system:serviceaccount:kata-deploy:kata-deploy"));
    });

    it("without patch on nodes: one line saying the label failed and that the startup taints stay on the node", async function () {
      kube.putNode(node([PENDING]));
      const saEnv = serviceAccountEnv([{ apiGroups: [""], resources: ["nodes"], verbs: ["get"] }]);
      const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), saEnv);
      assert.equal(result.code, 1, result.stderr);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^kata-deploy: labelling node n1: forbidden \(HTTP 403\)/);
      assert.match(lines[0], /startup taint\(s\) example\.com\/kata-not-ready:NoSchedule stay on node n1 until this succeeds/);
      assert.deepEqual(taintsOf(), [PENDING]);
    });
  });

  it("uninstall leaves the node's taints alone: the startup taints are never added back", async function () {
    kube.putNode(node([PENDING, GPU]));
    const root = host();
    assert.equal((await runAgent(installArgs(root, "example.com/kata-not-ready:NoSchedule"), env)).code, 0);
    kube.requests.length = 0;
    const result = await runAgent(["uninstall", "--runtime", "containerd", "--host-root", root], env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(jsonPatches(), []);
    assert.deepEqual(taintsOf(), [GPU]);
  });

  it("without a Kubernetes API the install still works and says the taints were not removed", async function () {
    const result = await runAgent(installArgs(host(), "example.com/kata-not-ready:NoSchedule"), isolatedEnv());
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /--startup-taints: no Kubernetes API .*so no taint is removed/);
  });
});
