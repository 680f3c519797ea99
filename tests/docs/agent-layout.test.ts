// README "Architecture": the node agent's folders and the direction of their imports. The rules live in
// eslint.config.mjs (agentImportRules); this proves each one refuses what it is for, and that the
// folders the README names exist with the files it names, so the diagram cannot drift from the tree.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { ESLint } from "eslint";

const REPO = path.resolve(__dirname, "../..");
const SRC = "images/kata-deploy/agent/src";

async function restrictedImports(file: string, specifier: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: REPO });
  const [result] = await eslint.lintText(`import * as other from "${specifier}";\nexport const used = other;\n`, { filePath: path.join(REPO, SRC, file) });
  return (result?.messages ?? []).filter((message) => message.ruleId === "no-restricted-imports").map((message) => message.message);
}

describe("agent layout (README Architecture)", () => {
  it("has one folder per runtime with its planner and its adapter, on top of shared host/formats/report/kube code", () => {
    const expected = [
      "cli.ts",
      "lifecycle/operations.ts",
      "runtimes/index.ts",
      "runtimes/adapter.ts",
      "runtimes/containerd/layout.ts",
      "runtimes/containerd/config.ts",
      "runtimes/containerd/service.ts",
      "runtimes/crio/config.ts",
      "runtimes/crio/service.ts",
      "runtimes/docker/config.ts",
      "runtimes/docker/service.ts",
      "host/files.ts",
      "host/commands.ts",
      "host/lock.ts",
      "kube/client.ts",
      "formats/toml-document.ts",
      "report/errors.ts",
    ];
    const missing = expected.filter((file) => !fs.existsSync(path.join(REPO, SRC, file)));
    assert.deepEqual(missing, [], "files the README's architecture names");
    const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
    for (const folder of ["lifecycle/", "runtimes/", "containerd/", "crio/", "docker/", "host/", "kube/", "formats/", "report/"]) {
      assert.ok(readme.includes(folder), `README architecture names ${folder}`);
    }
    const stray = fs.readdirSync(path.join(REPO, SRC)).filter((entry) => entry.endsWith(".ts") && entry !== "cli.ts");
    assert.deepEqual(stray, [], "only the CLI sits at the top of the agent's source; everything else is in a folder");
  });

  const refused: [string, string, string][] = [
    ["runtimes/crio/service.ts", "../containerd/config", "a runtime folder importing another runtime's"],
    ["runtimes/docker/config.ts", "../crio/config", "a runtime folder importing another runtime's"],
    ["runtimes/containerd/config.ts", "../../lifecycle/state", "a runtime importing the lifecycle"],
    ["lifecycle/operations.ts", "../runtimes/containerd/service", "the lifecycle reaching past runtimes/index"],
    ["host/files.ts", "../runtimes/types", "host code importing runtimes"],
    ["formats/toml-document.ts", "../runtimes/types", "formats importing runtimes"],
    ["report/errors.ts", "../lifecycle/state", "report importing the lifecycle"],
    ["runtimes/containerd/service.ts", "../../kube/client", "a runtime talking to the Kubernetes API"],
  ];
  for (const [file, specifier, what] of refused) {
    it(`refuses ${what} (${file} -> ${specifier})`, async function () {
      this.timeout(60_000);
      const messages = await restrictedImports(file, specifier);
      assert.equal(messages.length, 1, `eslint refuses ${specifier} in ${file}`);
    });
  }

  const allowed: [string, string][] = [
    ["lifecycle/operations.ts", "../runtimes"],
    ["lifecycle/request.ts", "../runtimes/types"],
    ["runtimes/containerd/service.ts", "../../host/commands"],
    ["runtimes/crio/config.ts", "../../formats/toml-document"],
    ["cli.ts", "./runtimes/containerd/layout"],
  ];
  for (const [file, specifier] of allowed) {
    it(`allows ${file} -> ${specifier}`, async function () {
      this.timeout(60_000);
      assert.deepEqual(await restrictedImports(file, specifier), []);
    });
  }
});
