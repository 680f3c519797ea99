import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runWaitScriptWithoutApi, writeAged } from "../support/bundle-checks";
import { INSTALL_WAIT_SCRIPT, PACKAGE_ROOT, WAIT_SCRIPT, waitScriptBundleProblem } from "../../components/kataDeployment";

const SCRIPTS = ["wait-for-clean-nodes.mjs", "wait-for-installed-nodes.mjs"];

// KataDeployment runs the wait scripts bundled (dist/components/, `npm run build`); a missing bundle would fail
// the step itself (at destroy: after the installers are gone), a stale one would wait by older rules than its
// source. Either must stop at preview with the fix.
describe("KataDeployment: the wait script bundle check", () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "kata-package-"));
    fs.mkdirSync(path.join(root, "components"));
    fs.mkdirSync(path.join(root, "dist/components"), { recursive: true });
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const touch = (relative: string, secondsAgo: number): void => writeAged(path.join(root, relative), secondsAgo);
  const sources = (secondsAgo: number): void => {
    for (const file of [...SCRIPTS, "kube-wait.mjs"]) touch(`components/${file}`, secondsAgo);
  };

  it("names the missing bundle and the command that builds it", () => {
    sources(120);
    touch("dist/components/wait-for-clean-nodes.mjs", 60);
    const problem = waitScriptBundleProblem(root) ?? "";
    assert.match(problem, /^the wait script bundle .*dist\/components\/wait-for-installed-nodes\.mjs is missing; run `npm run build` in /);
    assert.ok(problem.endsWith(` in ${root}`), problem);
    assert.equal(problem.split("\n").length, 1);
  });

  it("refuses a bundle older than its source or than kube-wait.mjs, naming that file", () => {
    sources(120);
    for (const script of SCRIPTS) touch(`dist/components/${script}`, 60);
    touch("components/wait-for-installed-nodes.mjs", 5);
    assert.match(waitScriptBundleProblem(root) ?? "", /bundle .*dist\/components\/wait-for-installed-nodes\.mjs is older than .*components\/wait-for-installed-nodes\.mjs; run `npm run build`/);
    sources(120);
    touch("components/kube-wait.mjs", 5);
    assert.match(waitScriptBundleProblem(root) ?? "", /bundle .*dist\/components\/wait-for-clean-nodes\.mjs is older than .*components\/kube-wait\.mjs; run `npm run build`/);
  });

  it("accepts bundles no older than the sources (npm installs every file with the same time), and bundles without sources", () => {
    sources(60);
    for (const script of SCRIPTS) touch(`dist/components/${script}`, 60);
    assert.equal(waitScriptBundleProblem(root), undefined);
    fs.rmSync(path.join(root, "components"), { recursive: true });
    assert.equal(waitScriptBundleProblem(root), undefined);
  });

  it("passes for this repository once the bundles are built (as mocha's setup does), and the component runs them", () => {
    assert.deepEqual([WAIT_SCRIPT, INSTALL_WAIT_SCRIPT], SCRIPTS.map((script) => path.join(PACKAGE_ROOT, "dist/components", script)));
    assert.equal(waitScriptBundleProblem(PACKAGE_ROOT), undefined);
  });

  it("each bundle is self-contained: copied where no node_modules is, it starts and reaches for the API", () => {
    for (const script of [WAIT_SCRIPT, INSTALL_WAIT_SCRIPT]) {
      const copy = path.join(root, path.basename(script));
      fs.copyFileSync(script, copy);
      const run = runWaitScriptWithoutApi(copy, root);
      assert.equal(run.status, 1, `${script}: ${run.stderr}`);
      assert.match(run.stderr, /^kata-deploy: timed out after 0\.2s: the Kubernetes API could not be queried .*ECONNREFUSED 127\.0\.0\.1:1/, script);
    }
  });
});
