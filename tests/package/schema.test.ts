// What other Pulumi languages get from `pulumi package add <this repository>`: the schema that @pulumi/pulumi's
// component provider host infers from the TypeScript sources. This starts that very host, as the Node.js
// language host's RunPlugin does (pulumi/pulumi sdk/nodejs/cmd/pulumi-language-nodejs/main.go: `node
// @pulumi/pulumi/cmd/run-plugin <plugin directory> <engine address>`, printing its gRPC port), and asks it
// for the schema over gRPC, without the CLI. run-plugin (sdk/nodejs/cmd/run-plugin/run.ts) requires the
// plugin directory (package.json `main`), keeps the exports that are ComponentResource classes, names the
// provider after package.json `name`, and serves provider/experimental/provider.ts's ComponentProvider, whose
// GetSchema runs the analyzer (analyzer.ts) over the tsconfig.json program. Every argument must come out with
// its type: one the analyzer cannot express fails GetSchema, and one that came out with another type or not
// at all would silently change what Python, Go, .NET, Java and YAML users can pass.
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { KataDeployment, KataDockerHost } from "../../components";
import { registrationsOfType, settled } from "../support/pulumi-mocks";

const ROOT = path.resolve(__dirname, "../..");

interface SchemaProperty {
  type?: string;
  $ref?: string;
  items?: SchemaProperty;
  additionalProperties?: SchemaProperty;
  description?: string;
  plain?: boolean;
}
interface SchemaObject {
  properties: Record<string, SchemaProperty>;
  required?: string[];
  inputProperties?: Record<string, SchemaProperty>;
  requiredInputs?: string[];
  isComponent?: boolean;
  enum?: { name: string; value: string }[];
  type?: string;
}
interface Schema {
  name: string;
  version: string;
  namespace?: string;
  resources: Record<string, SchemaObject>;
  types: Record<string, SchemaObject>;
}

/** A compact, comparable form of a schema type: `string`, `array<string>`, `map<string>`, `ref:Name`. */
function shape(property: SchemaProperty): string {
  if (property.$ref !== undefined) return `ref:${property.$ref.split(":").pop()}`;
  if (property.type === "array") return `array<${shape(property.items!)}>`;
  if (property.type === "object" && property.additionalProperties !== undefined) return `map<${shape(property.additionalProperties)}>`;
  return property.type ?? "?";
}

function shapes(properties: Record<string, SchemaProperty> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(properties ?? {}).map(([key, property]) => [key, shape(property)]));
}

