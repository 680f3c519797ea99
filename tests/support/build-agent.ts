// Loaded by mocha before any spec: rebuilds the agent bundle and KataDeployment's wait script bundles with
// the project's own build scripts, so every test runs the current source exactly as the image and the
// package ship it.
import { execFileSync } from "node:child_process";
import * as path from "node:path";

const root = path.resolve(__dirname, "../..");
const agentDir = path.join(root, "images/kata-deploy/agent");
/** Absolute path of the bundled node agent (what `kata-deploy` is in the image). */
export const AGENT_BUNDLE = path.join(agentDir, "dist/kata-deploy.cjs");

// Once per run: with `mocha --parallel` (the unit tier) the main process builds before it starts the
// workers, which inherit the variable and must not rewrite a bundle while another worker runs it. One
// variable for both builds: a run that set it has built both.
if (process.env.KATA_DEPLOY_AGENT_BUILT !== AGENT_BUNDLE) {
  execFileSync(process.execPath, [path.join(agentDir, "build.mjs")], { stdio: "inherit" });
  // dist/components/wait-for-*.mjs, what KataDeployment's WAIT_SCRIPT and INSTALL_WAIT_SCRIPT run.
  execFileSync(process.execPath, [path.join(root, "components/build-wait-scripts.mjs")], { stdio: "inherit" });
  process.env.KATA_DEPLOY_AGENT_BUILT = AGENT_BUNDLE;
}
