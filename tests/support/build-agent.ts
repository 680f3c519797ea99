// Loaded by mocha before any spec: rebuilds the agent bundle with the project's own build script, so
// every test runs the current source exactly as the image ships it.
import { execFileSync } from "node:child_process";
import * as path from "node:path";

const agentDir = path.resolve(__dirname, "../../images/kata-deploy/agent");
/** Absolute path of the bundled node agent (what `kata-deploy` is in the image). */
export const AGENT_BUNDLE = path.join(agentDir, "dist/kata-deploy.cjs");

// Once per run: with `mocha --parallel` (the unit tier) the main process builds before it starts the
// workers, which inherit the variable and must not rewrite the bundle while another worker runs it.
if (process.env.KATA_DEPLOY_AGENT_BUILT !== AGENT_BUNDLE) {
  execFileSync(process.execPath, [path.join(agentDir, "build.mjs")], { stdio: "inherit" });
  process.env.KATA_DEPLOY_AGENT_BUILT = AGENT_BUNDLE;
}
