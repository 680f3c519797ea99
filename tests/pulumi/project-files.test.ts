// Every Pulumi project of this repository (found by glob: a new example is covered without editing this file),
// checked under the Pulumi CLI's own rules before the program runs (tests/support/pulumi-cli-rules.ts, ported
// from pulumi/pulumi pkg/workspace/config.go, sdk/go/common/workspace/project.go, pkg/engine/project.go and
// sdk/nodejs/cmd/run/run.ts), and then run as `pulumi preview` would run it, under the recording mocks.
//
// What a user types comes from the docs themselves: the `pulumi config set` lines of the README's quick start
// and "The two commands", of docs/kubernetes.md's quick start, and of each example's Pulumi.yaml header.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { KataDeployment } from "../../components";
import {
  configSet,
  configSetCommands,
  loadProject,
  loadStack,
  Project,
  programConfig,
  programEntry,
  StackConfig,
  validateStackConfig,
} from "../support/pulumi-cli-rules";
import { MOCK_PROJECT, Registration, registrations, registrationsOfType, setStackConfig, settled, UNKNOWN, useMocks } from "../support/pulumi-mocks";

const REPO = path.resolve(__dirname, "../..");
const load = createRequire(__filename);
const HEX = "0123456789abcdef".repeat(4);

/** Every Pulumi.yaml in the repository, outside node_modules. */
const PROJECT_FILES = fs
  .globSync("**/Pulumi.yaml", { cwd: REPO, exclude: (name) => ["node_modules", ".git", ".pulumi"].includes(path.basename(name)) })
  .filter((file) => !file.split(path.sep).includes("node_modules"))
  .map((file) => path.join(REPO, file))
  .sort();

/** The fenced ```sh block right under a heading of a Markdown file. */
function shellBlockUnder(file: string, heading: string): string {
  const text = fs.readFileSync(path.join(REPO, file), "utf8");
  const start = text.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `${file} has the heading ${heading}`);
  const block = /```sh\n([\s\S]*?)```/.exec(text.slice(start));
  assert.ok(block, `${file}: a sh block under ${heading}`);
  return block[1];
}

