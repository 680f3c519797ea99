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
import { KNOWN_SHIMS, ManifestOptions } from "../../components/settings";
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
      "--shims", "qemu,fc", "--default-shim", "qemu", "--restart", "systemd", "--containerd-flavor", "auto",
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

  // --- snapshotter / guest pull (issue 12) ---
  it("snapshotters reach only the containerd installer, guestPull only the CRI-O one, in upstream kata-deploy's variables", () => {
    const opts = options({ shims: ["qemu", "fc", "qemu-coco-dev"], snapshotters: { "qemu-coco-dev": "nydus", fc: "devmapper" }, guestPull: ["qemu-coco-dev"] });
    const env = (runtime: "containerd" | "crio") => (container(buildInstallerDaemonSet(runtime, opts)).env ?? []).slice(3);
    // `shim:value`, comma-separated, in the order of `shims` (agent: lifecycle/request.ts parses exactly this).
    assert.deepEqual(env("containerd"), [{ name: "SNAPSHOTTER_HANDLER_MAPPING", value: "fc:devmapper,qemu-coco-dev:nydus" }]);
    assert.deepEqual(env("crio"), [{ name: "PULL_TYPE_MAPPING", value: "qemu-coco-dev:guest-pull" }]);
    // Removal needs neither (the agent removes what its record says it added): the cleanup gets none.
    assert.deepEqual(container(buildCleanupDaemonSet(opts)).env, [{ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }]);
    // By default neither variable is set.
    const defaults = options({});
    assert.equal((container(buildInstallerDaemonSet("containerd", defaults)).env ?? []).length, 3);
    assert.equal((container(buildInstallerDaemonSet("crio", defaults)).env ?? []).length, 3);
  });
  // --- end snapshotter / guest pull ---

  it("installers mount the install prefix and host directories that exist on every node (never a pod stuck on a flavour's missing hostPath)", () => {
    // containerd: /etc and /var hold every flavour's config (containerd, k0s: /etc; k3s, rke2, microk8s: /var),
    // type Directory (they always exist); the agent detects or checks the flavour there (issue 12 point 4).
    const etcVar: [string, string][] = [["/etc", "Directory"], ["/var", "Directory"]];
    const cases: [Parameters<typeof normalizeSettings>[0], "containerd" | "crio", [string, string][]][] = [
      [{}, "containerd", etcVar],
      [{}, "crio", [["/etc/crio", "DirectoryOrCreate"]]],
      [{ containerdFlavor: "k3s" }, "containerd", etcVar],
      [{ containerdFlavor: "rke2" }, "containerd", etcVar],
      [{ containerdFlavor: "k0s" }, "containerd", etcVar],
      [{ containerdFlavor: "microk8s" }, "containerd", etcVar],
      [{ containerdFlavor: "k3s" }, "crio", [["/etc/crio", "DirectoryOrCreate"]]],
      [{ containerdConfigPath: "/etc/containerd-custom/config.toml" }, "containerd", etcVar],
      // A custom config outside /etc and /var: its own directory too (the user said it is there).
      [{ containerdConfigPath: "/opt/cd/config.toml" }, "containerd", [...etcVar, ["/opt/cd", "DirectoryOrCreate"]]],
    ];
    for (const [settings, runtime, configDirs] of cases) {
      const ds = buildInstallerDaemonSet(runtime, options(settings));
      assert.deepEqual(hostPaths(ds), [...configDirs, ["/opt/kata", "DirectoryOrCreate"]], `${runtime} ${JSON.stringify(settings)}`);
      assert.deepEqual(mountPaths(ds), [...configDirs.map(([dir]) => `/host${dir}`), "/host/opt/kata"]);
    }
    const custom = container(buildInstallerDaemonSet("containerd", options({ containerdFlavor: "containerd", containerdConfigPath: "/opt/cd/config.toml", containerdSocket: "/run/cd.sock", containerdUnit: "cd" })));
    const at = custom.command?.indexOf("--containerd-flavor") ?? -1;
    assert.deepEqual(custom.command?.slice(at, at + 8), ["--containerd-flavor", "containerd", "--containerd-config", "/opt/cd/config.toml", "--containerd-socket", "/run/cd.sock", "--containerd-unit", "cd"]);
    const customReset = container(buildCleanupDaemonSet(options({ containerdSocket: "/run/cd.sock", containerdUnit: "cd" }))).command ?? [];
    assert.deepEqual(customReset.slice(customReset.indexOf("--containerd-flavor"), customReset.indexOf("--containerd-flavor") + 6), ["--containerd-flavor", "auto", "--containerd-socket", "/run/cd.sock", "--containerd-unit", "cd"], "reset restarts and asks the same containerd");
    const k3s = container(buildInstallerDaemonSet("containerd", options({ containerdFlavor: "k3s" })));
    assert.deepEqual(k3s.command?.slice(k3s.command.indexOf("--containerd-flavor"), k3s.command.indexOf("--containerd-flavor") + 2), ["--containerd-flavor", "k3s"]);
    assert.ok(!container(buildInstallerDaemonSet("crio", options())).command?.includes("--containerd-flavor"));
  });

  it("the cleanup DaemonSet runs reset only on nodes labelled cleanup", () => {
    const ds = buildCleanupDaemonSet(options({ labelPrefix: "example.com" }));
    assert.deepEqual(container(ds).command, ["kata-deploy", "reset", "--host-root", "/host", "--restart", "systemd", "--containerd-flavor", "auto", "--label-prefix", "example.com", "--daemon"]);
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
        // qemu's figures: upstream kata-deploy 4.1.0's (see "RuntimeClass and pod parity" below).
        ["kata-qemu", "kata-qemu", { memory: "320Mi", cpu: "250m" }, { "kata-containers.io/kata-runtime": "true" }],
        ["kata", "kata-qemu", { memory: "320Mi", cpu: "250m" }, { "kata-containers.io/kata-runtime": "true" }],
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
      "--shims", "qemu,fc", "--default-shim", "qemu", "--restart", "systemd", "--containerd-flavor", "auto",
      "--prefix", "/var/lib/kata", "--label-prefix", "kata-containers.io", "--daemon",
    ]);
    assert.deepEqual(installer.lifecycle?.preStop?.exec?.command, [
      "kata-deploy", "uninstall", "--runtime", "containerd", "--host-root", "/host", "--restart", "none", "--prefix", "/var/lib/kata", "--label-prefix", "kata-containers.io",
    ]);
    assert.deepEqual(installer.readinessProbe?.exec?.command, ["kata-deploy", "status", "--host-root", "/host", "--prefix", "/var/lib/kata", "--ready", "--runtime", "containerd"]);
    assert.deepEqual(hostPaths(ds), [["/etc", "Directory"], ["/var", "Directory"], ["/var/lib/kata", "DirectoryOrCreate"]]);
    assert.deepEqual(mountPaths(ds), ["/host/etc", "/host/var", "/host/var/lib/kata"]);
    const cleanup = buildCleanupDaemonSet(opts);
    assert.deepEqual(container(cleanup).command, ["kata-deploy", "reset", "--host-root", "/host", "--restart", "systemd", "--containerd-flavor", "auto", "--prefix", "/var/lib/kata", "--label-prefix", "kata-containers.io", "--daemon"]);
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
        ["kata-qemu", "kata-qemu", { memory: "320Mi", cpu: "250m" }],
        ["kata-fc", "kata-fc", { memory: "130Mi", cpu: "250m" }],
        ["kata", "kata-qemu", { memory: "320Mi", cpu: "250m" }],
        ["kata-fc-big", "kata-fc-big", { memory: "130Mi", cpu: "500m" }],
      ],
    );
    await assertValidManifests(allObjects(opts));
  });
  // ---- end of Kata configuration ----
});

