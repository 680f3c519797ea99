// Loaded by mocha before any spec: rebuilds the agent bundle with the project's own build script, so
// every test runs the current source exactly as the image ships it.
import { execFileSync } from "node:child_process";
import * as path from "node:path";

const agentDir = path.resolve(__dirname, "../../images/kata-deploy/agent");
/** Absolute path of the bundled node agent (what `kata-deploy` is in the image). */
export const AGENT_BUNDLE = path.join(agentDir, "dist/kata-deploy.cjs");

execFileSync(process.execPath, [path.join(agentDir, "build.mjs")], { stdio: "inherit" });
