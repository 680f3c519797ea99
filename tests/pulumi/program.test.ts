// The Pulumi programs themselves (index.ts with the dev stack's config, and the consumer-stack example)
// run under the shared recording mocks.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import {
  mockDigestFor,
  MOCK_PROJECT,
  registrationNamed,
  registrations,
  registrationsOfType,
  setStackConfig,
  settled,
  valueOf,
} from "../support/pulumi-mocks";
import { loadProject, loadStack, programConfig, validateStackConfig } from "../support/pulumi-cli-rules";

const REPO = path.resolve(__dirname, "../..");
const load = createRequire(__filename);

/** Runs a program module afresh (a second run in the same process must register its resources again). */
async function runProgram(file: string): Promise<Record<string, pulumi.Output<unknown>>> {
  const resolved = load.resolve(file);
  delete load.cache[resolved];
  const exports = load(resolved) as Record<string, pulumi.Output<unknown>>;
  await settled();
  return exports;
}

interface ConfigSchema {
  [key: string]: { type: "string" | "integer" | "boolean" | "array"; secret?: boolean };
}
const projectFile = parse(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8")) as { name: string; config: ConfigSchema };
const devStack = parse(fs.readFileSync(path.join(REPO, "Pulumi.dev.yaml"), "utf8")) as { config: Record<string, unknown> };

/** Stack config as the engine hands it to a program: strings, structured values as JSON. */
function engineConfig(values: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(values).map(([key, value]) => [key, typeof value === "string" ? value : JSON.stringify(value)]),
  );
}

describe("the kata-deploy program (index.ts)", () => {
  it("the project is named as the mocks' project (the CLI's rules for its files: project-files.test.ts)", () => {
    assert.equal(projectFile.name, MOCK_PROJECT);
  });

  it("runs with the dev stack's config: builds the image, deploys, exports RuntimeClasses, namespace and image", async () => {
    // As the CLI hands it over: the stack file plus Pulumi.yaml's defaults (tests/support/pulumi-cli-rules.ts).
    const project = loadProject(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8"));
    const validated = validateStackConfig("dev", project, loadStack(fs.readFileSync(path.join(REPO, "Pulumi.dev.yaml"), "utf8"), project));
    assert.ok("config" in validated, "error" in validated ? validated.error : "");
    const { values, secretKeys } = programConfig(validated.config);
    // The dev stack builds the image, which needs the release asset's digest: the README's "The two commands"
    // has the user set it (`pulumi config set -s dev kata-deploy:kataSha256 kata-go-static-4.1.0-amd64.tar.zst=...`);
    // without it the component refuses at preview, naming the key (image-build.test.ts).
    assert.match(fs.readFileSync(path.join(REPO, "README.md"), "utf8"), /pulumi config set -s dev kata-deploy:kataSha256 kata-go-static-4\.1\.0-amd64\.tar\.zst=/);
    setStackConfig({ ...values, "kata-deploy:kataSha256": `kata-go-static-4.1.0-amd64.tar.zst=${"ab".repeat(32)}` }, secretKeys);
    const outputs = await runProgram(path.join(REPO, "index.ts"));
    const repository = devStack.config["kata-deploy:imageRepository"] as string;
    const tag = devStack.config["kata-deploy:imageTag"] as string;
    const shims = devStack.config["kata-deploy:shims"] as string[];
    const [image] = registrationsOfType("docker:index/image:Image");
    assert.equal(image.inputs.imageName, `${repository}:${tag}`);
    assert.equal(await valueOf(outputs.image), `${repository}@${mockDigestFor(`${repository}:${tag}`)}`);
    assert.deepEqual(await valueOf(outputs.runtimeClassNames), [...shims.map((shim) => `kata-${shim}`), "kata"]);
    assert.equal(await valueOf(outputs.namespace), "kata-deploy");
    assert.equal(registrationsOfType("kubernetes:apps/v1:DaemonSet").length, 2 + (devStack.config["kata-deploy:runtimes"] as string[]).length);
    // The dev stack deploys to the current kubeconfig context: the default provider, no explicit one.
    assert.deepEqual(registrationsOfType("pulumi:providers:kubernetes"), []);
  });

  it("with kubeconfig in config, uses it for an explicit provider and for the destroy-time wait, as a secret", async () => {
    setStackConfig(
      { "kata-deploy:kubeconfig": "apiVersion: v1\nkind: Config\n", "kata-deploy:image": "registry.example.com/kata-deploy:1", "kata-deploy:maxUnavailable": "25%" },
      ["kata-deploy:kubeconfig"],
    );
    await runProgram(path.join(REPO, "index.ts"));
    const provider = registrationNamed("cluster");
    assert.equal(provider.type, "pulumi:providers:kubernetes");
    assert.ok(provider.secretInputs.includes("kubeconfig"));
    for (const object of registrations().filter((r) => r.type.startsWith("kubernetes:"))) {
      assert.ok(object.provider.startsWith(`${provider.urn}::`), `${object.name} uses the configured cluster`);
    }
    const wait = registrationNamed("kata-wait-for-clean-nodes");
    assert.equal((wait.inputs.environment as Record<string, string>).KATA_DEPLOY_KUBECONFIG, "apiVersion: v1\nkind: Config\n");
    assert.ok(wait.secretInputs.some((secret) => secret.startsWith("environment")));
    const installer = registrationNamed("kata-installer-containerd").inputs as { spec: { updateStrategy: unknown } };
    assert.deepEqual(installer.spec.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "25%" } });
  });
});

