// Bundles release/payload.mjs (with its TOML parser) into one CommonJS file the image build runs with the
// builder stage's Node.js: release/dist/kata-release.cjs. Built together with the agent bundle
// (agent/build.mjs), so `npm ci` / `npm run build:agent` prepare both.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
export const RELEASE_BUNDLE = path.join(here, "dist/kata-release.cjs");

export async function buildRelease() {
  await build({
    stdin: { contents: 'require("./payload.mjs").main();', resolveDir: here, sourcefile: "entry.cjs", loader: "js" },
    outfile: RELEASE_BUNDLE,
    bundle: true,
    platform: "node",
    // Debian trixie's nodejs (20.x) runs it, as it runs the agent.
    target: "node20",
    format: "cjs",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildRelease();
}
