// The e2e harness's pod translation (tests/e2e/support/pod.ts), checked without Docker: what the harness
// runs for each DaemonSet must be what a kubelet would run, and anything it cannot emulate must refuse.
import * as assert from "node:assert/strict";
import { buildAllManifests, NAMES, type DaemonSetManifest } from "../../components/manifests";
import type { ManifestOptions } from "../../components/settings";
import { normalizeSettings } from "../../components/validation";
import { dockerRunFlags } from "../support/images";
import { hostPathsOf, planPod, selectsNode, SERVICE_ACCOUNT_DIR, UnsupportedPodSpec, type PodPlacement } from "./support/pod";

const IMAGE = "registry.example/kata-deploy@sha256:" + "a".repeat(64);
const options: ManifestOptions = { ...normalizeSettings({}), image: IMAGE };
const all = buildAllManifests(options);
const daemonSet = (name: string): DaemonSetManifest => [...all.deploy, ...all.cleanup].find((ds) => ds.metadata.name === name)!;

const placement: PodPlacement = {
  nodeName: "worker-1",
  nodeContainer: "kata-e2e-node",
  podName: "pod-a",
  hostPathSource: (p) => `/srv/nodes/worker-1${p}`,
  api: { env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: "6443" }, serviceAccountDir: "/srv/sa" },
};

/** The values following each occurrence of `flag` in an argument list. */
function flagValues(args: string[], flag: string): string[] {
  return args.flatMap((arg, i) => (arg === flag ? [args[i + 1]] : []));
}

