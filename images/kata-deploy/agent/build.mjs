// Bundles the node agent into one CommonJS file so the image needs only a Node.js runtime
// (Debian's nodejs), and so tests run exactly the code the image ships.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { buildRelease } from "../release/build.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

export async function buildAgent() {
  // The image build's release step is bundled alongside: the Dockerfile needs both files.
  await buildRelease();
  await build({
    entryPoints: [path.join(here, "src/cli.ts")],
    outfile: path.join(here, "dist/kata-deploy.cjs"),
    bundle: true,
    platform: "node",
    // The image runs Debian trixie's nodejs (20.x); keep the bundle loadable there.
    target: "node20",
    format: "cjs",
    // Prefer ESM entry points: some dependencies (jsonc-parser) point `main` at a UMD build whose
    // dynamic requires esbuild cannot follow.
    mainFields: ["module", "main"],
    // A separate map keeps start-up (parsing the bundle) fast; --enable-source-maps reads it only for stack traces.
    sourcemap: "linked",
    legalComments: "none",
    // Smaller bundle, faster start-up (each pod start and probe parses it); keepNames keeps error class names readable.
    minify: true,
    keepNames: true,
    logLevel: "warning",
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildAgent();
}
