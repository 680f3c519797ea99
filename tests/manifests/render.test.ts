import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { format } from "node:util";
import { parseAllDocuments } from "yaml";
import { buildAllManifests } from "../../components/manifests";
import { main, parseRenderArgs } from "../../components/render";
import { normalizeSettings } from "../../components/validation";
import { assertValidManifests } from "../support/k8s-schema";

const REPO = path.resolve(__dirname, "../..");
const IMAGE = "registry.example.com/kata-deploy@sha256:" + "12".repeat(32);

interface RenderRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `npm run render -- ARGS` as a user would (through npm, so the package.json script is exercised too). */
function renderThroughNpm(args: string[]): RenderRun {
  const result = spawnSync("npm", ["run", "--silent", "render", "--", ...args], { cwd: REPO, encoding: "utf8", timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * `npm run render -- ARGS` in this process: the function the script runs (components/render.ts `main`, whose
 * status the script exits with), its console output captured. Each run through npm costs about 2 s of CPU
 * (npm, ts-node compiling the components); one success and one refusal below still go through npm.
 */
function render(args: string[]): RenderRun {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const { log, error } = console;
  console.log = (...values: unknown[]) => void stdout.push(`${format(...values)}\n`);
  console.error = (...values: unknown[]) => void stderr.push(`${format(...values)}\n`);
  try {
    return { status: main(args), stdout: stdout.join(""), stderr: stderr.join("") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

function readDocuments(file: string): unknown[] {
  return parseAllDocuments(fs.readFileSync(file, "utf8")).map((document) => {
    assert.deepEqual(document.errors, [], file);
    return document.toJS();
  }).filter((object) => object !== null);
}

describe("npm run render", () => {
  let outDir: string;
  beforeEach(() => {
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-render-"));
  });
  afterEach(() => fs.rmSync(outDir, { recursive: true, force: true }));

  it("writes the seed's files plus runtimeclasses.yaml, each valid against the Kubernetes OpenAPI schema", async () => {
    const result = renderThroughNpm(["--out", outDir, "--image", IMAGE]);
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(fs.readdirSync(outDir).sort(), ["kata-cleanup.yaml", "kata-deploy.yaml", "kata-rbac.yaml", "runtimeclasses.yaml"]);
    const kinds = (file: string) => readDocuments(path.join(outDir, file)).map((o) => `${(o as { kind: string }).kind}/${(o as { metadata: { name: string } }).metadata.name}`);
    assert.deepEqual(kinds("kata-rbac.yaml"), ["Namespace/kata-deploy", "ServiceAccount/kata-deploy", "ClusterRole/kata-deploy", "ClusterRoleBinding/kata-deploy"]);
    assert.deepEqual(kinds("kata-deploy.yaml"), ["DaemonSet/kata-runtime-labeler", "DaemonSet/kata-installer-containerd", "DaemonSet/kata-installer-crio"]);
    assert.deepEqual(kinds("kata-cleanup.yaml"), ["DaemonSet/kata-cleanup"]);
    assert.deepEqual(kinds("runtimeclasses.yaml"), ["RuntimeClass/kata-qemu", "RuntimeClass/kata-fc", "RuntimeClass/kata"]);
    const all = fs.readdirSync(outDir).flatMap((file) => readDocuments(path.join(outDir, file)));
    await assertValidManifests(all);
    assert.doesNotMatch(fs.readFileSync(path.join(outDir, "kata-deploy.yaml"), "utf8"), /[&*]a\d/, "no YAML anchors/aliases");
  });

  it("renders the same objects the component creates, with the options given", () => {
    const result = render(["--out", outDir, "--image", IMAGE, "--runtimes", "containerd", "--shims", "clh,qemu", "--namespace", "platform",
      "--containerd-flavor", "k3s", "--max-unavailable", "2", "--without-default-runtime-class"]);
    assert.equal(result.status, 0, result.stderr);
    const expected = buildAllManifests({
      ...normalizeSettings({ runtimes: ["containerd"], shims: ["clh", "qemu"], namespace: "platform", containerdFlavor: "k3s", maxUnavailable: 2, createDefaultRuntimeClass: false }),
      image: IMAGE,
    });
    assert.deepEqual(readDocuments(path.join(outDir, "kata-rbac.yaml")), JSON.parse(JSON.stringify(expected.rbac)));
    assert.deepEqual(readDocuments(path.join(outDir, "kata-deploy.yaml")), JSON.parse(JSON.stringify(expected.deploy)));
    assert.deepEqual(readDocuments(path.join(outDir, "kata-cleanup.yaml")), JSON.parse(JSON.stringify(expected.cleanup)));
    assert.deepEqual(readDocuments(path.join(outDir, "runtimeclasses.yaml")), JSON.parse(JSON.stringify(expected.runtimeClasses)));
    // Independently of the builders: the options reached the objects.
    const installer = readDocuments(path.join(outDir, "kata-deploy.yaml"))[1] as { metadata: { namespace: string }; spec: { updateStrategy: unknown } };
    assert.equal(installer.metadata.namespace, "platform");
    assert.deepEqual(installer.spec.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 2 } });
  });

  it("--container-runtime-debug reaches every installer's command", () => {
    const result = render(["--out", outDir, "--image", IMAGE, "--container-runtime-debug"]);
    assert.equal(result.status, 0, result.stderr);
    const installers = readDocuments(path.join(outDir, "kata-deploy.yaml")).slice(1) as { spec: { template: { spec: { containers: { command: string[] }[] } } } }[];
    assert.equal(installers.length, 2);
    for (const installer of installers) assert.ok(installer.spec.template.spec.containers[0].command.includes("--container-runtime-debug"));
  });

  it("passes scheduling and pull-secret options through to the DaemonSets", () => {
    const result = render(["--out", outDir, "--image", IMAGE, "--node-selector", "pool.example.com/name=sandbox", "--tolerations", "[]",
      "--priority-class-name", "", "--image-pull-secrets", "regcred"]);
    assert.equal(result.status, 0, result.stderr);
    const installer = readDocuments(path.join(outDir, "kata-deploy.yaml"))[1] as { spec: { template: { spec: Record<string, unknown> } } };
    const spec = installer.spec.template.spec;
    assert.deepEqual(spec.nodeSelector, { "pool.example.com/name": "sandbox", "kata-containers.io/container-runtime": "containerd" });
    assert.deepEqual(spec.tolerations, []);
    assert.equal(spec.priorityClassName, undefined);
    assert.deepEqual(spec.imagePullSecrets, [{ name: "regcred" }]);
  });

  it("--startup-taints: the installers remove them and, with the labeler, tolerate them", () => {
    const result = render(["--out", outDir, "--image", IMAGE, "--tolerations", "[]", "--runtimes", "containerd",
      "--startup-taints", '[{"key":"example.com/kata-not-ready","effect":"NoSchedule"}]']);
    assert.equal(result.status, 0, result.stderr);
    const [labeler, installer] = readDocuments(path.join(outDir, "kata-deploy.yaml")) as { spec: { template: { spec: { tolerations: unknown[]; containers: { command: string[] }[] } } } }[];
    const toleration = { key: "example.com/kata-not-ready", operator: "Exists", effect: "NoSchedule" };
    assert.deepEqual(labeler.spec.template.spec.tolerations, [toleration]);
    assert.deepEqual(installer.spec.template.spec.tolerations, [toleration]);
    const command = installer.spec.template.spec.containers[0].command;
    assert.deepEqual(command.slice(command.indexOf("--startup-taints"), command.indexOf("--startup-taints") + 2), ["--startup-taints", "example.com/kata-not-ready:NoSchedule"]);
  });

  it("passes RuntimeClass and pod options through (issue 12 point 7)", async () => {
    const affinity = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "pool.example.com/kata", operator: "Exists" }] }] } } };
    const result = render(["--out", outDir, "--image", IMAGE, "--default-runtime-class-name", "sandboxed", "--without-runtime-class-overhead",
      "--runtime-class-overhead", '{"fc":{"enabled":true,"memory":"256Mi"}}', "--runtime-class-node-selector", '{"qemu":{"pool.example.com/vm":"yes"}}',
      "--image-pull-policy", "Always", "--pod-labels", "team.example.com/name=platform", "--pod-annotations", '{"example.com/owner":"a, b=c"}',
      "--affinity", JSON.stringify(affinity)]);
    assert.equal(result.status, 0, result.stderr);
    const classes = readDocuments(path.join(outDir, "runtimeclasses.yaml")) as { metadata: { name: string }; handler: string; overhead?: unknown; scheduling: { nodeSelector: Record<string, string> } }[];
    assert.deepEqual(classes.map((rc) => [rc.metadata.name, rc.handler, rc.overhead, rc.scheduling.nodeSelector]), [
      ["kata-qemu", "kata-qemu", undefined, { "kata-containers.io/kata-runtime": "true", "pool.example.com/vm": "yes" }],
      ["kata-fc", "kata-fc", { podFixed: { memory: "256Mi", cpu: "250m" } }, { "kata-containers.io/kata-runtime": "true" }],
      ["sandboxed", "kata-qemu", undefined, { "kata-containers.io/kata-runtime": "true", "pool.example.com/vm": "yes" }],
    ]);
    type Pod = { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: { affinity?: unknown; containers: { imagePullPolicy: string }[] } };
    const daemonSets = ["kata-deploy.yaml", "kata-cleanup.yaml"].flatMap((file) => readDocuments(path.join(outDir, file))) as { metadata: { name: string }; spec: { template: Pod } }[];
    for (const ds of daemonSets) {
      const pod = ds.spec.template;
      assert.equal(pod.metadata.labels["team.example.com/name"], "platform", ds.metadata.name);
      assert.deepEqual(pod.metadata.annotations, { "example.com/owner": "a, b=c" }, ds.metadata.name);
      assert.equal(pod.spec.containers[0].imagePullPolicy, "Always", ds.metadata.name);
      assert.deepEqual(pod.spec.affinity, ds.metadata.name === "kata-cleanup" ? undefined : affinity, ds.metadata.name);
    }
    await assertValidManifests([...classes, ...daemonSets]);
  });

  it("refuses bad RuntimeClass and pod options, naming the option (parsed in-process: the refusal path is the same)", () => {
    for (const [args, reason] of [
      [["--image-pull-policy", "always"], /imagePullPolicy is "always"; allowed values: Always, IfNotPresent, Never/],
      [["--pod-annotations", "owner=me"], /--pod-annotations: not JSON/],
      [["--pod-labels", "team"], /--pod-labels team: expected KEY=VALUE/],
      [["--affinity", '{"podAntiAffinity":{}}'], /affinity.podAntiAffinity is not offered/],
      [["--runtime-class-node-selector", '{"clh":{"a":"b"}}'], /runtimeClassNodeSelector.clh names a shim that is not in shims/],
      [["--default-runtime-class-name", "kata-fc"], /defaultRuntimeClassName is "kata-fc", the name of shim fc's own RuntimeClass/],
    ] as const) {
      assert.throws(() => parseRenderArgs([...args]), reason, args.join(" "));
    }
  });

  it("passes --snapshotters and --guest-pull to the installers that read them", () => {
    const result = render(["--out", outDir, "--image", IMAGE, "--snapshotters", "fc=devmapper", "--guest-pull", "qemu"]);
    assert.equal(result.status, 0, result.stderr);
    const [, containerd, crio] = readDocuments(path.join(outDir, "kata-deploy.yaml")) as { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } }[];
    const envOf = (ds: typeof containerd) => ds.spec.template.spec.containers[0].env.filter((variable) => variable.value !== undefined && variable.name !== "DAEMONSET_NAME");
    assert.deepEqual(envOf(containerd), [{ name: "SNAPSHOTTER_HANDLER_MAPPING", value: "fc:devmapper" }]);
    assert.deepEqual(envOf(crio), [{ name: "PULL_TYPE_MAPPING", value: "qemu:guest-pull" }]);
  });

  it("refuses bad options with the reason and writes nothing", () => {
    for (const [args, reason] of [
      [["--shims", "qemu,vmware"], /shims\[1\] is "vmware"; allowed values: qemu/],
      [["--runtimes", "docker"], /runtimes\[0\] is "docker"; allowed values: containerd, crio/],
      [["--colour"], /Unknown option '--colour'/],
      [["--node-selector", "sandbox"], /--node-selector sandbox: expected KEY=VALUE/],
      [["--tolerations", "[{operator: Exists}]"], /--tolerations: not JSON/],
      [["--tolerations", '[{"operator":"Equal"}]'], /tolerations\[0\].operator is "Equal" without a key/],
      [["--startup-taints", "example.com/x:NoSchedule"], /--startup-taints: not JSON .*e\.g\. --startup-taints '\[\{"key":"example\.com\/kata-not-ready","effect":"NoSchedule"\}\]'/],
      [["--startup-taints", '[{"key":"example.com/x","effect":"NoRun"}]'], /startupTaints\[0\].effect is "NoRun"; allowed values: NoSchedule, PreferNoSchedule, NoExecute/],
    ] as const) {
      // The first case (--shims) through npm: the script exits with main's status and prints its stderr.
      const result = (args[0] === "--shims" ? renderThroughNpm : render)(["--out", outDir, ...args]);
      assert.equal(result.status, 2, args.join(" "));
      assert.match(result.stderr, reason);
      assert.match(result.stderr, /usage: npm run render/);
      assert.deepEqual(fs.readdirSync(outDir), []);
    }
  });
});