describe("RuntimeClass and pod parity with upstream kata-deploy's Helm chart 4.1.0 (issue 12 point 7)", () => {
  // Upstream's default overhead per shim, copied from kata-containers/kata-containers
  // tools/packaging/kata-deploy/helm-chart/kata-deploy/templates/runtimeclasses.yaml at tag 4.1.0
  // ("kata-deploy.runtimeClassConfigs"), for the shims this project knows; the two 3.x shims 4.1.0 dropped
  // from tools/packaging/kata-deploy/runtimeclasses/kata-qemu-sev.yaml (3.17.0) and kata-cloud-hypervisor.yaml (3.20.0).
  const UPSTREAM_OVERHEAD: Record<string, { memory: string; cpu: string }> = {
    clh: { memory: "130Mi", cpu: "250m" },
    dragonball: { memory: "130Mi", cpu: "250m" },
    fc: { memory: "130Mi", cpu: "250m" },
    qemu: { memory: "320Mi", cpu: "250m" },
    "qemu-coco-dev": { memory: "160Mi", cpu: "250m" },
    "qemu-runtime-rs": { memory: "320Mi", cpu: "250m" },
    "qemu-se": { memory: "1024Mi", cpu: "1.0" },
    "qemu-snp": { memory: "2048Mi", cpu: "1.0" },
    "qemu-tdx": { memory: "2048Mi", cpu: "1.0" },
    "qemu-nvidia-gpu": { memory: "10240Mi", cpu: "1.0" },
    stratovirt: { memory: "130Mi", cpu: "250m" },
    "qemu-sev": { memory: "2048Mi", cpu: "1.0" },
    "cloud-hypervisor": { memory: "130Mi", cpu: "250m" },
  };
  /** A quantity's value (Kubernetes suffixes m, Ki..Pi, k..P), so "1.0" and "1" compare equal, as the API server stores them. */
  const quantity = (text: string): number => {
    const match = /^([0-9.]+)(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/.exec(text);
    assert.ok(match, `${text} is a quantity`);
    const scale: Record<string, number> = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 };
    return Number(match[1]) * (match[2] ? scale[match[2]] : 1);
  };
  const kataRuntime = "kata-containers.io/kata-runtime";
  const byName = (classes: ReturnType<typeof buildRuntimeClasses>) => Object.fromEntries(classes.map((rc) => [rc.metadata.name, rc]));

  it("by default each shim's RuntimeClass declares upstream kata-deploy 4.1.0's overhead", async () => {
    assert.deepEqual([...KNOWN_SHIMS].sort(), Object.keys(UPSTREAM_OVERHEAD).sort(), "a figure for every shim this project knows");
    const classes = buildRuntimeClasses(normalizeSettings({ shims: [...KNOWN_SHIMS] }));
    for (const shim of KNOWN_SHIMS) {
      const podFixed = byName(classes)[`kata-${shim}`].overhead?.podFixed as Record<string, string> | undefined;
      assert.ok(podFixed, `kata-${shim} declares an overhead`);
      assert.deepEqual(Object.keys(podFixed).sort(), ["cpu", "memory"], shim);
      for (const resource of ["memory", "cpu"] as const) {
        assert.equal(quantity(podFixed[resource]), quantity(UPSTREAM_OVERHEAD[shim][resource]), `kata-${shim} ${resource}: ${podFixed[resource]}`);
      }
    }
    await assertValidManifests(classes);
  });

  it("overhead can be switched off for every RuntimeClass, or per shim; a RuntimeClass without overhead is valid", async () => {
    const none = buildRuntimeClasses(normalizeSettings({ runtimeClassOverheadEnabled: false }));
    assert.deepEqual(none.map((rc) => [rc.metadata.name, rc.overhead]), [["kata-qemu", undefined], ["kata-fc", undefined], ["kata", undefined]]);
    assert.ok(none.every((rc) => !("overhead" in rc)), "no empty overhead object either");
    await assertValidManifests(none);

    const fcOff = byName(buildRuntimeClasses(normalizeSettings({ runtimeClassOverhead: { fc: { enabled: false } } })));
    assert.equal(fcOff["kata-fc"].overhead, undefined);
    assert.deepEqual(fcOff["kata-qemu"].overhead, { podFixed: { memory: "320Mi", cpu: "250m" } });

    // Switched off globally, back on for one shim (upstream: runtimeClasses.overheadEnabled + shims.<s>.runtimeClass.overheadEnabled).
    const onlyQemu = byName(buildRuntimeClasses(normalizeSettings({ runtimeClassOverheadEnabled: false, runtimeClassOverhead: { qemu: { enabled: true, memory: "512Mi" } } })));
    assert.deepEqual(onlyQemu["kata-qemu"].overhead, { podFixed: { memory: "512Mi", cpu: "250m" } });
    assert.deepEqual(onlyQemu.kata.overhead, { podFixed: { memory: "512Mi", cpu: "250m" } }, "the default class follows its shim");
    assert.equal(onlyQemu["kata-fc"].overhead, undefined);
  });

  it("a shim's node labels are required next to the kata-runtime label, in its own class and in the default class", async () => {
    const tdx = { "intel.feature.node.kubernetes.io/tdx": "true" };
    const classes = byName(buildRuntimeClasses(normalizeSettings({ shims: ["qemu-tdx", "fc"], runtimeClassNodeSelector: { "qemu-tdx": tdx } })));
    assert.deepEqual(classes["kata-qemu-tdx"].scheduling, { nodeSelector: { [kataRuntime]: "true", ...tdx } });
    assert.deepEqual(classes.kata.scheduling, { nodeSelector: { [kataRuntime]: "true", ...tdx } }, "kata is qemu-tdx (the default shim)");
    assert.deepEqual(classes["kata-fc"].scheduling, { nodeSelector: { [kataRuntime]: "true" } });
    await assertValidManifests(Object.values(classes));

    const prefixed = buildRuntimeClasses(normalizeSettings({ labelPrefix: "example.com", runtimeClassNodeSelector: { fc: { "kata-containers.io/container-runtime": "containerd" } } }));
    assert.deepEqual(byName(prefixed)["kata-fc"].scheduling?.nodeSelector, { "example.com/kata-runtime": "true", "kata-containers.io/container-runtime": "containerd" });
  });

  it("qemu-nvidia-gpu requires upstream's gpu-operator label by default; an entry of its own replaces it", () => {
    // 4.1.0 values.yaml shims.qemu-nvidia-gpu.runtimeClass.nodeSelector.
    const gpu = (settings: Parameters<typeof normalizeSettings>[0]) => byName(buildRuntimeClasses(normalizeSettings({ shims: ["qemu-nvidia-gpu"], ...settings })))["kata-qemu-nvidia-gpu"].scheduling?.nodeSelector;
    assert.deepEqual(gpu({}), { [kataRuntime]: "true", "nvidia.com/cc.ready.state": "false" });
    assert.deepEqual(gpu({ runtimeClassNodeSelector: { "qemu-nvidia-gpu": {} } }), { [kataRuntime]: "true" });
    assert.deepEqual(gpu({ runtimeClassNodeSelector: { "qemu-nvidia-gpu": { "pool.example.com/gpu": "a100" } } }), { [kataRuntime]: "true", "pool.example.com/gpu": "a100" });
  });

  it("defaultRuntimeClassName names the default shim's class; its handler stays kata-<defaultShim>", () => {
    const classes = buildRuntimeClasses(normalizeSettings({ shims: ["qemu", "fc"], defaultShim: "fc", defaultRuntimeClassName: "sandboxed" }));
    assert.deepEqual(classes.map((rc) => [rc.metadata.name, rc.handler]), [["kata-qemu", "kata-qemu"], ["kata-fc", "kata-fc"], ["sandboxed", "kata-fc"]]);
    assert.deepEqual(buildRuntimeClasses(normalizeSettings({ createDefaultRuntimeClass: false, defaultRuntimeClassName: "sandboxed" })).map((rc) => rc.metadata.name), ["kata-qemu", "kata-fc"]);
  });

  it("podLabels and podAnnotations reach every DaemonSet's pods and never a selector", async () => {
    const podLabels = { "team.example.com/name": "platform", tier: "node" };
    const podAnnotations = { "example.com/owner": "platform, infra", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false" };
    const plain = options();
    const labelled = options({ podLabels, podAnnotations });
    const daemonSets = (opts: ManifestOptions) => [...buildAllManifests(opts).deploy, ...buildAllManifests(opts).cleanup];
    for (const [before, after] of daemonSets(plain).map((ds, i) => [ds, daemonSets(labelled)[i]] as const)) {
      const name = after.metadata.name;
      // The selector is immutable in the API: it must not change, or every change would replace the DaemonSet.
      assert.deepEqual(after.spec.selector, before.spec.selector, `${name}: selector unchanged`);
      assert.deepEqual(after.metadata.labels, before.metadata.labels, `${name}: the DaemonSet's own labels unchanged`);
      assert.deepEqual(after.spec.template.metadata?.labels, { ...podLabels, ...before.spec.template.metadata?.labels }, `${name}: pod labels`);
      assert.deepEqual(after.spec.template.metadata?.annotations, podAnnotations, `${name}: pod annotations`);
      assert.equal(before.spec.template.metadata?.annotations, undefined, `${name}: no annotations unless asked for`);
      // The selector still picks this DaemonSet's pods only (the user's labels are common to all of them).
      for (const other of daemonSets(labelled)) {
        const selects = Object.entries(after.spec.selector.matchLabels ?? {}).every(([key, value]) => other.spec.template.metadata?.labels?.[key] === value);
        assert.equal(selects, other.metadata.name === name, `${name} selecting ${other.metadata.name}'s pods`);
      }
    }
    await assertValidManifests(daemonSets(labelled));
  });

  it("imagePullPolicy applies to every container (IfNotPresent unless set)", () => {
    const policies = (opts: ManifestOptions) => [...buildAllManifests(opts).deploy, ...buildAllManifests(opts).cleanup].map((ds) => container(ds).imagePullPolicy);
    assert.deepEqual(policies(options()), ["IfNotPresent", "IfNotPresent", "IfNotPresent", "IfNotPresent"]);
    assert.deepEqual(policies(options({ imagePullPolicy: "Always" })), ["Always", "Always", "Always", "Always"]);
  });

  it("affinity.nodeAffinity goes to the labeler and the installers, never to the cleanup DaemonSet", async () => {
    const affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: "node.kubernetes.io/instance-type", operator: "In" as const, values: ["m7i.metal-24xl", "c7i.metal-24xl"] }] },
            { matchFields: [{ key: "metadata.name", operator: "In" as const, values: ["node-7"] }] },
          ],
        },
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, preference: { matchExpressions: [{ key: "pool.example.com/cores", operator: "Gt" as const, values: ["64"] }] } }],
      },
    };
    const opts = options({ affinity, nodeSelector: { "pool.example.com/name": "sandbox" } });
    assert.deepEqual(podSpec(buildLabelerDaemonSet(opts)).affinity, affinity);
    for (const runtime of ["containerd", "crio"] as const) {
      const installer = podSpec(buildInstallerDaemonSet(runtime, opts));
      assert.deepEqual(installer.affinity, affinity, runtime);
      assert.deepEqual(installer.nodeSelector, { "pool.example.com/name": "sandbox", "kata-containers.io/container-runtime": runtime }, "both apply (ANDed)");
    }
    assert.equal(podSpec(buildCleanupDaemonSet(opts)).affinity, undefined);
    assert.equal(podSpec(buildInstallerDaemonSet("crio", options())).affinity, undefined, "none unless asked for");
    await assertValidManifests(allObjects(opts));
  });
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

  // Startup taints (issue 12 point 5): a new node carries one until its installer removes it.
  describe("startupTaints", () => {
    const pending: Taint = { key: "example.com/kata-not-ready", value: "true", effect: "NoSchedule" };
    const pendingExecute: Taint = { key: "example.com/kata-not-ready", effect: "NoExecute" };

    it("with narrowed tolerations the labeler and the installers still run on a node that carries one, and nowhere else tainted", () => {
      const opts = options({ tolerations: [{ key: "nvidia.com/gpu", operator: "Exists" }], startupTaints: [{ key: pending.key, effect: "NoSchedule" }] });
      // The labeler must run there first (the installer selects its container-runtime label), then the installer.
      assert.equal(schedulable(buildLabelerDaemonSet(opts), {}, [pending]), true);
      for (const runtime of ["containerd", "crio"] as const) {
        const installer = buildInstallerDaemonSet(runtime, opts);
        assert.equal(schedulable(installer, { [runtimeKey]: runtime }, [pending, gpu]), true, runtime);
        assert.equal(schedulable(installer, { [runtimeKey]: runtime }, [pending, controlPlane]), false, `${runtime}: the user's choice still applies to other taints`);
        assert.equal(schedulable(installer, { [runtimeKey]: runtime }, [pendingExecute]), false, `${runtime}: another effect of the key is not tolerated`);
      }
    });

    it("a key without an effect is tolerated with every effect", () => {
      const opts = options({ tolerations: [], startupTaints: [{ key: pending.key }] });
      assert.equal(schedulable(buildInstallerDaemonSet("containerd", opts), { [runtimeKey]: "containerd" }, [pending, pendingExecute]), true);
      assert.deepEqual(podSpec(buildLabelerDaemonSet(opts)).tolerations, [{ key: pending.key, operator: "Exists" }]);
    });

    // RBAC: none beyond the labels' patch on nodes; tests/agent/startup-taints.test.ts runs the agent under the
    // component's own ClusterRole.
    it("the installers pass them to the agent (install only: the preStop never adds them back); labeler and cleanup do not", async () => {
      const opts = options({ startupTaints: [{ key: pending.key, effect: "NoSchedule" }, { key: "example.com/gpu-driver-pending" }] });
      for (const runtime of ["containerd", "crio"] as const) {
        const ds = buildInstallerDaemonSet(runtime, opts);
        const command = container(ds).command ?? [];
        assert.deepEqual(command.slice(-3), ["--startup-taints", "example.com/kata-not-ready:NoSchedule,example.com/gpu-driver-pending", "--daemon"], runtime);
        assert.ok(!(container(ds).lifecycle?.preStop?.exec?.command ?? []).includes("--startup-taints"), `${runtime} preStop`);
      }
      for (const ds of [buildLabelerDaemonSet(opts), buildCleanupDaemonSet(opts)]) assert.ok(!(container(ds).command ?? []).includes("--startup-taints"), ds.metadata.name);
      await assertValidManifests([...buildAllManifests(opts).deploy, ...buildAllManifests(opts).cleanup]);
    });
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

  it("a required node affinity changed on a later update: the installer's preStop sees a removal on the nodes it leaves out", () => {
    const poolIn = (...values: string[]) => ({ nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "pool.example.com/name", operator: "In" as const, values }] }] } } });
    const after = buildInstallerDaemonSet("containerd", options({ affinity: poolIn("sandbox") })) as unknown as Parameters<typeof isRollout>[0];
    const node = (pool: string) => ({ metadata: { name: "n", labels: { [runtimeKey]: "containerd", [kataKey]: "true", "pool.example.com/name": pool } } });
    assert.equal(isRollout(after, node("sandbox")), true, "still selected: a rollout, Kata stays");
    assert.equal(isRollout(after, node("general")), false, "left out by the affinity: a removal");
    const wider = buildInstallerDaemonSet("containerd", options({ affinity: poolIn("sandbox", "general") })) as unknown as Parameters<typeof isRollout>[0];
    assert.equal(isRollout(wider, node("general")), true);
  });

  it("isRollout evaluates required node affinity as Kubernetes does (component-helpers nodeaffinity, apimachinery labels)", () => {
    type Term = { matchExpressions?: { key: string; operator: string; values?: string[] }[]; matchFields?: { key: string; operator: string; values?: string[] }[] };
    const daemonSet = (terms: Term[]) => ({ metadata: { name: "ds" }, spec: { selector: {}, template: { spec: { containers: [], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } } } } }) as unknown as Parameters<typeof isRollout>[0];
    const node = { metadata: { name: "n1", labels: { zone: "a", cores: "16", odd: "x16" } } };
    // Each expectation is read off the Go source: LazyErrorNodeSelector.Match ORs the terms and skips empty ones;
    // labels.Requirement.Matches: NotIn/DoesNotExist match an absent key, Gt/Lt parse the label as int64 (else false);
    // NewRequirement refuses In without values (the term then fails); matchFields In/NotIn on metadata.name.
    const cases: [string, Term[], boolean][] = [
      ["no terms: matches nothing", [], false],
      ["only an empty term: matches nothing", [{}], false],
      ["an empty term next to a matching one", [{}, { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] }], true],
      ["terms ORed", [{ matchExpressions: [{ key: "zone", operator: "In", values: ["b"] }] }, { matchExpressions: [{ key: "zone", operator: "Exists" }] }], true],
      ["requirements ANDed", [{ matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }, { key: "gpu", operator: "Exists" }] }], false],
      ["NotIn on an absent key", [{ matchExpressions: [{ key: "gpu", operator: "NotIn", values: ["yes"] }] }], true],
      ["DoesNotExist", [{ matchExpressions: [{ key: "gpu", operator: "DoesNotExist" }] }], true],
      ["Gt on an integer label", [{ matchExpressions: [{ key: "cores", operator: "Gt", values: ["8"] }] }], true],
      ["Lt on an integer label", [{ matchExpressions: [{ key: "cores", operator: "Lt", values: ["8"] }] }], false],
      ["Gt on a label that is not an integer", [{ matchExpressions: [{ key: "odd", operator: "Gt", values: ["1"] }] }], false],
      ["In without values does not parse: the term fails", [{ matchExpressions: [{ key: "zone", operator: "In", values: [] }] }], false],
      ["matchFields metadata.name In", [{ matchFields: [{ key: "metadata.name", operator: "In", values: ["n1"] }] }], true],
      ["matchFields metadata.name NotIn", [{ matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["n1"] }] }], false],
      ["matchFields with two values does not parse", [{ matchFields: [{ key: "metadata.name", operator: "In", values: ["n1", "n2"] }] }], false],
    ];
    for (const [label, terms, expected] of cases) assert.equal(isRollout(daemonSet(terms), node), expected, label);
    assert.equal(isRollout({ metadata: { name: "ds" }, spec: { selector: {}, template: { spec: { containers: [] } } } } as unknown as Parameters<typeof isRollout>[0], node), true, "no affinity: nodeSelector alone");
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

