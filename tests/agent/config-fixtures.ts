// Shared by the config planner tests: the fixture corpus, a request like the installer's, and an
// in-memory host file system that applies FileEdits.
import * as fs from "node:fs";
import * as path from "node:path";
import type { FileEdit, KataConfigRequest, KataRuntime } from "../../images/kata-deploy/agent/src/runtimes/types";

export const FIXTURES = path.join(__dirname, "..", "fixtures", "config");

export function fixtureNames(dir: string): string[] {
  return fs.readdirSync(path.join(FIXTURES, dir)).sort();
}

/** A fixture's text, `@ROOT@` replaced by the host root ("" for the pure tests). */
export function fixture(dir: string, name: string, root = ""): string {
  return fs.readFileSync(path.join(FIXTURES, dir, name), "utf8").replaceAll("@ROOT@", root);
}

export const QEMU: KataRuntime = {
  name: "kata-qemu",
  shim: "qemu",
  shimBinary: "/opt/kata/bin/containerd-shim-kata-v2",
  configPath: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
};
export const FC: KataRuntime = {
  name: "kata-fc",
  shim: "fc",
  shimBinary: "/opt/kata/bin/containerd-shim-kata-v2",
  configPath: "/opt/kata/share/defaults/kata-containers/configuration-fc.toml",
  snapshotter: "devmapper",
};
export const CLH: KataRuntime = {
  name: "kata-clh",
  shim: "clh",
  shimBinary: "/opt/kata/bin/containerd-shim-kata-v2",
  configPath: "/opt/kata/share/defaults/kata-containers/configuration-clh.toml",
};
export const REQUEST: KataConfigRequest = { runtimes: [QEMU, FC], untrustedAlias: QEMU };

/** Host files by absolute path; `read` for the planners and `apply` for their edits. */
export class FakeHost {
  readonly files = new Map<string, string>();
  constructor(initial: Record<string, string | undefined> = {}) {
    for (const [file, text] of Object.entries(initial)) if (text !== undefined) this.files.set(file, text);
  }
  read = (file: string): string | undefined => this.files.get(file);
  /** A directory's entry names, sorted as Go's filepath.Glob sorts them (byte order); undefined when nothing is under it. */
  list = (dir: string): string[] | undefined => {
    const names = new Set<string>();
    for (const file of this.files.keys()) if (file.startsWith(`${dir}/`)) names.add(file.slice(dir.length + 1).split("/")[0]);
    return names.size === 0 ? undefined : [...names].sort();
  };
  apply(edits: FileEdit[]): this {
    for (const edit of edits) {
      if (edit.before !== this.files.get(edit.path)) throw new Error(`edit of ${edit.path} was planned against other contents`);
      if (edit.after === undefined) this.files.delete(edit.path);
      else this.files.set(edit.path, edit.after);
    }
    return this;
  }
  snapshot(): Record<string, string> {
    return Object.fromEntries([...this.files].sort(([a], [b]) => a.localeCompare(b)));
  }
}

/** True when `after` is `before` with exactly one contiguous span inserted (nothing else touched). */
export function isSingleInsertion(before: string, after: string): boolean {
  if (after.length <= before.length) return false;
  let prefix = 0;
  while (prefix < before.length && before[prefix] === after[prefix]) prefix++;
  let suffix = 0;
  while (suffix < before.length - prefix && before[before.length - 1 - suffix] === after[after.length - 1 - suffix]) suffix++;
  return prefix + suffix === before.length;
}
