// Guards for docs/contributing.md "Adding an option": an option that is missing from one of the places it
// must reach fails here, naming the place. Read only through public surfaces (the exported argument
// interfaces, index.ts, Pulumi.yaml, the rendered manifests, the agent's --help, the docs), so these
// checks survive refactors of how those are produced.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import * as ts from "typescript";
import { parse } from "yaml";
import { buildAllManifests } from "../../components/manifests";
import type { ManifestOptions } from "../../components/settings";
import { normalizeSettings } from "../../components/validation";
import { AGENT_BUNDLE, runAgent } from "../agent/agent-harness";

const REPO = path.resolve(__dirname, "../..");
const read = (file: string): string => fs.readFileSync(path.join(REPO, file), "utf8");

/** Property names of an exported interface, read with the TypeScript parser (not a regex over the file). */
function interfaceMembers(file: string, name: string): { name: string; type: string; documented: boolean }[] {
  const source = ts.createSourceFile(file, read(file), ts.ScriptTarget.Latest, true);
  const found = source.statements.find((statement): statement is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(statement) && statement.name.text === name);
  assert.ok(found, `${file}: interface ${name} not found`);
  return found.members.filter(ts.isPropertySignature).map((member) => ({
    name: member.name.getText(source),
    type: member.type?.getText(source) ?? "",
    documented: ts.getJSDocCommentsAndTags(member).length > 0,
  }));
}

/** Rows of docs/kubernetes.md's "Configuration reference" table: argument → config-key cell. */
function configurationReference(): Map<string, string> {
  const text = read("docs/kubernetes.md");
  const start = text.indexOf("## Configuration reference");
  assert.ok(start >= 0, "docs/kubernetes.md has a Configuration reference section");
  const section = text.slice(start, text.indexOf("\n## ", start + 1));
  const rows = new Map<string, string>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    // One row may document several arguments: "`imageBuild.a`, `imageBuild.b`".
    if (!/^`[\w.]+`(, `[\w.]+`)*$/.test(cells[1] ?? "")) continue;
    for (const argument of cells[1].matchAll(/`([\w.]+)`/g)) rows.set(argument[1], cells[2]);
  }
  return rows;
}

/** The arguments a user can pass: KataDeploymentArgs' members, `imageBuild` expanded to its own members. */
function componentArguments(): { name: string; documented: boolean }[] {
  const file = "components/kataDeployment.ts";
  return interfaceMembers(file, "KataDeploymentArgs").flatMap((member) =>
    member.type === "KataImageBuildArgs"
      ? interfaceMembers(file, "KataImageBuildArgs").map((nested) => ({ name: `${member.name}.${nested.name}`, documented: nested.documented }))
      : [{ name: member.name, documented: member.documented }],
  );
}

const backticked = (cell: string): string[] => [...cell.matchAll(/`([\w-]+)`/g)].map((match) => match[1]);
/** Config keys index.ts reads directly (`config.get("key")`, `getObject<...>("key")`, `requireSecret("key")`, ...). */
const directReads = (): Set<string> => new Set([...read("index.ts").matchAll(/config\.(?:get|require)\w*(?:<[^>]*>)?\("([\w-]+)"\)/g)].map((match) => match[1]));
/** Whether index.ts names the key as a string literal (read directly or through a helper such as `secretFromConfig("key")`). */
const programNames = (key: string): boolean => read("index.ts").includes(`"${key}"`);
const pulumiYaml = (): { config: Record<string, unknown> } => parse(read("Pulumi.yaml")) as { config: Record<string, unknown> };

