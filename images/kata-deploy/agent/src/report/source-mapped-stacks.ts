// Readable stack traces (src/*.ts lines) for the bundle, paid for only when a trace is printed.
//
// Node's --enable-source-maps does the same mapping, but eagerly: Node 20 (the image's Debian nodejs)
// reads and parses the map and splits the whole bundle into lines (lib/internal/source_map/
// source_map_cache.js, maybeCacheSourceMap → lineLengths) at every start, before any command runs —
// about a third of `kata-deploy status`'s CPU time, paid by every readiness probe and every
// re-install. Here the map is read the first time a stack is formatted with a frame in the bundle,
// which in practice means cli.ts's "unexpected error (a bug ...)" report (errors meant for the operator
// are one line without a trace, report/format.ts).
//
// build.mjs injects this module at the top of the bundle (esbuild `inject`; nothing imports it) and
// writes the map next to the bundle without a sourceMappingURL comment, so Node never maps on its own.
// Frames are rendered by V8's own CallSite toString, with the bundle's `file:line:column` replaced by the
// original source's, resolved against the map's directory as Node resolves a map's `sources`.
import * as fs from "node:fs";
import { SourceMap } from "node:module";
import * as path from "node:path";

/** The bundle's own path (in the bundle, `__filename` is the bundle's; Node resolves the kata-deploy-docker symlink to it). */
const bundle = __filename;
/** undefined: not read yet; null: no usable map next to the bundle (frames stay as they are). */
let map: SourceMap | null | undefined;

function sourceMap(): SourceMap | null {
  if (map === undefined) {
    try {
      map = new SourceMap(JSON.parse(fs.readFileSync(`${bundle}.map`, "utf8")) as ConstructorParameters<typeof SourceMap>[0]);
    } catch {
      map = null;
    }
  }
  return map;
}

function renderFrame(site: NodeJS.CallSite): string {
  const text = String(site);
  const line = site.getLineNumber();
  const column = site.getColumnNumber();
  if (site.getFileName() !== bundle || line === null || column === null) return text;
  const entry = sourceMap()?.findEntry(line - 1, column - 1);
  if (entry === undefined || !("originalSource" in entry)) return text;
  const source = path.resolve(path.dirname(bundle), entry.originalSource);
  return text.replace(`${bundle}:${line}:${column}`, `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`);
}

function header(error: unknown): string {
  try {
    return Error.prototype.toString.call(error);
  } catch {
    return "Error";
  }
}

// V8 calls this when a stack is first read (error.stack), with the error and its frames; the text is
// what V8 would print (header, then "    at <frame>" lines), frames in the bundle mapped.
Error.prepareStackTrace = (error, sites) => [header(error), ...sites.map((site) => `    at ${renderFrame(site)}`)].join("\n");