describe("e2e harness: DaemonSet pod spec → docker run", () => {
  const installer = daemonSet(NAMES.installer("containerd"));

  it("runs the installer's command with the image's entrypoint replaced, on the node's PID namespace", () => {
    const plan = planPod(installer, placement);
    const container = installer.spec.template.spec.containers[0];
    const imageAt = plan.runArgs.indexOf(IMAGE);
    assert.deepEqual(flagValues(plan.runArgs, "--entrypoint"), [container.command![0]]);
    assert.deepEqual(plan.runArgs.slice(imageAt + 1), container.command!.slice(1));
    assert.ok(plan.runArgs.includes("--pid=container:kata-e2e-node"), "hostPID joins the node's PID namespace");
    for (const flag of dockerRunFlags()) assert.ok(plan.runArgs.slice(0, imageAt).includes(flag), `privileged stand-in flag ${flag}`);
  });

  it("resolves fieldRef env from the placement and keeps literals, after the kubelet's service variables", () => {
    const env = flagValues(planPod(installer, placement).runArgs, "--env");
    assert.deepEqual(env, [
      "KUBERNETES_SERVICE_HOST=127.0.0.1",
      "KUBERNETES_SERVICE_PORT=6443",
      "NODE_NAME=worker-1",
      `POD_NAMESPACE=${options.namespace}`,
      `DAEMONSET_NAME=${NAMES.installer("containerd")}`,
    ]);
  });

  it("binds each hostPath from the node's shared directory at the container's mountPath, plus the service account", () => {
    const mounts = flagValues(planPod(installer, placement).runArgs, "--mount");
    assert.deepEqual(mounts, [
      "type=bind,source=/srv/nodes/worker-1/etc,target=/host/etc",
      "type=bind,source=/srv/nodes/worker-1/var,target=/host/var",
      "type=bind,source=/srv/nodes/worker-1/opt/kata,target=/host/opt/kata",
      `type=bind,source=/srv/sa,target=${SERVICE_ACCOUNT_DIR},readonly`,
    ]);
  });

  it("takes preStop, readiness and the grace period from the spec", () => {
    const plan = planPod(installer, placement);
    const container = installer.spec.template.spec.containers[0];
    assert.deepEqual(plan.preStop, container.lifecycle!.preStop!.exec!.command);
    assert.deepEqual(plan.readiness?.command, container.readinessProbe!.exec!.command);
    assert.equal(plan.terminationGraceSeconds, installer.spec.template.spec.terminationGracePeriodSeconds);
  });

  it("gives the labeler its restricted security context instead of privileges, and no host PID", () => {
    const plan = planPod(daemonSet(NAMES.labeler), placement);
    const beforeImage = plan.runArgs.slice(0, plan.runArgs.indexOf(IMAGE));
    assert.ok(!beforeImage.some((a) => a.startsWith("--pid")));
    assert.ok(!beforeImage.includes("--cap-add=ALL"));
    assert.deepEqual(flagValues(beforeImage, "--user"), ["65534"]);
    assert.ok(beforeImage.includes("--read-only"));
    assert.ok(beforeImage.includes("--cap-drop=ALL"));
    assert.deepEqual(flagValues(beforeImage, "--security-opt"), ["no-new-privileges"]);
  });

  it("follows a change to the pod spec (a new arg, env var and mount show up in the run)", () => {
    const changed: DaemonSetManifest = JSON.parse(JSON.stringify(installer));
    const spec = changed.spec.template.spec;
    spec.containers[0].command!.push("--shims", "clh");
    spec.containers[0].env!.push({ name: "EXTRA", value: "1" });
    spec.volumes!.push({ name: "extra", hostPath: { path: "/var/lib/extra", type: "DirectoryOrCreate" } });
    spec.containers[0].volumeMounts!.push({ name: "extra", mountPath: "/host/var/lib/extra", readOnly: true });
    const plan = planPod(changed, placement);
    assert.deepEqual(plan.runArgs.slice(-2), ["--shims", "clh"]);
    assert.ok(plan.runArgs.includes("EXTRA=1"));
    assert.ok(plan.runArgs.includes("type=bind,source=/srv/nodes/worker-1/var/lib/extra,target=/host/var/lib/extra,readonly"));
    assert.deepEqual(hostPathsOf([changed]), ["/etc", "/opt/kata", "/var", "/var/lib/extra"]);
  });

  it("refuses what it cannot emulate instead of dropping it", () => {
    const cases: [string, (ds: DaemonSetManifest) => void, RegExp][] = [
      ["an unknown pod field", (ds) => Object.assign(ds.spec.template.spec, { hostIPC: true }), /spec\.template\.spec\.hostIPC is set/],
      ["an init container", (ds) => (ds.spec.template.spec.initContainers = [{ name: "init", image: IMAGE }]), /initContainers/],
      ["a secret env var", (ds) => ds.spec.template.spec.containers[0].env!.push({ name: "S", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }), /env S\.valueFrom is not a fieldRef/],
      ["a non-hostPath volume", (ds) => (ds.spec.template.spec.volumes![0] = { name: ds.spec.template.spec.volumes![0].name, emptyDir: {} }), /is not a hostPath/],
      ["an httpGet probe", (ds) => (ds.spec.template.spec.containers[0].readinessProbe = { httpGet: { port: 80 } }), /readinessProbe is not an exec probe/],
      ["mount propagation", (ds) => (ds.spec.template.spec.containers[0].volumeMounts![0].mountPropagation = "Bidirectional"), /mountPropagation/],
    ];
    for (const [what, mutate, message] of cases) {
      const changed: DaemonSetManifest = JSON.parse(JSON.stringify(installer));
      mutate(changed);
      assert.throws(() => planPod(changed, placement), (e: unknown) => e instanceof UnsupportedPodSpec && message.test(e.message), what);
    }
  });

  it("schedules by nodeSelector as the DaemonSet controller does", () => {
    const runtimeKey = `${options.labelPrefix}/container-runtime`;
    assert.equal(selectsNode(installer, {}), false);
    assert.equal(selectsNode(installer, { [runtimeKey]: "crio" }), false);
    assert.equal(selectsNode(installer, { [runtimeKey]: "containerd", other: "x" }), true);
    assert.equal(selectsNode(daemonSet(NAMES.labeler), {}), true);
  });
});
