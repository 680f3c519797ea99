// Bundles KataDeployment's two @pulumi/command steps, wait-for-clean-nodes.mjs (`pulumi destroy`) and
// wait-for-installed-nodes.mjs (`pulumi up`), each into one self-contained ES module under dist/components/
// (part of `npm run build`; the component runs these, components/kataDeployment.ts WAIT_SCRIPT and
// INSTALL_WAIT_SCRIPT).
//
// Why: each run is a fresh `node` process, and loading @kubernetes/client-node from node_modules (about a
// thousand ES modules, resolved and linked one by one) costs it about 1 s of CPU on the 2-core test machine;
// the whole script bundled starts in about 0.4 s. The sources stay shipped as they are: a stack deployed with an older
// version has components/wait-for-clean-nodes.mjs recorded as its destroy command and runs it at destroy.
import { build } from "esbuild";
import * as fs from "node:fs";
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);

/** The wait scripts bundled, by file name under components/ (and under dist/components/ for the bundles). */
export const WAIT_SCRIPTS = ["wait-for-clean-nodes.mjs", "wait-for-installed-nodes.mjs"];

/**
 * Modules a dependency requires inside try/catch and does without (ws: bufferutil, utf-8-validate; node-fetch:
 * encoding): esbuild leaves them as run-time requires, which fail and are caught when absent. Anything else left
 * outside the bundle must be part of Node itself, or the bundle would load it from wherever it happens to run.
 */
const OPTIONAL_EXTERNALS = new Set(["bufferutil", "utf-8-validate", "encoding"]);

/**
 * Deprecation warnings Node prints only for code outside node_modules (it checks the caller's file): node-fetch
 * calls url.parse (DEP0169) and tr46 requires the built-in punycode (DEP0040). Loaded from node_modules they
 * are silent; bundled into dist/components of a checkout they would be printed on every `pulumi up` and
 * destroy, about code that is the same.
 */
const QUIET_DEPRECATIONS = ["DEP0040", "DEP0169"];

/**
 * The bundles' first lines: `require` for the CommonJS dependencies' require calls (of Node's own modules and
 * the optional ones above), and the filter for QUIET_DEPRECATIONS.
 */
const BANNER = [
  'import { createRequire as __kataDeployCreateRequire } from "node:module";',
  "const require = __kataDeployCreateRequire(import.meta.url);",
  "{",
  `  const quiet = new Set(${JSON.stringify(QUIET_DEPRECATIONS)});`,
  "  const emitWarning = process.emitWarning;",
  "  process.emitWarning = function (warning, ...rest) {",
  '    const code = typeof rest[0] === "object" && rest[0] !== null ? rest[0].code : rest[1];',
  "    return quiet.has(code) ? undefined : emitWarning.call(this, warning, ...rest);",
  "  };",
  "}",
].join("\n");

/**
 * esbuild's target from package.json `engines.node` (`>=22.12` -> `node22.12`): the Node the user's Pulumi runs.
 * @returns {string}
 */
function nodeTarget() {
  const manifest = /** @type {{ engines?: { node?: string } }} */ (JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")));
  const range = manifest.engines?.node ?? "";
  const version = /^>=\s*(\d+(?:\.\d+){0,2})$/.exec(range)?.[1];
  if (version === undefined) throw new Error(`package.json engines.node is ${JSON.stringify(range)}; expected ">=<version>"`);
  return `node${version}`;
}

/**
 * Builds dist/components/<script> for each of WAIT_SCRIPTS.
 * @param {{ outDir?: string }} [options] outDir: where to write the bundles (default dist/components)
 * @returns {Promise<string[]>} the bundles' paths
 */
export async function buildWaitScripts({ outDir = path.join(root, "dist/components") } = {}) {
  const result = await build({
    entryPoints: WAIT_SCRIPTS.map((script) => path.join(here, script)),
    outdir: outDir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    // One file per script, nothing shared between them: each must run alone.
    splitting: false,
    platform: "node",
    target: nodeTarget(),
    format: "esm",
    // Prefer ESM entry points, as the agent's build does (images/kata-deploy/agent/build.mjs).
    mainFields: ["module", "main"],
    legalComments: "none",
    // Smaller file, less to parse at each start; keepNames keeps error class names readable.
    minify: true,
    keepNames: true,
    banner: { js: BANNER },
    metafile: true,
    write: false,
    logLevel: "warning",
  });
  const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
  const foreign = new Set(
    Object.values(result.metafile.outputs)
      .flatMap((output) => output.imports)
      .filter((imported) => imported.external && !builtins.has(imported.path) && !OPTIONAL_EXTERNALS.has(imported.path))
      .map((imported) => imported.path),
  );
  if (foreign.size > 0) {
    throw new Error(`the wait script bundles would load ${[...foreign].join(", ")} at run time, which are not part of Node; bundle them or list them in OPTIONAL_EXTERNALS if a try/catch makes them optional`);
  }
  const written = [];
  // Replaced atomically (temp file + rename), as the agent bundle is: a wait script started meanwhile (a test
  // in another process) runs the old bundle or the new one, never a half-written file.
  for (const output of result.outputFiles ?? []) {
    fs.mkdirSync(path.dirname(output.path), { recursive: true });
    const temp = `${output.path}.${process.pid}.tmp`;
    fs.writeFileSync(temp, output.contents);
    fs.renameSync(temp, output.path);
    written.push(output.path);
  }
  if (written.length !== WAIT_SCRIPTS.length) throw new Error(`esbuild wrote ${written.length} wait script bundle(s), expected ${WAIT_SCRIPTS.length}`);
  return written;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  buildWaitScripts().catch((/** @type {unknown} */ error) => {
    console.error(error);
    process.exit(1);
  });
}