// ---- mixed-architecture clusters (issue 12 point 3) ---------------------------------------------------------
describe("shimsByArch: RuntimeClasses select only nodes that have the shim", () => {
  const selectors = (input: Parameters<typeof normalizeSettings>[0]): Record<string, Record<string, string>> =>
    Object.fromEntries(buildRuntimeClasses(normalizeSettings(input)).map((rc) => [rc.metadata.name, rc.scheduling?.nodeSelector ?? {}]));
  const installed = { "kata-containers.io/kata-runtime": "true" };

  // Expected per architecture set, from what a RuntimeClass nodeSelector can express (a map of labels that must all
  // match: k8s.io/api node/v1 Scheduling.NodeSelector): one architecture is one `kubernetes.io/arch` value; two of
  // three cannot be one value, so the node label the installer sets where it installed the shim.
  const cases: [string, Parameters<typeof normalizeSettings>[0], Record<string, Record<string, string>>][] = [
    ["one architecture: its shims, nothing to confine", { shimsByArch: { arm64: ["qemu-runtime-rs", "clh"] } }, { "kata-qemu-runtime-rs": installed, "kata-clh": installed, kata: installed }],
    [
      "two architectures, fc only on amd64",
      { shimsByArch: { amd64: ["qemu", "fc"], arm64: ["qemu"] } },
      { "kata-qemu": installed, "kata-fc": { ...installed, "kubernetes.io/arch": "amd64" }, kata: installed },
    ],
    [
      // ppc64le's default is qemu (it has no fc): the defaults differ, so `kata` is each node's own default (per-node handler).
      "three architectures, fc on two of them; the default RuntimeClass runs each node's default shim, so it needs no per-shim label",
      { shimsByArch: { amd64: ["fc", "qemu"], arm64: ["fc", "qemu"], ppc64le: ["qemu"] } },
      { "kata-fc": { ...installed, "kata-containers.io/kata-fc": "true" }, "kata-qemu": installed, kata: installed },
    ],
    [
      "an architecture listed without shims does not count (its nodes are never labelled installed)",
      { shimsByArch: { amd64: ["qemu", "clh"], s390x: [] } },
      { "kata-qemu": installed, "kata-clh": installed, kata: installed },
    ],
    [
      "the user's RuntimeClass node labels are kept next to the architecture",
      { labelPrefix: "example.com", shimsByArch: { amd64: ["qemu", "qemu-tdx"], arm64: ["qemu"], s390x: ["qemu"] }, runtimeClassNodeSelector: { "qemu-tdx": { "intel.feature.node.kubernetes.io/tdx": "true" } } },
      {
        "kata-qemu": { "example.com/kata-runtime": "true" },
        "kata-qemu-tdx": { "example.com/kata-runtime": "true", "kubernetes.io/arch": "amd64", "intel.feature.node.kubernetes.io/tdx": "true" },
        kata: { "example.com/kata-runtime": "true" },
      },
    ],
  ];
  for (const [label, input, expected] of cases) {
    it(label, async () => {
      assert.deepEqual(selectors(input), expected);
      await assertValidManifests(allObjects(options(input)));
    });
  }
});

