import { strict as assert } from "node:assert";
import {
  buildAllManifests,
  buildCleanupDaemonSet,
  buildInstallerDaemonSet,
  buildLabelerDaemonSet,
  buildRbac,
  buildRegistryPullSecret,
  buildRuntimeClasses,
  DaemonSetManifest,
} from "../../components/manifests";
import { ManifestOptions } from "../../components/settings";
import { isRollout } from "../../images/kata-deploy/agent/src/kube/labels";
import { normalizeSettings } from "../../components/validation";
import { assertValidManifests, schemaProblems } from "../support/k8s-schema";

const IMAGE = "registry.example.com/kata-deploy@sha256:" + "ab".repeat(32);
const options = (overrides: Parameters<typeof normalizeSettings>[0] = {}): ManifestOptions => ({
  ...normalizeSettings(overrides),
  image: IMAGE,
});
const allObjects = (opts: ManifestOptions) => Object.values(buildAllManifests(opts)).flat();
const podSpec = (ds: DaemonSetManifest) => ds.spec.template.spec;
const container = (ds: DaemonSetManifest) => {
  assert.equal(podSpec(ds).containers.length, 1, `${ds.metadata.name} runs one container`);
  return podSpec(ds).containers[0];
};
const hostPaths = (ds: DaemonSetManifest) =>
  (podSpec(ds).volumes ?? []).map((volume) => [volume.hostPath?.path, volume.hostPath?.type]);
const mountPaths = (ds: DaemonSetManifest) => (container(ds).volumeMounts ?? []).map((mount) => mount.mountPath);

describe("schema validation support", () => {
  it("accepts a valid object and rejects unknown fields, wrong types and missing required fields", async () => {
    const good = buildCleanupDaemonSet(options());
    assert.deepEqual(await schemaProblems(good), []);

    const typo = structuredClone(good) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    typo.spec.template.spec.hostPid = true; // the field is hostPID
    assert.deepEqual(await schemaProblems(typo), [
      'DaemonSet/kata-cleanup: spec.template.spec.hostPid: unknown field "hostPid"',
    ]);

    const wrongType = structuredClone(good);
    (wrongType.spec.template.spec.containers[0] as unknown as Record<string, unknown>).command = "kata-deploy reset";
    assert.match((await schemaProblems(wrongType)).join("\n"), /containers\/0\/command: must be array/);

    const missing = structuredClone(good) as unknown as { spec: Record<string, unknown> };
    delete missing.spec.selector;
    assert.match((await schemaProblems(missing)).join("\n"), /selector/);
  });
});

