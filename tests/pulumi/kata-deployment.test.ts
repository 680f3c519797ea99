import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { KataDeployment, KataDeploymentArgs, KataOverheadArgs } from "../../components";
import { guardProvider, GuardedSettings, unsafeSettingChanges } from "../../components/stack-changes";
import { schemaProblems } from "../support/k8s-schema";
import {
  Registration,
  registrationNamed,
  registrations,
  registrationsOfType,
  settled,
  valueOf,
} from "../support/pulumi-mocks";

const COMPONENT = "kata-deploy:index:KataDeployment";
const DAEMONSET = "kubernetes:apps/v1:DaemonSet";
const COMMAND = "command:local:Command";
const IMAGE = "registry.example.com/kata-deploy@sha256:" + "cd".repeat(32);

/** Deploys one instance with a prebuilt image and waits for every registration. */
async function deploy(name = "kata", args: KataDeploymentArgs = {}, opts?: pulumi.ComponentResourceOptions): Promise<KataDeployment> {
  const component = new KataDeployment(name, { image: IMAGE, ...args }, opts);
  await settled();
  return component;
}

/** `urn::id` → urn (URNs contain `::` themselves, ids do not). */
const providerUrn = (reference: string): string => reference.slice(0, reference.lastIndexOf("::"));

/**
 * The engine's delete schedule, computed from the recorded edges only: a resource is deleted before
 * everything it depends on — its explicit and input dependencies, its parent, its provider and its
 * `deletedWith` target. Returns batches (resources in one batch may be deleted in parallel), by name.
 */
function destroyBatches(recorded: readonly Registration[]): string[][] {
  const byUrn = new Map(recorded.map((registration) => [registration.urn, registration]));
  const prerequisitesOf = (registration: Registration): string[] =>
    [
      ...registration.dependencies,
      registration.parent,
      registration.provider && providerUrn(registration.provider),
      registration.deletedWith,
    ].filter((urn) => urn && byUrn.has(urn));
  // For each resource, the resources that must be deleted before it.
  const mustGoFirst = new Map<string, Set<string>>(recorded.map((registration) => [registration.urn, new Set()]));
  for (const registration of recorded) {
    for (const prerequisite of prerequisitesOf(registration)) mustGoFirst.get(prerequisite)!.add(registration.urn);
  }
  const remaining = new Set(byUrn.keys());
  const batches: string[][] = [];
  while (remaining.size > 0) {
    const batch = [...remaining].filter((urn) => [...mustGoFirst.get(urn)!].every((other) => !remaining.has(other)));
    if (batch.length === 0) throw new Error(`dependency cycle among ${[...remaining].join(", ")}`);
    for (const urn of batch) remaining.delete(urn);
    batches.push(batch.map((urn) => byUrn.get(urn)!.name).sort());
  }
  return batches;
}

const daemonSetContainers = (registration: Registration): { image: string }[] =>
  (registration.inputs as { spec: { template: { spec: { containers: { image: string }[] } } } }).spec.template.spec.containers;

/** The recorded destroy schedule as printed in the issue's closing note and docs/kubernetes.md. */
function printBatches(title: string, batches: string[][]): void {
  console.log(`      ${title}:\n${batches.map((batch, i) => `        ${i + 1}. ${batch.join(", ")}`).join("\n")}`);
}

