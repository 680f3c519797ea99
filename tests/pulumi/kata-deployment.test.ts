import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { KataDeployment, KataDeploymentArgs } from "../../components";
import { schemaProblems } from "../support/k8s-schema";
import {
  mockDigestFor,
  Registration,
  registrationNamed,
  registrations,
  registrationsOfType,
  settled,
  useMocks,
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
        "kata-runtimeclass-kata-qemu", "kata-service-account", "kata-wait-for-clean-nodes",
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
    console.log(`      destroy order:\n${batches.map((batch, i) => `        ${i + 1}. ${batch.join(", ")}`).join("\n")}`);

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
    });
    assert.ok(wait.secretInputs.some((secret) => secret.startsWith("environment")), `secrets: ${wait.secretInputs.join(", ")}`);
  });

  it("registers exactly the least-privilege RBAC rules, bound to its own ServiceAccount", async () => {
    await deploy("kata", { runtimes: ["crio"] });
    const [role] = registrationsOfType("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole");
    assert.deepEqual(role.inputs.rules, [
      { apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] },
      { apiGroups: ["apps"], resources: ["daemonsets"], resourceNames: ["kata-installer-crio"], verbs: ["get"] },
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

  for (const preview of [false, true]) {
    it(`without an image, builds images/kata-deploy and pins every DaemonSet to the pushed digest (${preview ? "preview" : "update"})`, async () => {
      useMocks({ preview });
      const component = new KataDeployment("kata", {
        imageBuild: {
          repository: "registry.example.com/kata-deploy",
          tag: "v1",
          registry: { server: "registry.example.com", username: "ci", password: "hunter2" },
          kataVersion: "3.23.0",
          kataTarballSha256: "ef".repeat(32),
          platform: "linux/amd64",
        },
      });
      await settled();
      const [image] = registrationsOfType("docker:index/image:Image");
      assert.equal(image.name, "kata-image");
      assert.equal(image.inputs.imageName, "registry.example.com/kata-deploy:v1");
      const build = image.inputs.build as { context: string; dockerfile: string; platform: string; args: Record<string, string> };
      // Resolved from the component's own directory, not the working directory, so consumer stacks build the same image.
      assert.equal(build.context, path.resolve(__dirname, "../../images/kata-deploy"));
      assert.ok(fs.existsSync(build.dockerfile), build.dockerfile);
      assert.equal(build.platform, "linux/amd64");
      assert.deepEqual(build.args, { KATA_VERSION: "3.23.0", KATA_TARBALL_SHA256: "ef".repeat(32) });
      // The SDK may mark the whole registry object secret; either way the password is never stored in plain text.
      assert.ok(image.secretInputs.some((secret) => "registry.password".startsWith(secret)), `secrets: ${image.secretInputs.join(", ")}`);

      const pinned = `registry.example.com/kata-deploy@${mockDigestFor("registry.example.com/kata-deploy:v1")}`;
      const daemonSets = registrationsOfType(DAEMONSET);
      assert.equal(daemonSets.length, 4);
      for (const ds of daemonSets) {
        assert.deepEqual(daemonSetContainers(ds).map((c) => c.image), [pinned], ds.name);
        assert.ok(ds.dependencies.includes(image.urn), `${ds.name} depends on the image`);
      }
      assert.equal(await valueOf(component.image), pinned);
    });
  }

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
      ["zero maxUnavailable", { maxUnavailable: 0 }, /maxUnavailable is 0; allowed values: a whole number >= 1 or a percentage/],
      ["bad percentage", { maxUnavailable: "150%" }, /maxUnavailable is "150%"/],
      ["unknown containerd flavor", { containerdFlavor: "k0s" as "k3s" }, /containerdFlavor is "k0s"; allowed values: containerd, k3s, rke2/],
      ["overhead for a shim not deployed", { runtimeClassOverhead: { clh: { memory: "1Gi" } } }, /runtimeClassOverhead.clh names a shim that is not in shims; allowed keys: qemu, fc/],
      ["bad overhead quantity", { runtimeClassOverhead: { qemu: { memory: "lots" } } }, /runtimeClassOverhead.qemu.memory is "lots"; it must be a Kubernetes quantity/],
      ["bad namespace", { namespace: "Kata_NS" }, /namespace is "Kata_NS"; it must be a DNS label/],
      ["bad cleanup timeout", { cleanupTimeoutSeconds: 0 }, /cleanupTimeoutSeconds is 0; allowed values: a whole number of seconds >= 1/],
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
});
