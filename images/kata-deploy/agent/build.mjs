// Bundles the node agent into one CommonJS file so the image needs only a Node.js runtime
// (Debian's nodejs), and so tests run exactly the code the image ships.
//
// Start-up: every pod start, probe and no-op re-install pays for V8 reading the whole bundle, and the
// Kubernetes client (@kubernetes/client-node and its HTTP stack) is about 85 % of it while only
// `label`, `reset` and in-cluster installs/uninstalls call the API. So the client is built separately
// and embedded as one brotli-compressed (base64) string literal, decompressed and compiled
// (vm.runInThisContext) only when cli.ts imports it: the parser skips over a string far faster than it
// pre-parses the same code, and compressed it is a quarter of the bundle's size instead of 85 % of
// it (every start reads it). Measured with `npm run bench` (agent start-up line); figures in
// docs/node-agent.md.
import { build } from "esbuild";
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { buildRelease } from "../release/build.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

/** @type {import("esbuild").BuildOptions} Options both bundles share. */
const common = {
  bundle: true,
  platform: "node",
  // The image runs Debian trixie's nodejs (20.x); keep the bundle loadable there.
  target: "node20",
  format: "cjs",
  // Prefer ESM entry points: some dependencies (jsonc-parser) point `main` at a UMD build whose
  // dynamic requires esbuild cannot follow.
  mainFields: ["module", "main"],
  legalComments: "none",
  // Smaller bundle, faster start-up (each pod start and probe parses it); keepNames keeps error class names readable.
  minify: true,
  keepNames: true,
  logLevel: "warning",
};

/**
 * The Kubernetes client module (src/kube/client.ts and its dependencies) as CommonJS source text. The agent's
 * own modules it imports (./errors, ...) stay outside the chunk: it gets the main bundle's instances,
 * so `instanceof UserError` and the like hold across the two.
 * @returns {Promise<{ text: string; shared: string[] }>}
 */
async function buildKubeChunk() {
  /** @type {Set<string>} */
  const shared = new Set();
  const result = await build({
    ...common,
    entryPoints: [path.join(here, "src/kube/client.ts")],
    write: false,
    outfile: "kube.cjs",
    plugins: [
      {
        name: "agent-modules-external",
        setup(pluginBuild) {
          pluginBuild.onResolve({ filter: /^\.\.?\// }, (args) => {
            if (args.kind === "entry-point" || !args.importer.startsWith(path.join(here, "src"))) return undefined;
            shared.add(args.path);
            return { path: args.path, external: true };
          });
        },
      },
    ],
  });
  const [output] = result.outputFiles ?? [];
  if (output === undefined) throw new Error("esbuild wrote no Kubernetes client chunk");
  return { text: output.text, shared: [...shared] };
}

/**
 * Resolves cli.ts's `import("./kube/client.js")` to a module that compiles the embedded chunk on first use.
 * @param {{ text: string; shared: string[] }} chunk
 * @returns {import("esbuild").Plugin}
 */
function embeddedKubeChunk(chunk) {
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${chunk.text}\n})`;
  // Brotli at its highest quality: about a fifth of the text, which every start reads and scans past.
  const compressed = zlib.brotliCompressSync(Buffer.from(wrapped, "utf8"), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: zlib.constants.BROTLI_MAX_QUALITY } }).toString("base64");
  const shared = chunk.shared.map((specifier) => `${JSON.stringify(specifier)}: require(${JSON.stringify(specifier)})`).join(", ");
  return {
    name: "embedded-kube-chunk",
    setup(pluginBuild) {
      pluginBuild.onResolve({ filter: /^\.\/kube\/client\.js$/ }, (args) =>
        args.importer === path.join(here, "src/cli.ts") ? { path: "kube-chunk", namespace: "embedded" } : undefined,
      );
      pluginBuild.onLoad({ filter: /^kube-chunk$/, namespace: "embedded" }, () => ({
        loader: "js",
        // The chunk's own relative imports are written relative to its file.
        resolveDir: path.join(here, "src/kube"),
        contents: [
          `const shared = { ${shared} };`,
          `const source = require("node:zlib").brotliDecompressSync(Buffer.from(${JSON.stringify(compressed)}, "base64")).toString("utf8");`,
          `const chunk = require("node:vm").runInThisContext(source, { filename: __filename + " (kubernetes client)" });`,
          "chunk(module.exports, (id) => (id in shared ? shared[id] : require(id)), module, __filename, __dirname);",
        ].join("\n"),
      }));
    },
  };
}

/**
 * Node built-in modules that only some commands use, loaded on first use instead of at every start:
 * `status` (each readiness probe) spawns nothing, hashes nothing, speaks no HTTP. Each import of one
 * resolves to a module whose exports are getters that require the real module the first time one is
 * read (esbuild's ESM interop copies them as getters, so `import { spawn }` stays lazy too).
 */
const LAZY_BUILTINS = ["node:child_process", "node:crypto", "node:http", "node:fs/promises"];

/** @returns {Promise<import("esbuild").Plugin>} */
async function lazyBuiltins() {
  /** @type {Map<string, string[]>} */
  const names = new Map();
  for (const id of LAZY_BUILTINS) names.set(id, Object.keys(await import(id)).filter((name) => name !== "default"));
  return {
    name: "lazy-builtins",
    setup(pluginBuild) {
      pluginBuild.onResolve({ filter: /^node:/ }, (args) =>
        names.has(args.path) && args.namespace !== "lazy-builtin" ? { path: args.path, namespace: "lazy-builtin" } : undefined,
      );
      pluginBuild.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (args) => {
        const getters = (names.get(args.path) ?? []).map((name) => `${JSON.stringify(name)}: { enumerable: true, get: () => load()[${JSON.stringify(name)}] }`);
        return {
          loader: "js",
          contents: [
            "let loaded;",
            `const load = () => (loaded ??= require(${JSON.stringify(args.path)}));`,
            `module.exports = Object.defineProperties({}, { ${getters.join(", ")} });`,
          ].join("\n"),
        };
      });
    },
  };
}

export async function buildAgent() {
  // The image build's release step is bundled alongside: the Dockerfile needs both files.
  await buildRelease();
  const result = await build({
    ...common,
    entryPoints: [path.join(here, "src/cli.ts")],
    outfile: path.join(here, "dist/kata-deploy.cjs"),
    // The map is a separate file without a sourceMappingURL comment: src/report/source-mapped-stacks.ts
    // (injected first into the bundle) reads it only when a stack trace is formatted. Node's own
    // --enable-source-maps would read it, and split the whole bundle into lines, at every start.
    sourcemap: "external",
    // Without the sources' text (2.5 of the map's 2.9 MB, most of it the embedded client chunk): stack
    // traces need only the mappings and the source names.
    sourcesContent: false,
    inject: [path.join(here, "src/report/source-mapped-stacks.ts")],
    plugins: [embeddedKubeChunk(await buildKubeChunk()), await lazyBuiltins()],
    write: false,
  });
  // Replaced atomically (temp file + rename): an agent started meanwhile (a test in another process)
  // runs the old bundle or the new one, never a half-written file. The map first, the bundle last.
  const outputs = [...(result.outputFiles ?? [])].sort((a, b) => Number(a.path.endsWith(".cjs")) - Number(b.path.endsWith(".cjs")));
  for (const output of outputs) {
    fs.mkdirSync(path.dirname(output.path), { recursive: true });
    const temp = `${output.path}.${process.pid}.tmp`;
    fs.writeFileSync(temp, output.contents);
    fs.renameSync(temp, output.path);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildAgent();
}