describe("KataDeployment (under Pulumi mocks)", () => {
  it("registers its children under itself, each named after the component", async () => {
    await deploy("kata");
    const component = registrationsOfType(COMPONENT);
    assert.equal(component.length, 1);
    const children = registrations().filter((registration) => registration.type !== COMPONENT);
    assert.deepEqual(
      children.map((child) => child.name).sort(),
      [
        "kata-cleanup", "kata-cluster-role", "kata-cluster-role-binding", "kata-installer-containerd", "kata-installer-crio",
        "kata-namespace", "kata-runtime-labeler", "kata-runtimeclass-kata", "kata-runtimeclass-kata-fc",
        "kata-runtimeclass-kata-qemu", "kata-service-account", "kata-settings", "kata-wait-for-clean-nodes", "kata-wait-for-installed-nodes",
      ],
    );
    for (const child of children) assert.equal(child.parent, component[0].urn, `${child.name}'s parent`);
  });

  it("pulumi destroy removes Kata in the seed's order, by the dependency graph", async () => {
    await deploy("kata");
    const batches = destroyBatches(registrations());
    const batchOf = (name: string): number => {
      const index = batches.findIndex((batch) => batch.includes(name));
      assert.notEqual(index, -1, `${name} is in the destroy plan`);
      return index;
    };
    // Printed so the closing note of the issue can quote the order the test computed.
    printBatches("destroy order", batches);

    const wait = batchOf("kata-wait-for-clean-nodes");
    for (const first of ["kata-installer-containerd", "kata-installer-crio", "kata-runtime-labeler", "kata-runtimeclass-kata", "kata-runtimeclass-kata-qemu", "kata-runtimeclass-kata-fc"]) {
      assert.ok(batchOf(first) < wait, `${first} is deleted before the wait step`);
    }
    const cleanup = batchOf("kata-cleanup");
    assert.ok(wait < cleanup, "the wait step finishes before the cleanup DaemonSet is deleted");
    for (const rbac of ["kata-service-account", "kata-cluster-role", "kata-cluster-role-binding", "kata-namespace"]) {
      assert.ok(cleanup < batchOf(rbac), `the cleanup DaemonSet is deleted before ${rbac}`);
    }
    // RuntimeClasses go first: no new Kata pod is scheduled while nodes are uninstalled.
    assert.ok(batchOf("kata-runtimeclass-kata-qemu") < batchOf("kata-installer-containerd"));
    assert.equal(batchOf("kata"), batches.length - 1, "the component itself goes last");
  });

  const schemaCases: [string, KataDeploymentArgs, number][] = [
    ["defaults", {}, 11],
    ["one runtime, rke2, a percentage budget, existing namespace", { runtimes: ["containerd"], shims: ["clh"], containerdFlavor: "rke2", maxUnavailable: "10%", namespace: "platform" }, 8],
  ];
  for (const [label, args, count] of schemaCases) {
    it(`every Kubernetes object it registers validates against the Kubernetes OpenAPI schema (${label})`, async () => {
      await deploy("kata", args);
      const objects = registrations().filter((registration) => registration.type.startsWith("kubernetes:"));
      assert.equal(objects.length, count);
      for (const object of objects) assert.deepEqual(await schemaProblems(object.inputs), [], object.name);
      for (const ds of registrationsOfType(DAEMONSET)) {
        const spec = (ds.inputs as { spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> } } } }).spec;
        for (const [key, value] of Object.entries(spec.selector.matchLabels)) {
          assert.equal(spec.template.metadata.labels[key], value, `${ds.name}: the selector matches its pod labels`);
        }
      }
    });
  }

  it("the destroy-time wait has only a delete, no triggers, and gets the kubeconfig as a secret", async () => {
    await deploy("kata", { kubeconfig: "apiVersion: v1\nkind: Config\n", labelPrefix: "example.com", cleanupTimeoutSeconds: 90 });
    const wait = registrationNamed("kata-wait-for-clean-nodes");
    assert.equal(wait.type, COMMAND);
    assert.equal(wait.inputs.triggers, undefined, "a trigger change would replace it and run the delete during up");
    assert.equal(wait.inputs.create, undefined);
    assert.deepEqual(wait.inputs.interpreter, ["node"]);
    const script = path.resolve(String(wait.inputs.delete));
    assert.ok(fs.existsSync(script), `${script} exists`);
    assert.ok(!path.isAbsolute(String(wait.inputs.delete)), "stored relative to the project, so destroy works from another checkout");
    assert.deepEqual(wait.inputs.environment, {
      KATA_DEPLOY_KUBECONFIG: "apiVersion: v1\nkind: Config\n",
      KATA_DEPLOY_LABEL_PREFIX: "example.com",
      KATA_DEPLOY_TIMEOUT_SECONDS: "90",
      KATA_DEPLOY_NAMESPACE: "kata-deploy",
      KATA_DEPLOY_RUNTIMES: "containerd,crio",
    });
    assert.ok(wait.secretInputs.some((secret) => secret.startsWith("environment")), `secrets: ${wait.secretInputs.join(", ")}`);
  });

  it("registers exactly the least-privilege RBAC rules, bound to its own ServiceAccount", async () => {
    await deploy("kata", { runtimes: ["crio"] });
    const [role] = registrationsOfType("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole");
    assert.deepEqual(role.inputs.rules, [
      { apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] },
      // Every installer name, not only the deployed runtimes' (a dropped runtime's preStop still reads its DaemonSet).
      { apiGroups: ["apps"], resources: ["daemonsets"], resourceNames: ["kata-installer-containerd", "kata-installer-crio"], verbs: ["get"] },
    ]);
    const [binding] = registrationsOfType("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding");
    assert.deepEqual(binding.inputs.subjects, [{ kind: "ServiceAccount", name: "kata-deploy", namespace: "kata-deploy" }]);
    assert.deepEqual(binding.inputs.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "kata-deploy" });
  });

  it("never asks Pulumi to skip the DaemonSet await", async () => {
    await deploy("kata");
    for (const registration of registrations().filter((r) => r.type.startsWith("kubernetes:"))) {
      const annotations = (registration.inputs.metadata as { annotations?: Record<string, string> } | undefined)?.annotations ?? {};
      assert.equal(annotations["pulumi.com/skipAwait"], undefined, registration.name);
    }
  });

  it("uses an existing namespace without creating or deleting it", async () => {
    await deploy("kata", { namespace: "platform" });
    assert.deepEqual(registrationsOfType("kubernetes:core/v1:Namespace"), []);
    for (const ds of registrationsOfType(DAEMONSET)) {
      assert.equal((ds.inputs.metadata as { namespace: string }).namespace, "platform");
    }
  });

  it("creates a namespace of another name when asked, and deploys into kube-system without owning it", async () => {
    await deploy("kata", { namespace: "kata-system", createNamespace: true });
    const [created] = registrationsOfType("kubernetes:core/v1:Namespace");
    assert.equal((created.inputs.metadata as { name: string }).name, "kata-system");
    for (const ds of registrationsOfType(DAEMONSET)) assert.ok(ds.dependencies.includes(created.urn), `${ds.name} waits for the namespace`);
    await deploy("kata2", { namespace: "kube-system" });
    assert.equal(registrationsOfType("kubernetes:core/v1:Namespace").length, 1, "kube-system is used, not created");
  });

  it("with a prebuilt image, builds nothing and runs that image everywhere", async () => {
    const component = await deploy("kata");
    assert.deepEqual(registrationsOfType("docker:index/image:Image"), []);
    for (const ds of registrationsOfType(DAEMONSET)) {
      assert.deepEqual(daemonSetContainers(ds).map((c) => c.image), [IMAGE], ds.name);
    }
    assert.equal(await valueOf(component.image), IMAGE);
    assert.deepEqual(await valueOf(component.runtimeClassNames), ["kata-qemu", "kata-fc", "kata"]);
    assert.equal(await valueOf(component.namespace), "kata-deploy");
  });

  // Building the image (update and preview): tests/pulumi/image-build.test.ts.

  it("two instances with different names and providers: no URN collision, each child uses its instance's provider", async () => {
    const providerA = new k8s.Provider("cluster-a", { kubeconfig: "a" });
    const providerB = new k8s.Provider("cluster-b", { kubeconfig: "b" });
    new KataDeployment("kata-a", { image: IMAGE }, { providers: { kubernetes: providerA } });
    new KataDeployment("kata-b", { image: IMAGE }, { provider: providerB });
    await settled();
    const urns = registrations().map((registration) => registration.urn);
    assert.equal(new Set(urns).size, urns.length, "URNs are unique");
    const providerUrns = {
      "kata-a": registrationNamed("cluster-a").urn,
      "kata-b": registrationNamed("cluster-b").urn,
    };
    for (const [instance, expectedProvider] of Object.entries(providerUrns)) {
      const componentUrn = registrations().find((r) => r.type === COMPONENT && r.name === instance)!.urn;
      const kubernetesChildren = registrations().filter((r) => r.parent === componentUrn && r.type.startsWith("kubernetes:"));
      assert.equal(kubernetesChildren.length, 11);
      for (const child of kubernetesChildren) {
        assert.equal(providerUrn(child.provider), expectedProvider, `${child.name} uses ${instance}'s provider`);
      }
    }
  });

  describe("rejects bad arguments before creating anything", () => {
    const cases: [string, KataDeploymentArgs, RegExp][] = [
      ["unknown runtime", { runtimes: ["containerd", "docker" as "crio"] }, /runtimes\[1\] is "docker"; allowed values: containerd, crio/],
      ["empty runtimes", { runtimes: [] }, /runtimes is empty; list at least one; allowed values: containerd, crio/],
      ["repeated runtime", { runtimes: ["crio", "crio"] }, /runtimes\[1\] repeats "crio"/],
      ["unknown shim", { shims: ["qemu", "vmware"] }, /shims\[1\] is "vmware"; allowed values: qemu, .*fc/],
      ["empty shims", { shims: [] }, /shims is empty; list at least one; allowed values: qemu/],
      ["defaultShim not in shims", { shims: ["qemu"], defaultShim: "fc" }, /defaultShim is "fc", which is not in shims; allowed values: qemu$/],
      ["label prefix with a slash", { labelPrefix: "kata-containers.io/" }, /labelPrefix is "kata-containers.io\/"; it must be a DNS subdomain/],
      ["upper-case label prefix", { labelPrefix: "Kata.io" }, /labelPrefix is "Kata.io"/],
      ["zero maxUnavailable", { maxUnavailable: "0" }, /maxUnavailable is 0; allowed values: a whole number >= 1 or a percentage/],
      ["bad percentage", { maxUnavailable: "150%" }, /maxUnavailable is "150%"/],
      ["unknown containerd flavor", { containerdFlavor: "k8s" as "k3s" }, /containerdFlavor is "k8s"; allowed values: auto, containerd, k3s, rke2, k0s, microk8s/],
      ["relative containerdConfigPath", { containerdConfigPath: "etc/containerd/config.toml" }, /containerdConfigPath is "etc\/containerd\/config.toml"; must be an absolute, normalized host file path/],
      ["containerdSocket with ..", { containerdSocket: "/run/../run/c.sock" }, /containerdSocket is "\/run\/..\/run\/c.sock"; must be an absolute, normalized host file path/],
      ["containerdUnit with a space", { containerdUnit: "my containerd" }, /containerdUnit is "my containerd"; must be a systemd unit name/],
      ["custom containerd with k3s", { containerdFlavor: "k3s", containerdSocket: "/run/c.sock" }, /containerdSocket describes a plain containerd, but containerdFlavor is "k3s"; drop containerdSocket or set containerdFlavor to "containerd"/],
      ["overhead for a shim not deployed", { runtimeClassOverhead: { clh: { memory: "1Gi" } } }, /runtimeClassOverhead.clh names a shim that is not in shims; allowed keys: qemu, fc/],
      ["bad overhead quantity", { runtimeClassOverhead: { qemu: { memory: "lots" } } }, /runtimeClassOverhead.qemu.memory is "lots"; it must be a non-negative Kubernetes quantity/],
      // The OpenAPI schema's Quantity pattern lets these through; the API server's ParseQuantity does not.
      ["malformed overhead number", { runtimeClassOverhead: { qemu: { cpu: "1.2.3" } } }, /runtimeClassOverhead.qemu.cpu is "1.2.3"; it must be a non-negative Kubernetes quantity/],
      ["negative overhead", { runtimeClassOverhead: { fc: { memory: "-130Mi" } } }, /runtimeClassOverhead.fc.memory is "-130Mi"; it must be a non-negative Kubernetes quantity/],
      ["negative resource request", { resources: { labeler: { requests: { cpu: "-10m" } } } }, /resources.labeler.requests.cpu is "-10m"; it must be a Kubernetes quantity/],
      ["unknown overhead field", { runtimeClassOverhead: { qemu: { memroy: "1Gi" } as unknown as KataOverheadArgs } }, /runtimeClassOverhead.qemu.memroy is not a known field; allowed keys: memory, cpu, enabled/],
      ["overhead on/off not a boolean", { runtimeClassOverhead: { qemu: { enabled: "no" as unknown as boolean } } }, /runtimeClassOverhead.qemu.enabled is "no"; allowed values: true, false/],
      ["an overhead figure while overhead is off", { runtimeClassOverheadEnabled: false, runtimeClassOverhead: { qemu: { memory: "512Mi" } } }, /runtimeClassOverhead.qemu.memory is set, but runtimeClassOverheadEnabled is false, so kata-qemu declares no overhead; remove the figure, or set runtimeClassOverhead.qemu.enabled to true/],
      ["an overhead figure for a shim switched off", { runtimeClassOverhead: { fc: { enabled: false, cpu: "1" } } }, /runtimeClassOverhead.fc.cpu is set, but runtimeClassOverhead.fc.enabled is false/],
      ["RuntimeClass node labels for a shim not deployed", { runtimeClassNodeSelector: { clh: { a: "b" } } }, /runtimeClassNodeSelector.clh names a shim that is not in shims; allowed keys: qemu, fc/],
      ["RuntimeClass node label with an invalid key", { runtimeClassNodeSelector: { qemu: { "tdx/": "true" } } }, /runtimeClassNodeSelector.qemu\["tdx\/"\] is not a valid label key/],
      ["RuntimeClass node label with an invalid value", { runtimeClassNodeSelector: { qemu: { tdx: "yes please" } } }, /runtimeClassNodeSelector.qemu\["tdx"\] has value "yes please"; a label value is at most 63/],
      ["RuntimeClass node label on the component's own key", { runtimeClassNodeSelector: { fc: { "kata-containers.io/kata-runtime": "false" } } }, /runtimeClassNodeSelector.fc\["kata-containers.io\/kata-runtime"\] is the label the component requires itself/],
      ["default RuntimeClass name not a DNS subdomain", { defaultRuntimeClassName: "Kata" }, /defaultRuntimeClassName is "Kata"; it must be a DNS subdomain/],
      ["default RuntimeClass name of a shim's class", { defaultRuntimeClassName: "kata-qemu" }, /defaultRuntimeClassName is "kata-qemu", the name of shim qemu's own RuntimeClass; choose another name/],
      ["unknown imagePullPolicy", { imagePullPolicy: "always" as "Always" }, /imagePullPolicy is "always"; allowed values: Always, IfNotPresent, Never/],
      ["pod label with an invalid key", { podLabels: { "team name": "a" } }, /podLabels\["team name"\] is not a valid label key/],
      ["pod label with an invalid value", { podLabels: { team: "platform/infra" } }, /podLabels\["team"\] has value "platform\/infra"/],
      ["pod label the component sets itself", { podLabels: { "app.kubernetes.io/component": "kata" } }, /podLabels\["app.kubernetes.io\/component"\] is a label the component sets on its pods itself/],
      ["pod annotation with an invalid key", { podAnnotations: { "example.com/": "x" } }, /podAnnotations\["example.com\/"\] is not a valid annotation key/],
      ["pod annotation that is not a string", { podAnnotations: { "prometheus.io/scrape": false as unknown as string } }, /podAnnotations\["prometheus.io\/scrape"\] has value false; annotation values are strings/],
      ["pod annotations over the API server's size limit", { podAnnotations: { big: "x".repeat(256 * 1024) } }, /podAnnotations total 262147 bytes; the API server allows at most 262144 bytes/],
      ["pod anti-affinity", { affinity: { podAntiAffinity: {} } as KataDeploymentArgs["affinity"] }, /affinity.podAntiAffinity is not offered: an installer pod another pod keeps off its node can neither install Kata there nor uninstall it/],
      ["required node affinity without terms", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } } } }, /requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms must list at least one term/],
      ["an empty node selector term", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{}] } } } }, /nodeSelectorTerms\[0\] has no requirement, so it matches no node/],
      ["unknown node selector operator", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "a", operator: "Equals" as "In", values: ["b"] }] }] } } } }, /matchExpressions\[0\].operator is "Equals"; allowed values: In, NotIn, Exists, DoesNotExist, Gt, Lt/],
      ["In without values", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "a", operator: "In" }] }] } } } }, /matchExpressions\[0\].values must hold at least one value for operator "In"/],
      ["Gt with a value that is not an integer", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "cores", operator: "Gt", values: ["many"] }] }] } } } }, /matchExpressions\[0\].values must hold exactly one integer for operator "Gt"/],
      ["a node field other than metadata.name", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: "spec.unschedulable", operator: "In", values: ["false"] }] }] } } } }, /matchFields\[0\].key is "spec.unschedulable"; the only node field Kubernetes selects on is "metadata.name"/],
      ["a preferred term weighing 0", { affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 0, preference: { matchExpressions: [{ key: "a", operator: "Exists" }] } }] } } }, /preferredDuringSchedulingIgnoredDuringExecution\[0\].weight is 0; it must be a whole number from 1 to 100/],
      ["bad namespace", { namespace: "Kata_NS" }, /namespace is "Kata_NS"; it must be a DNS label/],
      ["bad cleanup timeout", { cleanupTimeoutSeconds: 0 }, /cleanupTimeoutSeconds is 0; allowed values: a whole number of seconds >= 1/],
      ["label prefix in the reserved kubernetes.io domain", { labelPrefix: "kata.kubernetes.io" }, /labelPrefix is "kata.kubernetes.io"; the kubernetes.io domain is reserved/],
      ["label prefix with a DNS label over 63 characters", { labelPrefix: `${"a".repeat(64)}.example.com` }, /labelPrefix is "a{64}.example.com"; it must be a DNS subdomain/],
      ["creating kube-system", { namespace: "kube-system", createNamespace: true }, /createNamespace is true for namespace "kube-system", which Kubernetes owns/],
      ["nodeSelector on a label the component manages", { nodeSelector: { "kata-containers.io/kata-runtime": "true" } }, /nodeSelector\["kata-containers.io\/kata-runtime"\] is a label the component manages itself/],
      ["nodeSelector with an invalid key", { nodeSelector: { "-sandbox": "true" } }, /nodeSelector\["-sandbox"\] is not a valid label key/],
      ["nodeSelector with an invalid value", { nodeSelector: { sandbox: "yes please" } }, /nodeSelector\["sandbox"\] has value "yes please"/],
      ["toleration Equal without a key", { tolerations: [{ operator: "Equal", value: "x" }] }, /tolerations\[0\].operator is "Equal" without a key; an empty key needs operator "Exists"/],
      ["toleration Exists with a value", { tolerations: [{ key: "gpu", operator: "Exists", value: "x" }] }, /tolerations\[0\].value is "x"; operator "Exists" takes no value/],
      ["tolerationSeconds without NoExecute", { tolerations: [{ key: "gpu", operator: "Exists", effect: "NoSchedule", tolerationSeconds: 5 }] }, /tolerations\[0\].tolerationSeconds is set for effect "NoSchedule"; it applies only to effect "NoExecute"/],
      ["unknown toleration effect", { tolerations: [{ operator: "Exists", effect: "NoRun" as "NoSchedule" }] }, /tolerations\[0\].effect is "NoRun"; allowed values: NoSchedule, PreferNoSchedule, NoExecute/],
      ["bad priorityClassName", { priorityClassName: "Node Critical" }, /priorityClassName is "Node Critical"; it must name a PriorityClass/],
      ["repeated imagePullSecrets", { imagePullSecrets: ["regcred", "regcred"] }, /imagePullSecrets\[1\] repeats "regcred"/],
      ["resources for an unknown container", { resources: { installers: {} } as KataDeploymentArgs["resources"] }, /resources.installers is not a container of the component; allowed keys: installer, cleanup, labeler/],
      ["bad resource quantity", { resources: { installer: { limits: { memory: "1 GB" } } } }, /resources.installer.limits.memory is "1 GB"; it must be a Kubernetes quantity/],
      // Startup taints (issue 12 point 5).
      ["startupTaints not a list", { startupTaints: "example.com/kata-not-ready" as unknown as [] }, /startupTaints is "example.com\/kata-not-ready"; it must be a list of taints, e.g. \[\{"key": "example.com\/kata-not-ready", "effect": "NoSchedule"\}\]/],
      ["startup taint with an invalid key", { startupTaints: [{ key: "example.com/-pending" }] }, /startupTaints\[0\].key is "example.com\/-pending", not a valid taint key: its name must be 1-63 characters/],
      ["startup taint with an unknown effect", { startupTaints: [{ key: "example.com/pending", effect: "NoRun" as "NoSchedule" }] }, /startupTaints\[0\].effect is "NoRun"; allowed values: NoSchedule, PreferNoSchedule, NoExecute/],
      ["startup taint with a value", { startupTaints: [{ key: "example.com/pending", value: "true" } as { key: string }] }, /startupTaints\[0\].value is not used: a node holds one taint per key and effect, and that taint is removed whatever its value; drop value/],
      ["startup taint Kubernetes manages", { startupTaints: [{ key: "node.kubernetes.io/not-ready" }] }, /startupTaints\[0\].key is "node.kubernetes.io\/not-ready", a taint in the kubernetes.io domain, which Kubernetes and its controllers set and remove themselves/],
      ["startup taint listed twice", { startupTaints: [{ key: "example.com/pending", effect: "NoSchedule" }, { key: "example.com/pending", effect: "NoSchedule" }] }, /startupTaints\[1\] \(key "example.com\/pending", effect NoSchedule\) overlaps startupTaints\[0\] \(effect NoSchedule\); list each taint once/],
      ["startup taint covered by a key-only entry", { startupTaints: [{ key: "example.com/pending" }, { key: "example.com/pending", effect: "NoExecute" }] }, /startupTaints\[1\] \(key "example.com\/pending", effect NoExecute\) overlaps startupTaints\[0\] \(every effect\)/],
      // --- snapshotter / guest pull (issue 12) ---
      ["snapshotter for a shim not deployed", { snapshotters: { clh: "devmapper" } }, /snapshotters.clh names a shim that is not in shims; allowed keys: qemu, fc$/],
      ["snapshotter name the agent's mapping cannot carry", { snapshotters: { fc: "dev:mapper" } }, /snapshotters.fc is "dev:mapper"; it must name a containerd snapshotter/],
      ["guestPull for a shim not deployed", { guestPull: ["qemu-coco-dev"] }, /guestPull\[0\] is "qemu-coco-dev"; allowed values: qemu, fc$/],
      ["repeated guestPull", { guestPull: ["qemu", "qemu"] }, /guestPull\[1\] repeats "qemu"/],
      // --- end snapshotter / guest pull ---
      // Mixed-architecture clusters (issue 12 point 3).
      ["shimsByArch with shims", { shims: ["qemu"], shimsByArch: { amd64: ["qemu"] } }, /shims is set together with shimsByArch, which replaces it .*; remove shims/],
      ["shimsByArch with an architecture Kubernetes does not name so", { shimsByArch: { x86_64: ["qemu"] } as KataDeploymentArgs["shimsByArch"] }, /shimsByArch.x86_64 is not a node architecture .*; allowed values: amd64, arm64, s390x, ppc64le/],
      ["shimsByArch with a shim Kata does not ship for the architecture", { shimsByArch: { amd64: ["qemu", "fc"], s390x: ["qemu", "fc"] } }, /shimsByArch.s390x\[1\] is "fc", which Kata ships for amd64, arm64 only, not for s390x .*; remove it from shimsByArch.s390x/],
      ["shimsByArch with an unknown shim", { shimsByArch: { arm64: ["qemu", "vmware"] } }, /shimsByArch.arm64\[1\] is "vmware"; allowed values: qemu/],
      ["shimsByArch without any shim", { shimsByArch: { amd64: [], arm64: [] } }, /shimsByArch lists no shim for any architecture; give at least one/],
      ["shimsByArch with a list that is not one", { shimsByArch: { amd64: "qemu" as unknown as string[] } }, /shimsByArch.amd64 is "qemu"; it must be a list of shims/],
      ["defaultShimByArch without shimsByArch", { defaultShimByArch: { amd64: "qemu" } }, /defaultShimByArch is set without shimsByArch/],
      ["defaultShimByArch not in that architecture's shims", { shimsByArch: { amd64: ["qemu", "fc"], arm64: ["qemu"] }, defaultShimByArch: { arm64: "fc" } }, /defaultShimByArch.arm64 is "fc", which is not in shimsByArch.arm64; allowed values: qemu$/],
      ["defaultShimByArch for an architecture without shims", { shimsByArch: { amd64: ["qemu"], arm64: [] }, defaultShimByArch: { arm64: "qemu" } }, /defaultShimByArch.arm64 names an architecture without shims in shimsByArch; allowed keys: amd64$/],
      [
        "different default shims per architecture, and a default RuntimeClass name that cannot be a handler",
        { shimsByArch: { amd64: ["qemu", "qemu-runtime-rs"], arm64: ["qemu", "qemu-runtime-rs"] }, defaultShimByArch: { amd64: "qemu", arm64: "qemu-runtime-rs" }, defaultRuntimeClassName: "kata.default" },
        /defaultRuntimeClassName is "kata.default", which is also the handler of the default RuntimeClass while defaultShimByArch names different shims \(qemu, qemu-runtime-rs\), and a handler must be a DNS label \(no '.'\); choose a name such as "kata"$/,
      ],
      [
        "different default shims per architecture, and a default RuntimeClass name kata-deploy uses as a runtime itself",
        { shimsByArch: { amd64: ["qemu", "fc"], arm64: ["fc"] }, defaultShimByArch: { amd64: "qemu" }, defaultRuntimeClassName: "untrusted" },
        /defaultRuntimeClassName is "untrusted", which is also the handler of the default RuntimeClass .*kata-deploy writes a runtime of that name itself; choose another name such as "kata"$/,
      ],
      [
        "different default shims per architecture whose RuntimeClass node labels differ",
        { shimsByArch: { amd64: ["qemu", "qemu-tdx"], arm64: ["qemu"] }, defaultShimByArch: { amd64: "qemu-tdx", arm64: "qemu" }, runtimeClassNodeSelector: { "qemu-tdx": { "intel.feature.node.kubernetes.io/tdx": "true" } } },
        /runtimeClassNodeSelector gives the default shims of defaultShimByArch \(qemu-tdx, qemu\) different node labels, but their default RuntimeClass has one nodeSelector for every architecture; give them the same labels, or set createDefaultRuntimeClass to false$/,
      ],
      ["createPullSecret without a password", { imageBuild: { repository: "r.example.com/k", registry: { server: "r.example.com", username: "ci" }, createPullSecret: true } }, /imageBuild.createPullSecret is true but imageBuild.registry.password is not set/],
    ];
    for (const [label, args, message] of cases) {
      it(label, async () => {
        assert.throws(
          () => new KataDeployment("kata", { image: IMAGE, ...args }),
          (error: unknown) => pulumi.ResourceError.isInstance(error) && message.test(error.message),
        );
        await settled();
        assert.deepEqual(registrations().map((registration) => registration.type), [COMPONENT], "no child registered");
      });
    }

    it("neither image nor imageBuild.repository", async () => {
      assert.throws(
        () => new KataDeployment("kata", {}),
        (error: unknown) => pulumi.ResourceError.isInstance(error) && /image is not set and imageBuild.repository is missing/.test(error.message),
      );
      await settled();
    });
  });

  describe("scheduling, pull credentials and await settings", () => {
    const podSpecOf = (registration: Registration) =>
      (registration.inputs as { spec: { template: { spec: { priorityClassName?: string; tolerations?: unknown[]; imagePullSecrets?: { name: string }[]; nodeSelector?: Record<string, string> } } } }).spec.template.spec;

    it("passes nodeSelector, tolerations, priority and pull secrets to the DaemonSets it registers", async () => {
      await deploy("kata", {
        nodeSelector: { "pool.example.com/name": "sandbox" },
        tolerations: [{ key: "nvidia.com/gpu", operator: "Exists" }],
        priorityClassName: "platform-critical",
        imagePullSecrets: ["regcred"],
      });
      for (const ds of registrationsOfType(DAEMONSET)) {
        const spec = podSpecOf(ds);
        assert.equal(spec.priorityClassName, "platform-critical", ds.name);
        assert.deepEqual(spec.imagePullSecrets, [{ name: "regcred" }], ds.name);
        assert.deepEqual(spec.tolerations, ds.name === "kata-cleanup" ? [{ operator: "Exists" }] : [{ key: "nvidia.com/gpu", operator: "Exists" }], ds.name);
        assert.equal(spec.nodeSelector?.["pool.example.com/name"], ds.name === "kata-cleanup" ? undefined : "sandbox", ds.name);
        assert.deepEqual(await schemaProblems(ds.inputs), [], ds.name);
      }
    });

    it("startupTaints: the labeler and installers tolerate them on top of the user's tolerations, the installers remove them, the install wait selects and checks those nodes", async () => {
      await deploy("kata", {
        tolerations: [{ key: "nvidia.com/gpu", operator: "Exists" }],
        startupTaints: [{ key: "example.com/kata-not-ready", effect: "NoSchedule" }],
      });
      const expected = [{ key: "nvidia.com/gpu", operator: "Exists" }, { key: "example.com/kata-not-ready", operator: "Exists", effect: "NoSchedule" }];
      for (const ds of registrationsOfType(DAEMONSET)) {
        assert.deepEqual(podSpecOf(ds).tolerations, ds.name === "kata-cleanup" ? [{ operator: "Exists" }] : expected, ds.name);
        const command = (ds.inputs as { spec: { template: { spec: { containers: { command: string[] }[] } } } }).spec.template.spec.containers[0].command;
        const flag = command.indexOf("--startup-taints");
        assert.deepEqual(flag === -1 ? undefined : command[flag + 1], ds.name.startsWith("kata-installer-") ? "example.com/kata-not-ready:NoSchedule" : undefined, ds.name);
      }
      const environment = registrationNamed("kata-wait-for-installed-nodes").inputs.environment as Record<string, string>;
      assert.deepEqual(JSON.parse(environment.KATA_DEPLOY_TOLERATIONS), expected, "the wait computes the installers' nodes with their tolerations");
      assert.deepEqual(JSON.parse(environment.KATA_DEPLOY_STARTUP_TAINTS), [{ key: "example.com/kata-not-ready", effect: "NoSchedule" }]);
    });

    it("passes RuntimeClass and pod settings to the RuntimeClasses, DaemonSets, install wait and settings guard it registers (issue 12 point 7)", async () => {
      const required = { nodeSelectorTerms: [{ matchExpressions: [{ key: "pool.example.com/kata", operator: "In" as const, values: ["yes"] }] }] };
      const component = await deploy("kata", {
        defaultRuntimeClassName: "sandboxed",
        runtimeClassOverhead: { fc: { enabled: false } },
        runtimeClassNodeSelector: { qemu: { "pool.example.com/vm": "large" } },
        podLabels: { "team.example.com/name": "platform" },
        podAnnotations: { "example.com/owner": "platform" },
        imagePullPolicy: "Always",
        affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: required } },
      });
      await deploy("plain");

      type RuntimeClassInputs = { metadata: { name: string }; handler: string; overhead?: { podFixed: Record<string, string> }; scheduling: { nodeSelector: Record<string, string> } };
      const classes = registrationsOfType("kubernetes:node.k8s.io/v1:RuntimeClass").filter((r) => r.name.startsWith("kata-"));
      assert.deepEqual(
        classes.map((r) => r.inputs as unknown as RuntimeClassInputs).map((rc) => [rc.metadata.name, rc.handler, rc.overhead?.podFixed, rc.scheduling.nodeSelector]).sort(),
        [
          ["kata-fc", "kata-fc", undefined, { "kata-containers.io/kata-runtime": "true" }],
          ["kata-qemu", "kata-qemu", { memory: "320Mi", cpu: "250m" }, { "kata-containers.io/kata-runtime": "true", "pool.example.com/vm": "large" }],
          ["sandboxed", "kata-qemu", { memory: "320Mi", cpu: "250m" }, { "kata-containers.io/kata-runtime": "true", "pool.example.com/vm": "large" }],
        ],
      );
      for (const rc of classes) {
        assert.deepEqual(rc.options.replaceOnChanges, ["handler"], `${rc.name}: only the immutable handler replaces it`);
        assert.deepEqual(await schemaProblems(rc.inputs), [], rc.name);
      }
      assert.deepEqual(await valueOf(component.runtimeClassNames), ["kata-qemu", "kata-fc", "sandboxed"]);

      type DaemonSetInputs = { spec: { selector: unknown; template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: { affinity?: unknown; containers: { imagePullPolicy: string }[] } } } };
      for (const ds of registrationsOfType(DAEMONSET).filter((r) => r.name.startsWith("kata-"))) {
        const inputs = ds.inputs as unknown as DaemonSetInputs;
        const plain = registrationNamed(ds.name.replace(/^kata-/, "plain-")).inputs as unknown as DaemonSetInputs;
        assert.deepEqual(inputs.spec.selector, plain.spec.selector, `${ds.name}: the (immutable) selector is the same as without pod labels`);
        assert.equal(inputs.spec.template.metadata.labels["team.example.com/name"], "platform", ds.name);
        assert.deepEqual(inputs.spec.template.metadata.annotations, { "example.com/owner": "platform" }, ds.name);
        assert.deepEqual(inputs.spec.template.spec.containers.map((c) => c.imagePullPolicy), ["Always"], ds.name);
        assert.deepEqual(inputs.spec.template.spec.affinity, ds.name === "kata-cleanup" ? undefined : { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: required } }, ds.name);
        assert.deepEqual(await schemaProblems(ds.inputs), [], ds.name);
      }

      // The install wait waits for the nodes the affinity selects, and only when there is one does it get the variable.
      const environment = (name: string) => registrationNamed(`${name}-wait-for-installed-nodes`).inputs.environment as Record<string, string>;
      assert.equal(environment("kata").KATA_DEPLOY_NODE_AFFINITY, JSON.stringify(required));
      assert.equal("KATA_DEPLOY_NODE_AFFINITY" in environment("plain"), false);
    });

    it("installers wait installTimeout for readiness on create and update; the others keep the provider's default", async () => {
      await deploy("kata", { installTimeout: "45m" });
      for (const ds of registrationsOfType(DAEMONSET)) {
        const expected = ds.name.startsWith("kata-installer-") ? { create: "45m", update: "45m", delete: "" } : { create: "", update: "", delete: "" };
        assert.deepEqual(ds.options.customTimeouts, expected, ds.name);
      }
      await deploy("kata2");
      assert.equal(registrationNamed("kata2-installer-crio").options.customTimeouts.create, "20m", "default installTimeout");
    });

    it("createPullSecret: a secret dockerconfigjson from the push credentials, used by every DaemonSet, deleted after the cleanup DaemonSet", async () => {
      new KataDeployment("kata", {
        imageBuild: {
          repository: "registry.example.com/platform/kata-deploy",
          registry: { server: "registry.example.com", username: "ci", password: "s3cret" },
          kataTarballSha256: "ef".repeat(32),
          createPullSecret: true,
        },
      });
      await settled();
      const secret = registrationNamed("kata-registry-credentials");
      assert.equal(secret.type, "kubernetes:core/v1:Secret");
      assert.equal(secret.inputs.type, "kubernetes.io/dockerconfigjson");
      assert.deepEqual(secret.inputs.metadata, {
        name: "kata-deploy-registry", namespace: "kata-deploy",
        labels: { "app.kubernetes.io/name": "kata-deploy", "app.kubernetes.io/component": "registry-credentials" },
      });
      assert.ok(secret.secretInputs.some((at) => "stringData..dockerconfigjson".startsWith(at)), `secret inputs: ${secret.secretInputs.join(", ")}`);
      const config = JSON.parse((secret.inputs.stringData as Record<string, string>)[".dockerconfigjson"]) as { auths: Record<string, { auth: string }> };
      assert.equal(Buffer.from(config.auths["registry.example.com"].auth, "base64").toString(), "ci:s3cret");
      for (const ds of registrationsOfType(DAEMONSET)) {
        assert.deepEqual(podSpecOf(ds).imagePullSecrets, [{ name: "kata-deploy-registry" }], ds.name);
      }

      const batches = destroyBatches(registrations());
      printBatches("destroy order with createPullSecret", batches);
      const batchOf = (name: string): number => batches.findIndex((batch) => batch.includes(name));
      const secretBatch = batchOf("kata-registry-credentials");
      for (const daemonSet of ["kata-cleanup", "kata-installer-containerd", "kata-installer-crio", "kata-runtime-labeler"]) {
        assert.ok(batchOf(daemonSet) < secretBatch, `${daemonSet} is deleted before the pull Secret (its pods may still pull)`);
      }
      assert.ok(batchOf("kata-wait-for-clean-nodes") < secretBatch);
      assert.ok(secretBatch < batchOf("kata-namespace"), "the Secret goes before its namespace");
    });

    it("builds no pull Secret unless asked to", async () => {
      new KataDeployment("kata", { imageBuild: { repository: "r.example.com/k", registry: { server: "r.example.com", username: "u", password: "p" }, kataSha256: "ef".repeat(32) } });
      await settled();
      assert.deepEqual(registrationsOfType("kubernetes:core/v1:Secret"), []);
    });
  });

  describe("the destroy-time wait step cannot be replaced by an ordinary change", () => {
    // @pulumi/command 1.2 marks only `triggers` replaceOnChanges (the SDK adds `triggers[*]` itself; the
    // provider's schema agrees). Every other input change is an update, and its update runs `update` or
    // else `create` — neither is set here, so an update runs nothing. A replace would run the stored
    // `delete` (the wait for clean nodes) in the middle of `pulumi up`.
    const REPLACING_INPUTS = ["triggers"];

    it("registers no option or input that would make a change replace it", async () => {
      await deploy("kata", { kubeconfig: "apiVersion: v1\nkind: Config\n" });
      const wait = registrationNamed("kata-wait-for-clean-nodes");
      assert.deepEqual(wait.options.replaceOnChanges, ["triggers[*]"], "only what @pulumi/command adds itself");
      assert.deepEqual(wait.options.replaceWith, []);
      assert.equal(wait.options.deleteBeforeReplace, false);
      assert.equal(wait.options.retainOnDelete, false, "a retained wait step would never run its delete");
      assert.deepEqual(Object.keys(wait.inputs).sort(), ["delete", "environment", "interpreter"], "no create/update (an update runs nothing), no dir (an absolute path would pin one checkout), no triggers");
    });

    it("a rotated kubeconfig, another namespace or another timeout change only inputs that update in place", async () => {
      await deploy("kata", { kubeconfig: "apiVersion: v1\nkind: Config\n# old\n", cleanupTimeoutSeconds: 600 });
      const before = registrationNamed("kata-wait-for-clean-nodes");
      await deploy("kata2", { kubeconfig: "apiVersion: v1\nkind: Config\n# rotated\n", cleanupTimeoutSeconds: 900, namespace: "platform" });
      const after = registrationNamed("kata2-wait-for-clean-nodes");
      const changed = Object.keys({ ...before.inputs, ...after.inputs }).filter((key) => JSON.stringify(before.inputs[key]) !== JSON.stringify(after.inputs[key]));
      assert.deepEqual(changed, ["environment"]);
      assert.ok(!changed.some((key) => REPLACING_INPUTS.includes(key)));
      assert.deepEqual(after.options.replaceOnChanges, before.options.replaceOnChanges);
    });
  });

  describe("the settings guard and node affinity (the installers' preStop evaluates it, agent kube/labels.ts isRollout)", () => {
    const recorded: GuardedSettings = { namespace: "kata-deploy", createNamespace: true, labelPrefix: "kata-containers.io", containerdFlavor: "containerd", installPrefix: "/opt/kata" };
    const required = JSON.stringify({ nodeSelectorTerms: [{ matchExpressions: [{ key: "pool.example.com/kata", operator: "Exists" }] }] });

    it("lets a required node affinity be added or changed on a deployed stack, also one whose guard recorded the affinity", async () => {
      // A guard recorded by the version that compared it (installerNodeAffinity) against one that does not.
      const olderGuard = { ...recorded, installerNodeAffinity: "" } as Partial<GuardedSettings>;
      assert.deepEqual(unsafeSettingChanges(olderGuard, recorded), []);
      const check = await guardProvider.check!({ ...recorded, installerNodeAffinity: required }, recorded);
      assert.deepEqual(check.failures ?? [], []);
      await deploy("kata", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: JSON.parse(required) } } });
      assert.equal("installerNodeAffinity" in registrationNamed("kata-settings").inputs, false, "no longer recorded");
    });
  });

  describe("the settings guard and containerdConfigPath", () => {
    const recorded: GuardedSettings = { namespace: "kata-deploy", createNamespace: true, labelPrefix: "kata-containers.io", containerdFlavor: "auto", installPrefix: "/opt/kata" };

    it("refuses a changed containerdConfigPath (Kata would stay in the old file with no owner); a guard recorded before the setting counts as unset", () => {
      assert.deepEqual(unsafeSettingChanges(recorded, { ...recorded, containerdConfigPath: "" }), [], "old guard, setting still unset");
      const [added] = unsafeSettingChanges(recorded, { ...recorded, containerdConfigPath: "/etc/containerd-custom/config.toml" });
      assert.match(added, /^KataDeployment: containerdConfigPath changed from unset to "\/etc\/containerd-custom\/config\.toml", which cannot be applied in place \(Kata would stay configured in the old config file with no owner/);
      const [moved] = unsafeSettingChanges({ ...recorded, containerdConfigPath: "/etc/a/config.toml" }, { ...recorded, containerdConfigPath: "/etc/b/config.toml" });
      assert.match(moved, /containerdConfigPath changed from "\/etc\/a\/config\.toml" to "\/etc\/b\/config\.toml".*run `pulumi destroy`/);
    });

    it("records the path in the guard (unset: \"\")", async () => {
      await deploy("kata", { containerdConfigPath: "/etc/containerd-custom/config.toml" });
      assert.equal(registrationNamed("kata-settings").inputs.containerdConfigPath, "/etc/containerd-custom/config.toml");
      await deploy("kata2", {});
      assert.equal(registrationNamed("kata2-settings").inputs.containerdConfigPath, "");
    });
  });

  // ---- mixed-architecture clusters (issue 12 point 3) ----
  describe("shimsByArch (mixed-architecture clusters)", () => {
    const RUNTIME_CLASS = "kubernetes:node.k8s.io/v1:RuntimeClass";
    const selectorOf = (name: string): Record<string, string> =>
      (registrationNamed(`kata-runtimeclass-${name}`).inputs as { scheduling: { nodeSelector: Record<string, string> } }).scheduling.nodeSelector;
    const installerEnv = (): Record<string, string> =>
      Object.fromEntries(
        (registrationNamed("kata-installer-containerd").inputs as { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } }).spec.template.spec.containers[0].env
          .filter((variable) => variable.value !== undefined)
          .map((variable) => [variable.name, variable.value!]),
      );

    it("one RuntimeClass per shim of any architecture, each selecting only nodes that have it; the installers carry upstream's per-architecture variables", async () => {
      await deploy("kata", { runtimes: ["containerd"], shimsByArch: { amd64: ["qemu", "fc", "qemu-tdx"], arm64: ["qemu", "fc"], s390x: ["qemu", "qemu-se"] } });
      const names = registrationsOfType(RUNTIME_CLASS).map((registration) => registration.name).sort();
      assert.deepEqual(names, ["kata-runtimeclass-kata", "kata-runtimeclass-kata-fc", "kata-runtimeclass-kata-qemu", "kata-runtimeclass-kata-qemu-se", "kata-runtimeclass-kata-qemu-tdx"]);
      const installed = { "kata-containers.io/kata-runtime": "true" };
      assert.deepEqual(selectorOf("kata-qemu"), installed, "qemu is on every architecture");
      assert.deepEqual(selectorOf("kata"), installed, "the default RuntimeClass (qemu, the first shim) too");
      assert.deepEqual(selectorOf("kata-qemu-tdx"), { ...installed, "kubernetes.io/arch": "amd64" }, "one architecture: kubernetes.io/arch");
      assert.deepEqual(selectorOf("kata-qemu-se"), { ...installed, "kubernetes.io/arch": "s390x" });
      // amd64 and arm64 but not s390x: a nodeSelector cannot OR two architectures, so the per-shim node label.
      assert.deepEqual(selectorOf("kata-fc"), { ...installed, "kata-containers.io/kata-fc": "true" });
      const env = installerEnv();
      assert.equal(env.SHIMS_X86_64, "qemu fc qemu-tdx");
      assert.equal(env.SHIMS_AARCH64, "qemu fc");
      assert.equal(env.SHIMS_S390X, "qemu qemu-se");
      assert.equal(env.SHIMS_PPC64LE, undefined, "ppc64le is not configured");
      assert.deepEqual([env.DEFAULT_SHIM_X86_64, env.DEFAULT_SHIM_AARCH64, env.DEFAULT_SHIM_S390X], ["qemu", "qemu", "qemu"]);
      const command = (registrationNamed("kata-installer-containerd").inputs as { spec: { template: { spec: { containers: { command: string[] }[] } } } }).spec.template.spec.containers[0].command;
      assert.ok(!command.includes("--shims") && !command.includes("--default-shim"), "the lists travel in the environment only");
      const waitEnv = registrationNamed("kata-wait-for-installed-nodes").inputs.environment as Record<string, string>;
      assert.equal(waitEnv.KATA_DEPLOY_SHIM_ARCHES, "amd64,arm64,s390x");
      for (const registration of registrations().filter((r) => r.type.startsWith("kubernetes:"))) {
        assert.deepEqual(await schemaProblems({ ...(registration.inputs as object) } as never), [], registration.name);
      }
    });

    it("an architecture listed without shims gets no Kata: no variable content, no default, left out of the install wait", async () => {
      await deploy("kata", { runtimes: ["containerd"], shimsByArch: { amd64: ["qemu-runtime-rs", "qemu"], ppc64le: [] }, defaultShimByArch: { amd64: "qemu-runtime-rs" } });
      const env = installerEnv();
      assert.equal(env.SHIMS_PPC64LE, "", "present and empty: the agent installs nothing there");
      assert.equal(env.DEFAULT_SHIM_PPC64LE, undefined);
      assert.equal(env.DEFAULT_SHIM_X86_64, "qemu-runtime-rs");
      assert.equal((registrationNamed("kata-wait-for-installed-nodes").inputs.environment as Record<string, string>).KATA_DEPLOY_SHIM_ARCHES, "amd64");
      assert.equal((registrationNamed("kata-runtimeclass-kata").inputs as { handler: string }).handler, "kata-qemu-runtime-rs", "defaultShim follows defaultShimByArch");
    });

    it("different default shims per architecture: the default RuntimeClass gets the per-node handler `kata`, replaced in place of its fixed name", async () => {
      await deploy("kata", { runtimes: ["containerd"], shimsByArch: { amd64: ["qemu", "qemu-runtime-rs"], arm64: ["qemu", "qemu-runtime-rs"] }, defaultShimByArch: { arm64: "qemu-runtime-rs" } });
      const env = installerEnv();
      assert.deepEqual([env.DEFAULT_SHIM_X86_64, env.DEFAULT_SHIM_AARCH64], ["qemu", "qemu-runtime-rs"]);
      const rc = registrationNamed("kata-runtimeclass-kata");
      assert.equal((rc.inputs as { handler: string }).handler, "kata");
      // A stack whose defaults come to differ changes the handler, which the API server does not update in place.
      assert.deepEqual([rc.options.replaceOnChanges, rc.options.deleteBeforeReplace], [["handler"], true]);
    });

    it("different default shims per architecture are accepted without the default RuntimeClass", async () => {
      await deploy("kata", { runtimes: ["containerd"], createDefaultRuntimeClass: false, shimsByArch: { amd64: ["qemu", "qemu-runtime-rs"], arm64: ["qemu", "qemu-runtime-rs"] }, defaultShimByArch: { arm64: "qemu-runtime-rs" } });
      const env = installerEnv();
      assert.deepEqual([env.DEFAULT_SHIM_X86_64, env.DEFAULT_SHIM_AARCH64], ["qemu", "qemu-runtime-rs"]);
    });

    it("refuses shims for another architecture than the one image the component builds, naming the multi-architecture way", async () => {
      const build = { repository: "registry.example.com/kata-deploy" };
      assert.throws(
        () => new KataDeployment("kata", { imageBuild: build, shimsByArch: { amd64: ["qemu"], arm64: ["qemu"] } }),
        (error: unknown) =>
          pulumi.ResourceError.isInstance(error) &&
          /shimsByArch lists shims for arm64, but the component builds the image for one platform only \(imageBuild.platform linux\/amd64\).*`npm run image:push -- --platform linux\/amd64,linux\/arm64`\) and set image to it/.test(error.message),
      );
      assert.throws(() => new KataDeployment("kata2", { imageBuild: { ...build, platform: "linux/arm64" }, shimsByArch: { amd64: ["qemu"], arm64: ["qemu"] } }), /shimsByArch lists shims for amd64/);
      await settled();
      assert.deepEqual(registrations().map((registration) => registration.type), [COMPONENT, COMPONENT], "no child registered");
    });
  });

  describe("the create-time install wait (issue 8 point 3)", () => {
    it("runs after the labeler and installers, before every RuntimeClass; re-runs (create, no triggers) when an installer changes", async () => {
      await deploy("kata", { kubeconfig: "apiVersion: v1\nkind: Config\n", nodeSelector: { pool: "sandbox" }, installTimeout: "1h30m" });
      const wait = registrationNamed("kata-wait-for-installed-nodes");
      assert.equal(wait.type, COMMAND);
      // @pulumi/command (provider/pkg/provider/local/commandController.go): Update runs `update`, else `create`.
      assert.deepEqual(Object.keys(wait.inputs).sort(), ["create", "environment", "interpreter"]);
      assert.ok(fs.existsSync(path.resolve(String(wait.inputs.create))), "the script exists");
      assert.ok(!path.isAbsolute(String(wait.inputs.create)), "stored relative to the project");
      assert.deepEqual(wait.options.replaceOnChanges, ["triggers[*]"], "only what @pulumi/command adds itself");
      for (const dependency of ["kata-runtime-labeler", "kata-installer-containerd", "kata-installer-crio"]) {
        assert.ok(wait.dependencies.includes(registrationNamed(dependency).urn), `waits for ${dependency}`);
      }
      for (const runtimeClass of registrationsOfType("kubernetes:node.k8s.io/v1:RuntimeClass")) {
        assert.ok(runtimeClass.dependencies.includes(wait.urn), `${runtimeClass.name} waits for the install`);
      }
      const environment = wait.inputs.environment as Record<string, string>;
      assert.deepEqual({ ...environment, KATA_DEPLOY_INSTALLERS: "?" }, {
        KATA_DEPLOY_KUBECONFIG: "apiVersion: v1\nkind: Config\n",
        KATA_DEPLOY_LABEL_PREFIX: "kata-containers.io",
        KATA_DEPLOY_NAMESPACE: "kata-deploy",
        KATA_DEPLOY_RUNTIMES: "containerd,crio",
        KATA_DEPLOY_NODE_SELECTOR: JSON.stringify({ pool: "sandbox" }),
        KATA_DEPLOY_TOLERATIONS: JSON.stringify([{ operator: "Exists" }]),
        KATA_DEPLOY_TIMEOUT_SECONDS: "5400",
        KATA_DEPLOY_INSTALLERS: "?",
      });
      assert.ok(wait.secretInputs.some((secret) => secret.startsWith("environment")), "the kubeconfig stays a secret");
    });

    it("a changed image or shim list changes its inputs (so it runs again); an unrelated change does not", async () => {
      const fingerprint = async (name: string, args: KataDeploymentArgs): Promise<string> => {
        await deploy(name, args);
        return (registrationNamed(`${name}-wait-for-installed-nodes`).inputs.environment as Record<string, string>).KATA_DEPLOY_INSTALLERS;
      };
      const base = await fingerprint("a", {});
      assert.notEqual(await fingerprint("b", { image: IMAGE.replace("cd", "ef") }), base, "image");
      assert.notEqual(await fingerprint("c", { shims: ["qemu"] }), base, "shims");
      assert.notEqual(await fingerprint("d", { maxUnavailable: "2" }), base, "rolling-update budget");
      assert.equal(await fingerprint("e", { cleanupTimeoutSeconds: 30 }), base, "a destroy-time setting");
    });

    it("refuses an installTimeout that is not a duration, naming the field", async () => {
      assert.throws(() => new KataDeployment("bad", { image: IMAGE, installTimeout: "20 minutes" }), /installTimeout is "20 minutes"; allowed values: a duration/);
    });
  });

  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  describe("Kata configuration on the nodes: installPrefix, shimConfig, customRuntimes", () => {
    type Container = { command: string[]; env?: { name: string; value?: string }[]; volumeMounts?: { mountPath: string }[]; readinessProbe?: { exec: { command: string[] } }; lifecycle?: { preStop?: { exec: { command: string[] } } } };
    const podOf = (registration: Registration) =>
      (registration.inputs as { spec: { template: { spec: { containers: Container[]; volumes?: { hostPath?: { path: string } }[] } } } }).spec.template.spec;

    it("refuses, at preview and before anything is registered, each bad value in one line naming the argument and the fix", async () => {
      const cases: [string, KataDeploymentArgs, RegExp][] = [
        ["a relative installPrefix", { installPrefix: "var/lib/kata" }, /^KataDeployment: installPrefix is "var\/lib\/kata"; it must be an absolute path such as \/var\/lib\/kata$/],
        ["installPrefix /", { installPrefix: "/" }, /installPrefix is "\/"; it must be a normalized directory other than \//],
        ["an installPrefix with ..", { installPrefix: "/var/../opt/kata" }, /installPrefix is "\/var\/..\/opt\/kata"; it must be a normalized directory/],
        ["shimConfig for a shim not deployed", { shimConfig: { clh: { debug: true } } }, /shimConfig.clh names a shim that is not in shims; allowed keys: qemu, fc/],
        ["an unknown shimConfig setting", { shimConfig: { qemu: { debugg: true } } } as unknown as KataDeploymentArgs, /shimConfig.qemu.debugg is not a setting; allowed keys: allowedHypervisorAnnotations, agentHttpsProxy/],
        ["a proxy that is not a URL", { shimConfig: { qemu: { agentHttpsProxy: "proxy.example.com" } } }, /shimConfig.qemu.agentHttpsProxy is "proxy.example.com"; it is not a URL; give one such as "http:\/\/proxy.example.com:3128"/],
        ["a no_proxy with a space", { shimConfig: { qemu: { agentNoProxy: "a, b" } } }, /shimConfig.qemu.agentNoProxy is "a, b"; it must not contain white space/],
        ["an annotation that is not a name", { shimConfig: { qemu: { allowedHypervisorAnnotations: ["default_memory", "io.katacontainers.config.hypervisor.path"] } } }, /shimConfig.qemu.allowedHypervisorAnnotations\[1\] is "io.katacontainers.config.hypervisor.path"; give the name after io.katacontainers.config.hypervisor., e.g. "default_memory"/],
        ["a log level for a Go shim", { shimConfig: { qemu: { runtimeLogLevel: "trace" } } }, /shimConfig.qemu.runtimeLogLevel is set for qemu, a Go runtime shim, which has no log level setting; use debug: true/],
        ["containerRuntimeDebug that is not a boolean", { containerRuntimeDebug: "yes" } as unknown as KataDeploymentArgs, /containerRuntimeDebug is "yes"; allowed values: true, false$/],
        ["containerRuntimeDebug on k0s", { containerdFlavor: "k0s", containerRuntimeDebug: true }, /containerRuntimeDebug is true, but k0s starts containerd itself and kata-deploy sets containerd's log level only for a plain containerd; set it through k0s's own configuration, and containerRuntimeDebug to false$/],
        ["containerRuntimeDebug on k3s", { containerdFlavor: "k3s", containerRuntimeDebug: true }, /containerRuntimeDebug is true, but k3s starts containerd itself and sets its log level from its own environment \(CONTAINERD_LOG_LEVEL\).*set CONTAINERD_LOG_LEVEL=debug in the k3s service's environment instead$/],
        ["forceGuestPull that is not a boolean", { shimConfig: { qemu: { forceGuestPull: "yes" } } } as unknown as KataDeploymentArgs, /shimConfig.qemu.forceGuestPull is "yes"; allowed values: true, false$/],
        ["forceGuestPull without containerd", { runtimes: ["crio"], shimConfig: { qemu: { forceGuestPull: true } } }, /shimConfig.qemu.forceGuestPull is true, but runtimes \(crio\) has no containerd, the only runtime it is for; on CRI-O use guestPull \(runtime_pull_image\)$/],
        ["a drop-in that is not TOML", { shimConfig: { qemu: { dropIn: "[hypervisor.qemu]\ndefault_memory = \n" } } }, /shimConfig.qemu.dropIn is not valid TOML \(line 2, column \d+: .*\); fix the drop-in/],
        ["a custom runtime named like a shim's RuntimeClass", { customRuntimes: [{ name: "kata-clh", baseShim: "qemu" }] }, /customRuntimes\[0\].name is "kata-clh", the handler and RuntimeClass of shim clh; choose another name, e.g. "kata-clh-custom"/],
        ["a custom runtime named kata", { customRuntimes: [{ name: "kata", baseShim: "qemu" }] }, /customRuntimes\[0\].name is "kata", the default RuntimeClass; choose another name \(or set createDefaultRuntimeClass to false\)/],
        ["a custom runtime named untrusted", { customRuntimes: [{ name: "untrusted", baseShim: "qemu" }] }, /customRuntimes\[0\].name is "untrusted", a runtime name kata-deploy writes/],
        ["a custom runtime name that is not a DNS label", { customRuntimes: [{ name: "Kata_Big", baseShim: "qemu" }] }, /customRuntimes\[0\].name is "Kata_Big"; it names the runtime handler and the RuntimeClass, so it must be a DNS label/],
        ["two custom runtimes of one name", { customRuntimes: [{ name: "kata-big", baseShim: "qemu" }, { name: "kata-big", baseShim: "fc" }] }, /customRuntimes\[1\].name repeats "kata-big"/],
        ["a custom runtime on a shim not deployed", { customRuntimes: [{ name: "kata-big", baseShim: "clh" }] }, /customRuntimes\[0\].baseShim is "clh"; it must be one of shims \(the image carries only those\): qemu, fc/],
        ["a custom runtime's drop-in that is not TOML", { customRuntimes: [{ name: "kata-big", baseShim: "qemu", dropIn: "[[x]" }] }, /customRuntimes\[0\].dropIn is not valid TOML/],
        ["a custom runtime's bad overhead", { customRuntimes: [{ name: "kata-big", baseShim: "qemu", overhead: { memory: "8 GB" } }] }, /customRuntimes\[0\].overhead.memory is "8 GB"; it must be a Kubernetes quantity/],
      ];
      for (const [label, args, message] of cases) {
        assert.throws(
          () => new KataDeployment(`bad-${cases.findIndex((c) => c[0] === label)}`, { image: IMAGE, ...args }),
          (error: unknown) => pulumi.ResourceError.isInstance(error) && message.test(error.message),
          label,
        );
      }
      await settled();
      assert.deepEqual(registrations().map((registration) => registration.type).filter((type) => type !== COMPONENT), [], "no child registered");
    });

    it("installPrefix: the installers and the cleanup mount it and pass it to every agent command (install, readiness, preStop, reset)", async () => {
      await deploy("kata", { installPrefix: "/var/lib/kata" });
      for (const ds of registrationsOfType(DAEMONSET).filter((registration) => registration.name !== "kata-runtime-labeler")) {
        const pod = podOf(ds);
        assert.ok(pod.volumes?.some((volume) => volume.hostPath?.path === "/var/lib/kata"), `${ds.name} mounts the prefix`);
        assert.ok(!pod.volumes?.some((volume) => volume.hostPath?.path === "/opt/kata"), `${ds.name} does not mount /opt/kata`);
        const container = pod.containers[0];
        assert.ok(container.volumeMounts?.some((mount) => mount.mountPath === "/host/var/lib/kata"), ds.name);
        const commands = [container.command, container.readinessProbe?.exec.command, container.lifecycle?.preStop?.exec.command].filter((c): c is string[] => c !== undefined);
        for (const command of commands) assert.equal(command[command.indexOf("--prefix") + 1], "/var/lib/kata", `${ds.name}: ${command.join(" ")}`);
        assert.equal(commands.length, ds.name === "kata-cleanup" ? 1 : 3, ds.name);
        assert.deepEqual(await schemaProblems(ds.inputs), [], ds.name);
      }
    });

    it("shimConfig and customRuntimes: the installers get them as KATA_DEPLOY_KATA_CONFIG; a custom runtime gets its RuntimeClass with the base shim's overhead", async () => {
      const kata = await deploy("kata", {
        shimConfig: { qemu: { allowedHypervisorAnnotations: ["default_memory"], agentHttpsProxy: "http://proxy:3128", debug: true, forceGuestPull: true, dropIn: "[hypervisor.qemu]\ndefault_vcpus = 2\n" } },
        customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu", dropIn: "[hypervisor.qemu]\ndefault_memory = 8192\n", overhead: { memory: "8400Mi" } }],
      });
      for (const ds of registrationsOfType(DAEMONSET)) {
        const env = podOf(ds).containers[0].env ?? [];
        const value = env.find((variable) => variable.name === "KATA_DEPLOY_KATA_CONFIG")?.value;
        if (!ds.name.startsWith("kata-installer-")) {
          assert.equal(value, undefined, `${ds.name} does not install`);
          continue;
        }
        assert.deepEqual(JSON.parse(value ?? "null"), {
          shims: { qemu: { allowedHypervisorAnnotations: ["default_memory"], agentHttpsProxy: "http://proxy:3128", debug: true, forceGuestPull: true, dropIn: "[hypervisor.qemu]\ndefault_vcpus = 2\n" } },
          customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu", dropIn: "[hypervisor.qemu]\ndefault_memory = 8192\n" }],
        });
      }
      const runtimeClass = registrationNamed("kata-runtimeclass-kata-qemu-big");
      assert.deepEqual(
        { handler: runtimeClass.inputs.handler, overhead: runtimeClass.inputs.overhead, scheduling: runtimeClass.inputs.scheduling },
        { handler: "kata-qemu-big", overhead: { podFixed: { memory: "8400Mi", cpu: "250m" } }, scheduling: { nodeSelector: { "kata-containers.io/kata-runtime": "true" } } },
      );
      assert.ok((await valueOf(kata.runtimeClassNames)).includes("kata-qemu-big"));
      assert.deepEqual(await schemaProblems(runtimeClass.inputs), []);
    });

    it("without them, the installers get no KATA_DEPLOY_KATA_CONFIG and no --prefix (the defaults)", async () => {
      await deploy("kata");
      for (const ds of registrationsOfType(DAEMONSET)) {
        const container = podOf(ds).containers[0];
        assert.ok(!(container.env ?? []).some((variable) => variable.name === "KATA_DEPLOY_KATA_CONFIG"), ds.name);
        assert.ok(!container.command.includes("--prefix"), ds.name);
      }
    });
  });
  // ---- end of Kata configuration ----
});
