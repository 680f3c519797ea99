// The two models the stack-change tier rests on, checked against what their upstream sources say:
// the API stand-in's RBAC and DaemonSet status (kubernetes/kubernetes plugin/pkg/auth/authorizer/rbac/rbac.go,
// pkg/apis/rbac/v1/evaluation_helpers.go, k8s.io/apiserver responsewriters/errors.go, pkg/controller/daemon/),
// and the engine's step order (pulumi/pulumi pkg/resource/deploy/step_generator.go, deployment_executor.go).
// Expected values are written out from those sources, not taken from the models' output.
import { strict as assert } from "node:assert";
import { describeSteps, planSteps } from "../support/engine-model";
import { KubeStandin, ruleAllows, type RequestAttributes } from "../support/kube-standin";
import type { Registration } from "../support/pulumi-mocks";
import { daemonSetCurrent } from "./sim-cluster";

describe("API stand-in: patches as the API server applies them", () => {
  // k8s.io/apiserver pkg/endpoints/handlers/patch.go (applyJSPatch with gopkg.in/evanphx/json-patch.v4),
  // pkg/registry/generic/registry/store.go (Update: resourceVersion precondition), apimachinery
  // pkg/api/errors/errors.go (NewGenericServerResponse, NewConflict), pkg/admission/plugin/policy/validating/dispatcher.go.
  let kube: KubeStandin;
  beforeEach(async () => {
    kube = await KubeStandin.start();
    kube.putNode({ metadata: { name: "n1" }, spec: { taints: [{ key: "a", effect: "NoSchedule" }, { key: "b", value: "x", effect: "NoExecute" }] } });
  });
  afterEach(() => kube.close());
  const patch = async (contentType: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
    const response = await fetch(`${kube.url}/api/v1/nodes/n1`, {
      method: "PATCH",
      headers: { authorization: `Bearer standin-token-not-secret`, "content-type": contentType },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const version = (): string => String(kube.node("n1")!.metadata.resourceVersion);
  const taints = (): unknown => (kube.node("n1")!.spec as { taints?: unknown }).taints;

  it("a JSON patch whose test holds is applied, and the write gets a new resourceVersion", async () => {
    const before = version();
    const answer = await patch("application/json-patch+json", [
      { op: "test", path: "/metadata/resourceVersion", value: before },
      { op: "replace", path: "/spec/taints", value: [{ key: "b", value: "x", effect: "NoExecute" }] },
    ]);
    assert.equal(answer.status, 200);
    assert.deepEqual(taints(), [{ key: "b", value: "x", effect: "NoExecute" }]);
    assert.notEqual(version(), before);
  });

  it("a failed test (or a replace of a missing path) is a 422 with apimachinery's fixed message and nothing changes", async () => {
    const expected = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "the server rejected our request due to an error in our request", reason: "Invalid", details: {}, code: 422 };
    const stale = await patch("application/json-patch+json", [{ op: "test", path: "/metadata/resourceVersion", value: "0" }, { op: "remove", path: "/spec/taints" }]);
    assert.deepEqual(stale, { status: 422, body: expected });
    const missing = await patch("application/json-patch+json", [{ op: "replace", path: "/spec/podCIDR", value: "10.0.0.0/24" }]);
    assert.deepEqual(missing, { status: 422, body: expected });
    assert.equal((taints() as unknown[]).length, 2);
  });

  it("a patch that sets a stale resourceVersion is a 409 Conflict (the optimistic lock of store.go)", async () => {
    const stale = version();
    kube.putNode(kube.node("n1")!); // another write since
    const answer = await patch("application/merge-patch+json", { metadata: { resourceVersion: stale, labels: { x: "y" } } });
    assert.equal(answer.status, 409);
    assert.deepEqual(answer.body, {
      kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure",
      message: 'Operation cannot be fulfilled on nodes "n1": the object has been modified; please apply your changes to the latest version and try again',
      reason: "Conflict", details: { name: "n1", kind: "nodes" }, code: 409,
    });
  });

  it("a ValidatingAdmissionPolicy denial is 422 Invalid by default (403 with reason Forbidden), worded as dispatcher.go words it", async () => {
    kube.admissionPolicies.push({ name: "p", binding: "pb", validate: () => "no" });
    const denied = await patch("application/merge-patch+json", { metadata: { labels: { x: "y" } } });
    assert.equal(denied.status, 422);
    assert.equal(denied.body.reason, "Invalid");
    assert.equal(denied.body.message, `nodes "n1" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'pb' denied request: no`);
    kube.admissionPolicies[0].reason = "Forbidden";
    assert.equal((await patch("application/merge-patch+json", { metadata: { labels: { x: "y" } } })).status, 403);
  });
});

describe("API stand-in: RBAC as the real authorizer decides", () => {
  const attrs = (a: Partial<RequestAttributes>): RequestAttributes => ({ verb: "get", group: "", resource: "nodes", subresource: "", namespace: "", name: "n1", ...a });

  it("matches verbs, groups, resources, subresources and resourceNames by evaluation_helpers.go's rules", () => {
    const nodes = { apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] };
    assert.ok(ruleAllows(attrs({}), nodes));
    assert.ok(!ruleAllows(attrs({ verb: "list", name: "" }), nodes), "list is its own verb");
    assert.ok(!ruleAllows(attrs({ subresource: "status" }), nodes), "nodes does not cover nodes/status");
    assert.ok(ruleAllows(attrs({ subresource: "status" }), { apiGroups: [""], resources: ["*/status"], verbs: ["get"] }));
    assert.ok(ruleAllows(attrs({ subresource: "status" }), { apiGroups: [""], resources: ["nodes/status"], verbs: ["get"] }));
    assert.ok(!ruleAllows(attrs({ group: "apps", resource: "nodes" }), nodes), "API group must match");
    assert.ok(ruleAllows(attrs({ group: "apps", verb: "delete" }), { apiGroups: ["*"], resources: ["*"], verbs: ["*"] }));
    const named = { apiGroups: ["apps"], resources: ["daemonsets"], resourceNames: ["kata-installer-crio"], verbs: ["get"] };
    assert.ok(ruleAllows(attrs({ group: "apps", resource: "daemonsets", name: "kata-installer-crio" }), named));
    assert.ok(!ruleAllows(attrs({ group: "apps", resource: "daemonsets", name: "kata-installer-containerd" }), named));
    assert.ok(!ruleAllows(attrs({ group: "apps", resource: "daemonsets", verb: "list", name: "" }), named), "resourceNames never match a list");
  });

  it("authenticates ServiceAccount tokens while the ServiceAccount exists, binds by subject, and answers 403 with the API server's Status", async () => {
    const kube = await KubeStandin.start();
    try {
      kube.putNode({ metadata: { name: "n1" } });
      kube.apply({ kind: "ServiceAccount", metadata: { name: "agent", namespace: "ns" } });
      kube.apply({ kind: "ClusterRole", metadata: { name: "r" }, rules: [{ apiGroups: [""], resources: ["nodes"], verbs: ["get"] }] });
      kube.apply({ kind: "ClusterRoleBinding", metadata: { name: "b" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "r" }, subjects: [{ kind: "ServiceAccount", name: "agent", namespace: "ns" }] });
      kube.apply({ kind: "Role", metadata: { name: "pods", namespace: "ns" }, rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["list"] }] });
      kube.apply({ kind: "RoleBinding", metadata: { name: "pods", namespace: "ns" }, roleRef: { kind: "Role", name: "pods" }, subjects: [{ kind: "Group", name: "system:serviceaccounts:ns" }] });
      const token = kube.serviceAccountToken("ns", "agent");
      const call = async (method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
        const response = await fetch(`${kube.url}${urlPath}`, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/merge-patch+json" },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return { status: response.status, body: (await response.json()) as Record<string, unknown> };
      };
      assert.equal((await call("GET", "/api/v1/nodes/n1")).status, 200);
      assert.equal((await call("GET", "/api/v1/namespaces/ns/pods")).status, 200, "RoleBinding to the namespace's ServiceAccount group");
      assert.equal((await call("GET", "/api/v1/namespaces/other/pods")).status, 403, "a RoleBinding grants only in its namespace");
      const refused = await call("PATCH", "/api/v1/nodes/n1", { metadata: { labels: { a: "b" } } });
      assert.equal(refused.status, 403);
      // errors.NewForbidden(nodes, "n1", forbiddenMessage(...)) as the API server serializes it.
      assert.deepEqual(refused.body, {
        kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure",
        message: 'nodes "n1" is forbidden: User "system:serviceaccount:ns:agent" cannot patch resource "nodes" in API group "" at the cluster scope',
        reason: "Forbidden", details: { name: "n1", kind: "nodes" }, code: 403,
      });
      const ds = await call("GET", "/apis/apps/v1/namespaces/ns/daemonsets/x");
      assert.equal(ds.body.message, 'daemonsets.apps "x" is forbidden: User "system:serviceaccount:ns:agent" cannot get resource "daemonsets" in API group "apps" in the namespace "ns"');
      kube.delete("ClusterRole", "r");
      assert.match(String((await call("GET", "/api/v1/nodes/n1")).body.message), /: RBAC: clusterrole\.rbac\.authorization\.k8s\.io "r" not found$/);
      kube.delete("ServiceAccount", "agent", "ns");
      assert.equal((await call("GET", "/api/v1/nodes/n1")).status, 401, "the token of a deleted ServiceAccount no longer authenticates");
    } finally {
      await kube.close();
    }
  });
});

