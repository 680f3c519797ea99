// docs/contributing.md "Test tiers": `npm run test:unit` and `npm run test:integration` split exactly the
// tests `npm test` runs (same spec files, complementary --grep), and the unit tier refuses a test that
// needs a daemon or host tool even when the test hides it (its guard: tests/support/unit-tier.ts).
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { AGENT_BUNDLE } from "../support/build-agent";
import { INTEGRATION_TAG } from "../support/env";

const REPO = path.resolve(__dirname, "../..");
const scripts = (JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
const unitConfig = JSON.parse(fs.readFileSync(path.join(REPO, "tests/unit.mocharc.json"), "utf8")) as { require: string[]; spec: string[]; grep: string; invert: boolean; timeout: number };

describe("test tiers", () => {
  it("test:unit and test:integration take npm test's spec files and split them by the tag, each test in one tier", () => {
    const allGlob = /^mocha "([^"]+)"$/.exec(scripts.test)?.[1];
    assert.ok(allGlob, `package.json "test" is mocha over one glob: ${scripts.test}`);
    assert.equal(scripts["test:unit"], "mocha --config tests/unit.mocharc.json");
    assert.deepEqual(unitConfig.spec, [allGlob], "the unit tier loads the same files as npm test");
    assert.equal(unitConfig.grep, INTEGRATION_TAG);
    assert.equal(unitConfig.invert, true, "the unit tier is everything not tagged");
    assert.equal(scripts["test:integration"], `mocha --grep ${INTEGRATION_TAG} "${allGlob}"`, "the integration tier is everything tagged, with npm test's config");
    const defaults = JSON.parse(fs.readFileSync(path.join(REPO, ".mocharc.json"), "utf8")) as { require: string[] };
    assert.deepEqual(unitConfig.require.filter((file) => file !== "tests/support/unit-tier.ts"), defaults.require, "the unit tier sets up tests as npm test does, plus its guard");
  });

  it("the unit tier fails a test that starts docker (even one that swallows the error) or asks requireTool, and leaves tagged tests out", function () {
    this.timeout(120_000);
    const mocha = path.join(REPO, "node_modules/mocha/bin/mocha.js");
    const args = [mocha, "--no-config", "--no-package", ...unitConfig.require.flatMap((file) => ["--require", file]), "--extension", "ts", "--grep", unitConfig.grep, "--invert", "--reporter", "spec", "tests/fixtures/tiers/misplaced.spec.ts"];
    // The bundles are built already (this run's build-agent.ts): the child must not rewrite them under the other worker.
    const run = spawnSync(process.execPath, args, { cwd: REPO, encoding: "utf8", env: { ...process.env, CI: "", KATA_DEPLOY_AGENT_BUILT: AGENT_BUNDLE } });
    const output = run.stdout + run.stderr;
    assert.notEqual(run.status, 0, output);
    assert.match(output, /1 passing/, output);
    assert.match(output, /this test runs `docker` \(child_process\.execFileSync\), so it is not a unit test: add @integration/);
    assert.match(output, /this test needs containerd, so it is not a unit test: add @integration/);
    assert.doesNotMatch(output, /an @integration test ran in the unit tier/);
  });
});
