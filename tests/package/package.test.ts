// The package as another team gets it: `npm pack` (which runs `prepare`, i.e. the build), installed into a new
// consumer project in a scratch directory outside the repository, type-checked there with tsc, and run under
// the recording mocks as that team's stack: two KataDeployments on two clusters, a KataDockerHost, and the
// destroy order the engine would follow.
//
// The install lays the tarball out as npm does (node_modules/kata-deploy/ = the tarball's package/) and
// links each dependency the packed package.json declares from this repository's node_modules, so the test
// needs no registry; a dependency the package uses but does not declare is not linked and fails to load.
import { strict as assert } from "node:assert";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import { createRequire } from "node:module";
import * as path from "node:path";
import { getPulumiComponents } from "@pulumi/pulumi/provider/experimental";
import { Registration, registrations, settled, valueOf } from "../support/pulumi-mocks";
import { runWaitScriptWithoutApi } from "../support/bundle-checks";

const ROOT = path.resolve(__dirname, "../..");
/** CommonJS `require`, as Pulumi loads a program (and run-plugin a plugin directory). */
const load = createRequire(__filename);
const IMAGE = "registry.example.com/kata-deploy@sha256:" + "ab".repeat(32);

interface PackedFile {
  path: string;
  mode: number;
}
interface PackageJson {
  name: string;
  version: string;
  private?: boolean;
  main: string;
  types: string;
  exports: Record<string, string | Record<string, string>>;
  dependencies: Record<string, string>;
}

/** The consumer's stack program, as its authors would write it against the published typings. */
const CONSUMER_PROGRAM = `import * as k8s from "@pulumi/kubernetes";
import { ContainerdFlavor, KataDeployment, KataDeploymentArgs, KataDockerHost } from "kata-deploy";

const east = new k8s.Provider("east", { kubeconfig: "east-kubeconfig" });
const west = new k8s.Provider("west", { kubeconfig: "west-kubeconfig" });
const common: KataDeploymentArgs = { runtimes: ["containerd"], shims: ["qemu", "clh"], defaultShim: "clh" };

// A prebuilt image on one cluster...
const kataEast = new KataDeployment(
  "kata-east",
  { ...common, image: "${IMAGE}", kubeconfig: "east-kubeconfig", containerdFlavor: ContainerdFlavor.k3s },
  { providers: { kubernetes: east } },
);
// ... and one built from the package's own image context on the other.
const kataWest = new KataDeployment(
  "kata-west",
  {
    ...common,
    imageBuild: { repository: "registry.example.com/platform/kata-deploy", kataSha256: "${"0".repeat(64)}" },
    kubeconfig: "west-kubeconfig",
    maxUnavailable: "25%",
    tolerations: [{ key: "sandbox", operator: "Exists", effect: "NoSchedule" }],
    resources: { installer: { limits: { memory: "512Mi" } } },
  },
  { providers: { kubernetes: west } },
);

const sandboxed = new k8s.apps.v1.Deployment(
  "sandboxed-nginx",
  {
    spec: {
      selector: { matchLabels: { app: "sandboxed-nginx" } },
      template: {
        metadata: { labels: { app: "sandboxed-nginx" } },
        spec: { runtimeClassName: "kata-clh", containers: [{ name: "nginx", image: "nginx" }] },
      },
    },
  },
  { provider: east, dependsOn: [kataEast] },
);

const laptop = new KataDockerHost("laptop", { image: kataWest.image, dockerRuntimeForm: "auto" });

export const eastRuntimeClasses = kataEast.runtimeClassNames;
export const westImage = kataWest.image;
export const dockerRuntimes = laptop.runtimeNames;
export const workload = sandboxed.metadata.name;
`;

/** Compiled only with the exports-aware resolution: what must stay out of reach of a consumer. */
const CONSUMER_INTERNALS = `import { KataDeployment } from "kata-deploy";
// @ts-expect-error the manifest builders are internal: the package's exports do not reach them
import { buildAllManifests } from "kata-deploy/dist/components/manifests";
// @ts-expect-error normalizeSettings is internal
import { normalizeSettings } from "kata-deploy";

// @ts-expect-error KataDeployment.settings is not public API
export const settingsOf = (kata: KataDeployment): unknown => kata.settings;
export const internals = [buildAllManifests, normalizeSettings];
`;