/** The leading comment block of a project file, without the `#`: an example's quick start. */
function headerComment(file: string): string {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const header = lines.slice(0, lines.findIndex((line) => !line.startsWith("#")));
  return header.map((line) => line.replace(/^#\s?/, "")).join("\n");
}

interface Walkthrough {
  label: string;
  stack: string;
  snippet: string;
}

/** What the docs tell a user to type for each project. The root's are in the README and docs/kubernetes.md. */
function walkthroughs(projectFile: string): Walkthrough[] {
  if (path.dirname(projectFile) === REPO) {
    return [
      { label: "README: Kubernetes quick start", stack: "dev", snippet: shellBlockUnder("README.md", "## Kubernetes quick start") },
      { label: "README: The two commands", stack: "dev", snippet: shellBlockUnder("README.md", "## The two commands") },
      { label: "docs/kubernetes.md: Quick start", stack: "dev", snippet: shellBlockUnder("docs/kubernetes.md", "## Quick start") },
    ];
  }
  return [{ label: `${path.relative(REPO, projectFile)} header`, stack: "dev", snippet: headerComment(projectFile) }];
}

/**
 * Documentation placeholders (`<...>`, `...`) stand for a value the user fills in; the test fills in one of
 * the right shape. A placeholder of another kind must be added here, on purpose.
 */
function fillPlaceholders(value: string): string {
  return value
    .replace(/<[^>]*(sha256|hex)[^>]*>/gi, HEX)
    .replace(/@sha256:\.\.\.$/, `@sha256:${HEX}`)
    .replace(/^\$\(cat ~\/\.kube\/config\)$/, "apiVersion: v1\nkind: Config\n");
}

/** The stack files of a project: Pulumi.<stack>.yaml next to it. */
function stackFiles(projectFile: string): Map<string, string> {
  const dir = path.dirname(projectFile);
  return new Map(
    fs
      .readdirSync(dir)
      .filter((name) => /^Pulumi\.[^.]+\.yaml$/.test(name))
      .map((name) => [name.slice("Pulumi.".length, -".yaml".length), path.join(dir, name)]),
  );
}

/** The stack config after the walkthrough's commands (on top of the stack file, when there is one). */
function configAfter(project: Project, projectFile: string, walkthrough: Walkthrough, options: { alternatives: boolean }): StackConfig {
  const stackFile = stackFiles(projectFile).get(walkthrough.stack);
  const stack = stackFile === undefined ? new Map() : loadStack(fs.readFileSync(stackFile, "utf8"), project);
  const snippet = options.alternatives ? walkthrough.snippet.replace(/^(\s*)#\s*(pulumi config set)/gm, "$1$2") : walkthrough.snippet;
  for (const command of configSetCommands(snippet)) configSet(stack, project.name, { ...command, value: fillPlaceholders(command.value) });
  return stack;
}

/** Runs a program module afresh as `pulumi preview` would, with the config the CLI hands it. */
async function previewProgram(file: string, project: Project, config: StackConfig): Promise<void> {
  useMocks({ preview: true, project: project.name, stack: "dev" });
  const { values, secretKeys } = programConfig(config);
  setStackConfig(values, secretKeys);
  const resolved = load.resolve(file);
  delete load.cache[resolved];
  load(resolved);
  await settled();
}

/** The keys a program reads: `config.get*("key")`, `secretFromConfig("key")`, `renamed("key", "old", ...)`. */
function keysReadBy(programFile: string): string[] {
  const source = fs.readFileSync(programFile, "utf8");
  const keys = new Set<string>();
  for (const match of source.matchAll(/(?:config\.(?:get|require)\w*(?:<[^>]*>)?|secretFromConfig)\("([^"]+)"\)/g)) keys.add(match[1]);
  for (const match of source.matchAll(/renamed\("([^"]+)", "([^"]+)"/g)) keys.add(match[1]).add(match[2]);
  return [...keys].sort();
}

/** The keys a program reads as secrets. */
function secretKeysReadBy(programFile: string): string[] {
  const source = fs.readFileSync(programFile, "utf8");
  return [...source.matchAll(/(?:requireSecret|getSecret|secretFromConfig)\("([^"]+)"\)/g)].map((match) => match[1]);
}

describe("the Pulumi CLI's rules, as ported (tests/support/pulumi-cli-rules.ts)", () => {
  // The cases of pulumi/pulumi pkg/workspace/config_project_test.go, with its expected messages.
  const project = (text: string): Project => loadProject(`name: test\nruntime: dotnet\n${text}`);
  const validate = (projectYaml: string, stackYaml = ""): string | StackConfig => {
    const parsed = project(projectYaml);
    const result = validateStackConfig("dev", parsed, loadStack(stackYaml, parsed));
    return "error" in result ? result.error : result.config;
  };

  it("TestStackConfigIsInheritedFromProjectConfig: shorthand values are defaults the stack inherits", () => {
    const config = validate("config:\n  instanceSize: t3.micro\n  instanceCount: 20\n  protect: true", "config:\n  test:instanceSize: t4.large");
    assert.ok(typeof config !== "string", String(config));
    assert.equal(config.get("test:instanceSize")?.value, "t4.large");
    assert.equal(config.get("test:instanceCount")?.value, "20");
    assert.equal(config.get("test:protect")?.value, "true");
  });

  it("TestStackConfigErrorsWhenMissing...: a declared key with neither default nor value is required", () => {
    assert.equal(validate("config:\n  values:\n    type: array\n    items:\n      type: string"), "Stack 'dev' is missing configuration value 'values'");
    assert.equal(
      validate("config:\n  another:\n    type: string\n  values:\n    type: array\n    items:\n      type: string"),
      "Stack 'dev' is missing configuration values 'another' and 'values'",
    );
    assert.equal(
      validate("config:\n  hello:\n    type: integer\n  values:\n    type: array\n    items:\n      type: string\n  world:\n    type: string"),
      "Stack 'dev' is missing configuration values 'hello', 'values' and 'world'",
    );
  });

  it("TestStackConfigErrorsWhenStackValueIsNotCorrectlyTyped and TestStackConfigSecretIsCorrectlyValidated", () => {
    assert.equal(
      validate("config:\n  values:\n    type: array\n    items:\n      type: string\n    default: [value]", "config:\n  test:values: someValue"),
      "Stack 'dev' with configuration key 'values' must be of type 'array<string>'",
    );
    assert.equal(validate("config:\n  importantNumber:\n    type: integer\n    secret: true", "config:\n  test:importantNumber: 20"), "Stack 'dev' with configuration key 'importantNumber' must be encrypted as it's secret");
    assert.ok(typeof validate("config:\n  importantNumber:\n    type: integer\n    secret: true", "config:\n  test:importantNumber:\n    secure: AAAA") !== "string");
    // A secret key cannot be made optional with a default: the default is not encrypted.
    assert.equal(validate("config:\n  token:\n    type: string\n    secret: true\n    default: x"), "Stack 'dev' with configuration key 'token' must be encrypted as it's secret");
  });

  it("Project.Validate: array without items, a default of the wrong type, unknown attributes", () => {
    assert.throws(() => project("config:\n  list:\n    type: array"), /declares an array but does not specify the underlying type/);
    assert.throws(() => project("config:\n  n:\n    type: integer\n    default: ten"), /default value specified for configuration key 'n' is not of the expected type 'integer'/);
    assert.throws(() => project("config:\n  n:\n    type: integer\n    required: true"), /'required' not allowed/);
    assert.throws(() => project("config:\n  aws:region:\n    type: string"), /not namespaced by the project and should not define a type/);
  });

  it("pulumi config set: --secret stores a secret, --path builds lists, secret-looking keys need --secret or --plaintext", () => {
    const parsed = project("");
    const stack: StackConfig = new Map();
    for (const command of configSetCommands(
      [
        `pulumi config set --secret token "$(cat x)"`,
        `pulumi config set --path 'files[0]' a.tar`,
        `pulumi config set --path files[1] 0123`,
        `# pulumi config set ignored 1`,
        `pulumi config set -s dev test:n 5`,
      ].join("\n"),
    )) {
      configSet(stack, parsed.name, command);
    }
    assert.deepEqual(stack.get("test:token"), { value: "$(cat x)", secure: true, object: false });
    assert.deepEqual(stack.get("test:files"), { value: '["a.tar","0123"]', secure: false, object: true });
    assert.equal(stack.get("test:n")?.value, "5");
    assert.equal(stack.has("test:ignored"), false);
    assert.throws(() => configSet(stack, "test", configSetCommands("pulumi config set registryPassword hunter2")[0]), /looks like a secret; rerun with --secret/);
  });

  it("the nodejs host without `main` runs the nearest package.json's main searching upwards, not the project's own file", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "pulumi-main-"));
    try {
      fs.writeFileSync(path.join(root, "package.json"), JSON.stringify({ name: "root", main: "index.ts" }));
      fs.writeFileSync(path.join(root, "index.ts"), "");
      fs.mkdirSync(path.join(root, "example"));
      fs.writeFileSync(path.join(root, "example/index.ts"), "");
      const example = path.join(root, "example");
      assert.equal(programEntry(example, loadProject("name: e\nruntime: nodejs\n")).program, path.join(root, "index.ts"));
      assert.deepEqual(programEntry(example, loadProject("name: e\nruntime: nodejs\nmain: index.ts\n")), { pwd: example, program: path.join(example, "index.ts") });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("every Pulumi.yaml in the repository, under the CLI's rules", () => {
  it("finds the root project and the examples", () => {
    for (const known of ["Pulumi.yaml", "examples/consumer-stack/Pulumi.yaml", "examples/docker-host/Pulumi.yaml"]) {
      assert.ok(PROJECT_FILES.includes(path.join(REPO, known)), `${known} is found`);
    }
  });

  for (const projectFile of PROJECT_FILES) {
    const relative = path.relative(REPO, projectFile);
    const dir = path.dirname(projectFile);
    describe(relative, () => {
      const project = loadProject(fs.readFileSync(projectFile, "utf8"), relative);

      it("is a valid nodejs project that runs its own index.ts (not another program found upwards)", () => {
        assert.equal(typeof project.runtime === "string" ? project.runtime : project.runtime.name, "nodejs");
        assert.equal(programEntry(dir, project).program, path.join(dir, "index.ts"));
      });

      it("declares a key without default only if every stack must set it, and the program reads every declared key", () => {
        const program = path.join(dir, "index.ts");
        const read = keysReadBy(program);
        for (const key of Object.keys(project.config)) assert.ok(read.includes(key), `${relative} declares ${key}, which ${path.relative(REPO, program)} never reads`);
        // A required key must be one the program requires (config.require*): otherwise it is optional and must
        // not stop `pulumi preview` for a stack that leaves it out.
        const source = fs.readFileSync(program, "utf8");
        for (const [key, declaration] of Object.entries(project.config)) {
          if (declaration.default !== undefined || declaration.value !== undefined) continue;
          assert.match(source, new RegExp(`config\\.require\\w*\\("${key}"\\)`), `${relative}: ${key} has no default, so every stack must set it; the program treats it as optional — give it a default or drop the declaration`);
        }
      });

      it("every key the program reads is declared or described in the project file's comments", () => {
        const text = fs.readFileSync(projectFile, "utf8");
        for (const key of keysReadBy(path.join(dir, "index.ts"))) {
          assert.ok(key in project.config || new RegExp(`^#.*\\b${key}\\b`, "m").test(text), `${relative}: ${key} is read by the program but neither declared nor described`);
        }
      });

      for (const [stackName, stackFile] of stackFiles(projectFile)) {
        it(`${path.basename(stackFile)} passes the CLI's validation (required keys, types, secrets)`, () => {
          const result = validateStackConfig(stackName, project, loadStack(fs.readFileSync(stackFile, "utf8"), project));
          assert.ok(!("error" in result), "error" in result ? result.error : "");
        });
      }

      for (const walkthrough of walkthroughs(projectFile)) {
        for (const alternatives of [false, true]) {
          it(`${walkthrough.label}${alternatives ? " (with the commented alternatives)" : ""}: \`pulumi preview -s ${walkthrough.stack}\` reaches the program and completes`, async () => {
            const config = configAfter(project, projectFile, walkthrough, { alternatives });
            const result = validateStackConfig(walkthrough.stack, project, config);
            assert.ok(!("error" in result), "error" in result ? `${walkthrough.label}: ${result.error}` : "");
            // Secrets stay secrets: every key the program reads as a secret is stored encrypted.
            for (const key of secretKeysReadBy(path.join(dir, "index.ts"))) {
              const value = result.config.get(`${project.name}:${key}`);
              if (value !== undefined) assert.ok(value.secure, `${walkthrough.label}: ${key} must be set with --secret`);
            }
            await previewProgram(path.join(dir, "index.ts"), project, result.config);
            assert.ok(registrations().some((registration) => registration.custom), `${relative}: the program registered resources`);
            const daemonSets = registrationsOfType("kubernetes:apps/v1:DaemonSet");
            if (relative !== "examples/docker-host/Pulumi.yaml") assert.ok(daemonSets.length >= 3, `${relative}: the DaemonSets are in the preview`);
            const built = registrationsOfType("docker:index/image:Image").length > 0;
            const images = daemonSets.flatMap((ds: Registration) =>
              (ds.inputs as { spec: { template: { spec: { containers: { image: unknown }[] } } } }).spec.template.spec.containers.map((c) => c.image),
            );
            // The digest of an image built by this stack is unknown at preview; a given image is known.
            for (const image of images) assert.ok(built ? image === UNKNOWN : typeof image === "string" && image !== UNKNOWN, String(image));
          });
        }
      }
    });
  }
});

describe("the root program's own checks of config the CLI cannot declare", () => {
  const project = loadProject(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8"));

  it("refuses a secret key stored in plaintext, naming the key and the command that fixes it", async () => {
    assert.equal(typeof (pulumi.runtime as unknown as { isConfigSecret?: unknown }).isConfigSecret, "function", "@pulumi/pulumi still exports runtime.isConfigSecret");
    const config = new Map(loadStack(fs.readFileSync(path.join(REPO, "Pulumi.dev.yaml"), "utf8"), project));
    config.set("kata-deploy:kubeconfig", { value: "apiVersion: v1\n", secure: false, object: false });
    const result = validateStackConfig("dev", project, config);
    assert.ok("config" in result);
    await assert.rejects(previewProgram(path.join(REPO, "index.ts"), project, result.config), /kata-deploy:kubeconfig is stored in plaintext in the stack file; set it again with `pulumi config set --secret kata-deploy:kubeconfig`/);
  });

  it("refuses a deprecated key next to its new name, and maps it alone to the new one", async () => {
    const withBoth = validateStackConfig(
      "dev",
      project,
      new Map([
        ["kata-deploy:imageRepository", { value: "registry.example.com/k", secure: false, object: false }],
        ["kata-deploy:kataSha256", { value: HEX, secure: false, object: false }],
        ["kata-deploy:kataTarballSha256", { value: HEX, secure: false, object: false }],
      ]),
    );
    assert.ok("config" in withBoth);
    await assert.rejects(previewProgram(path.join(REPO, "index.ts"), project, withBoth.config), /kata-deploy:kataTarballSha256 is the deprecated name of kata-deploy:kataSha256; remove it/);
    const old = validateStackConfig("dev", project, new Map([["kata-deploy:imageRepository", { value: "registry.example.com/k", secure: false, object: false }], ["kata-deploy:kataTarballSha256", { value: HEX, secure: false, object: false }]]));
    assert.ok("config" in old);
    await previewProgram(path.join(REPO, "index.ts"), project, old.config);
    const [image] = registrationsOfType("docker:index/image:Image");
    assert.equal((image.inputs.build as { args: Record<string, string> }).args.KATA_SHA256, HEX);
  });

  it("Pulumi.yaml's defaults are the component's: only the defaults give the same resources as no arguments", async () => {
    const image = `registry.example.com/kata-deploy@sha256:${HEX}`;
    const result = validateStackConfig("dev", project, new Map([["kata-deploy:image", { value: image, secure: false, object: false }]]));
    assert.ok("config" in result);
    const { values, secretKeys } = programConfig(result.config);
    useMocks({ project: MOCK_PROJECT });
    setStackConfig(values, secretKeys);
    const resolved = load.resolve(path.join(REPO, "index.ts"));
    delete load.cache[resolved];
    load(resolved);
    await settled();
    const fromProgram = registrations().map(({ type, name, inputs }) => ({ type, name, inputs }));
    useMocks();
    new KataDeployment("kata", { image });
    await settled();
    const fromComponent = registrations().slice(fromProgram.length).map(({ type, name, inputs }) => ({ type, name, inputs }));
    assert.ok(fromComponent.length > 9);
    assert.deepEqual(fromProgram, fromComponent);
  });
});