describe("the package as a Pulumi component provider (schema inferred by @pulumi/pulumi)", function () {
  // The analyzer type-checks the whole tsconfig.json program: 20-40 s on a busy 2-core machine.
  this.timeout(180_000);
  const packageJson = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { name: string; version: string };
  let schema: Schema;

  before(async () => {
    schema = JSON.parse(await schemaFromPluginHost(ROOT)) as Schema;
  });

  it("serves exactly the two components, under the type tokens their classes register", async () => {
    assert.deepEqual(Object.keys(schema.resources).sort(), ["kata-deploy:index:KataDeployment", "kata-deploy:index:KataDockerHost"]);
    assert.equal(schema.namespace, undefined, "an npm scope would become a namespace (Python package <scope>_kata_deploy)");
    assert.equal(schema.version, packageJson.version);
    // A remote construct registers the class's own type; it must be the token the other languages ask for.
    new KataDeployment("probe", { image: "registry.example.com/kata-deploy:1" });
    new KataDockerHost("probe-docker", { image: "registry.example.com/kata-deploy:1" });
    await settled();
    for (const token of Object.keys(schema.resources)) assert.equal(registrationsOfType(token).length, 1, `nothing registered as ${token}`);
  });

  it("KataDeployment: every argument, with its type; outputs without internals", () => {
    const resource = schema.resources["kata-deploy:index:KataDeployment"];
    assert.equal(resource.isComponent, true);
    // Written from KataDeploymentArgs by hand: an argument missing here or typed otherwise fails the test.
    assert.deepEqual(shapes(resource.inputProperties), {
      image: "string",
      imageBuild: "ref:KataImageBuildArgs",
      runtimes: "array<ref:ContainerRuntime>",
      shims: "array<string>",
      defaultShim: "string",
      shimsByArch: "ref:KataShimsByArch",
      defaultShimByArch: "ref:KataDefaultShimByArch",
      namespace: "string",
      kubeconfig: "string",
      labelPrefix: "string",
      maxUnavailable: "string",
      containerdFlavor: "ref:ContainerdFlavor",
      runtimeClassOverhead: "map<ref:KataOverheadArgs>",
      runtimeClassOverheadEnabled: "boolean",
      runtimeClassNodeSelector: "map<map<string>>",
      containerRuntimeDebug: "boolean",
      createDefaultRuntimeClass: "boolean",
      defaultRuntimeClassName: "string",
      cleanupTimeoutSeconds: "number",
      containerdConfigPath: "string",
      containerdSocket: "string",
      containerdUnit: "string",
      installTimeout: "string",
      createNamespace: "boolean",
      nodeSelector: "map<string>",
      tolerations: "array<ref:Toleration>",
      priorityClassName: "string",
      imagePullSecrets: "array<string>",
      resources: "ref:KataResources",
      startupTaints: "array<ref:StartupTaint>",
      imagePullPolicy: "ref:ImagePullPolicy",
      podLabels: "map<string>",
      podAnnotations: "map<string>",
      affinity: "ref:Affinity",
      snapshotters: "map<string>",
      guestPull: "array<string>",
      installPrefix: "string",
      shimConfig: "map<ref:KataShimConfigArgs>",
      customRuntimes: "array<ref:KataCustomRuntimeArgs>",
    });
    assert.deepEqual(resource.requiredInputs, []);
    // `settings` (internal, with a number-or-string field) must not be an output.
    assert.deepEqual(shapes(resource.properties), { runtimeClassNames: "array<string>", namespace: "string", image: "string" });
    assert.deepEqual(resource.required, ["image", "namespace", "runtimeClassNames"]);
  });

  it("KataDockerHost: every argument, with its type", () => {
    const resource = schema.resources["kata-deploy:index:KataDockerHost"];
    assert.deepEqual(shapes(resource.inputProperties), {
      image: "string",
      dockerHost: "string",
      registryAuth: "ref:KataDockerRegistryAuth",
      shims: "array<string>",
      dockerRuntimeForm: "ref:DockerRuntimeForm",
      installPrefix: "string",
    });
    assert.deepEqual(resource.requiredInputs, ["image"]);
    assert.deepEqual(shapes(resource.properties), { runtimeNames: "array<string>", imageDigest: "string" });
  });

  it("nested argument types and enums come out whole", () => {
    const objectType = (name: string): Record<string, string> => shapes(schema.types[`kata-deploy:index:${name}`]?.properties);
    const enumValues = (name: string): string[] => (schema.types[`kata-deploy:index:${name}`]?.enum ?? []).map((member) => member.value);
    assert.deepEqual(objectType("KataImageBuildArgs"), {
      repository: "string",
      tag: "string",
      registry: "ref:KataRegistryArgs",
      kataVersion: "string",
      kataSha256: "string",
      releaseUrl: "string",
      kataTarballs: "array<string>",
      kataTarballSha256: "string",
      kataTarball: "string",
      platform: "string",
      baseImage: "string",
      createPullSecret: "boolean",
    });
    assert.deepEqual(schema.types["kata-deploy:index:KataImageBuildArgs"].required, ["repository"]);
    assert.deepEqual(objectType("KataRegistryArgs"), { server: "string", username: "string", password: "string" });
    assert.deepEqual(objectType("KataOverheadArgs"), { memory: "string", cpu: "string", enabled: "boolean" });
    assert.deepEqual(objectType("Affinity"), { nodeAffinity: "ref:NodeAffinity" });
    assert.deepEqual(objectType("NodeAffinity"), {
      requiredDuringSchedulingIgnoredDuringExecution: "ref:NodeSelector",
      preferredDuringSchedulingIgnoredDuringExecution: "array<ref:PreferredSchedulingTerm>",
    });
    assert.deepEqual(objectType("NodeSelector"), { nodeSelectorTerms: "array<ref:NodeSelectorTerm>" });
    assert.deepEqual(schema.types["kata-deploy:index:NodeSelector"].required, ["nodeSelectorTerms"]);
    assert.deepEqual(objectType("NodeSelectorTerm"), { matchExpressions: "array<ref:NodeSelectorRequirement>", matchFields: "array<ref:NodeSelectorRequirement>" });
    assert.deepEqual(objectType("NodeSelectorRequirement"), { key: "string", operator: "ref:NodeSelectorOperator", values: "array<string>" });
    assert.deepEqual(schema.types["kata-deploy:index:NodeSelectorRequirement"].required, ["key", "operator"]);
    assert.deepEqual(objectType("PreferredSchedulingTerm"), { weight: "number", preference: "ref:NodeSelectorTerm" });
    assert.deepEqual(objectType("Toleration"), {
      key: "string",
      operator: "ref:TolerationOperator",
      value: "string",
      effect: "ref:TaintEffect",
      tolerationSeconds: "number",
    });
    assert.deepEqual(objectType("StartupTaint"), { key: "string", effect: "ref:TaintEffect" });
    assert.deepEqual(schema.types["kata-deploy:index:StartupTaint"].required, ["key"]);
    assert.deepEqual(objectType("KataResources"), { installer: "ref:ContainerResources", cleanup: "ref:ContainerResources", labeler: "ref:ContainerResources" });
    assert.deepEqual(objectType("ContainerResources"), { requests: "map<string>", limits: "map<string>" });
    assert.deepEqual(objectType("KataDockerRegistryAuth"), { address: "string", username: "string", password: "string" });
    assert.deepEqual(objectType("KataShimConfigArgs"), {
      allowedHypervisorAnnotations: "array<string>",
      agentHttpsProxy: "string",
      agentNoProxy: "string",
      debug: "boolean",
      runtimeLogLevel: "ref:KataLogLevel",
      forceGuestPull: "boolean",
      dropIn: "string",
    });
    assert.deepEqual(objectType("KataCustomRuntimeArgs"), { name: "string", baseShim: "string", dropIn: "string", overhead: "ref:KataOverheadArgs" });
    assert.deepEqual(schema.types["kata-deploy:index:KataCustomRuntimeArgs"].required, ["baseShim", "name"]);
    assert.deepEqual(enumValues("KataLogLevel"), ["trace", "debug", "info", "warn", "error", "critical"]);
    assert.deepEqual(enumValues("ContainerRuntime"), ["containerd", "crio"]);
    assert.deepEqual(enumValues("ContainerdFlavor"), ["containerd", "auto", "k3s", "rke2", "k0s", "microk8s"]);
    assert.deepEqual(enumValues("TolerationOperator"), ["Exists", "Equal"]);
    assert.deepEqual(enumValues("TaintEffect"), ["NoSchedule", "PreferNoSchedule", "NoExecute"]);
    assert.deepEqual(enumValues("DockerRuntimeForm"), ["auto", "shim-v2", "runc"]);
    assert.deepEqual(enumValues("ImagePullPolicy"), ["Always", "IfNotPresent", "Never"]);
    // Sorted: the analyzer's member order for this enum is not the declaration order.
    assert.deepEqual(enumValues("NodeSelectorOperator").sort(), ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"]);
  });

  it("documents every argument, each ending with its default (or saying it is required)", () => {
    const undocumented: string[] = [];
    const objects = [...Object.entries(schema.resources).map(([token, resource]) => [token, resource.inputProperties ?? {}] as const),
      ...Object.entries(schema.types).filter(([, type]) => type.properties).map(([token, type]) => [token, type.properties] as const)];
    for (const [token, properties] of objects) {
      for (const [name, property] of Object.entries(properties)) {
        if (!/(Defaults to\s[^]*|Required)\.$/.test(property.description ?? "")) undocumented.push(`${token.split(":").pop()}.${name}`);
      }
    }
    assert.deepEqual(undocumented, []);
  });
});

// The host's gRPC stubs, loaded from @pulumi/pulumi's own dependencies (the versions it was built with).
const fromPulumi = createRequire(require.resolve("@pulumi/pulumi/package.json"));
interface GrpcClient {
  getSchema(request: unknown, callback: (error: Error | null, response?: { getSchema(): string }) => void): void;
  close(): void;
}
const grpc = fromPulumi("@grpc/grpc-js") as { credentials: { createInsecure(): unknown } };
const providerRpc = fromPulumi("./proto/provider_grpc_pb") as { ResourceProviderClient: new (address: string, credentials: unknown) => GrpcClient };
const providerProto = fromPulumi("./proto/provider_pb") as { GetSchemaRequest: new () => { setVersion(version: number): void } };

/** Starts the component provider host on a plugin directory and returns the schema it serves. */
function schemaFromPluginHost(pluginDir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const runPlugin = path.join(path.dirname(require.resolve("@pulumi/pulumi/package.json")), "cmd/run-plugin");
    // The engine address is never dialled for GetSchema; the working directory is the user's project.
    const host = spawn(process.execPath, [runPlugin, pluginDir, "127.0.0.1:1"], { cwd: os.tmpdir(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let asked = false;
    const finish = (error: Error | undefined, schema?: string): void => {
      host.kill();
      if (error) reject(error);
      else resolve(schema!);
    };
    host.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    host.on("exit", (code) => {
      if (!asked) finish(new Error(`the plugin host exited (${code}) before serving:\n${stdout}${stderr}`));
    });
    host.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const port = /^(\d+)\s*$/m.exec(stdout)?.[1];
      if (port === undefined || asked) return;
      asked = true;
      const client = new providerRpc.ResourceProviderClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      const request = new providerProto.GetSchemaRequest();
      request.setVersion(0);
      client.getSchema(request, (error, response) => {
        client.close();
        finish(error ? new Error(`GetSchema: ${error.message}\n${stderr}`) : undefined, response?.getSchema());
      });
    });
  });
}