describe("manifest builders", () => {
  const variants: [string, Parameters<typeof normalizeSettings>[0]][] = [
    ["defaults", {}],
    ["k3s, one runtime, every known shim, existing namespace", {
      runtimes: ["containerd"], containerdFlavor: "k3s", namespace: "platform",
      shims: ["qemu", "clh", "dragonball", "qemu-runtime-rs"], defaultShim: "clh", maxUnavailable: "25%",
      createDefaultRuntimeClass: false, labelPrefix: "example.com",
    }],
  ];
  for (const [label, settings] of variants) {
    it(`every object validates against the Kubernetes OpenAPI schema (${label})`, async () => {
      await assertValidManifests(allObjects(options(settings)));
    });
  }

  it("each DaemonSet's selector matches its pod labels and no other DaemonSet's pods", () => {
    const daemonSets = allObjects(options()).filter((object): object is DaemonSetManifest => object.kind === "DaemonSet");
    assert.equal(daemonSets.length, 4); // labeler, 2 installers, cleanup
    const selects = (selector: DaemonSetManifest, pod: DaemonSetManifest) =>
      Object.entries(selector.spec.selector.matchLabels ?? {}).every(([key, value]) => pod.spec.template.metadata?.labels?.[key] === value);
    for (const ds of daemonSets) {
      assert.ok(Object.keys(ds.spec.selector.matchLabels ?? {}).length > 0, `${ds.metadata.name} has a selector`);
      assert.equal(ds.spec.selector.matchExpressions, undefined);
      for (const other of daemonSets) {
        assert.equal(selects(ds, other), ds === other, `${ds.metadata.name} selecting pods of ${other.metadata.name}`);
      }
    }
  });

  it("RBAC is exactly the least-privilege rule set", () => {
    const rbac = buildRbac(normalizeSettings({}));
    assert.deepEqual(rbac.clusterRole.rules, [
      { apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] },
      { apiGroups: ["apps"], resources: ["daemonsets"], resourceNames: ["kata-installer-containerd", "kata-installer-crio"], verbs: ["get"] },
    ]);
    assert.deepEqual(rbac.clusterRoleBinding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: rbac.clusterRole.metadata.name });
    assert.deepEqual(rbac.clusterRoleBinding.subjects, [{ kind: "ServiceAccount", name: rbac.serviceAccount.metadata.name, namespace: "kata-deploy" }]);
  });

  it("the installer runs the node agent exactly as the CLI contract says", () => {
    const ds = buildInstallerDaemonSet("containerd", options({ shims: ["qemu", "fc"], labelPrefix: "kata-containers.io" }));
    const installer = container(ds);
    assert.equal(installer.image, IMAGE);
    assert.deepEqual(installer.command, [
      "kata-deploy", "install", "--runtime", "containerd", "--host-root", "/host", "--artifacts", "/opt/kata-artifacts",
      "--shims", "qemu,fc", "--default-shim", "qemu", "--restart", "systemd", "--containerd-flavor", "containerd",
      "--label-prefix", "kata-containers.io", "--daemon",
    ]);
    assert.deepEqual(installer.lifecycle?.preStop?.exec?.command, [
      "kata-deploy", "uninstall", "--runtime", "containerd", "--host-root", "/host", "--restart", "none", "--label-prefix", "kata-containers.io",
    ]);
    assert.deepEqual(installer.readinessProbe?.exec?.command, ["kata-deploy", "status", "--host-root", "/host", "--ready", "--runtime", "containerd"]);
    assert.equal(installer.livenessProbe, undefined, "a liveness probe would kill an install in progress");
    assert.deepEqual(installer.env, [
      { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
      { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { name: "DAEMONSET_NAME", value: ds.metadata.name },
    ]);
    assert.equal(installer.securityContext?.privileged, true);
    assert.equal(podSpec(ds).hostPID, true);
    assert.deepEqual(podSpec(ds).nodeSelector, { "kata-containers.io/container-runtime": "containerd" });
    assert.ok((podSpec(ds).terminationGracePeriodSeconds ?? 30) >= 120, "grace period long enough for the preStop uninstall");
    assert.deepEqual(ds.spec.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } });
  });

  it("installers mount only the install prefix and their runtime's config directory", () => {
    const cases: [Parameters<typeof normalizeSettings>[0], "containerd" | "crio", string, string][] = [
      [{}, "containerd", "/etc/containerd", "DirectoryOrCreate"],
      [{}, "crio", "/etc/crio", "DirectoryOrCreate"],
      [{ containerdFlavor: "k3s" }, "containerd", "/var/lib/rancher/k3s/agent/etc/containerd", "Directory"],
      [{ containerdFlavor: "rke2" }, "containerd", "/var/lib/rancher/rke2/agent/etc/containerd", "Directory"],
      [{ containerdFlavor: "k3s" }, "crio", "/etc/crio", "DirectoryOrCreate"],
    ];
    for (const [settings, runtime, configDir, type] of cases) {
      const ds = buildInstallerDaemonSet(runtime, options(settings));
      assert.deepEqual(hostPaths(ds), [["/opt/kata", "DirectoryOrCreate"], [configDir, type]], `${runtime} ${JSON.stringify(settings)}`);
      assert.deepEqual(mountPaths(ds), ["/host/opt/kata", `/host${configDir}`]);
    }
    const k3s = container(buildInstallerDaemonSet("containerd", options({ containerdFlavor: "k3s" })));
    assert.deepEqual(k3s.command?.slice(k3s.command.indexOf("--containerd-flavor"), k3s.command.indexOf("--containerd-flavor") + 2), ["--containerd-flavor", "k3s"]);
    assert.ok(!container(buildInstallerDaemonSet("crio", options())).command?.includes("--containerd-flavor"));
  });

  it("the cleanup DaemonSet runs reset only on nodes labelled cleanup", () => {
    const ds = buildCleanupDaemonSet(options({ labelPrefix: "example.com" }));
    assert.deepEqual(container(ds).command, ["kata-deploy", "reset", "--host-root", "/host", "--restart", "systemd", "--containerd-flavor", "containerd", "--label-prefix", "example.com", "--daemon"]);
    assert.deepEqual(podSpec(ds).nodeSelector, { "example.com/kata-runtime": "cleanup" });
    const rke2 = container(buildCleanupDaemonSet(options({ containerdFlavor: "rke2" }))).command ?? [];
    assert.deepEqual(rke2.slice(rke2.indexOf("--containerd-flavor"), rke2.indexOf("--containerd-flavor") + 2), ["--containerd-flavor", "rke2"], "reset verifies the flavor's containerd");
    assert.equal(podSpec(ds).hostPID, true);
    assert.equal(container(ds).securityContext?.privileged, true);
    assert.deepEqual(container(ds).env, [{ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }]);
    assert.deepEqual(hostPaths(ds), [["/opt/kata", "DirectoryOrCreate"]]);
  });

  it("the labeler needs no host access and no privileges", () => {
    const ds = buildLabelerDaemonSet(options());
    assert.deepEqual(container(ds).command, ["kata-deploy", "label", "--label-prefix", "kata-containers.io", "--daemon"]);
    assert.equal(podSpec(ds).nodeSelector, undefined, "runs on every node");
    assert.ok(!podSpec(ds).hostPID);
    assert.deepEqual(hostPaths(ds), []);
    assert.equal(container(ds).securityContext?.privileged, undefined);
    assert.equal(container(ds).securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(container(ds).env, [{ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }]);
  });

  it("every DaemonSet runs as the shared ServiceAccount in the chosen namespace", () => {
    const opts = options({ namespace: "platform" });
    for (const ds of buildAllManifests(opts).deploy.concat(buildAllManifests(opts).cleanup)) {
      assert.equal(podSpec(ds).serviceAccountName, "kata-deploy");
      assert.equal(ds.metadata.namespace, "platform");
    }
    assert.ok(!buildAllManifests(opts).rbac.some((object) => object.kind === "Namespace"), "an existing namespace is not created");
    const created = buildAllManifests(options()).rbac.find((object) => object.kind === "Namespace");
    assert.equal(created?.metadata.labels?.["pod-security.kubernetes.io/enforce"], "privileged");
  });

  it("RuntimeClasses: kata-<shim> with overhead and scheduling on the kata label, plus the default alias", () => {
    const classes = buildRuntimeClasses(normalizeSettings({ shims: ["fc", "qemu"], defaultShim: "qemu", runtimeClassOverhead: { fc: { memory: "200Mi" } } }));
    assert.deepEqual(
      classes.map((rc) => [rc.metadata.name, rc.handler, rc.overhead?.podFixed, rc.scheduling?.nodeSelector]),
      [
        ["kata-fc", "kata-fc", { memory: "200Mi", cpu: "250m" }, { "kata-containers.io/kata-runtime": "true" }],
        ["kata-qemu", "kata-qemu", { memory: "160Mi", cpu: "250m" }, { "kata-containers.io/kata-runtime": "true" }],
        ["kata", "kata-qemu", { memory: "160Mi", cpu: "250m" }, { "kata-containers.io/kata-runtime": "true" }],
      ],
    );
    assert.deepEqual(buildRuntimeClasses(normalizeSettings({ createDefaultRuntimeClass: false })).map((rc) => rc.metadata.name), ["kata-qemu", "kata-fc"]);
  });

  // ---- Kata configuration on the node (per-shim settings, custom runtimes, install prefix) ----
  it("installPrefix: the installers and the cleanup mount it (not /opt/kata) and every agent command names it", async () => {
    const opts = options({ installPrefix: "/var/lib/kata", labelPrefix: "kata-containers.io" });
    const ds = buildInstallerDaemonSet("containerd", opts);
    const installer = container(ds);
    assert.deepEqual(installer.command, [
      "kata-deploy", "install", "--runtime", "containerd", "--host-root", "/host", "--artifacts", "/opt/kata-artifacts",
      "--shims", "qemu,fc", "--default-shim", "qemu", "--restart", "systemd", "--containerd-flavor", "containerd",
      "--prefix", "/var/lib/kata", "--label-prefix", "kata-containers.io", "--daemon",
    ]);
    assert.deepEqual(installer.lifecycle?.preStop?.exec?.command, [
      "kata-deploy", "uninstall", "--runtime", "containerd", "--host-root", "/host", "--restart", "none", "--prefix", "/var/lib/kata", "--label-prefix", "kata-containers.io",
    ]);
    assert.deepEqual(installer.readinessProbe?.exec?.command, ["kata-deploy", "status", "--host-root", "/host", "--prefix", "/var/lib/kata", "--ready", "--runtime", "containerd"]);
    assert.deepEqual(hostPaths(ds), [["/var/lib/kata", "DirectoryOrCreate"], ["/etc/containerd", "DirectoryOrCreate"]]);
    assert.deepEqual(mountPaths(ds), ["/host/var/lib/kata", "/host/etc/containerd"]);
    const cleanup = buildCleanupDaemonSet(opts);
    assert.deepEqual(container(cleanup).command, ["kata-deploy", "reset", "--host-root", "/host", "--restart", "systemd", "--containerd-flavor", "containerd", "--prefix", "/var/lib/kata", "--label-prefix", "kata-containers.io", "--daemon"]);
    assert.deepEqual(hostPaths(cleanup), [["/var/lib/kata", "DirectoryOrCreate"]]);
    await assertValidManifests(allObjects(opts));
  });

  it("shimConfig and customRuntimes: KATA_DEPLOY_KATA_CONFIG on the installers only; one RuntimeClass per custom runtime, handler = name", async () => {
    const opts = options({
      shimConfig: { fc: { agentNoProxy: ".svc", debug: false } },
      customRuntimes: [{ name: "kata-fc-big", baseShim: "fc", overhead: { cpu: "500m" } }],
    });
    for (const runtime of ["containerd", "crio"] as const) {
      const env = container(buildInstallerDaemonSet(runtime, opts)).env ?? [];
      // `debug: false` is the default: not passed.
      assert.deepEqual(env.at(-1), { name: "KATA_DEPLOY_KATA_CONFIG", value: JSON.stringify({ shims: { fc: { agentNoProxy: ".svc" } }, customRuntimes: [{ name: "kata-fc-big", baseShim: "fc" }] }) });
    }
    assert.ok(!(container(buildCleanupDaemonSet(opts)).env ?? []).some((variable) => variable.name === "KATA_DEPLOY_KATA_CONFIG"));
    const classes = buildRuntimeClasses(opts);
    assert.deepEqual(
      classes.map((rc) => [rc.metadata.name, rc.handler, rc.overhead?.podFixed]),
      [
        ["kata-qemu", "kata-qemu", { memory: "160Mi", cpu: "250m" }],
        ["kata-fc", "kata-fc", { memory: "130Mi", cpu: "250m" }],
        ["kata", "kata-qemu", { memory: "160Mi", cpu: "250m" }],
        ["kata-fc-big", "kata-fc-big", { memory: "130Mi", cpu: "500m" }],
      ],
    );
    await assertValidManifests(allObjects(opts));
  });
  // ---- end of Kata configuration ----
});