describe("API stand-in: DaemonSet status as the controller computes it", () => {
  it("desiredNumberScheduled from nodeSelector and taints; updated/ready counts through a rollout; kstatus Current only at the end", async () => {
    const kube = await KubeStandin.start();
    try {
      kube.putNode({ metadata: { name: "a", labels: { pool: "x" } } });
      kube.putNode({ metadata: { name: "b", labels: { pool: "x" } }, spec: { taints: [{ key: "gpu", effect: "NoSchedule" }] } });
      kube.putNode({ metadata: { name: "c", labels: { pool: "y" } } });
      kube.putNode({ metadata: { name: "d", labels: { pool: "x" } }, spec: { taints: [{ key: "node.kubernetes.io/unschedulable", effect: "NoSchedule" }] } });
      const template = (image: string): Record<string, unknown> => ({ metadata: { labels: { app: "x" } }, spec: { nodeSelector: { pool: "x" }, containers: [{ name: "c", image }] } });
      kube.putDaemonSet({ metadata: { name: "ds", namespace: "ns" }, spec: { selector: { matchLabels: { app: "x" } }, template: template("one") } });
      const status = (): Record<string, number> => kube.get("DaemonSet", "ds", "ns")!.status as Record<string, number>;
      assert.equal(daemonSetCurrent(kube.get("DaemonSet", "ds", "ns")!).current, false, "no observedGeneration before the controller ran");
      kube.reconcileDaemonSets();
      // a and d (cordoning taint tolerated by every DaemonSet pod); not b (untolerated taint) nor c (selector).
      assert.deepEqual(kube.list("Pod").map((p) => (p.spec as { nodeName: string }).nodeName).sort(), ["a", "d"]);
      assert.deepEqual({ ...status() }, { observedGeneration: 1, desiredNumberScheduled: 2, currentNumberScheduled: 2, numberMisscheduled: 0, numberReady: 0, numberAvailable: 0, numberUnavailable: 2, updatedNumberScheduled: 2 });
      for (const pod of kube.list("Pod")) kube.setPodStatus("ns", pod.metadata.name, { conditions: [{ type: "Ready", status: "True" }] });
      kube.reconcileDaemonSets();
      assert.equal(daemonSetCurrent(kube.get("DaemonSet", "ds", "ns")!).current, true);

      kube.putDaemonSet({ metadata: { name: "ds", namespace: "ns" }, spec: { selector: { matchLabels: { app: "x" } }, template: template("two") } });
      assert.equal(kube.get("DaemonSet", "ds", "ns")!.metadata.generation, 2);
      assert.equal(daemonSetCurrent(kube.get("DaemonSet", "ds", "ns")!).current, false, "generation not observed yet");
      kube.reconcileDaemonSets();
      // maxUnavailable 1 (the default): one old pod is deleted (gracefully), the other stays.
      assert.equal(kube.list("Pod").filter((p) => p.metadata.deletionTimestamp).length, 1);
      assert.equal(status().updatedNumberScheduled, 0);
      assert.equal(daemonSetCurrent(kube.get("DaemonSet", "ds", "ns")!).message, "Updated: 0/2");
    } finally {
      await kube.close();
    }
  });
});