function run(command: string, args: string[], cwd: string): string {
  try {
    return execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(" ")} (in ${cwd}) failed:\n${failure.stdout ?? ""}${failure.stderr ?? failure.message}`, { cause: error });
  }
}

function tscAsync(tsc: string, project: string, cwd: string): Promise<{ project: string; code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [tsc, "-p", project], { cwd });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("exit", (code) => resolve({ project, code, output }));
  });
}

/** Links node_modules/<name> of `project` to this repository's copy. */
function linkDependency(project: string, name: string): void {
  const target = path.join(ROOT, "node_modules", name);
  assert.ok(fs.existsSync(target), `${name} is not installed in ${ROOT}/node_modules`);
  const link = path.join(project, "node_modules", name);
  if (fs.existsSync(link)) return;
  fs.mkdirSync(path.dirname(link), { recursive: true });
  fs.symlinkSync(target, link, "dir");
}

/**
 * Which resources the engine deletes before which, from the recorded edges only: on destroy a resource goes
 * before everything it depends on — its dependencies (explicit and from inputs), its parent, its provider and
 * its deletedWith target (pulumi/pulumi pkg/resource/graph/dependency_graph.go, DependenciesOf).
 */
function deletedBefore(recorded: readonly Registration[]): (first: string, second: string) => boolean {
  const byName = new Map(recorded.map((registration) => [registration.name, registration]));
  const byUrn = new Map(recorded.map((registration) => [registration.urn, registration]));
  const prerequisites = (registration: Registration): string[] =>
    [...registration.dependencies, registration.parent, registration.provider.slice(0, registration.provider.lastIndexOf("::")), registration.deletedWith].filter(
      (urn) => urn !== "" && byUrn.has(urn),
    );
  return (first, second) => {
    const start = byName.get(first);
    const goal = byName.get(second);
    assert.ok(start && goal, `no registration named ${start ? second : first}`);
    const seen = new Set<string>();
    const queue = [start.urn];
    while (queue.length > 0) {
      const urn = queue.shift()!;
      if (urn === goal.urn) return true;
      if (seen.has(urn)) continue;
      seen.add(urn);
      queue.push(...prerequisites(byUrn.get(urn)!));
    }
    return false;
  };
}

describe("the package, installed into another project", function () {
  // npm pack runs the build (agent bundle, wait script bundles, tsc); the consumer is type-checked twice.
  this.timeout(300_000);
  let scratch: string;
  let consumer: string;
  let packedFiles: PackedFile[];
  let packed: PackageJson;
  let installed: string;

  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "kata-deploy-package-"));
    // `prepare` (the build) runs first; its output goes to the log, the --json listing comes last.
    const output = run("npm", ["pack", "--json", "--pack-destination", scratch, "--loglevel", "warn"], ROOT);
    const listing = JSON.parse(output.slice(output.search(/^\[/m))) as { filename: string; files: PackedFile[] }[];
    packedFiles = listing[0].files;
    const tarball = path.join(scratch, listing[0].filename);

    consumer = path.join(scratch, "platform");
    installed = path.join(consumer, "node_modules/kata-deploy");
    fs.mkdirSync(installed, { recursive: true });
    run("tar", ["-xzf", tarball, "-C", installed, "--strip-components=1"], scratch);
    packed = JSON.parse(fs.readFileSync(path.join(installed, "package.json"), "utf8")) as PackageJson;
    for (const dependency of Object.keys(packed.dependencies)) linkDependency(consumer, dependency);
    for (const dependency of ["typescript", "@types/node"]) linkDependency(consumer, dependency);

    const versionOf = (name: string): string => (JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
    fs.writeFileSync(
      path.join(consumer, "package.json"),
      JSON.stringify({
        name: "platform",
        private: true,
        main: "bin/index.js",
        dependencies: { "kata-deploy": `file:../${listing[0].filename}`, "@pulumi/pulumi": versionOf("@pulumi/pulumi"), "@pulumi/kubernetes": versionOf("@pulumi/kubernetes") },
        devDependencies: { typescript: versionOf("typescript"), "@types/node": versionOf("@types/node") },
      }, null, 2),
    );
    fs.writeFileSync(path.join(consumer, "index.ts"), CONSUMER_PROGRAM);
    fs.writeFileSync(path.join(consumer, "internals.ts"), CONSUMER_INTERNALS);
    const strict = { strict: true, target: "ES2022", skipLibCheck: true, types: ["node"] };
    // What current TypeScript templates use: package `exports` decide what resolves.
    fs.writeFileSync(
      path.join(consumer, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { ...strict, module: "nodenext", moduleResolution: "nodenext", outDir: "bin" }, files: ["index.ts", "internals.ts"] }),
    );
    // Pulumi's older templates (module commonjs, node10 resolution): `types`/`main` decide.
    fs.writeFileSync(
      path.join(consumer, "tsconfig.node10.json"),
      JSON.stringify({ compilerOptions: { ...strict, module: "commonjs", moduleResolution: "node10", noEmit: true }, files: ["index.ts"] }),
    );
  });

  after(() => {
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("is a public package whose entry points are the compiled components, not the stack program", () => {
    assert.equal(packed.name, "kata-deploy");
    assert.notEqual(packed.private, true);
    const files = new Set(packedFiles.map((file) => file.path));
    assert.deepEqual(packed.exports["."], { types: "./dist/components/index.d.ts", default: "./dist/components/index.js" });
    for (const entry of [packed.main, packed.types]) assert.ok(files.has(entry), `${entry} is not in the tarball`);
    for (const present of [
      "dist/components/wait-for-clean-nodes.mjs",
      "dist/components/wait-for-installed-nodes.mjs",
      "components/wait-for-clean-nodes.mjs",
      "components/wait-for-installed-nodes.mjs",
      "components/kube-wait.mjs",
      "PulumiPlugin.yaml",
      "CHANGELOG.md",
      "README.md",
      "images/kata-deploy/agent/dist/kata-deploy.cjs",
    ]) {
      assert.ok(files.has(present), `${present} is not in the tarball`);
    }
    const leaked = [...files].filter((file) => (/\.ts$/.test(file) && !/\.d\.ts$/.test(file)) || /^(tests|examples|docs|\.ci)\/|agent\/src\/|^index\.|^Pulumi\.[a-z.]*yaml$/.test(file));
    assert.deepEqual(leaked, [], "sources, tests or the stack program in the tarball");
  });

  it("carries the whole image build context: everything the Dockerfile copies, wrappers executable", () => {
    const context = "images/kata-deploy/";
    const files = new Map(packedFiles.map((file) => [file.path, file.mode]));
    const dockerfile = fs.readFileSync(path.join(installed, context, "Dockerfile"), "utf8");
    // `COPY [--flags] SRC... DEST` from the build context (not --from another stage; ${...} sources are build
    // args; wildcard sources such as `tarball[s]` are optional by design: the user's local release assets).
    const sources = dockerfile
      .split("\n")
      .filter((line) => /^COPY\s/.test(line) && !/--from=/.test(line))
      .flatMap((line) => line.trim().split(/\s+/).slice(1, -1))
      .filter((word) => !word.startsWith("--") && !/[$*?[]/.test(word));
    assert.ok(sources.length >= 3, `found only ${sources.join(", ")} in the Dockerfile's COPY lines`);
    for (const source of sources) assert.ok(files.has(context + source), `the Dockerfile copies ${source}, which the tarball lacks`);
    for (const wrapper of ["kata-deploy", "kata-deploy-docker"]) assert.equal((files.get(context + wrapper) ?? 0) & 0o111, 0o111, `${wrapper} is not executable`);
  });

  it("type-checks a consumer stack with tsc, through `exports` (nodenext) and through `types` (node10)", async () => {
    const tsc = path.join(consumer, "node_modules/typescript/bin/tsc");
    // Both at once: each spends most of its time reading @pulumi/kubernetes' declarations.
    const results = await Promise.all(["tsconfig.json", "tsconfig.node10.json"].map((project) => tscAsync(tsc, project, consumer)));
    for (const result of results) assert.equal(result.code, 0, `tsc -p ${result.project}:\n${result.output}`);
    assert.ok(fs.existsSync(path.join(consumer, "bin/index.js")));
  });

  it("runs as that stack under the recording mocks: two clusters, a Docker host, the destroy order", async () => {
    const cwd = process.cwd();
    // Pulumi runs a program in its project directory.
    process.chdir(consumer);
    let program: Record<string, import("@pulumi/pulumi").Output<unknown>>;
    try {
      program = load(path.join(consumer, "bin/index.js")) as typeof program;
      await settled();
    } finally {
      process.chdir(cwd);
    }
    const recorded = registrations();
    const named = (name: string): Registration => {
      const found = recorded.find((registration) => registration.name === name);
      assert.ok(found, `nothing registered as ${name}: ${recorded.map((registration) => registration.name).join(", ")}`);
      return found;
    };
    assert.deepEqual(
      recorded.filter((registration) => registration.type.startsWith("kata-deploy:")).map((registration) => `${registration.type} ${registration.name}`).sort(),
      ["kata-deploy:index:KataDeployment kata-east", "kata-deploy:index:KataDeployment kata-west", "kata-deploy:index:KataDockerHost laptop"],
    );

    // Each deployment's objects go to its own cluster.
    for (const [deployment, cluster] of [["kata-east", "east"], ["kata-west", "west"]]) {
      const kubernetesObjects = recorded.filter((registration) => registration.name.startsWith(`${deployment}-`) && registration.type.startsWith("kubernetes:"));
      assert.ok(kubernetesObjects.length >= 8);
      for (const object of kubernetesObjects) assert.ok(object.provider.startsWith(`${named(cluster).urn}::`), `${object.name} is not on cluster ${cluster}`);
    }

    // The prebuilt image is used as given; the other is built from the installed package's image context.
    const build = recorded.find((registration) => registration.type === "docker:index/image:Image");
    assert.ok(build, "kata-west built no image");
    const context = (build.inputs.build as { context: string }).context;
    // Stored relative to the project directory (where Pulumi runs the program), like the wait script below.
    assert.equal(fs.realpathSync(path.resolve(consumer, context)), fs.realpathSync(path.join(installed, "images/kata-deploy")));
    assert.match(String(await valueOf(program.westImage as import("@pulumi/pulumi").Output<string>)), /^registry\.example\.com\/platform\/kata-deploy@sha256:/);
    assert.deepEqual(await valueOf(program.eastRuntimeClasses), ["kata-qemu", "kata-clh", "kata"]);
    assert.deepEqual(await valueOf(program.dockerRuntimes), ["kata-qemu", "kata-fc"]);

    // The install and destroy-time waits run the installed package's bundled scripts, by paths relative to the project.
    for (const deployment of ["kata-east", "kata-west"]) {
      for (const [step, phase] of [["wait-for-clean-nodes", "delete"], ["wait-for-installed-nodes", "create"]]) {
        const script = String(named(`${deployment}-${step}`).inputs[phase]);
        assert.equal(script, `node_modules/kata-deploy/dist/components/${step}.mjs`);
        assert.ok(fs.existsSync(path.join(consumer, script)), `${script} is not in the installed package`);
      }
    }

    // Destroy order, per deployment, from the recorded edges.
    const before = deletedBefore(recorded);
    for (const deployment of ["kata-east", "kata-west"]) {
      const chain = [
        `${deployment}-runtimeclass-kata-clh`,
        `${deployment}-installer-containerd`,
        `${deployment}-wait-for-clean-nodes`,
        `${deployment}-cleanup`,
        `${deployment}-service-account`,
        `${deployment}-namespace`,
      ];
      for (let i = 0; i + 1 < chain.length; i++) assert.ok(before(chain[i], chain[i + 1]), `${chain[i]} is not deleted before ${chain[i + 1]}`);
      assert.ok(before(`${deployment}-runtime-labeler`, `${deployment}-wait-for-clean-nodes`));
    }
    // The workload goes before Kata leaves any node of its cluster; the other cluster's Kata is independent.
    assert.ok(before("sandboxed-nginx", "kata-east-installer-containerd"));
    assert.ok(!before("sandboxed-nginx", "kata-west-installer-containerd") && !before("kata-west-cleanup", "kata-east-cleanup"));
    // The Docker host's removal job runs while the image it runs is still there.
    assert.ok(before("laptop-removal", "laptop-install") && before("laptop-removal", "laptop-image"));
  });

  it("runs the wait steps from the installed package: the bundles, and the sources older versions recorded in stacks' state", () => {
    // A stack deployed before the bundles has node_modules/kata-deploy/components/wait-for-clean-nodes.mjs as its
    // destroy command; the Command provider runs it (with the stored environment) from the project directory.
    for (const dir of ["dist/components", "components"]) {
      for (const step of ["wait-for-clean-nodes", "wait-for-installed-nodes"]) {
        const script = `node_modules/kata-deploy/${dir}/${step}.mjs`;
        const result = runWaitScriptWithoutApi(script, consumer);
        assert.equal(result.status, 1, `${script}: ${result.stderr}`);
        assert.match(result.stderr, /^kata-deploy: timed out after 0\.2s: the Kubernetes API could not be queried .*ECONNREFUSED/, script);
      }
    }
  });

  it("serves both components to Pulumi's component provider host from the installed main", () => {
    // pulumi/pulumi sdk/nodejs/cmd/run-plugin/run.ts: require(the plugin directory), then getPulumiComponents.
    const components = getPulumiComponents(load(installed));
    assert.deepEqual(components.map((component) => component.name).sort(), ["KataDeployment", "KataDockerHost"]);
  });

  it("loads from JavaScript too: require and import by the package name", () => {
    const script = `import { KataDeployment, KataDockerHost, ContainerRuntime } from "kata-deploy";
      const { KataDeployment: Required } = (await import("node:module")).createRequire(process.cwd() + "/index.js")("kata-deploy");
      console.log(typeof KataDeployment, typeof KataDockerHost, ContainerRuntime.crio, Required === KataDeployment);`;
    const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: consumer, encoding: "utf8" });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), "function function crio true");
  });
});
