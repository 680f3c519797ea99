// What the image carries: the image build writes <artifacts>/kata-deploy-payload.json (images/kata-deploy/
// release/payload.mjs) with the Kata version and the shims whose files it kept. An install that asks for a
// shim the image does not carry is refused before anything on the host is touched.
import * as fs from "node:fs";
import * as path from "node:path";
import { UserError } from "../report/errors";
import type { ShimLayout } from "./request";

export const PAYLOAD_FILE = "kata-deploy-payload.json";

export interface CarriedPayload {
  version: string;
  shims: string[];
  /** Per shim, where the build found its binary and configuration (relative to opt/kata); empty for older payload files. */
  layouts: Map<string, ShimLayout>;
}

/** A relative path inside the release tree: no absolute path, no `..`. */
function isTreePath(value: unknown): value is string {
  return typeof value === "string" && value !== "" && !path.posix.isAbsolute(value) && !value.split("/").includes("..");
}

/** Reads the payload file; undefined when there is none (artifacts not made by the image build, e.g. an unpacked release). */
export function readPayload(artifacts: string): CarriedPayload | undefined {
  const file = path.join(artifacts, PAYLOAD_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UserError(`${file}: not valid JSON; rebuild the image (npm run image:build)`);
  }
  const { version, shims, runtimes } = (parsed ?? {}) as { version?: unknown; shims?: unknown; runtimes?: unknown };
  if (typeof version !== "string" || !Array.isArray(shims) || !shims.every((s) => typeof s === "string")) {
    throw new UserError(`${file}: has no "version" string and "shims" list; rebuild the image (npm run image:build)`);
  }
  const layouts = new Map<string, ShimLayout>();
  for (const [shim, entry] of Object.entries(typeof runtimes === "object" && runtimes !== null ? runtimes : {})) {
    const { binary, config } = (entry ?? {}) as { binary?: unknown; config?: unknown };
    if (!isTreePath(binary) || !isTreePath(config)) {
      throw new UserError(`${file}: runtimes.${shim} needs "binary" and "config" paths inside opt/kata; rebuild the image (npm run image:build)`);
    }
    layouts.set(shim, { binary, config });
  }
  return { version, shims, layouts };
}

/**
 * Refuses shims the image does not carry, in one line naming them and the fix. Returns where the image has
 * each shim's binary and configuration (empty when the artifacts carry no payload file).
 */
export function checkShimsCarried(artifacts: string, shims: readonly string[]): ReadonlyMap<string, ShimLayout> {
  const payload = readPayload(artifacts);
  if (payload === undefined) return new Map();
  const missing = shims.filter((shim) => !payload.shims.includes(shim));
  if (missing.length === 0) return payload.layouts;
  throw new UserError(
    `--shims ${missing.join(",")}: this image carries only ${payload.shims.join(",")} (Kata ${payload.version}, ${path.join(artifacts, PAYLOAD_FILE)}); ` +
      `rebuild the image with ${missing.join(",")} in its shims (KATA_SHIMS build arg, \`npm run image:build -- --shims ...\`, or the KataDeployment's shims)`,
  );
}
