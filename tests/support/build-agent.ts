// Loaded by mocha before any spec: rebuilds the agent bundle so every test runs the current source,
// exactly as the image ships it.
import { buildSync } from "esbuild";
import * as path from "node:path";

const agentDir = path.resolve(__dirname, "../../images/kata-deploy/agent");
/** Absolute path of the bundled node agent (what `kata-deploy` is in the image). */
export const AGENT_BUNDLE = path.join(agentDir, "dist/kata-deploy.cjs");

buildSync({
  entryPoints: [path.join(agentDir, "src/cli.ts")],
  outfile: AGENT_BUNDLE,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  // Same as images/kata-deploy/agent/build.mjs: jsonc-parser's `main` is a UMD build esbuild cannot follow.
  mainFields: ["module", "main"],
  sourcemap: "inline",
  logLevel: "warning",
});
