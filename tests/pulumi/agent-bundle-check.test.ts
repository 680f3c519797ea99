import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeAged } from "../support/bundle-checks";
import { agentBundleProblem, CONTRACT_SOURCE, IMAGE_CONTEXT } from "../../components/kataDeployment";

// The image build copies the prebuilt agent bundle; building with a missing or stale one must stop at
// preview with the fix, not fail inside docker build or ship an older agent to every node.
describe("KataDeployment image build: the agent bundle check", () => {
  let context: string;
  beforeEach(() => {
    context = fs.mkdtempSync(path.join(os.tmpdir(), "kata-context-"));
    fs.mkdirSync(path.join(context, "agent/src/config"), { recursive: true });
    fs.mkdirSync(path.join(context, "agent/dist"), { recursive: true });
    fs.mkdirSync(path.join(context, "release/dist"), { recursive: true });
  });
  afterEach(() => fs.rmSync(context, { recursive: true, force: true }));

  const touch = (relative: string, secondsAgo: number): void => writeAged(path.join(context, relative), secondsAgo);

  it("names the missing bundle and the command that builds it", () => {
    touch("agent/src/cli.ts", 10);
    touch("release/dist/kata-release.cjs", 5);
    const problem = agentBundleProblem(context);
    assert.match(problem ?? "", /agent\/dist\/kata-deploy\.cjs is missing; run `npm run build:agent` in /);
  });

  it("refuses a bundle older than any agent source file, naming that file", () => {
    touch("agent/dist/kata-deploy.cjs", 60);
    touch("agent/src/cli.ts", 120);
    touch("agent/src/config/docker.ts", 5);
    assert.match(agentBundleProblem(context) ?? "", /is older than .*agent\/src\/config\/docker\.ts; run `npm run build:agent`/);
  });

  // The Dockerfile's builder stage runs release/dist/kata-release.cjs (bundled from release/*.mjs by the same build).
  it("names a missing release step bundle and the command that builds it", () => {
    touch("agent/src/cli.ts", 120);
    touch("agent/dist/kata-deploy.cjs", 60);
    touch("release/payload.mjs", 120);
    assert.match(agentBundleProblem(context) ?? "", /release step bundle .*release\/dist\/kata-release\.cjs is missing; run `npm run build:agent` in /);
  });

  it("refuses a release step bundle older than any release/*.mjs source, naming that file", () => {
    touch("agent/src/cli.ts", 120);
    touch("agent/dist/kata-deploy.cjs", 60);
    touch("release/payload.mjs", 120);
    touch("release/dist/kata-release.cjs", 60);
    touch("release/assets.mjs", 5);
    assert.match(agentBundleProblem(context) ?? "", /release step bundle .*kata-release\.cjs is older than .*release\/assets\.mjs; run `npm run build:agent`/);
  });

  it("accepts a bundle newer than every source, and a context shipped without sources", () => {
    touch("agent/src/cli.ts", 120);
    touch("agent/dist/kata-deploy.cjs", 60);
    touch("release/assets.mjs", 120);
    touch("release/dist/kata-release.cjs", 60);
    assert.equal(agentBundleProblem(context), undefined);
    fs.rmSync(path.join(context, "agent/src"), { recursive: true });
    fs.rmSync(path.join(context, "release/assets.mjs"));
    assert.equal(agentBundleProblem(context), undefined);
  });

  it("refuses a bundle older than the component/agent contract, which the bundle includes from outside agent/src", () => {
    touch("agent/src/cli.ts", 120);
    touch("agent/dist/kata-deploy.cjs", 60);
    touch("release/dist/kata-release.cjs", 60);
    const contract = path.join(context, "contract.ts");
    fs.writeFileSync(contract, "x");
    assert.match(agentBundleProblem(context, [contract]) ?? "", /is older than .*contract\.ts; run `npm run build:agent`/);
    // The installed package ships no sources: a missing contract source is no problem.
    fs.rmSync(contract);
    assert.equal(agentBundleProblem(context, [contract]), undefined);
  });

  it("passes for this repository's own context once the bundle is built (as mocha's setup does), watching the contract", () => {
    assert.ok(fs.existsSync(CONTRACT_SOURCE), `${CONTRACT_SOURCE} is what the agent imports; the check must watch the real file`);
    assert.equal(agentBundleProblem(IMAGE_CONTEXT, [CONTRACT_SOURCE]), undefined);
  });
});