describe("adding an option: every place it must reach (docs/contributing.md)", () => {
  it("every component argument has a doc comment and a row in docs/kubernetes.md's configuration reference, and every row is an argument", () => {
    const args = componentArguments();
    const rows = configurationReference();
    assert.deepEqual(args.filter((arg) => !arg.documented).map((arg) => arg.name), [], "components/kataDeployment.ts: arguments without a /** doc comment */");
    assert.deepEqual(args.filter((arg) => !rows.has(arg.name)).map((arg) => arg.name), [], "docs/kubernetes.md Configuration reference: add a row for these arguments");
    const names = new Set(args.map((arg) => arg.name));
    assert.deepEqual([...rows.keys()].filter((row) => !names.has(row)), [], "docs/kubernetes.md Configuration reference: rows for arguments that do not exist");
  });

  it("every config key in the reference is read by index.ts and named in Pulumi.yaml (declared, or listed in its comment)", () => {
    const yamlText = read("Pulumi.yaml");
    const problems: string[] = [];
    for (const [argument, cell] of configurationReference()) {
      const keys = backticked(cell);
      if (keys.length === 0) problems.push(`${argument}: the Config key cell names no key (docs/kubernetes.md)`);
      for (const key of keys) {
        if (!programNames(key)) problems.push(`${argument}: index.ts does not read config key "${key}"`);
        // Pulumi.yaml declares the keys with a fixed default and lists the others in its header comment.
        if (!new RegExp(`(^|[^\\w])${key}([^\\w]|$)`, "m").test(yamlText)) problems.push(`${argument}: Pulumi.yaml does not name config key "${key}"`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it("every key Pulumi.yaml declares and every key index.ts reads directly has a row in the reference", () => {
    const documented = new Set([...configurationReference().values()].flatMap(backticked));
    assert.deepEqual(Object.keys(pulumiYaml().config).filter((key) => !documented.has(key)), [], "Pulumi.yaml keys missing from docs/kubernetes.md");
    assert.deepEqual([...directReads()].filter((key) => !documented.has(key)), [], "index.ts config keys missing from docs/kubernetes.md");
  });

  it("every agent flag and environment variable the manifests pass exists in the agent's --help and in docs/node-agent.md", () => {
    const help = runAgent(["--help"]);
    assert.equal(help.code, 0, `${AGENT_BUNDLE} --help: ${help.stderr}`);
    const agentDoc = read("docs/node-agent.md");
    const flags = new Set<string>();
    const env = new Set<string>();
    // Every builder path that adds flags: both runtimes, every flavor, a snapshotter mapping, startup taints.
    // Kata's configuration on the node adds --prefix and KATA_DEPLOY_KATA_CONFIG.
    const kataConfig = { installPrefix: "/var/lib/kata", shimConfig: { qemu: { debug: true } }, customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu" }] };
    for (const containerdFlavor of ["containerd", "k3s", "rke2"]) {
      const startupTaints = [{ key: "example.com/kata-not-ready" }];
      const opts: ManifestOptions = {
        ...normalizeSettings({ runtimes: ["containerd", "crio"], containerdFlavor, startupTaints, snapshotters: { fc: "devmapper" }, guestPull: ["qemu"], ...kataConfig }),
        image: "registry.example.com/kata-deploy:test",
      };
      const all = buildAllManifests(opts);
      for (const ds of [...all.deploy, ...all.cleanup]) {
        for (const container of ds.spec.template.spec.containers) {
          const commands = [container.command, container.args, container.lifecycle?.preStop?.exec?.command, container.readinessProbe?.exec?.command, container.startupProbe?.exec?.command];
          for (const word of commands.flatMap((words) => words ?? [])) if (/^--[a-z-]+$/.test(word)) flags.add(word);
          for (const variable of container.env ?? []) env.add(variable.name);
        }
      }
    }
    assert.ok(flags.size >= 8, `found the manifests' flags (${[...flags].join(" ")})`);
    const helpFlags = new Set(help.stdout.match(/--[a-z-]+/g) ?? []);
    assert.deepEqual([...flags].filter((flag) => !helpFlags.has(flag)), [], "flags the manifests pass that kata-deploy --help does not list (agent src/cli.ts OPTIONS/USAGE)");
    const inDoc = (flag: string): boolean => new RegExp(`(^|[\\s\`\\[])${flag}(?![\\w-])`, "m").test(agentDoc);
    assert.deepEqual([...helpFlags].filter((flag) => !inDoc(flag)), [], "kata-deploy --help flags missing from docs/node-agent.md");
    assert.deepEqual([...env].filter((name) => !agentDoc.includes(name)), [], "environment variables the manifests set that docs/node-agent.md does not mention");
  });
});