describe("the kata-deploy program's scheduling and pull-credential config", () => {
  it("maps nodeSelector, tolerations, resources, priorityClassName, imagePullSecrets, createRegistryPullSecret, snapshotters and guestPull", async () => {
    setStackConfig(
      engineConfig({
        "kata-deploy:imageRepository": "registry.example.com/kata-deploy",
        "kata-deploy:kataSha256": "ab".repeat(32),
        "kata-deploy:registryServer": "registry.example.com",
        "kata-deploy:registryUsername": "ci",
        "kata-deploy:registryPassword": "s3cret",
        "kata-deploy:createRegistryPullSecret": "true",
        "kata-deploy:nodeSelector": { "pool.example.com/name": "sandbox" },
        "kata-deploy:tolerations": [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
        "kata-deploy:resources": { installer: { limits: { memory: "1Gi" } } },
        "kata-deploy:priorityClassName": "",
        "kata-deploy:imagePullSecrets": ["mirror-credentials"],
        "kata-deploy:snapshotters": { fc: "devmapper" },
        "kata-deploy:guestPull": ["qemu"],
      }),
      ["kata-deploy:registryPassword"],
    );
    await runProgram(path.join(REPO, "index.ts"));
    assert.equal(registrationNamed("kata-registry-credentials").type, "kubernetes:core/v1:Secret");
    interface PodTemplate {
      spec: { template: { spec: { nodeSelector?: Record<string, string>; tolerations?: unknown[]; priorityClassName?: string; imagePullSecrets?: unknown[]; containers: { resources?: unknown }[] } } };
    }
    const installer = (registrationNamed("kata-installer-containerd").inputs as unknown as PodTemplate).spec.template.spec;
    assert.deepEqual(installer.nodeSelector, { "pool.example.com/name": "sandbox", "kata-containers.io/container-runtime": "containerd" });
    assert.deepEqual(installer.tolerations, [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    assert.equal(installer.priorityClassName, undefined);
    assert.deepEqual(installer.imagePullSecrets, [{ name: "mirror-credentials" }, { name: "kata-deploy-registry" }]);
    assert.deepEqual(installer.containers[0].resources, { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "1Gi" } });
    // --- snapshotter / guest pull (issue 12) ---
    interface Env { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } }
    const envNamed = (resource: string, name: string) => (registrationNamed(resource).inputs as unknown as Env).spec.template.spec.containers[0].env.find((variable) => variable.name === name)?.value;
    assert.equal(envNamed("kata-installer-containerd", "SNAPSHOTTER_HANDLER_MAPPING"), "fc:devmapper");
    assert.equal(envNamed("kata-installer-crio", "PULL_TYPE_MAPPING"), "qemu:guest-pull");
  });
});

describe("the kata-deploy program's startupTaints config (issue 12 point 5)", () => {
  it("maps the structured key to the component: installers remove and tolerate them", async () => {
    setStackConfig(
      engineConfig({
        "kata-deploy:image": "registry.example.com/kata-deploy@sha256:" + "ab".repeat(32),
        "kata-deploy:tolerations": [],
        "kata-deploy:startupTaints": [{ key: "example.com/kata-not-ready", effect: "NoSchedule" }],
      }),
      [],
    );
    await runProgram(path.join(REPO, "index.ts"));
    const installer = (registrationNamed("kata-installer-containerd").inputs as unknown as { spec: { template: { spec: { tolerations?: unknown[]; containers: { command: string[] }[] } } } }).spec.template.spec;
    assert.deepEqual(installer.tolerations, [{ key: "example.com/kata-not-ready", operator: "Exists", effect: "NoSchedule" }]);
    assert.ok(installer.containers[0].command.join(" ").includes("--startup-taints example.com/kata-not-ready:NoSchedule"), installer.containers[0].command.join(" "));
  });
});

describe("examples/consumer-stack (reusing KataDeployment from another stack)", () => {
  it("is the code sample docs/kubernetes.md shows", () => {
    const doc = fs.readFileSync(path.join(REPO, "docs/kubernetes.md"), "utf8");
    const samples = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]);
    const example = fs.readFileSync(path.join(REPO, "examples/consumer-stack/index.ts"), "utf8");
    // The example file adds a header comment; the code itself must be the same.
    const code = example.slice(example.search(/^import /m));
    assert.ok(samples.includes(code), "docs/kubernetes.md's TypeScript sample matches examples/consumer-stack/index.ts");
  });

  it("runs under mocks; its workload is created after and deleted before every Kata child", async () => {
    setStackConfig(
      { [`${MOCK_PROJECT}:kubeconfig`]: "apiVersion: v1\nkind: Config\n", [`${MOCK_PROJECT}:kataImage`]: "registry.example.com/kata-deploy:1" },
      [`${MOCK_PROJECT}:kubeconfig`],
    );
    const outputs = await runProgram(path.join(REPO, "examples/consumer-stack/index.ts"));
    assert.deepEqual(await valueOf(outputs.runtimeClassNames), ["kata-qemu", "kata-clh", "kata"]);
    const workload = registrationNamed("sandboxed-nginx");
    const kataChildren = registrations().filter((r) => r.parent === registrationNamed("kata").urn && r.custom);
    assert.ok(kataChildren.length >= 9);
    for (const child of kataChildren) {
      assert.ok(workload.dependencies.includes(child.urn), `the workload depends on ${child.name}`);
    }
  });
});