// ---- per-node default handler (the architectures' default shims differ) -----------------------------------------
describe("the default RuntimeClass when the architectures' default shims differ", () => {
  const perArch = { runtimes: ["containerd", "crio"], shimsByArch: { amd64: ["qemu", "fc"], arm64: ["fc", "qemu"] }, defaultShimByArch: { amd64: "qemu", arm64: "fc" } };
  const defaultClass = (input: Parameters<typeof normalizeSettings>[0]) => buildRuntimeClasses(normalizeSettings(input)).find((rc) => rc.metadata.name === "kata");

  it("has the per-node handler `kata`, which every installer is told to configure (--default-handler kata)", async () => {
    const opts = options(perArch);
    assert.equal(defaultClass(perArch)?.handler, "kata");
    for (const runtime of ["containerd", "crio"] as const) {
      const command = container(buildInstallerDaemonSet(runtime, opts)).command ?? [];
      assert.equal(command[command.indexOf("--default-handler") + 1], "kata", runtime);
    }
    await assertValidManifests(allObjects(opts));
  });

  it("charges the largest overhead of the default shims per resource: every node it lands on is covered (upstream figures qemu 320Mi/250m, fc 130Mi/250m)", () => {
    assert.deepEqual(defaultClass(perArch)?.overhead, { podFixed: { memory: "320Mi", cpu: "250m" } });
    const custom = { ...perArch, runtimeClassOverhead: { qemu: { memory: "200Mi", cpu: "500m" }, fc: { memory: "0.25Gi", cpu: "0.3" } } };
    assert.deepEqual(defaultClass(custom)?.overhead, { podFixed: { memory: "0.25Gi", cpu: "500m" } }, "0.25Gi = 256Mi > 200Mi; 500m > 0.3");
  });

  it("keeps handler kata-<defaultShim> when the defaults agree (an unchanged stack keeps its RuntimeClass), and passes no flag", () => {
    const same = { shimsByArch: { amd64: ["qemu", "fc"], arm64: ["qemu"] } };
    assert.equal(defaultClass(same)?.handler, "kata-qemu");
    assert.ok(!(container(buildInstallerDaemonSet("containerd", options(same))).command ?? []).includes("--default-handler"));
    const off = { ...perArch, createDefaultRuntimeClass: false };
    assert.ok(!(container(buildInstallerDaemonSet("containerd", options(off))).command ?? []).includes("--default-handler"), "no default RuntimeClass: no handler");
  });
});

describe("containerRuntimeDebug", () => {
  it("passes --container-runtime-debug to every installer, only when asked", () => {
    for (const runtime of ["containerd", "crio"] as const) {
      assert.ok((container(buildInstallerDaemonSet(runtime, options({ containerRuntimeDebug: true }))).command ?? []).includes("--container-runtime-debug"), runtime);
      assert.ok(!(container(buildInstallerDaemonSet(runtime, options())).command ?? []).includes("--container-runtime-debug"), `${runtime}: off by default`);
    }
  });
});