describe("engine model: the step order of a changed program", () => {
  const reg = (name: string, type: string, inputs: Record<string, unknown>, deps: { on?: string[]; props?: Record<string, string[]> } = {}): Registration => ({
    type, name, urn: `urn:${name}`, custom: true, parent: "", provider: "", deletedWith: "", inputs, secretInputs: [],
    dependencies: [...(deps.on ?? []), ...Object.values(deps.props ?? {}).flat()].map((d) => `urn:${d}`),
    propertyDependencies: Object.fromEntries(Object.entries(deps.props ?? {}).map(([k, v]) => [k, v.map((d) => `urn:${d}`)])),
    options: { replaceOnChanges: [], ignoreChanges: [], replaceWith: [], deleteBeforeReplace: false, retainOnDelete: false, protect: false, customTimeouts: { create: "", update: "", delete: "" } },
  });
  const NS = "kubernetes:core/v1:Namespace";
  const DS = "kubernetes:apps/v1:DaemonSet";
  const ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole";

  it("updates while the program runs; deletes removed resources after it, dependents first", () => {
    const role = (rules: unknown[]) => reg("role", ROLE, { metadata: { name: "r" }, rules });
    const dsA = reg("ds-a", DS, { metadata: { name: "a" }, spec: {} }, { on: ["role"] });
    const dsB = reg("ds-b", DS, { metadata: { name: "b" }, spec: {} }, { on: ["role"] });
    const rc = reg("rc", "kubernetes:node.k8s.io/v1:RuntimeClass", { metadata: { name: "k" }, handler: "h" }, { on: ["ds-b"] });
    const olds = [role([1, 2]), dsA, dsB, rc];
    const news = [role([1]), dsA];
    assert.deepEqual(describeSteps(planSteps(olds, news)), ["update role", "same ds-a", "delete rc", "delete ds-b"]);
  });

  it("replaces a named object delete-before-replace, with its property dependents but not its dependsOn dependents", () => {
    const ns = (name: string) => reg("ns", NS, { metadata: { name } });
    const ds = (namespace: string) => reg("ds", DS, { metadata: { name: "d", namespace }, spec: {} }, { props: { metadata: ["ns"] } });
    const cmd = (namespace: string) => reg("cmd", "command:local:Command", { delete: "x", environment: { NS: namespace } }, { props: { environment: ["ns"] } });
    const after = reg("after", DS, { metadata: { name: "e", namespace: "fixed" }, spec: {} }, { on: ["ns"] });
    const olds = [ns("one"), ds("one"), cmd("one"), after];
    const news = [ns("two"), ds("two"), cmd("two"), after];
    assert.deepEqual(describeSteps(planSteps(olds, news)), [
      "replace-delete ds", // dependent whose metadata comes from the namespace: replaced with it, deleted first
      "replace-delete ns",
      "replace-create ns",
      "create ds",
      "update cmd", // a Command's environment change is an update (only `triggers` replaces)
      "same after", // linked by dependsOn only: not replaced
    ]);
  });

  // RuntimeClass `handler` is immutable in the API server (kubernetes/kubernetes pkg/apis/node/validation
  // ValidateRuntimeClassUpdate) but not in pulumi-kubernetes' forceNew table (provider/pkg/provider/diff.go),
  // and the provider's Diff never turns an immutable-field error into a replacement: the change is sent as
  // an update, which the API server refuses. Only the program's replaceOnChanges makes it a replacement.
  it("a RuntimeClass whose handler changed fails the update unless the program replaces on it; destroy deletes in reverse dependency order", () => {
    const rc = (handler: string, replaceOnHandler: boolean) => {
      const r = reg("rc", "kubernetes:node.k8s.io/v1:RuntimeClass", { metadata: { name: "kata" }, handler }, { on: ["ds"] });
      if (replaceOnHandler) r.options = { ...r.options, replaceOnChanges: ["handler"], deleteBeforeReplace: true };
      return r;
    };
    const ds = reg("ds", DS, { metadata: { name: "d" }, spec: {} });
    assert.throws(() => planSteps([ds, rc("a", false)], [ds, rc("b", false)]), /the API server refuses the update of rc: RuntimeClass handler is immutable/);
    assert.deepEqual(describeSteps(planSteps([ds, rc("a", true)], [ds, rc("b", true)])), ["same ds", "replace-delete rc", "replace-create rc"]);
    assert.deepEqual(describeSteps(planSteps([ds, rc("a", true)], [])), ["delete rc", "delete ds"]);
  });

  it("replaces a Secret whose data changed (pulumi-kubernetes without enableSecretMutable), delete-before-replace", () => {
    const secret = (password: string) => reg("secret", "kubernetes:core/v1:Secret", { metadata: { name: "s" }, type: "kubernetes.io/dockerconfigjson", stringData: { password } });
    assert.deepEqual(describeSteps(planSteps([secret("a")], [secret("b")])), ["replace-delete secret", "replace-create secret"]);
  });
});
