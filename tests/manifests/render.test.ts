import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";
import { buildAllManifests } from "../../components/manifests";
import { normalizeSettings } from "../../components/validation";
import { assertValidManifests } from "../support/k8s-schema";

const REPO = path.resolve(__dirname, "../..");
const IMAGE = "registry.example.com/kata-deploy@sha256:" + "12".repeat(32);

/** Runs `npm run render -- ARGS` as a user would (through npm, so the package.json script is exercised too). */
function render(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync("npm", ["run", "--silent", "render", "--", ...args], { cwd: REPO, encoding: "utf8", timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
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
    const result = render(["--out", outDir, "--image", IMAGE]);
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
    ] as const) {
      const result = render(["--out", outDir, ...args]);
      assert.equal(result.status, 2, args.join(" "));
      assert.match(result.stderr, reason);
      assert.match(result.stderr, /usage: npm run render/);
      assert.deepEqual(fs.readdirSync(outDir), []);
    }
  });
});