describe("scheduling on real clusters", () => {
  // Kubernetes' toleration semantics (k8s.io/api/core/v1 Toleration.ToleratesTaint), written out here
  // independently of the builders, to check what a tainted node admits.
  interface Taint { key: string; value?: string; effect: "NoSchedule" | "PreferNoSchedule" | "NoExecute" }
  const tolerates = (tolerations: { key?: string; operator?: string; value?: string; effect?: string }[] | undefined, taint: Taint) =>
    (tolerations ?? []).some((t) =>
      (t.effect === undefined || t.effect === "" || t.effect === taint.effect) &&
      ((t.key ?? "") === "" ? t.operator === "Exists" : t.key === taint.key) &&
      ((t.operator ?? "Equal") === "Exists" || (t.value ?? "") === (taint.value ?? "")));
  const schedulable = (ds: DaemonSetManifest, labels: Record<string, string>, taints: Taint[]) =>
    Object.entries(podSpec(ds).nodeSelector ?? {}).every(([key, value]) => labels[key] === value) &&
    taints.filter((taint) => taint.effect !== "PreferNoSchedule").every((taint) => tolerates(podSpec(ds).tolerations, taint));

  const controlPlane: Taint = { key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" };
  const gpu: Taint = { key: "nvidia.com/gpu", value: "present", effect: "NoSchedule" };
  const draining: Taint = { key: "node.kubernetes.io/unschedulable", effect: "NoExecute" };
  const runtimeKey = "kata-containers.io/container-runtime";
  const kataKey = "kata-containers.io/kata-runtime";

  it("by default every DaemonSet tolerates every taint and runs at system-node-critical priority", () => {
    const { deploy, cleanup } = buildAllManifests(options());
    for (const ds of [...deploy, ...cleanup]) {
      assert.equal(podSpec(ds).priorityClassName, "system-node-critical", ds.metadata.name);
      for (const taint of [controlPlane, gpu, draining]) assert.ok(tolerates(podSpec(ds).tolerations, taint), `${ds.metadata.name} tolerates ${taint.key}`);
      assert.equal(podSpec(ds).imagePullSecrets, undefined, "no pull secret unless asked for");
    }
    const installer = buildInstallerDaemonSet("containerd", options());
    assert.ok(schedulable(installer, { [runtimeKey]: "containerd" }, [controlPlane, gpu, draining]));
  });

  it("restricted tolerations keep installers and labeler off other tainted nodes; cleanup still tolerates everything", () => {
    const opts = options({ tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }], priorityClassName: "" });
    const labels = { [runtimeKey]: "containerd" };
    const installer = buildInstallerDaemonSet("containerd", opts);
    assert.equal(schedulable(installer, labels, [gpu]), true);
    assert.equal(schedulable(installer, labels, [controlPlane]), false);
    assert.equal(schedulable(buildLabelerDaemonSet(opts), {}, [controlPlane]), false);
    const cleanup = buildCleanupDaemonSet(opts);
    assert.equal(schedulable(cleanup, { ...labels, [kataKey]: "cleanup" }, [controlPlane, gpu, draining]), true);
    for (const ds of [installer, cleanup, buildLabelerDaemonSet(opts)]) assert.equal(podSpec(ds).priorityClassName, undefined, `"" means no priority class (${ds.metadata.name})`);
  });

  it("nodeSelector restricts labeler and installers alike, never the cleanup DaemonSet", () => {
    const sandbox = { "node-role.example.com/sandbox": "true" };
    const opts = options({ nodeSelector: sandbox });
    assert.deepEqual(podSpec(buildLabelerDaemonSet(opts)).nodeSelector, sandbox);
    assert.deepEqual(podSpec(buildInstallerDaemonSet("crio", opts)).nodeSelector, { ...sandbox, [runtimeKey]: "crio" });
    assert.deepEqual(podSpec(buildCleanupDaemonSet(opts)).nodeSelector, { [kataKey]: "cleanup" });
  });

  it("narrowing nodeSelector on a later update uninstalls the nodes left out, and the cleanup DaemonSet reaches them", () => {
    // The agent's own rollout-vs-removal decision (what the installer's preStop runs), fed the updated DaemonSet.
    const before = buildInstallerDaemonSet("containerd", options({ tolerations: [] }));
    const after = buildInstallerDaemonSet("containerd", options({ tolerations: [], nodeSelector: { "pool.example.com/name": "sandbox" } }));
    const kept = { [runtimeKey]: "containerd", [kataKey]: "true", "pool.example.com/name": "sandbox" };
    const leftOut = { [runtimeKey]: "containerd", [kataKey]: "true", "pool.example.com/name": "general" };
    const node = (labels: Record<string, string>) => ({ metadata: { name: "n", labels } });
    // Both nodes ran an installer before the change.
    assert.ok(schedulable(before, kept, []) && schedulable(before, leftOut, []));
    // The DaemonSet controller deletes the pod only where the new template no longer fits ...
    assert.equal(schedulable(after, kept, []), true);
    assert.equal(schedulable(after, leftOut, []), false);
    // ... and that pod's preStop sees a removal, not a rollout, so it uninstalls and labels the node cleanup.
    const daemonSet = after as unknown as Parameters<typeof isRollout>[0];
    assert.equal(isRollout(daemonSet, node(leftOut)), false);
    assert.equal(isRollout(daemonSet, node(kept)), true, "a kept node's pod replaced by the same update is a rollout");
    // The cleanup DaemonSet of the same (narrowed) settings still schedules there, tainted or not.
    const cleanup = buildCleanupDaemonSet(options({ tolerations: [], nodeSelector: { "pool.example.com/name": "sandbox" } }));
    assert.equal(schedulable(cleanup, { ...leftOut, [kataKey]: "cleanup" }, [controlPlane, draining]), true);
  });

  it("imagePullSecrets and resources reach every DaemonSet; crashes surface the agent's last log line", async () => {
    const opts = options({
      imagePullSecrets: ["registry-a", "registry-b"],
      resources: { installer: { limits: { memory: "1Gi" } }, cleanup: { requests: { cpu: "20m" } } },
    });
    const all = [...buildAllManifests(opts).deploy, ...buildAllManifests(opts).cleanup];
    await assertValidManifests(all);
    for (const ds of all) {
      assert.deepEqual(podSpec(ds).imagePullSecrets, [{ name: "registry-a" }, { name: "registry-b" }], ds.metadata.name);
      assert.equal(container(ds).terminationMessagePolicy, "FallbackToLogsOnError", ds.metadata.name);
      assert.ok(container(ds).resources?.requests?.memory, `${ds.metadata.name} requests memory`);
    }
    // Overrides merge per container and per requests/limits.
    assert.deepEqual(container(buildInstallerDaemonSet("containerd", opts)).resources, { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "1Gi" } });
    assert.deepEqual(container(buildCleanupDaemonSet(opts)).resources, { requests: { cpu: "20m", memory: "96Mi" } });
    assert.equal(container(buildLabelerDaemonSet(opts)).resources?.limits, undefined, "no limits by default");
  });
});

describe("registry pull Secret", () => {
  it("is a dockerconfigjson the kubelet can read", async () => {
    const secret = buildRegistryPullSecret({ namespace: "kata-deploy" }, { server: "registry.example.com:5000", username: "ci", password: "p@ss:word" });
    assert.deepEqual(await schemaProblems(secret), []);
    assert.equal(secret.type, "kubernetes.io/dockerconfigjson");
    assert.equal(secret.metadata.namespace, "kata-deploy");
    const config = JSON.parse(secret.stringData?.[".dockerconfigjson"] ?? "{}") as { auths: Record<string, { username: string; password: string; auth: string }> };
    const entry = config.auths["registry.example.com:5000"];
    assert.equal(entry.username, "ci");
    // `auth` is base64("user:password"); the password may itself contain ':'.
    assert.equal(Buffer.from(entry.auth, "base64").toString("utf8"), "ci:p@ss:word");
  });
});
